"""pyproject extras: exactly one ONNX Runtime flavour per install, and the TensorRT version the
``trt`` extra installs is the export's default target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
FLAVOURS = {"onnxruntime", "onnxruntime-gpu"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str], extras: dict[str, list[str]]) -> set[str]:
    """Distribution names, with ``mtlexport[...]`` self-references expanded."""
    names: set[str] = set()
    for text in requirements:
        req = Requirement(text)
        if canonicalize_name(req.name) == "mtlexport":
            for extra in req.extras:
                names |= _names(extras[extra], extras)
        else:
            names.add(canonicalize_name(req.name))
    return names


def test_no_extra_installs_both_onnxruntime_flavours() -> None:
    project = _project()
    extras = project["optional-dependencies"]
    base = _names(project["dependencies"], extras)
    assert not base & FLAVOURS, "a base dependency on either flavour forces it onto GPU users too"
    for name in extras:
        assert len(_names(extras[name], extras) & FLAVOURS) <= 1, name
    assert _names(extras["cpu"], extras) & FLAVOURS == {"onnxruntime"}
    assert _names(extras["gpu"], extras) & FLAVOURS == {"onnxruntime-gpu"}
    assert _names(extras["dev"], extras) & FLAVOURS == {"onnxruntime"}  # CI installs .[dev]
    assert not _names(extras["test"] + extras["trt"], extras) & FLAVOURS  # combine freely with gpu


def test_default_trt_target_is_what_the_trt_extra_installs() -> None:
    from mtlexport.export.options import DEFAULT_TRT_VERSION, TRT_VERSIONS

    (spec,) = [Requirement(r).specifier for r in _project()["optional-dependencies"]["trt"]
               if canonicalize_name(Requirement(r).name) == "tensorrt"]
    admitted = [major for major in TRT_VERSIONS if spec.contains(f"{major}.4.0")]
    assert admitted == list(TRT_VERSIONS) and not spec.contains("12.0.0")
    assert DEFAULT_TRT_VERSION == max(admitted)


def test_pip_resolves_one_flavour_for_a_gpu_install(tmp_path: Path) -> None:
    """pip's resolver on ``.[gpu,test]`` (what a GPU user or developer installs) from the
    package index, nothing installed: the plan holds onnxruntime-gpu and not onnxruntime."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-build-isolation",
           "--quiet", "--disable-pip-version-check", "--report", str(report), f"{ROOT}[gpu,test]"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.skip("pip could not resolve .[gpu,test] within 4 minutes (slow or no package index)")
    if proc.returncode != 0 or not report.is_file():
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        if any(word in proc.stderr for word in ("ResolutionImpossible", "conflicting dependencies")):
            pytest.fail(f"pip cannot resolve .[gpu,test]: {lines[-1] if lines else proc.returncode}")
        pytest.skip(f"pip cannot reach a package index here: {lines[-1] if lines else proc.returncode}")
    installed = {canonicalize_name(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    assert "mtlexport" in installed and "torch" in installed
    assert installed & FLAVOURS == {"onnxruntime-gpu"}


def test_the_cli_lives_inside_the_package() -> None:
    """An install adds one top-level package, ``mtlexport``: no ``cli`` that could clash."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert _project()["scripts"]["mtlexport"] == "mtlexport.cli.main:main"
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["mtlexport*"]
    assert not (ROOT / "cli").exists() and (ROOT / "mtlexport" / "cli" / "main.py").is_file()
