"""One command that measures what a GPU machine should confirm, into one JSON file and a table.

    python benchmarks/gpu_check.py                          # CUDA, at most 8 minutes on one GPU
    python benchmarks/gpu_check.py --device cpu --quick     # the CI smoke run, under a minute

Sections (each recorded as ok, skipped with the reason, or failed with the error; the run
never stops at a failing section):

1. ``latency``: dense vs slim, measured side by side with ``mtlexport.bench.compare``
   (alternating rounds): median latency of both, speedup, MACs ratio and realised share, for
   torch eager fp32, torch eager fp16 channels-last (CUDA only) and inductor (``torch.compile``;
   CUDA graphs on CUDA, compile time reported apart), at batch 1/8/16. Models: the paper
   configuration (``sample_models/paper_nyuv2.yaml``, dilated ResNet-50 + 3 ASPP heads at
   256x256, random weights) against a slim copy at about half the MACs, made by zeroing the first
   ``ZERO_FRACTION`` of every convolution's input channels and slimming with
   ``mtlexport.surgery``; and the quick sample (``quick_dense.pt`` vs ``quick_sparse.slim.pt``).
2. ``optimizer``: ProxAdam vs AdamW step time on the paper configuration's parameters.
3. ``host_sync``: ``torch.cuda.set_sync_debug_mode("error")`` around ``ProxAdam.step()`` (and
   AdamW's as a control): pass when the step never synchronises with the host (CUDA only).
4. ``training``: training images/s (forward, summed task losses, backward, optimizer step) with
   AdamW and ProxAdam on one fixed batch of synthetic scenes.

``--quick`` keeps the quick sample only (batch 1 on CPU, 1/8 on CUDA), times the optimizer and
training on the quick configuration, and shortens every measurement. ``--budget-s`` bounds the
run: once it is used up the remaining measurements (one model, configuration and batch size
each, at most two inductor compilations) are skipped and say so; the default leaves room for
the last one to finish within 8 minutes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mtlexport.bench import BenchSettings, compare  # noqa: E402
from mtlexport.bench.results import system_info  # noqa: E402
from mtlexport.models import ModelSpec, create_model  # noqa: E402
from mtlexport.sparsity import ProxAdam, split_param_groups  # noqa: E402

SAMPLES = ROOT / "sample_models"
PAPER_CONFIG = SAMPLES / "paper_nyuv2.yaml"
QUICK_CONFIG = SAMPLES / "quick.yaml"
NYUV2_CLASSES = 40
ZERO_FRACTION = 0.32  # (1 - 0.32)^2 ~ 0.46 of the MACs of a conv whose inputs and outputs both shrink
LR, LAM = 1e-4, 1e-4


class Budget:
    """Wall-clock budget of the whole run."""

    def __init__(self, seconds: float) -> None:
        self.start = time.perf_counter()
        self.seconds = seconds

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed


def _section(result: dict[str, Any], name: str, budget: Budget, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one section; record ok / skipped / failed and never raise."""
    if budget.left() <= 0:
        result[name] = {"status": f"skipped: the --budget-s of {budget.seconds:.0f} s was used up"}
        return
    start = time.perf_counter()
    try:
        result[name] = {"status": "ok", **fn()}
    except Exception as exc:  # a failing section is recorded, the others still run
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        result[name] = {"status": f"failed: {type(exc).__name__}: {first[:300]}",
                        "traceback": traceback.format_exc(limit=4)}
    result[name]["seconds"] = round(time.perf_counter() - start, 2)


# --- models ---------------------------------------------------------------------------------


def paper_spec() -> ModelSpec:
    """The paper configuration's model with NYUv2's 40 segmentation classes."""
    from mtlexport.train.config import read_config_file

    model = read_config_file(PAPER_CONFIG)["model"]
    for task in model["tasks"]:
        if task["type"] == "segmentation":
            task.setdefault("num_outputs", NYUV2_CLASSES)
    return ModelSpec.from_dict(model)


def make_paper_pair(folder: Path, size: int) -> dict[str, Any]:
    """Dense paper model (random weights) and a slim copy at about half its MACs, as checkpoints."""
    from mtlexport.models.profile import profile_model
    from mtlexport.surgery import slim_checkpoint
    from mtlexport.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    spec = paper_spec()
    torch.manual_seed(0)
    dense = create_model(spec).eval()
    save_checkpoint(folder / "paper_dense.pt", Checkpoint(spec=spec, state_dict=dense.state_dict(),
                                                          config={"data": {"height": size, "width": size}}))
    zeroed = create_model(spec).eval()
    zeroed.load_state_dict(dense.state_dict())
    with torch.no_grad():  # the same leading input channels die in every consumer, so they are removable
        for module in zeroed.modules():
            if isinstance(module, torch.nn.Conv2d) and module.groups == 1 and module.in_channels >= 8:
                module.weight[:, : int(ZERO_FRACTION * module.in_channels)] = 0.0
    save_checkpoint(folder / "paper_zeroed.pt", Checkpoint(spec=spec, state_dict=zeroed.state_dict(),
                                                           config={"data": {"height": size, "width": size}}))
    slim_checkpoint(folder / "paper_zeroed.pt", folder / "paper_slim.pt", input_size=64)
    slim = load_checkpoint(folder / "paper_slim.pt").build_model()
    macs = [profile_model(m, (spec.in_channels, size, size)).macs for m in (dense, slim)]
    return {"dense": folder / "paper_dense.pt", "slim": folder / "paper_slim.pt", "input": [size, size],
            "zeroed_fraction": ZERO_FRACTION, "dense_macs": macs[0], "slim_macs": macs[1],
            "macs_ratio": macs[0] / macs[1]}


def quick_pair() -> dict[str, Any]:
    return {"dense": SAMPLES / "quick_dense.pt", "slim": SAMPLES / "quick_sparse.slim.pt", "input": [64, 64]}


# --- sections -------------------------------------------------------------------------------


def latency(pairs: dict[str, dict[str, Any]], args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    cuda = args.device == "cuda"
    configs = [("eager-fp32", "torch", {}),
               ("eager-fp16-cl", "torch", {"precision": "fp16", "channels_last": True}),
               ("inductor", "inductor", {"cuda_graph": cuda})]
    timing = ({"warmup_ms": 20.0, "duration_s": 0.05, "iterations": 3} if args.quick and not cuda else
              {"warmup_ms": 100.0, "duration_s": 0.3, "iterations": 10} if args.quick else
              {"warmup_ms": 200.0, "duration_s": 1.0, "iterations": 20})
    rows, skipped = [], []
    for model_name, pair in pairs.items():
        for config, backend, extra in configs:
            if extra.get("precision") == "fp16" and not cuda:
                skipped.append({"what": f"{model_name}/{config}", "reason": "fp16 autocast needs CUDA"})
                continue
            settings = BenchSettings(device=args.device, threads=args.threads, **timing, **extra)
            for batch in args.batches:  # one unit per batch size: the budget is checked between them
                what = f"{model_name}/{config}/b{batch}"
                if budget.left() <= 0:
                    skipped.append({"what": what, "reason": "time budget used up"})
                    continue
                try:
                    report = compare(pair["dense"], pair["slim"], backend=backend, batches=(batch,),
                                     settings=settings, rounds=2)
                except Exception as exc:  # record and go on with the next configuration
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    skipped.append({"what": what, "reason": f"{type(exc).__name__}: {first[:300]}"})
                    continue
                rows += _rows(model_name, config, backend, report)
    return {"rows": rows, "skipped": skipped, "timing": timing}


def _rows(model_name: str, config: str, backend: str, report: Any) -> list[dict[str, Any]]:
    rows = []
    by_key = {(r.label, r.batch): r for r in report.results}
    for c in report.comparisons:
        dense, slim = by_key[(c.baseline, c.batch)], by_key[(c.candidate, c.batch)]
        rows.append({"model": model_name, "config": config, "backend": backend, "batch": c.batch,
                     "dense_ms": c.baseline_latency_ms, "slim_ms": c.candidate_latency_ms,
                     "speedup": c.speedup, "macs_ratio": c.macs_ratio, "realised": c.realised,
                     "realised_min": c.realised_min, "dense_images_per_s": dense.images_per_s,
                     "slim_images_per_s": slim.images_per_s,
                     "dense_compile_s": dense.prepare_s if backend == "inductor" else None,
                     "slim_compile_s": slim.prepare_s if backend == "inductor" else None})
    return rows


def _fill_grads(model: torch.nn.Module, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _optimizers() -> dict[str, Callable[[torch.nn.Module], torch.optim.Optimizer]]:
    return {"adamw": lambda m: torch.optim.AdamW(split_param_groups(m), lr=LR),
            "proxadam": lambda m: ProxAdam(split_param_groups(m), lr=LR, lam=LAM)}


def optimizer_steps(spec: ModelSpec, device: torch.device, repeats: int) -> dict[str, Any]:
    """Median step time of each optimizer on ``spec``'s parameters with fixed random gradients."""
    runs = {}
    for name, make in _optimizers().items():
        torch.manual_seed(0)
        model = create_model(spec).to(device)
        _fill_grads(model, device)
        runs[name] = make(model)
    for opt in runs.values():  # state allocation and first-step effects
        for _ in range(2):
            opt.step()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so machine load hits both alike
        for name, opt in runs.items():
            _sync(device)
            start = time.perf_counter()
            opt.step()
            _sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    med = {name: statistics.median(t) for name, t in times.items()}
    params = sum(p.numel() for p in create_model(spec).parameters())
    return {"model": spec.name, "params": params, "repeats": repeats, "adamw_ms": med["adamw"],
            "proxadam_ms": med["proxadam"], "ratio": med["proxadam"] / med["adamw"]}


def host_sync(spec: ModelSpec, device: torch.device) -> dict[str, Any]:
    """Does an optimizer step synchronise with the host? ``set_sync_debug_mode("error")`` raises
    on every synchronising CUDA call inside it."""
    if device.type != "cuda":
        return {"status": "skipped: needs CUDA (torch.cuda.set_sync_debug_mode)"}
    checks = {}
    for name, make in _optimizers().items():
        torch.manual_seed(0)
        model = create_model(spec).to(device)
        _fill_grads(model, device)
        opt = make(model)
        for step in ("first_step", "later_step"):
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode("error")
            try:
                opt.step()
                checks[f"{name}_{step}"] = "pass"
            except RuntimeError as exc:
                checks[f"{name}_{step}"] = f"fail: {(str(exc).strip().splitlines() or ['sync'])[0][:200]}"
            finally:
                torch.cuda.set_sync_debug_mode(0)
            torch.cuda.synchronize(device)
    verdict = "pass" if checks["proxadam_later_step"] == "pass" else "fail"
    return {"verdict": verdict, **checks}


def training(config_path: Path, device: torch.device, batch_size: int, size: int | None, steps: int,
             repeats: int) -> dict[str, Any]:
    """Training images/s with each optimizer on one fixed batch of synthetic scenes."""
    from mtlexport.tasks import build_tasks
    from mtlexport.train import TrainConfig, resolve_config
    from mtlexport.train.config import read_config_file
    from mtlexport.train.loaders import eval_loader, open_split, to_device

    raw = read_config_file(config_path)
    data = raw.get("data") or {}
    height, width = (size, size) if size else (data.get("height", 64), data.get("width", 64))
    raw["data"] = {"name": "synthetic", "height": height, "width": width, "num_train": batch_size,
                   "num_val": 0, "num_test": 0}
    config = resolve_config(TrainConfig.from_dict(raw))
    batch = to_device(next(iter(eval_loader(open_split(config.data, "train"), batch_size))), device)
    tasks = build_tasks(config.model)
    steps_by_name = {}
    for name, make in _optimizers().items():
        torch.manual_seed(0)
        model = create_model(config.model).to(device).train()
        opt = make(model)

        def step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
            outputs = model(batch["image"])
            loss = sum(task.loss(outputs[n], batch) for n, task in tasks.items())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps_by_name[name] = step
    for step in steps_by_name.values():
        step()
    samples: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for _ in range(repeats):
        for name, step in steps_by_name.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            samples[name].append((time.perf_counter() - start) / steps)
    rows = [{"optimizer": name, "images_per_s": batch_size / statistics.median(s),
             "ms_per_step": statistics.median(s) * 1e3} for name, s in samples.items()]
    return {"config": config_path.name, "batch": batch_size, "input": [height, width], "data": "synthetic",
            "rows": rows}


# --- output ---------------------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(result: dict[str, Any]) -> None:
    meta = result["meta"]
    print(f"gpu_check on {meta['device_name']} (torch {meta['torch']}, {meta['seconds']:.0f} s)")
    lat = result["latency"]
    if lat.get("rows"):
        head = (f"{'model':6} {'config':14} {'batch':>5} {'dense ms':>9} {'slim ms':>9} {'speedup':>8} "
                f"{'MACs ratio':>10} {'realised':>9} {'compile s':>10}")
        print(head + "\n" + "-" * len(head))
        for r in lat["rows"]:
            compile_s = None if r["dense_compile_s"] is None else r["dense_compile_s"] + r["slim_compile_s"]
            print(f"{r['model']:6} {r['config']:14} {r['batch']:5d} {r['dense_ms']:9.3f} {r['slim_ms']:9.3f} "
                  f"{r['speedup']:7.2f}x {_fmt(r['macs_ratio'], '10.2f')} {_fmt(r['realised'], '9.1%')} "
                  f"{_fmt(compile_s, '10.1f')}")
    for item in lat.get("skipped", []):
        print(f"latency {item['what']}: skipped ({item['reason']})")
    print(f"latency: {lat['status']}")
    opt = result["optimizer"]
    if opt["status"] == "ok":
        print(f"optimizer step ({opt['model']}, {opt['params']:,} params): AdamW {opt['adamw_ms']:.2f} ms, "
              f"ProxAdam {opt['proxadam_ms']:.2f} ms ({opt['ratio']:.2f}x)")
    else:
        print(f"optimizer: {opt['status']}")
    sync = result["host_sync"]
    verdict = sync.get("verdict")
    print(f"ProxAdam step without host sync: {verdict.upper() if verdict else sync['status']}"
          + (f" ({', '.join(f'{k}={v}' for k, v in sync.items() if k.endswith('step'))})" if verdict else ""))
    train = result["training"]
    if train["status"] == "ok":
        rows = ", ".join(f"{r['optimizer']} {r['images_per_s']:.1f}" for r in train["rows"])
        print(f"training images/s ({train['config']}, batch {train['batch']} at "
              f"{train['input'][0]}x{train['input'][1]}): {rows}")
    else:
        print(f"training: {train['status']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="the quick sample only, short measurements")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/"
                        "gpu_check-<device>[-quick].json)")
    parser.add_argument("--budget-s", type=float, default=None, help="stop measuring after this many seconds "
                        "(default 360, so that the run ends within 8 minutes; 45 with --device cpu --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 with --device cpu: "
                        "stable on a shared machine; torch's default with cuda)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA GPU; use --device cpu --quick", file=sys.stderr)
        return 2
    cuda = args.device == "cuda"
    args.batches = (1,) if args.quick and not cuda else (1, 8) if args.quick else (1, 8, 16)
    budget = Budget(args.budget_s if args.budget_s is not None else (45.0 if args.quick and not cuda else 360.0))
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu_check-{args.device}{'-quick' if args.quick else ''}.json"
    if args.threads is None and not cuda:
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    system = system_info(args.device)
    result: dict[str, Any] = {"meta": {
        "schema": "mtlexport.gpu_check", "schema_version": 1, "argv": sys.argv[1:] if argv is None else argv,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
        "device": args.device, "device_name": system["gpu"] or system["cpu"], "torch": str(torch.__version__),
        "cuda": torch.version.cuda, "threads": torch.get_num_threads(), "batches": list(args.batches),
        "budget_s": budget.seconds, "load_average": round(os.getloadavg()[0], 2), "system": system}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        pairs: dict[str, dict[str, Any]] = {}
        if not args.quick:
            _section(result, "paper_model", budget, lambda: make_paper_pair(Path(scratch), 256))
            if result["paper_model"]["status"] == "ok":
                pairs["paper"] = result["paper_model"]
        pairs["quick"] = quick_pair()
        result["models"] = {k: {kk: _shown(vv) for kk, vv in v.items() if kk not in ("status", "seconds")}
                            for k, v in pairs.items()}
        spec = paper_spec() if not args.quick else _quick_spec()
        _section(result, "host_sync", budget, lambda: host_sync(spec, device))
        _section(result, "optimizer", budget, lambda: optimizer_steps(spec, device, 5 if args.quick else 20))
        _section(result, "training", budget, lambda: training(
            QUICK_CONFIG if args.quick else PAPER_CONFIG, device, 8 if args.quick else 16,
            None if args.quick else 256, 1 if args.quick else 5, 2 if args.quick else 3))
        _section(result, "latency", budget, lambda: latency(pairs, args, budget))
    result["meta"]["seconds"] = round(budget.elapsed, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    print(f"wrote {out}")
    return 0


def _shown(value: Any) -> Any:
    """Paths relative to the repository where they lie inside it (the JSON is committed)."""
    if isinstance(value, Path):
        return str(value.relative_to(ROOT)) if value.is_relative_to(ROOT) else value.name
    return value


def _quick_spec() -> ModelSpec:
    from mtlexport.train.checkpoint import load_checkpoint

    return load_checkpoint(SAMPLES / "quick_dense.pt").spec


if __name__ == "__main__":
    sys.exit(main())
