"""What a wheel installs: every package (the sample models included, as package data found
through importlib.resources) and the console script's --version."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages

from mtlexport.demo import DemoOptions, sample_dir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import pytest

    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def test_the_samples_install_as_package_data() -> None:
    """mtlexport/sample_models links to sample_models/; setuptools finds it as a package (a wheel
    holds real files) and package-data ships its configs and checkpoints."""
    link = ROOT / "mtlexport" / "sample_models"
    assert link.is_symlink() and link.resolve() == (ROOT / "sample_models").resolve()
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "mtlexport.sample_models" in find_packages(str(ROOT), include=tool["packages"]["find"]["include"])
    patterns = tool["package-data"]["mtlexport.sample_models"]
    shipped = {p.name for pattern in patterns for p in link.glob(pattern)}
    assert {"quick.yaml", "paper_nyuv2.yaml", "quick_dense.pt", "quick_sparse.pt", "quick_sparse.slim.pt"} <= shipped


def test_the_demo_finds_the_bundled_samples() -> None:
    folder = sample_dir()
    for name in ("quick.yaml", "paper_nyuv2.yaml", "quick_dense.pt", "quick_sparse.pt", "quick_sparse.slim.pt"):
        assert (folder / name).is_file(), name
    options = DemoOptions()
    assert options.config_path == folder / "quick.yaml"
    assert all(p.is_file() for p in options.sample_checkpoints().values())
