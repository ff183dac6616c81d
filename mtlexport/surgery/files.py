"""Slimming files: mtlexport checkpoints, and plain state dicts of any model built by a factory.

A slim mtlexport checkpoint is a normal training checkpoint whose spec carries the new
widths, so ``load_checkpoint(path).build_model()`` rebuilds it with no dense weights.

A slim state dict (``--model package.module:factory``) is a ``weights_only`` dict::

    {"format": "mtlexport.slim_state_dict", "factory": "package.module:factory",
     "widths": {layer: [in, out, groups] | [in, out] | [features]}, "state_dict": {...}, "slim": {...}}

Rebuild it with ``load_slim_state_dict(path)``, or by hand::

    model = factory(); apply_widths(model, ckpt["widths"]); model.load_state_dict(ckpt["state_dict"])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.errors import CheckpointError, ConfigError
from mtlexport.data.samples import real_images
from mtlexport.io import atomic_path
from mtlexport.models.widths import apply_widths, changed_widths, layer_widths
from mtlexport.reporting import NullReporter, Reporter
from mtlexport.surgery.report import SlimReport
from mtlexport.surgery.auto import AUTO, AutoOptions, choose_widths
from mtlexport.surgery.slim import output_layers, slim_model
from mtlexport.train.checkpoint import Checkpoint, library_versions, load_checkpoint, read_weights_only, save_checkpoint

STATE_FORMAT = "mtlexport.slim_state_dict"
DEFAULT_SIZE = 64
TRACE_SIZE = 32
REAL_SAMPLES = 2


def trained_groups(ckpt: Any) -> dict[str, Any]:
    """The group-lasso groups a checkpoint was trained with and how many are zero (empty if none)."""
    record = (ckpt.extra or {}).get("sparsity") or {}
    grouping = (ckpt.config.get("optimizer") or {}).get("grouping", "channel") if isinstance(ckpt.config, dict) else None
    if "lasso_groups" not in record:
        return {}
    zero = record.get("zero_coupled_groups", record.get("zero_lasso_groups"))
    return {"grouping": grouping, "zero_groups": zero, "groups": record["lasso_groups"]}


def default_output(path: str | Path) -> Path:
    """``<stem>.slim.pt`` beside ``path``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.slim.pt")


def slim_checkpoint(
    path: str | Path,
    out: str | Path | None = None,
    *,
    round_to: int | str = 1,
    tol: float = 1e-5,
    fold_constants: bool = False,
    input_size: int | tuple[int, int] | None = None,
    seed: int = 0,
    float64: bool = False,
    auto: AutoOptions | None = None,
    reporter: Reporter | None = None,
    factory: str | None = None,
) -> SlimReport:
    """Slim an mtlexport checkpoint and write ``out`` (default ``<stem>.slim.pt``) atomically.

    A checkpoint of your own model needs ``factory`` (``--model``), the one it records; the
    slim checkpoint records it too, with the new per-layer widths.

    Verifies on random inputs of ``input_size`` (default: the data config's size, else 64) and
    on a batch of the checkpoint's data when it can be built, in float32 (``float64=True`` for
    rounding-free but slow forwards). Nothing is written on failure. ``round_to="auto"``
    chooses every width by measured latency (``auto``: backend, batch, threads; see
    ``surgery.auto``) and the report's ``auto`` says how.
    """
    if round_to != AUTO and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise ConfigError(f"--round-to takes a positive integer or 'auto', got {round_to!r}")
    if auto is not None and round_to != AUTO:
        raise ConfigError("latency options (backend, batch, threads) apply only with --round-to auto")
    reporter = reporter or NullReporter()
    ckpt = load_checkpoint(path)
    model = ckpt.build_model(factory=factory)
    if ckpt.spec.factory and round_to == AUTO:
        raise ConfigError("--round-to auto measures models through mtlexport's bench runners, which do not build "
                          "your own model yet; use a fixed --round-to N (e.g. 8)")
    data_cfg = ckpt.config.get("data") if isinstance(ckpt.config, dict) else None
    size = _size(input_size, ckpt.data_size)
    c = ckpt.spec.in_channels
    inputs = {"random": _random(c, size, seed)}
    real, notice = real_batch(data_cfg, ckpt.data_size)
    notices = [notice] if notice else []
    if real is not None:
        inputs["data"] = real
    for text in notices:
        reporter.message(text)
    widths_before = layer_widths(model)
    example = _random(c, (min(size[0], TRACE_SIZE), min(size[1], TRACE_SIZE)), seed + 1)[:1]
    widths, auto_report = None, None
    if round_to == AUTO:
        widths, auto_report = choose_widths(path, ckpt, model, example, (c, *size), auto or AutoOptions(),
                                            protected=output_layers(model), fold_constants=fold_constants,
                                            reporter=reporter)
    report = slim_model(model, example, inputs, round_to=1 if widths is not None else round_to, tol=tol,
                        fold_constants=fold_constants, widths=widths, profile_shape=(c, *size),
                        dtype=_dtype(float64), reporter=reporter)
    target = Path(out) if out is not None else default_output(path)
    report = dataclasses.replace(report, notices=tuple(notices), source=str(path), output=str(target),
                                 round_to=round_to, auto=auto_report, trained_groups=trained_groups(ckpt))
    spec = ckpt.spec.with_widths(changed_widths(widths_before, layer_widths(model)))
    slim = Checkpoint(
        spec=spec, state_dict=model.state_dict(), config=ckpt.config, epoch=ckpt.epoch, metrics=ckpt.metrics,
        optimizer=None, extra={**ckpt.extra, "slim": report.to_dict()}, versions=library_versions(),
    )
    save_checkpoint(target, slim)
    return report


def slim_state_dict(
    path: str | Path,
    factory: str,
    out: str | Path | None = None,
    *,
    round_to: int = 1,
    tol: float = 1e-5,
    fold_constants: bool = False,
    input_size: int | tuple[int, int] | None = None,
    seed: int = 0,
    float64: bool = False,
    reporter: Reporter | None = None,
) -> SlimReport:
    """Slim the model ``factory`` builds, loaded with the plain state dict at ``path``."""
    reporter = reporter or NullReporter()
    model = build_from_factory(factory)
    try:
        model.load_state_dict(_read_state(path), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not match the model {factory} builds ({first})") from None
    model.eval()
    size = _size(input_size, None)
    c = _in_channels(model)
    widths_before = layer_widths(model)
    example = _random(c, size, seed + 1)[:1]
    report = slim_model(model, example, {"random": _random(c, size, seed)}, round_to=round_to, tol=tol,
                        fold_constants=fold_constants, profile_shape=(c, *size), dtype=_dtype(float64),
                        reporter=reporter)
    target = Path(out) if out is not None else default_output(path)
    notice = "verified on random inputs only (a plain state dict has no data config)"
    report = dataclasses.replace(report, notices=(notice,), source=str(path), output=str(target))
    payload = {
        "format": STATE_FORMAT, "format_version": 1, "factory": factory,
        "widths": {k: list(v) for k, v in changed_widths(widths_before, layer_widths(model)).items()},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "slim": report.to_dict(),
    }
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return report


def load_slim_state_dict(path: str | Path, factory: str | Callable[[], nn.Module] | None = None) -> nn.Module:
    """Rebuild a model written by ``slim_state_dict``: factory, ``apply_widths``, weights.

    ``factory`` is the one you trust (the file records one, which is never imported by itself):
    a ``package.module:function`` string must equal the recorded one; a callable is used as it is."""
    from mtlexport.models.factory import trusted_factory

    raw = read_weights_only(path, "state dict")
    if not isinstance(raw, dict) or raw.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a slim state dict ('{STATE_FORMAT}')")
    if not callable(factory):
        factory = trusted_factory(str(raw.get("factory") or "?"), factory, path)
    model = build_from_factory(factory) if isinstance(factory, str) else factory()
    apply_widths(model, {k: tuple(v) for k, v in raw["widths"].items()})
    model.load_state_dict(raw["state_dict"], strict=True)
    return model.eval()


def build_from_factory(spec: str) -> nn.Module:
    """Call ``package.module:factory`` (no arguments) and check it returns an ``nn.Module``."""
    from mtlexport.models.factory import call_factory

    return call_factory(spec, {}, "--model")


def real_batch(data_cfg: dict[str, Any] | None, size: tuple[int, int] | None,
               samples: int = REAL_SAMPLES) -> tuple[Tensor | None, str]:
    """A few images of the checkpoint's own data, or None and the reason it was skipped."""
    if not isinstance(data_cfg, dict):
        return None, "no data config in the checkpoint: verified on random inputs only"
    images, note = real_images(data_cfg, samples, *(size or (DEFAULT_SIZE, DEFAULT_SIZE)))
    if images is None:
        return None, f"real-data verification skipped ({note}): verified on random inputs only"
    return images, ""


def _size(input_size: int | tuple[int, int] | None, data_size: tuple[int, int] | None) -> tuple[int, int]:
    if input_size is not None:
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        if min(h, w) < 8:
            raise ConfigError(f"--input-size must be at least 8 on each side, got {h}x{w}")
        return h, w
    return data_size or (DEFAULT_SIZE, DEFAULT_SIZE)


def _dtype(float64: bool) -> torch.dtype:
    return torch.float64 if float64 else torch.float32


def _random(channels: int, size: tuple[int, int], seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, channels, *size, generator=gen)


def _in_channels(model: nn.Module) -> int:
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            return mod.in_channels
    raise ConfigError("the model has no Conv2d layer; slimming needs an image model")


def _read_state(path: str | Path) -> dict[str, Tensor]:
    raw = read_weights_only(path, "state dict")
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, Tensor) for v in raw.values()):
        raise CheckpointError(f"{path} is not a state dict (a dict of tensors) for --model")
    return raw
