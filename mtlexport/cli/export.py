"""``mtlexport export``: checkpoint -> validated ONNX, TensorRT engine, trtexec folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtlexport.cli._common import CheckpointArg, ForceOpt, JsonOpt, ModelOpt, OutDirOpt, emit_json, make_table, stdout


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""
    app.command("export")(export)


def export(
    checkpoint: CheckpointArg,
    out: OutDirOpt,
    batch: Annotated[str, typer.Option("--batch", help="Dynamic batch range MIN:OPT:MAX (or MIN,OPT,MAX, or N for a "
                                       "fixed batch).")] = "1:4:8",
    input_size: Annotated[str | None, typer.Option("--input-size", show_default=False, help="Image size HxW (or N "
                                                   "for NxN) [default: the checkpoint's data size].")] = None,
    height: Annotated[int | None, typer.Option("--height", hidden=True, help="Old spelling of --input-size.")] = None,
    width: Annotated[int | None, typer.Option("--width", hidden=True, help="Old spelling of --input-size.")] = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or fp16 (fp16 also writes model.fp16.onnx).")] = "fp32",
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset, 17..21.")] = 18,
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Simplify with onnxslim.")] = True,
    engine: Annotated[bool, typer.Option("--engine/--no-engine", help="Build a TensorRT engine when possible.")] = True,
    trt_version: Annotated[int | None, typer.Option("--trt-version", help="TensorRT major version for scripts (10 or 11; default: installed, else 11, what the trt extra installs).")] = None,
    exporter: Annotated[str, typer.Option("--exporter", help="dynamo (default) or torchscript.")] = "dynamo",
    formats: Annotated[str, typer.Option("--format", help="onnx, or pt2 to add a validated torch.export program "
                                         "(model.pt2) beside the ONNX; comma-separated.")] = "onnx",
    workspace_mib: Annotated[int, typer.Option("--workspace-mib", help="TensorRT workspace pool limit in MiB.")] = 4096,
    tf32: Annotated[bool, typer.Option("--tf32/--no-tf32", help="TensorRT may use TF32 for FP32 layers (its default; "
                                       "the engine is then checked with TF32 tolerances).")] = True,
    real_data: Annotated[bool, typer.Option("--real-data/--no-real-data", help="Also validate on the checkpoint's dataset.")] = True,
    model: ModelOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Export a checkpoint to a validated, trtexec-ready folder (ONNX, scripts, manifest, engine).

    An --out folder that already holds files is refused unless --force (it is then replaced
    only once the new export is complete)."""
    from mtlexport.cli._common import RichReporter
    from mtlexport.export import BatchRange, ExportOptions, export_model, export_weights
    from mtlexport.train.checkpoint import FORMAT, file_format

    height, width = _size(input_size, height, width)
    options = ExportOptions(batch=BatchRange.parse(batch), height=height, width=width, precision=precision,
                            opset=opset, simplify=simplify, engine=engine, trt_version=trt_version,
                            exporter=exporter, workspace_mib=workspace_mib, tf32=tf32, real_data=real_data,
                            formats=tuple(f.strip() for f in formats.split(",") if f.strip()))
    _refuse_existing(Path(out), force)
    with RichReporter(enabled=not json_out) as reporter:
        if model and file_format(checkpoint) != FORMAT:  # your own model's plain (or slim) state dict
            report = export_weights(Path(checkpoint), model, Path(out), options, reporter)
        else:
            report = export_model(Path(checkpoint), Path(out), options, reporter, factory=model)
    if json_out:
        emit_json(report.to_dict())
        return
    rows = [[f"{c.model} {c.check}", c.output, c.batch, c.max_abs, c.max_rel, c.passed] for c in report.checks]
    stdout.print(make_table(f"Validation ({len(report.checks)} checks)",
                            ["model / check", "output", "batch", "max abs", "max rel", "ok"], rows))
    files = [[name, size] for name, size in sorted(report.files.items())]
    stdout.print(make_table(f"Export folder {report.out_dir}", ["file", "bytes"], files))
    engine_line = "engine built: model.plan" if report.engine_built else "engine not built (see notice)"
    stdout.print(f"TensorRT {report.trt_version} scripts written; {engine_line}")


def _size(input_size: str | None, height: int | None, width: int | None) -> tuple[int | None, int | None]:
    """(H, W) from --input-size, or from the old --height / --width."""
    if input_size is None:
        return height, width
    from mtlexport.bench.settings import parse_size
    from mtlexport.errors import ConfigError

    if height is not None or width is not None:
        raise ConfigError("give the size once: --input-size HxW (--height/--width are its old spelling)")
    return parse_size(input_size)


def _refuse_existing(out: Path, force: bool) -> None:
    from mtlexport.errors import OutputError

    if not force and out.is_dir() and any(out.iterdir()):
        raise OutputError(f"--out {out} already holds files (an earlier export?); pass --force to replace it "
                          "or choose another folder")
