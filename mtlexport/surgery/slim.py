"""``slim_model``: trace, analyse, plan, remove, verify, report; each stage in its own module."""

from __future__ import annotations

import copy
import time
from collections.abc import Collection, Mapping

import torch
from torch import Tensor, nn

from mtlexport.errors import ConfigError, VerificationError
from mtlexport.reporting import NullReporter, Reporter
from mtlexport.surgery.analysis import analyse_group
from mtlexport.surgery.graph import build_graph, coupled_groups
from mtlexport.surgery.policy import plan_removal
from mtlexport.surgery.remove import apply_plan, check_layers
from mtlexport.surgery.report import (
    SlimReport,
    group_skips,
    input_group_sparsity,
    layer_changes,
    layer_channels,
    shared_convs,
)
from mtlexport.surgery.verify import compare_outputs, raise_on_failure, run_outputs

OUTPUT_LAYER_NAME = "classifier"


def output_layers(model: nn.Module) -> list[str]:
    """Names of task output layers (every module called ``classifier``): never resized."""
    return [name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] == OUTPUT_LAYER_NAME]


def slim_model(
    model: nn.Module,
    example: Tensor,
    verify_inputs: dict[str, Tensor],
    *,
    round_to: int = 1,
    tol: float = 1e-5,
    fold_constants: bool = False,
    protected: Collection[str] | None = None,
    widths: Mapping[str, int] | None = None,
    profile_shape: tuple[int, int, int] | None = None,
    dtype: torch.dtype = torch.float32,
    reporter: Reporter | None = None,
) -> SlimReport:
    """Physically remove the provably dead channels of ``model`` in place and prove it exact.

    ``example`` (a small batch) is traced to build the dependency graph; ``verify_inputs``
    (named batches) are run through the dense and slim models in ``dtype`` and every output
    compared (errors computed in float64; float64 forwards are exact to ~1e-15 but slow on CPU
    for depthwise and dilated convolutions). Raises VerificationError naming the outputs over ``tol`` (the model is then left
    modified: pass a copy if you need the original). ``protected`` defaults to every layer
    named ``classifier``. ``widths`` (group root layer -> width between its live and dense
    width, e.g. from ``surgery.auto.choose_widths``) overrides ``round_to`` for those groups.
    """
    if tol < 0:
        raise ConfigError(f"tol must be >= 0, got {tol}")
    if not verify_inputs:
        raise ConfigError("verify_inputs is empty; slimming is never unverified")
    reporter = reporter or NullReporter()
    protected = output_layers(model) if protected is None else list(protected)
    profile_shape = profile_shape or tuple(int(s) for s in example.shape[1:])
    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    model.eval()

    def lap(key: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        seconds[key] = round(seconds.get(key, 0.0) + now - tick, 4)
        tick = now

    reporter.start("slim", "slimming", 5)
    channels_before = layer_channels(model)
    convs = shared_convs(model)
    conv_names = list(convs)
    zero_groups, all_groups = input_group_sparsity(convs)
    params_before, macs_before = _profile(model, profile_shape)
    lap("profile")
    reference = run_outputs(model, verify_inputs, dtype)
    lap("verify_dense")
    reporter.advance("slim", stage="trace")

    dg, output_fns = build_graph(model, example)
    groups = coupled_groups(dg, model, output_fns)
    lap("graph")
    reporter.advance("slim", stage="analyse")
    analyses = [analyse_group(dg, g, fold_constants) for g in groups]
    plan = plan_removal(analyses, round_to=round_to, protected=protected, widths=widths)
    lap("analyse")
    reporter.advance("slim", stage="remove")
    apply_plan(dg, plan)
    check_layers(model)
    lap("remove")
    reporter.advance("slim", stage="verify")

    try:
        slim_outputs = run_outputs(model, verify_inputs, dtype)
    except RuntimeError as exc:  # a shape the graph analysis did not foresee
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VerificationError(f"the slim model fails to run ({first[:200]}); output not written") from None
    checks = compare_outputs(reference, slim_outputs, tol)
    lap("verify_slim")
    channels_after = layer_channels(model)
    params_after, macs_after = _profile(model, profile_shape)
    lap("profile")
    reporter.advance("slim", stage="done")
    reporter.finish("slim")

    in_before = sum(channels_before[n][1] for n in conv_names)
    in_after = sum(channels_after[n][1] for n in conv_names if n in channels_after)
    skipped: dict[str, int] = {}
    for g in groups:
        if g.unsupported:
            skipped[g.unsupported] = skipped.get(g.unsupported, 0) + 1
    seconds["total"] = round(sum(v for k, v in seconds.items()), 4)
    report = SlimReport(
        layers=layer_changes(channels_before, channels_after),
        params_before=params_before, params_after=params_after,
        macs_before=macs_before, macs_after=macs_after, input_shape=tuple(profile_shape),
        group_sparsity=zero_groups / all_groups if all_groups else 0.0,
        realised=1.0 - in_after / in_before if in_before else 0.0,
        groups=len(groups), removable=plan.removable, removed=plan.removed, folded=plan.folded,
        kept=plan.kept, unfoldable=plan.unfoldable, checks=tuple(checks), tol=tol,
        dtype=str(dtype).replace("torch.", ""), round_to=round_to, seconds=seconds, skipped_groups=skipped,
        skipped=group_skips(analyses),
    )
    raise_on_failure(checks, tol)
    return report


def _profile(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """Parameters and per-sample MACs (-1 when uncountable), counted on a weightless (meta) copy."""
    from mtlexport.models.profile import profile_model

    params = sum(p.numel() for p in model.parameters())
    # Pre-filling deepcopy's memo with meta tensors copies the module tree but no weights.
    memo: dict[int, object] = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
                               for p in model.parameters()}
    memo.update({id(b): torch.empty_like(b, device="meta") for b in model.buffers()})
    meta = copy.deepcopy(model, memo)
    for mod in meta.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            # Shape-preserving; torch's meta batch norm goes through slow Python decompositions
            # (seconds of imports on first use). Counting hooks still see the module's output.
            mod.forward = _identity  # type: ignore[method-assign]
    try:
        return params, profile_model(meta, tuple(shape)).macs
    except (RuntimeError, NotImplementedError):
        return params, -1


def _identity(x: Tensor) -> Tensor:
    return x
