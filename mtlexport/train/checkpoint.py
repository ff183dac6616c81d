"""The checkpoint format: a plain dict that ``torch.load(path, weights_only=True)`` reads.

Keys: ``format``, ``format_version``, ``spec`` (ModelSpec.to_dict()), ``config`` (the full
training config as plain data), ``state_dict``, ``optimizer`` (state dict or None), ``epoch``,
``metrics``, ``extra`` (e.g. loss weighting, scheduler and RNG state, sparsity summary,
slimming report) and ``versions``. No module or class is ever pickled.
"""

from __future__ import annotations

import pickle
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtlexport.errors import CheckpointError, ConfigError
from mtlexport.io import atomic_path
from mtlexport.models import ModelSpec, MultiTaskNet, create_model

FORMAT = "mtlexport.checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. ``build_model()`` rebuilds the network from the spec alone."""

    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def data_size(self) -> tuple[int, int] | None:
        """(height, width) of the images it was trained on, from the config's ``data`` section."""
        data = self.config.get("data") if isinstance(self.config, dict) else None
        if isinstance(data, dict) and isinstance(data.get("height"), int) and isinstance(data.get("width"), int):
            return data["height"], data["width"]
        return None

    def build_model(self, *, check_finite: bool = True, factory: str | None = None) -> MultiTaskNet:
        """``create_model(spec)`` with the stored weights loaded strictly, in eval mode; weights
        that do not match the spec, or (with ``check_finite``) hold NaN or Inf, raise a
        CheckpointError naming the tensors. A checkpoint of your own model needs ``factory``
        (the user's ``--model``), equal to the one it records: a file never names code to import."""
        where = self.path or "checkpoint"
        if self.spec.factory or factory:
            from mtlexport.models.factory import build_user_model

            model = build_user_model(self.spec, factory, where)
        else:
            model = create_model(self.spec)
        problem = state_dict_mismatch(model.state_dict(), self.state_dict)
        if problem:
            raise CheckpointError(f"{where}: weights do not match its spec: {problem}; the file was edited "
                                  "or mixes two models")
        if check_finite:
            check_finite_weights(self.state_dict, where)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{where}: weights do not match its spec ({first})") from None
        return model.eval()

    def payload(self) -> dict[str, Any]:
        """The dict written to disk."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "config": self.config,
            "state_dict": self.state_dict,
            "optimizer": self.optimizer,
            "epoch": self.epoch,
            "metrics": self.metrics,
            "extra": self.extra,
            "versions": self.versions or library_versions(),
        }


def _shape(t: Any) -> str:
    return "[" + ", ".join(str(d) for d in getattr(t, "shape", ())) + "]" if hasattr(t, "shape") else type(t).__name__


def _first(names: list[str], describe: Any, limit: int = 2) -> str:
    shown = ", ".join(describe(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def state_dict_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """'' when ``found`` has exactly the keys and shapes of ``expected``; otherwise a short
    description of the first missing, unexpected and mis-shaped entries, with shapes."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shaped = [k for k in expected if k in found and (not isinstance(found[k], torch.Tensor)
                                                    or tuple(found[k].shape) != tuple(expected[k].shape))]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: " + _first(missing, lambda k: f"{k} {_shape(expected[k])}"))
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: " + _first(unexpected, lambda k: f"{k} {_shape(found[k])}"))
    if shaped:
        parts.append(f"{len(shaped)} mis-shaped: " + _first(
            shaped, lambda k: f"{k} is {_shape(found[k])}, the spec needs {_shape(expected[k])}"))
    return "; ".join(parts)


def check_finite_weights(state_dict: dict[str, Any], where: str | Path = "checkpoint") -> None:
    """Raise a CheckpointError naming the first floating-point tensors with NaN or Inf values."""
    bad = []
    for name, t in state_dict.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad.append((name, int(torch.isnan(t).sum()), int(torch.isinf(t).sum()), t.numel()))
    if bad:
        name, nans, infs, n = bad[0]
        more = f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else ""
        raise CheckpointError(
            f"{where}: tensor {name} holds {nans} NaN and {infs} Inf value(s) of {n}{more}; training diverged or "
            "the file is damaged: use an earlier checkpoint or retrain (lower optimizer.lr, set train.grad_clip)")


def library_versions() -> dict[str, str]:
    """Versions recorded in every checkpoint and report."""
    import numpy

    import mtlexport

    out = {"mtlexport": mtlexport.__version__, "torch": str(torch.__version__), "numpy": str(numpy.__version__),
           "python": platform.python_version()}
    try:
        import torch_pruning

        out["torch_pruning"] = str(getattr(torch_pruning, "__version__", "unknown"))
    except ImportError:
        pass
    return out


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically (temporary file, then rename) and return the path."""
    target = Path(path)
    payload = ckpt.payload()
    payload["state_dict"] = {k: v.detach().cpu() for k, v in ckpt.state_dict.items()}
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def read_weights_only(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; every failure is a one-line CheckpointError."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {p} does not exist; pass the .pt file written by 'mtlexport train' or 'slim'")
    if not zipfile.is_zipfile(p):
        raise CheckpointError(f"{p} is not a checkpoint written by torch.save (not a zip archive), or it is corrupt")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{p} holds pickled Python objects, not only tensors and plain data; mtlexport never unpickles "
            "arbitrary objects: save model.state_dict() instead of the whole model"
        ) from None
    except Exception as exc:  # torch raises many types for a damaged file; all mean the same to the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read {what} {p}: {first[:200]}") from None


def file_format(path: str | Path) -> str:
    """The ``format`` tag of a ``.pt`` file (``mtlexport.checkpoint``, ``mtlexport.slim_state_dict``),
    or '' for a plain state dict; unreadable files raise the usual one-line CheckpointError."""
    raw = read_weights_only(path)
    tag = raw.get("format") if isinstance(raw, dict) else None
    return tag if isinstance(tag, str) else ""


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True``; every failure is a one-line CheckpointError."""
    p = Path(path)
    raw = read_weights_only(p)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(
            f"{p} is not an mtlexport checkpoint (no '{FORMAT}' format tag); "
            "for a plain state_dict of your own model use --model package.module:factory"
        )
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{p} has checkpoint format version {version}; this mtlexport reads up to {FORMAT_VERSION}, upgrade mtlexport")
    try:
        spec = ModelSpec.from_dict(raw["spec"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{p} has an invalid model spec: {exc}") from None
    return Checkpoint(
        spec=spec,
        state_dict=raw.get("state_dict") or {},
        config=raw.get("config") or {},
        epoch=int(raw.get("epoch", 0)),
        metrics=raw.get("metrics") or {},
        optimizer=raw.get("optimizer"),
        extra=raw.get("extra") or {},
        versions=raw.get("versions") or {},
        path=p,
    )


def strip_training_state(ckpt: Checkpoint) -> Checkpoint:
    """A copy for distribution: no optimizer state or RNG state (it can no longer resume
    training exactly, but evaluates, slims, exports and benches the same)."""
    from dataclasses import replace

    extra = {k: v for k, v in ckpt.extra.items() if k != "rng"}
    extra["stripped"] = True
    return replace(ckpt, optimizer=None, extra=extra)
