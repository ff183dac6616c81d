"""PyTorch to ONNX: the fixed-order output wrapper, the two exporters, checks, simplification.

The default exporter is torch's dynamo exporter (``torch.export`` + onnxscript): it gives a
clean graph (no shape-arithmetic chains) with a truly symbolic batch declared through
``dynamic_shapes``. The legacy TorchScript exporter (``dynamic_axes``) stays selectable: it is
several times faster on small machines and produces the same function.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.errors import ExportError

INPUT_NAME = "images"
BATCH_DIM = "batch"


class OrderedOutputs(nn.Module):
    """Wraps a model returning ``{task: tensor}`` so it returns a tuple in ``names`` order."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(images)
        return tuple(outputs[name] for name in self.names)


def export_onnx(model: nn.Module, path: Path, names: tuple[str, ...], example: Tensor,
                opset: int, exporter: str) -> str:
    """Export ``model`` (in eval mode) to ``path`` with input ``images`` and outputs ``names``.

    ``example`` must have a batch of at least 2 so that the batch is not specialised to 1.
    Returns a description of the exporter used (recorded in the manifest).
    """
    if example.shape[0] < 2:
        raise ExportError("export needs an example batch of at least 2, or the batch dimension is fixed to 1")
    wrapper = OrderedOutputs(model, names).eval()
    kwargs: dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": list(names), "opset_version": opset}
    if exporter == "dynamo":
        batch = torch.export.Dim(BATCH_DIM, min=1)
        kwargs.update(dynamo=True, dynamic_shapes={INPUT_NAME: {0: batch}}, external_data=False,
                      optimize=True, verbose=False)
    else:
        axes = {name: {0: BATCH_DIM} for name in (INPUT_NAME, *names)}
        kwargs.update(dynamo=False, dynamic_axes=axes)
    try:
        with torch.no_grad(), warnings.catch_warnings(), _quiet_torch_onnx():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (example,), str(path), **kwargs)
    except Exception as exc:  # exporters raise many types; all mean "this model did not export"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"ONNX export ({exporter}) failed: {first[:300]}") from exc
    return "torch.onnx.export(dynamo=True, dynamic_shapes)" if exporter == "dynamo" else "torch.onnx.export(dynamo=False, dynamic_axes)"


@contextlib.contextmanager
def _quiet_torch_onnx() -> Iterator[None]:
    """Silence the exporter's log warnings (e.g. optional torchvision ops): the library never prints."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_onnx(path: Path) -> Any:
    """Load an ONNX model (with its weights)."""
    import onnx

    return onnx.load(str(path))


def check_onnx(path: Path, names: tuple[str, ...]) -> None:
    """``onnx.checker`` with full shape checking, plus our I/O contract (names, order, batch)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx raises ValidationError and InferenceError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{path.name} fails the ONNX checker: {first[:300]}") from exc
    model = load_onnx(path)
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME]:
        raise ExportError(f"{path.name} has inputs {inputs}; expected exactly ['{INPUT_NAME}']")
    if outputs != list(names):
        raise ExportError(f"{path.name} has outputs {outputs}; expected {list(names)} (spec order)")
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param:
            raise ExportError(f"{path.name}: tensor {value.name!r} has a fixed batch dimension; export with a batch >= 2")


def normalise_batch_dim(path: Path) -> None:
    """Name the symbolic batch dimension ``batch`` on every input and output, in place."""
    import onnx

    model = load_onnx(path)
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = BATCH_DIM
    onnx.save(model, str(path))


def simplify_onnx(path: Path) -> None:
    """Simplify ``path`` in place with onnxslim (constant folding, dead-node removal)."""
    import onnx
    import onnxslim

    try:
        slim = onnxslim.slim(str(path))
    except Exception as exc:  # onnxslim surfaces many internal errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"onnxslim could not simplify {path.name}: {first[:300]} (retry with --no-simplify)") from exc
    onnx.save(slim, str(path))


def output_shapes(path: Path) -> dict[str, list[int | str]]:
    """Declared output shapes, symbolic dimensions as their names."""
    model = load_onnx(path)
    return {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}


def op_counts(path: Path) -> dict[str, int]:
    """Number of nodes per operator type."""
    counts: dict[str, int] = {}
    for node in load_onnx(path).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
