"""Compare an exported model's outputs with PyTorch's, output by output, on several inputs.

Every check of every output is collected; ``raise_for_failures`` then raises one ExportError
naming all failing outputs at once (as optimum's exporters do).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtlexport.errors import BackendUnavailableError, ExportError
from mtlexport.export.onnx_export import INPUT_NAME, OrderedOutputs
from mtlexport.tasks import Tolerance


@dataclass(frozen=True)
class OutputCheck:
    """One output of one model on one input. ``worst`` = max |a-b| / (atol + rtol*|b|) (<= 1 passes);
    ``max_rel`` = max |a-b| / max(|b|, atol)."""

    model: str
    check: str
    output: str
    batch: int
    max_abs: float
    max_rel: float
    worst: float
    atol: float
    rtol: float
    mismatched: int
    total: int
    passed: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        """One line for error messages."""
        return (f"{self.model}:{self.output} on {self.check} (batch {self.batch}): max abs {self.max_abs:.3g}, "
                f"max rel {self.max_rel:.3g}, {self.mismatched}/{self.total} elements beyond "
                f"atol={self.atol:g} rtol={self.rtol:g}")


def torch_outputs(model: nn.Module, names: tuple[str, ...], images: Tensor) -> list[np.ndarray]:
    """Reference outputs (float32 numpy, in ``names`` order) of ``model`` in eval mode."""
    wrapper = OrderedOutputs(model, names).eval()
    with torch.no_grad():
        return [t.detach().float().cpu().numpy() for t in wrapper(images)]


def import_ort() -> Any:
    """Import onnxruntime, or raise BackendUnavailableError naming the extras that install it."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError("onnxruntime is not installed: pip install 'mtlexport[cpu]' (or 'mtlexport[gpu]' "
                                      "on a CUDA machine; install one of the two, never both)") from None
    return onnxruntime


def ort_session(path: Path, optimized_to: Path | None = None):  # noqa: ANN201 - onnxruntime type stays lazy
    """A CPU ONNX Runtime session for ``path`` (all graph optimisations on); with
    ``optimized_to`` ORT also saves the graph it actually runs there."""
    ort = import_ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"ONNX Runtime cannot load {path.name}: {first[:300]}") from exc


def ort_run_info(model: Path, optimized: Path) -> dict[str, Any]:
    """What ONNX Runtime (CPU) really ran for ``model``: the Casts it inserted, and in which
    float type the convolutions computed (from the optimised graph ORT saved to ``optimized``).

    ORT's CPU provider lacks float16 kernels for most operators: it wraps them in Casts and
    computes them in float32, so an FP16 model validated here is not checked in FP16.
    """
    import onnx

    ort = import_ort()
    source = onnx.load(str(model), load_external_data=False)
    ran = onnx.load(str(optimized), load_external_data=False)
    casts = sum(n.op_type == "Cast" for n in source.graph.node)
    casts_run = sum(n.op_type == "Cast" for n in ran.graph.node)
    types = {v.name: v.type.tensor_type.elem_type for v in (*ran.graph.value_info, *ran.graph.input, *ran.graph.output)}
    types.update({i.name: i.data_type for i in ran.graph.initializer})
    conv_types = sorted({_TYPE_NAMES.get(types.get(n.input[1], 0), "unknown")
                         for n in ran.graph.node if "Conv" in n.op_type and len(n.input) > 1})
    precision = "float16" if conv_types == ["float16"] else ("float32" if conv_types == ["float32"] else "mixed")
    return {"model": model.name, "runtime": f"onnxruntime {ort.__version__}", "provider": "CPUExecutionProvider",
            "casts_in_model": casts, "casts_inserted": max(casts_run - casts, 0), "conv_weight_types": conv_types,
            "computed_in": precision}


_TYPE_NAMES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def ort_outputs(session, images: np.ndarray) -> list[np.ndarray]:  # noqa: ANN001
    """Run the session on a float32 NCHW batch."""
    return list(session.run(None, {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)}))


def compare(model: str, check: str, names: tuple[str, ...], got: list[np.ndarray], ref: list[np.ndarray],
            tolerances: dict[str, Tolerance]) -> list[OutputCheck]:
    """One ``OutputCheck`` per output; a shape mismatch counts as every element failing."""
    results = []
    for name, a, b in zip(names, got, ref, strict=True):
        tol = tolerances[name]
        batch = int(b.shape[0]) if b.ndim else 1
        if a.shape != b.shape:
            results.append(OutputCheck(model, check, name, batch, float("inf"), float("inf"), float("inf"),
                                       tol.atol, tol.rtol, int(b.size), int(b.size), False))
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        diff = np.abs(a64 - b64)
        bound = tol.atol + tol.rtol * np.abs(b64)
        finite = np.isfinite(a64)
        bad = int(np.count_nonzero((diff > bound) | ~finite))
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(np.abs(b64), tol.atol)).max()) if diff.size else 0.0
        worst = float((diff / bound).max()) if diff.size else 0.0
        if not finite.all():
            max_abs = max_rel = worst = float("inf")
        results.append(OutputCheck(model, check, name, batch, max_abs, max_rel, worst,
                                   tol.atol, tol.rtol, bad, int(b.size), bad == 0))
    return results


def raise_for_failures(checks: list[OutputCheck]) -> None:
    """Raise one ExportError listing every failing check (nothing when all passed)."""
    failed = [c for c in checks if not c.passed]
    if failed:
        outputs = sorted({f"{c.model}:{c.output}" for c in failed})
        details = "; ".join(c.describe() for c in failed)
        raise ExportError(f"validation failed for {len(outputs)} output(s) {outputs}: {details}")


def random_images(batch: int, height: int, width: int, seed: int, channels: int = 3) -> Tensor:
    """Normalised-image-like inputs: standard normal, seeded."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=gen)
