"""What is benchmarked: a checkpoint, an ONNX file, a TensorRT plan or an export directory.

``load_source(path)`` turns any of them into a ``ModelSource`` that says where each artifact
lives, the input name and per-sample shape, the batch range, the outputs, MACs per sample and
the reference outputs / tolerances used to check results. Export directories are read from
their ``manifest.json`` (see ``mtlexport.export``); unknown keys are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtlexport.errors import ConfigError, ExportError

KINDS = ("checkpoint", "onnx", "plan", "export")
DEFAULT_BACKEND = {"checkpoint": "torch", "onnx": "ort", "plan": "trt", "export": "ort"}
DEFAULT_SIZE = (64, 64)
PLAN_SUFFIXES = (".plan", ".engine", ".trt")


@dataclass(frozen=True)
class ModelSource:
    """A model to benchmark and everything known about it; paths are None where absent."""

    path: Path
    kind: str
    label: str
    input_name: str = "images"
    input_shape: tuple[int, int, int] | None = None
    batch_range: tuple[int, int, int] | None = None
    output_names: tuple[str, ...] = ()
    macs: int | None = None
    checkpoint: Path | None = None
    onnx: Path | None = None
    onnx_fp16: Path | None = None
    plan: Path | None = None
    inputs_bin: Path | None = None
    refs: dict[str, Path] = field(default_factory=dict)
    tolerances: dict[str, tuple[float, float]] = field(default_factory=dict)
    tolerance_sets: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    plan_precision: str | None = None
    factory: str | None = None  # your own model: the --model the user named

    @property
    def default_backend(self) -> str:
        return DEFAULT_BACKEND[self.kind]

    def tolerances_for(self, precision: str) -> dict[str, tuple[float, float]]:
        """``{output: (atol, rtol)}`` for outputs computed at ``precision`` (fp32, fp16 or tf32),
        as recorded by the export (or the tasks for a checkpoint); ``tolerances`` otherwise."""
        return self.tolerance_sets.get(precision) or self.tolerances

    @property
    def opt_batch(self) -> int | None:
        return self.batch_range[1] if self.batch_range else None

    def build_model(self) -> Any:
        """The PyTorch model of ``checkpoint`` in eval mode (your own model through ``factory``)."""
        if self.checkpoint is None:
            raise ConfigError(f"{self.path} is a {self.kind}, not a .pt checkpoint")
        return checkpoint_of(self.checkpoint, self.factory, self.input_shape).build_model(factory=self.factory)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "kind": self.kind, "label": self.label, "input_name": self.input_name,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "batch_range": list(self.batch_range) if self.batch_range else None,
            "outputs": list(self.output_names), "macs_per_sample": self.macs,
        }


def load_source(path: str | Path, input_size: tuple[int, int] | None = None, label: str | None = None,
                precision: str = "fp32", *, factory: str | None = None) -> ModelSource:
    """Resolve ``path`` (.pt, .onnx, .plan/.engine or an export directory) into a ModelSource.

    ``factory`` (``--model``) loads a checkpoint of your own model, or a plain state dict of it."""
    p = Path(path)
    if factory and p.suffix.lower() in (".pt", ".pth"):
        return replace(_from_checkpoint(p, input_size, label, precision, factory), factory=factory)
    if factory:  # an export folder's checkpoint, for the torch backend
        return replace(load_source(p, input_size, label, precision), factory=factory)
    if not p.exists():
        raise ConfigError(f"--engine {p} does not exist; pass a .pt checkpoint, a .onnx, a .plan or an export directory")
    if p.is_dir():
        return _from_export_dir(p, input_size, label, precision)
    suffix = p.suffix.lower()
    if suffix == ".pt" or suffix == ".pth":
        return _from_checkpoint(p, input_size, label, precision)
    if suffix == ".onnx" or suffix in PLAN_SUFFIXES:
        folder = _manifest_dir_of(p)
        if folder is not None:  # a file inside an export folder: its manifest gives shapes and refs
            prec = "fp16" if p.name.endswith(".fp16.onnx") else precision
            src = _from_export_dir(folder, input_size, label, prec)
            if suffix == ".onnx":
                return replace(src, kind="onnx", path=p, onnx=p, onnx_fp16=p if prec == "fp16" else None, plan=None)
            return replace(src, kind="plan", path=p, plan=p, onnx=None, onnx_fp16=None)
    if suffix == ".onnx":
        return _from_onnx(p, input_size, label)
    if suffix in PLAN_SUFFIXES:
        size = input_size
        return ModelSource(path=p, kind="plan", label=label or p.stem, plan=p,
                           input_shape=(3, *size) if size else None)
    raise ConfigError(f"cannot tell what {p} is from its suffix {suffix!r}; expected .pt, .onnx, .plan/.engine "
                      "or an export directory")


def _manifest_dir_of(p: Path) -> Path | None:
    return p.parent if (p.parent / "manifest.json").is_file() else None


def checkpoint_of(p: Path, factory: str | None, input_shape: tuple[int, ...] | None = None) -> Any:
    """``load_checkpoint(p)``; with ``factory``, a plain state dict of your own model is accepted too."""
    from mtlexport.train.checkpoint import FORMAT, file_format, load_checkpoint

    if factory and file_format(p) != FORMAT:
        from mtlexport.models.factory import weights_checkpoint

        size = tuple(input_shape[1:]) if input_shape else DEFAULT_SIZE
        return weights_checkpoint(p, factory, size)  # type: ignore[arg-type]
    return load_checkpoint(p)


def _from_checkpoint(p: Path, input_size: tuple[int, int] | None, label: str | None, precision: str,
                     factory: str | None = None) -> ModelSource:
    from mtlexport.models.profile import profile_model
    from mtlexport.tasks import build_tasks

    if not p.exists():
        raise ConfigError(f"--engine {p} does not exist; pass a .pt checkpoint, a .onnx, a .plan or an export directory")
    ckpt = checkpoint_of(p, factory, (3, *input_size) if input_size else None)
    size = input_size or ckpt.data_size or DEFAULT_SIZE
    shape = (ckpt.spec.in_channels, *size)
    model = ckpt.build_model(factory=factory)
    macs = profile_model(model, shape).macs
    tasks = build_tasks(ckpt.spec)
    sets: dict[str, dict[str, tuple[float, float]]] = {}
    for key in ("fp32", "fp16"):
        for name, task in tasks.items():
            tol = task.tolerance(key if key in task.tolerances else "fp32")
            sets.setdefault(key, {})[name] = (tol.atol, tol.rtol)
    return ModelSource(path=p, kind="checkpoint", label=label or _stem(p), input_shape=shape,
                       output_names=ckpt.spec.task_names, macs=macs, checkpoint=p,
                       tolerances=sets.get(precision, sets["fp32"]), tolerance_sets=sets)


def _from_onnx(p: Path, input_size: tuple[int, int] | None, label: str | None) -> ModelSource:
    import onnx

    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a bad file
        raise ExportError(f"cannot read ONNX model {p}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportError(f"{p} has {len(inputs)} inputs; mtlexport benchmarks single-input (images) models")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ExportError(f"{p}: input {inputs[0].name!r} has rank {len(dims)}, expected NCHW")
    channels = dims[1] or 3
    if input_size is not None:
        size = input_size
    elif dims[2] and dims[3]:
        size = (dims[2], dims[3])
    else:
        raise ConfigError(f"{p} has a dynamic image size and no manifest beside it; pass --input-size HxW")
    batch_range = (dims[0], dims[0], dims[0]) if dims[0] else None
    return ModelSource(path=p, kind="onnx", label=label or _stem(p), input_name=inputs[0].name,
                       input_shape=(channels, *size), batch_range=batch_range,
                       output_names=tuple(o.name for o in model.graph.output), onnx=p)


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (".pt", ".pth", ".onnx", *PLAN_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# --- export directories ---------------------------------------------------------------------


def _from_export_dir(folder: Path, input_size: tuple[int, int] | None, label: str | None, precision: str) -> ModelSource:
    """Read an export folder through ``mtlexport.export.load_export_dir`` (schema and SHA-256 checked).

    Tolerances come from the manifest: ``tolerances`` for the ONNX model ``precision`` selects,
    ``tolerance_sets[plan_precision]`` for the TensorRT plan (the export's precision and TF32
    setting, whatever bench's ``--precision``)."""
    from mtlexport.export import load_export_dir

    man = load_export_dir(folder)
    data = man.data
    chw = man.input_shape
    if input_size is not None and tuple(input_size) != chw[1:]:
        raise ConfigError(f"--input-size {input_size[0]}x{input_size[1]} differs from the export's {chw[1]}x{chw[2]}; "
                          "re-export at that size instead")
    batch = man.batch
    reference = data.get("reference") or {}
    ref_input = reference.get("input") or {}
    refs = {}
    for out in data["outputs"]:
        ref = (reference.get("outputs") or {}).get(out["name"])
        if ref:
            refs[out["name"]] = folder / ref["file"]
    plan_precision = man.engine_precision
    sets = {key: man.tolerances(key) for key in {"fp32", "fp16", "tf32", precision, plan_precision}}
    ref_batch = int(ref_input["shape"][0]) if ref_input.get("shape") else int(batch["opt"])
    src = data.get("source") or {}
    ckpt = src.get("checkpoint")
    models = man.onnx_models
    plan = man.plan
    return ModelSource(
        path=folder, kind="export", label=label or folder.name, input_name=man.input_name, input_shape=chw,
        batch_range=(int(batch["min"]), ref_batch, int(batch["max"])), output_names=man.output_names,
        macs=(src.get("spec") or {}).get("macs_per_sample"),
        checkpoint=Path(ckpt) if isinstance(ckpt, str) and Path(ckpt).is_file() else None,
        onnx=models.get("fp32"), onnx_fp16=models.get("fp16"), plan=plan,
        inputs_bin=folder / ref_input["file"] if ref_input.get("file") else None, refs=refs,
        tolerances=sets[precision], tolerance_sets=sets, plan_precision=plan_precision,
    )


# --- inputs and references ------------------------------------------------------------------


def make_inputs(source: ModelSource, batch: int, seed: int = 0) -> np.ndarray:
    """A float32 (batch, C, H, W) input: the export's ``inputs/images.bin`` rows repeated
    cyclically, or seeded standard-normal values."""
    if source.input_shape is None:
        raise ConfigError(f"{source.path}: input shape unknown; pass --input-size HxW")
    base = load_reference_input(source)
    if base is not None:
        idx = np.arange(batch) % base.shape[0]
        return np.ascontiguousarray(base[idx])
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *source.input_shape), dtype=np.float32)


def load_reference_input(source: ModelSource) -> np.ndarray | None:
    """The export's input at the OPT batch, or None without one."""
    if source.inputs_bin is None or source.input_shape is None:
        return None
    raw = np.fromfile(source.inputs_bin, dtype=np.float32)
    per = int(np.prod(source.input_shape))
    if raw.size == 0 or raw.size % per:
        raise ExportError(f"{source.inputs_bin} holds {raw.size} floats, not a multiple of one {list(source.input_shape)} image")
    return raw.reshape(-1, *source.input_shape)


def load_references(source: ModelSource, ref_batch: int) -> dict[str, np.ndarray]:
    """Reference outputs (float32, reshaped to ``ref_batch`` rows) keyed by output name."""
    out = {}
    for name, path in source.refs.items():
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size % ref_batch:
            raise ExportError(f"{path} holds {raw.size} floats, not a multiple of the reference batch {ref_batch}")
        out[name] = raw.reshape(ref_batch, -1)
    return out


def export_checkpoint_onnx(checkpoint: Path, input_shape: tuple[int, int, int], target: Path,
                           factory: str | None = None) -> Path:
    """Export a checkpoint to ONNX (dynamic batch, outputs in spec order) so ORT can run it,
    with the export package's fast TorchScript exporter (no validation: a bench-only file)."""
    import torch

    from mtlexport.export.onnx_export import export_onnx

    ckpt = checkpoint_of(checkpoint, factory, input_shape)
    example = torch.zeros(2, *input_shape)
    export_onnx(ckpt.build_model(factory=factory), target, ckpt.spec.task_names, example, opset=18,
                exporter="torchscript")
    return target
