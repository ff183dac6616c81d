"""``mtlexport bench``: latency and throughput across backends, trtexec-compatible output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mtlexport.cli._common import ForceOpt, JsonOpt, ModelOpt, RichReporter, emit_json, make_table, stdout

ENGINE_HELP = "The model: a .pt checkpoint, .onnx, .plan or export directory"
EngineArg = Annotated[Path | None, typer.Argument(help=ENGINE_HELP + " (or --engine).", metavar="ENGINE",
                                                  show_default=False)]
EngineOpt = Annotated[Path | None, typer.Option("--engine", "-e", help=ENGINE_HELP + " (or the positional ENGINE).",
                                                show_default=False)]
BackendOpt = Annotated[str | None, typer.Option("--backend", "-b", help="torch, inductor (torch.compile), ort or trt "
                                                "(comma-separated for several); default: inferred from ENGINE.",
                                                show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda for trt, else cpu).",
                                               show_default=False)]
BatchOpt = Annotated[str, typer.Option("--batch", help="Batch size(s) to measure: 1,8,16 (or 1:4:8, an export's "
                                       "MIN:OPT:MAX); a list sweeps them.")]


def bench(
    engine_arg: EngineArg = None,
    engine: EngineOpt = None,
    backend: BackendOpt = None,
    device: DeviceOpt = None,
    batch: BatchOpt = "1",
    warmup_ms: Annotated[float, typer.Option("--warmup-ms", help="Untimed warm-up per configuration.")] = 200.0,
    duration_s: Annotated[float, typer.Option("--duration-s", help="Minimum timed duration (with --iterations).")] = 3.0,
    iterations: Annotated[int, typer.Option("--iterations", help="Minimum timed queries (with --duration-s).")] = 10,
    threads: Annotated[int | None, typer.Option("--threads", help="Intra-op CPU threads.", show_default=False)] = None,
    inter_op_threads: Annotated[int | None, typer.Option("--inter-op-threads", help="ORT inter-op threads.",
                                                         show_default=False)] = None,
    graph_opt: Annotated[str, typer.Option("--graph-opt", help="ORT graph optimisation: disable, basic, extended, all.")] = "all",
    ort_provider: Annotated[str | None, typer.Option("--ort-provider", help="ORT GPU provider: cuda or tensorrt.",
                                                     show_default=False)] = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32, or fp16 (torch/inductor autocast, "
                                           "model.fp16.onnx); a TensorRT plan runs at its export's precision.")] = "fp32",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="torch/inductor: channels-last memory format.")] = False,
    cuda_graph: Annotated[bool, typer.Option("--cuda-graph", help="torch/trt on CUDA: replay a captured CUDA graph; "
                                             "inductor: mode reduce-overhead.")] = False,
    no_transfers: Annotated[bool, typer.Option("--no-transfers", help="GPU: exclude host<->device copies.")] = False,
    input_size: Annotated[str | None, typer.Option("--input-size", help="Image size HxW (or N for NxN) when the engine "
                                                   "does not say, or to time checkpoints at another size.",
                                                   show_default=False)] = None,
    compare_with: Annotated[Path | None, typer.Option("--compare", help="Candidate model measured side by side with "
                                                      "ENGINE, the baseline (same backend, settings and input size).",
                                                      show_default=False)] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="--compare: alternating rounds per batch size.")] = 4,
    export_times: Annotated[Path | None, typer.Option("--export-times", help="Write trtexec --exportTimes JSON.",
                                                      show_default=False)] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write one CSV row per result.", show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG of latency and throughput vs batch size.",
                                              show_default=False)] = None,
    model: ModelOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure latency (trtexec statistics) and throughput of a model on one or more backends.

    With --compare OTHER, ENGINE is the baseline and OTHER the candidate: speedup = baseline /
    candidate median latency; the realised share (speedup / MACs ratio) is shown only when the
    candidate has fewer MACs and is not slower. Existing --csv/--export-times/--plot files are
    refused unless --force."""
    from mtlexport.bench import (
        BenchSettings, bench_models, compare, parse_batches, parse_size, plot_report, write_csv, write_export_times,
    )
    from mtlexport.errors import ConfigError
    from mtlexport.io import check_output_file

    engine = _engine(engine_arg, engine)
    for flag, path in (("--export-times", export_times), ("--csv", csv_path), ("--plot", plot)):
        if path is not None:  # before any measurement: a folder, no permission, a full disk, an existing file
            check_output_file(path, what=flag, overwrite=force)
    backends = [b.strip() for b in backend.split(",") if b.strip()] if backend else None
    if device is None:  # TensorRT only runs on the GPU; everything else defaults to the CPU
        only_trt = all(b == "trt" for b in backends) if backends else engine.suffix.lower() in (".plan", ".engine")
        device = "cuda" if only_trt else "cpu"
    settings = BenchSettings(
        device=device, warmup_ms=warmup_ms, duration_s=duration_s, iterations=iterations, threads=threads,
        inter_op_threads=inter_op_threads, graph_opt_level=graph_opt, ort_provider=ort_provider, precision=precision,
        channels_last=channels_last, cuda_graph=cuda_graph, transfers=not no_transfers,
        input_size=parse_size(input_size) if input_size else None,
    )
    sizes = parse_batches(batch)
    engines: list[Any] = [engine] + ([compare_with] if compare_with is not None else [])
    if model:  # your own model: its checkpoints (or plain state dicts) load through the factory named here
        from mtlexport.bench import load_source

        engines = [load_source(e, settings.input_size, precision=precision, factory=model) for e in engines]
    with RichReporter() as reporter:
        if compare_with is not None:
            if backends and len(backends) > 1:
                raise ConfigError("--compare measures one backend; pass a single --backend")
            report = compare(engines[0], engines[1], backend=backends[0] if backends else None, batches=sizes,
                             settings=settings, rounds=rounds, reporter=reporter)
        else:
            report = bench_models(engines, backends=backends, batches=sizes, settings=settings, reporter=reporter)
    written: list[Path] = []
    if export_times is not None:
        if len(report.results) > 1 and not force:  # one file per result beside the given path
            for r in report.results:
                name = f"{export_times.stem}.{r.label}.{r.backend}.b{r.batch}{export_times.suffix or '.json'}"
                check_output_file(export_times.with_name(name), what="--export-times", overwrite=False)
        written += write_export_times(export_times, report.results)
    if csv_path is not None:
        written.append(write_csv(csv_path, report))
    if plot is not None:
        written.append(plot_report(plot, report))
    if as_json:
        emit_json({**report.to_dict(), "files": [str(p) for p in written]})
        return
    _render(report.to_dict(), written)


def _engine(positional: Path | None, option: Path | None) -> Path:
    """The model to measure: the positional ENGINE or --engine (the same path if both are given)."""
    from mtlexport.errors import ConfigError

    if positional is not None and option is not None and positional != option:
        raise ConfigError(f"two models given ({positional} and --engine {option}); pass one, and the second "
                          "as --compare")
    engine = positional if positional is not None else option
    if engine is None:
        raise ConfigError("no model given; pass ENGINE (a .pt checkpoint, .onnx, .plan or export directory), "
                          "e.g. 'mtlexport bench model.pt'")
    return engine


def _render(report: dict[str, Any], written: list[Path]) -> None:
    meta = report["metadata"]
    where = meta.get("gpu") or meta.get("cpu")
    roles = {}
    if meta.get("compare"):
        roles = {meta["compare"]["baseline"]: " (baseline)", meta["compare"]["candidate"]: " (candidate)"}
    with_refs = any(r["check"]["reference"] != "none" or not r["check"]["finite"] for r in report["results"])
    compiled = any(r["backend"] == "inductor" for r in report["results"])
    rows = []
    for r in report["results"]:
        lat, check = r["latency_ms"], r["check"]
        row = [f"{r['label']}/{r['backend']}{roles.get(r['label'], '')}", r["batch"], lat["mean"], lat["median"],
               lat["p99"], lat["cv"] * 100, r["images_per_s"], r["gflops_per_s"]]
        row += [r["prepare_s"]] if compiled else []
        rows.append(row + [check["reference"] if check["finite"] else "NaN"] if with_refs else row)
    columns = ["model", "batch", "mean", "median", "p99", "cv %", "img/s", "GFLOP/s"] + (["compile s"] if compiled else [])
    columns += ["refs"] if with_refs else []
    table = make_table(f"latency per query (ms) on {meta['device']}: {where}", columns, rows)
    table.columns[0].no_wrap = True
    stdout.print(table)
    if report["comparisons"]:
        first = report["comparisons"][0]
        rows = [[c["batch"], c["baseline_latency_ms"], c["candidate_latency_ms"], _speedup(c["speedup"]),
                 c["throughput_ratio"], c["macs_ratio"], _realised(c)] for c in report["comparisons"]]
        shape = "x".join(str(d) for d in first["input_shape"])
        stdout.print(make_table(
            f"candidate {first['candidate']} vs baseline {first['baseline']} on {first['backend']}, "
            f"inputs {shape} (median latency)",
            ["batch", "base ms", "cand ms", "speedup", "qps ratio", "MACs ratio", "realised %"], rows))
        for c in report["comparisons"]:
            if c["note"]:
                stdout.print(f"batch {c['batch']}: {c['note']}", highlight=False)
    for path in written:
        stdout.print(f"wrote {path}", highlight=False)


def _speedup(speedup: float) -> str:
    """``1.47x`` or ``0.76x slower``: a slowdown is never shown as a plain speedup."""
    return f"{speedup:.2f}x" if speedup >= 1.0 else f"{speedup:.2f}x slower"


def _realised(c: dict[str, Any]) -> str | float | None:
    if c["realised"] is not None:
        return c["realised"] * 100
    return "slower" if c["slower"] else None


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command("bench")(bench)
