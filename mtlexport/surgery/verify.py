"""Numerical proof that the slim model computes what the dense one did.

Both models run in the same dtype (float32 by default; float64 removes summation-order noise
but is slow on CPU for depthwise and dilated convolutions) and errors are computed in float64.
Every failing output is collected before one ``VerificationError`` names them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.errors import VerificationError


@dataclass(frozen=True)
class OutputCheck:
    """Deviation of one output on one input set; ``passed`` when max_abs or max_rel <= tol."""

    output: str
    inputs: str
    max_abs: float
    max_rel: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "inputs": self.inputs, "max_abs": self.max_abs,
                "max_rel": self.max_rel, "passed": self.passed}


def run_outputs(model: nn.Module, inputs: dict[str, Tensor], dtype: torch.dtype = torch.float32) -> dict[str, dict[str, Tensor]]:
    """Outputs of ``model`` on each named input batch, computed in ``dtype`` (model restored after)."""
    param = next(model.parameters(), None)
    original = param.dtype if param is not None else torch.float32
    was_training = model.training
    model.eval().to(dtype)
    try:
        with torch.no_grad():
            return {key: named_outputs(model(x.to(dtype))) for key, x in inputs.items()}
    finally:
        model.to(original).train(was_training)


def named_outputs(out: Any) -> dict[str, Tensor]:
    """A model's outputs as ``{name: tensor}`` (dict keys, ``output`` or ``output.i``)."""
    if isinstance(out, Tensor):
        return {"output": out}
    if isinstance(out, dict):
        flat: dict[str, Tensor] = {}
        for key, value in out.items():
            for sub, t in named_outputs(value).items():
                flat[str(key) if sub == "output" else f"{key}.{sub}"] = t
        return flat
    if isinstance(out, (list, tuple)):
        return {f"output.{i}": t for i, v in enumerate(out) for t in named_outputs(v).values()}
    raise VerificationError(f"model returned a {type(out).__name__}; expected a tensor or a dict of tensors")


def compare_outputs(reference: dict[str, dict[str, Tensor]], actual: dict[str, dict[str, Tensor]], tol: float) -> list[OutputCheck]:
    """Per input set and output: max absolute and relative (to the reference's max) error."""
    checks: list[OutputCheck] = []
    for inputs, ref_out in reference.items():
        new_out = actual.get(inputs, {})
        for name, ref in ref_out.items():
            new = new_out.get(name)
            if new is None or new.shape != ref.shape:
                checks.append(OutputCheck(name, inputs, float("inf"), float("inf"), False))
                continue
            diff = (new.double() - ref.double()).abs()
            max_abs = float(diff.max()) if diff.numel() else 0.0
            scale = float(ref.double().abs().max()) if ref.numel() else 0.0
            max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
            finite = bool(torch.isfinite(new).all()) == bool(torch.isfinite(ref).all())
            checks.append(OutputCheck(name, inputs, max_abs, max_rel, finite and min(max_abs, max_rel) <= tol))
    return checks


def raise_on_failure(checks: list[OutputCheck], tol: float) -> None:
    """One VerificationError listing every output over ``tol``; nothing when all pass."""
    failed = [c for c in checks if not c.passed]
    if not failed:
        return
    detail = "; ".join(f"output {c.output!r} on {c.inputs} inputs: max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g}"
                       for c in failed)
    raise VerificationError(f"slim model does not match the dense one (tol {tol:g}): {detail}; output not written")
