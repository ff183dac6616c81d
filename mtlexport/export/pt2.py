"""``model.pt2``: the model as a ``torch.export`` program beside the ONNX (``--format pt2``).

The program takes ``images`` with a symbolic batch (like the ONNX) and returns the outputs as a
tuple in task order. It is saved with ``torch.export.save`` and reloaded with
``torch.export.load(path).module()``; the exporter validates the reloaded program against the
eager model like the ONNX. Compile it for a target with AOTInductor there
(``torch._inductor.aoti_compile_and_package``): the compiled package is tied to that machine's
device and compiler, so it is not built at export time.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mtlexport.errors import ExportError
from mtlexport.export.onnx_export import BATCH_DIM, INPUT_NAME, OrderedOutputs

PT2_FILE = "model.pt2"


def export_program(model: nn.Module, path: Path, names: tuple[str, ...], example: Tensor) -> str:
    """``torch.export`` ``model`` (eval mode) with a dynamic batch and save it to ``path``;
    returns a description for the manifest. ``example`` needs a batch of at least 2."""
    if example.shape[0] < 2:
        raise ExportError("pt2 export needs an example batch of at least 2, or the batch dimension is fixed to 1")
    wrapper = OrderedOutputs(model, names).eval()
    batch = torch.export.Dim(BATCH_DIM, min=1)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(wrapper, (example,), dynamic_shapes={INPUT_NAME: {0: batch}})
            torch.export.save(program, str(path))
    except Exception as exc:  # torch.export raises many types; all mean "this model did not export"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"torch.export failed: {first[:300]} (export without --format pt2)") from exc
    return "torch.export.export(dynamic_shapes) + torch.export.save"


def program_outputs(path: Path, images: Tensor) -> list[np.ndarray]:
    """Outputs (float32 numpy, task order) of the saved program reloaded from ``path``."""
    try:
        module = torch.export.load(str(path)).module()
    except Exception as exc:  # a corrupt or incompatible file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"cannot load {path.name} with torch.export.load: {first[:300]}") from exc
    with torch.no_grad():
        return [t.detach().float().cpu().numpy() for t in module(images)]
