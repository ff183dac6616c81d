"""``manifest.json``: what an export folder holds, and the reader that checks it.

The schema is documented in ``mtlexport.export``'s docstring; ``load_export_dir`` is the
public way in for other stages (the bench helper): it validates the schema and every hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlexport.errors import ExportError

MANIFEST_FILE = "manifest.json"
SCHEMA = "mtlexport.export"
SCHEMA_VERSION = 1


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {sha256, bytes}}`` for every file under ``folder`` except the manifest."""
    table = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST_FILE:
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
        """The TensorRT plan, when one was built."""
        build = self.data["tensorrt"].get("build")
        return self.path / build["plan"] if build else None

    def file(self, name: str) -> Path:
        """Absolute path of an artifact listed in the manifest."""
        if name not in self.data["files"]:
            raise ExportError(f"{self.path}: manifest lists no file {name!r}")
        return self.path / name

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), **self.data}


def load_export_dir(path: str | Path, verify: bool = True) -> ExportManifest:
    """Read ``path/manifest.json``; with ``verify`` check every listed file's size and SHA-256."""
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
    if verify:
        problems = []
        for rel, entry in data.get("files", {}).items():
            file = folder / rel
            if not file.is_file():
                problems.append(f"{rel} is missing")
            elif file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
                problems.append(f"{rel} does not match its SHA-256")
        if problems:
            raise ExportError(f"{folder}: {'; '.join(problems)}; re-run 'mtlexport export'")
    return ExportManifest(folder, data)
