"""``manifest.json``: what an export folder holds, and the reader that checks it.

The schema is documented in ``mtlexport.export``'s docstring; ``load_export_dir`` is the
public way in for other stages (the bench helper): it validates the schema and every hash.

Two kinds of files live in a folder. Export artifacts (ONNX, scripts, inputs, references) are
fixed at export time: ``files`` lists them and every load checks their SHA-256. Engine
artifacts (``ENGINE_FILES``: the plan, timing cache, layer JSON, build log and trtexec's bench
outputs) are expected to be (re)written later by ``trtexec_build.sh`` / ``trtexec_bench.sh`` on
the target machine: ``engine_files`` records those present at export time, for information
only (``ExportManifest.plan_origin`` uses it), and they are never a reason to reject a folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlexport.errors import ExportError
from mtlexport.export.trtexec import BENCH_OUTPUT_FILES, PLAN_FILE, TIMING_CACHE_FILE

MANIFEST_FILE = "manifest.json"
SCHEMA = "mtlexport.export"
# 2: engine artifacts moved from ``files`` to ``engine_files``; tensorrt.engine_precision,
#    builder.tf32, outputs[].tolerance.tf32 and validation.runs added. Version 1 still loads.
SCHEMA_VERSION = 2
LAYERS_FILE = "engine.layers.json"
BUILD_LOG_FILE = "engine_build.log"
ENGINE_FILES: frozenset[str] = frozenset({PLAN_FILE, TIMING_CACHE_FILE, LAYERS_FILE, BUILD_LOG_FILE,
                                          *BENCH_OUTPUT_FILES})


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(folder: Path, engine: bool = False) -> dict[str, dict[str, Any]]:
    """``{relative path: {sha256, bytes}}`` for the export artifacts under ``folder`` (every file
    except the manifest and ``ENGINE_FILES``), or with ``engine`` for the engine artifacts."""
    table = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST_FILE and (rel in ENGINE_FILES) == engine:
            table[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return table


@dataclass(frozen=True)
class ExportManifest:
    """A loaded, verified export folder. ``data`` is the parsed manifest.json."""

    path: Path
    data: dict[str, Any]

    @property
    def input_name(self) -> str:
        return str(self.data["input"]["name"])

    @property
    def batch(self) -> dict[str, int]:
        """``{"min", "opt", "max"}``."""
        return dict(self.data["input"]["batch"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample."""
        c, h, w = self.data["input"]["shape"][1:]
        return int(c), int(h), int(w)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Output names in model order."""
        return tuple(o["name"] for o in self.data["outputs"])

    @property
    def precision(self) -> str:
        return str(self.data["precision"]["requested"])

    @property
    def onnx_models(self) -> dict[str, Path]:
        """``{"fp32": path, "fp16": path}`` (fp16 only when exported)."""
        return {k: self.path / v for k, v in self.data["precision"]["models"].items()}

    @property
    def plan(self) -> Path | None:
        """The TensorRT plan when the folder has one: built by the export's Python build or
        written afterwards by ``trtexec_build.sh`` (both save ``model.plan``)."""
        build = (self.data.get("tensorrt") or {}).get("build")
        path = self.path / (build["plan"] if build else PLAN_FILE)
        return path if path.is_file() else None

    @property
    def plan_origin(self) -> str | None:
        """``"export"`` when the plan is the one the export built, ``"trtexec"`` when it was
        built (or rebuilt) after export, None without a plan."""
        plan = self.plan
        if plan is None:
            return None
        rel = plan.relative_to(self.path).as_posix()
        recorded = self.data.get("engine_files", {}).get(rel) or self.data.get("files", {}).get(rel)
        if recorded and plan.stat().st_size == recorded["bytes"] and sha256_file(plan) == recorded["sha256"]:
            return "export"
        return "trtexec"

    @property
    def engine_precision(self) -> str:
        """The tolerance set a plan of this folder is checked with: ``fp16``, ``tf32`` or ``fp32``.

        Both build paths follow the export options: FP16 for an fp16 export, else TF32 unless
        the export passed ``--no-tf32`` (trtexec_build.sh then carries ``--noTF32``).
        """
        recorded = (self.data.get("tensorrt") or {}).get("engine_precision")
        if recorded:
            return str(recorded)
        if self.precision == "fp16":
            return "fp16"
        return "tf32" if (self.data.get("options") or {}).get("tf32", True) else "fp32"

    def tolerances(self, precision: str) -> dict[str, tuple[float, float]]:
        """``{output: (atol, rtol)}`` recorded for ``precision`` (fp32, fp16 or tf32).

        Manifests without a ``tf32`` entry (schema 1) get the fp16 one: TF32 keeps FP16's
        10-bit mantissa, so its rounding errors are of the same size.
        """
        out = {}
        for o in self.data["outputs"]:
            table = o.get("tolerance") or {}
            tol = table.get(precision) or (table.get("fp16") if precision == "tf32" else None)
            if tol:
                out[o["name"]] = (float(tol["atol"]), float(tol["rtol"]))
        return out

    def file(self, name: str) -> Path:
        """Absolute path of an artifact listed in the manifest."""
        if name not in self.data["files"] and name not in self.data.get("engine_files", {}):
            raise ExportError(f"{self.path}: manifest lists no file {name!r}")
        return self.path / name

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), **self.data}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_shape(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_is_int(d) and d > 0 for d in v[1:])


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _is_file_entry(v: Any) -> bool:
    return isinstance(v, dict) and _is_int(v.get("bytes")) and isinstance(v.get("sha256"), str)


# Every key the readers (``ExportManifest``, the bench helper) index directly, with what it must hold.
_REQUIRED: tuple[tuple[str, Any, str], ...] = (
    ("input", lambda v: isinstance(v, dict), "the input description"),
    ("input.name", _is_name, "the input's name"),
    ("input.shape", _is_shape, 'the input shape ["batch", C, H, W]'),
    ("input.batch", lambda v: isinstance(v, dict), "the batch range {min, opt, max}"),
    *((f"input.batch.{k}", lambda v: _is_int(v) and v > 0, f"the {k.upper()} batch size")
      for k in ("min", "opt", "max")),
    ("outputs", lambda v: isinstance(v, list) and bool(v) and all(isinstance(o, dict) and _is_name(o.get("name"))
                                                                  for o in v), "the model's outputs, each with a name"),
    ("precision", lambda v: isinstance(v, dict), "the precision section"),
    ("precision.requested", _is_name, "the exported precision"),
    ("precision.models", lambda v: isinstance(v, dict) and _is_name(v.get("fp32"))
     and all(_is_name(f) for f in v.values()), "the ONNX file per precision"),
    ("files", lambda v: isinstance(v, dict) and all(_is_file_entry(e) for e in v.values()),
     "the export files with their sizes and SHA-256"),
)
_OPTIONAL: tuple[tuple[str, Any, str], ...] = (
    ("reference.input.file", _is_name, "the reference input file"),
    ("reference.input.shape", lambda v: isinstance(v, list) and bool(v) and all(_is_int(d) for d in v),
     "the reference input shape"),
    ("reference.outputs", lambda v: isinstance(v, dict) and all(isinstance(r, dict) and _is_name(r.get("file"))
                                                                for r in v.values()), "the reference output files"),
    ("tensorrt.build", lambda v: v is None or (isinstance(v, dict) and _is_name(v.get("plan"))),
     "the engine build record"),
    ("engine_files", lambda v: isinstance(v, dict) and all(_is_file_entry(e) for e in v.values()),
     "the engine files with their sizes and SHA-256"),
)
_MISSING = object()


def _lookup(data: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def check_manifest(data: dict[str, Any], where: str | Path = MANIFEST_FILE) -> None:
    """Raise a one-line ExportError naming the first key the readers need that is missing or
    malformed (keys absent from older schemas stay optional)."""
    for key, ok, what in (*_REQUIRED, *_OPTIONAL):
        value = _lookup(data, key)
        required = (key, ok, what) in _REQUIRED
        if value is _MISSING and not required:
            continue
        if value is _MISSING or not ok(value):
            problem = "lacks" if value is _MISSING else "has a malformed"
            raise ExportError(f"{where} {problem} '{key}' ({what}): it was edited or its export did not finish; "
                              "re-export the folder ('mtlexport export CKPT --out DIR --force')")


def load_export_dir(path: str | Path, verify: bool = True) -> ExportManifest:
    """Read ``path/manifest.json``; with ``verify`` check every export artifact's size and SHA-256
    (engine artifacts written after export, see ``ENGINE_FILES``, are not checked)."""
    folder = Path(path)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ExportError(f"{folder} is not an export folder (no {MANIFEST_FILE}); run 'mtlexport export' first")
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {manifest_path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ExportError(f"{manifest_path} is not an mtlexport export manifest")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ExportError(f"{manifest_path} has schema version {version}; this mtlexport reads up to {SCHEMA_VERSION}")
    check_manifest(data, manifest_path)
    if verify:
        problems = []
        for rel, entry in data.get("files", {}).items():
            if rel in ENGINE_FILES:  # schema 1 listed engine artifacts here; they may be rebuilt
                continue
            file = folder / rel
            if not file.is_file():
                problems.append(f"{rel} is missing")
            elif file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
                problems.append(f"{rel} does not match its SHA-256")
        if problems:
            raise ExportError(f"{folder}: {'; '.join(problems)}; re-run 'mtlexport export'")
    return ExportManifest(folder, data)
