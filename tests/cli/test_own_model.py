"""Your own model and data through the whole pipeline, as a new user runs it: a module written
in a temporary folder on PYTHONPATH, then ``train``, ``slim``, ``export`` and ``bench`` as
separate processes; and that a file naming ``os:system`` is refused without running anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtlexport.cli.main import main
from mtlexport.models import BackboneSpec, ModelSpec, TaskSpec
from mtlexport.train.checkpoint import Checkpoint, save_checkpoint

USER_MODULE = '''
import torch
from torch import nn


class Net(nn.Module):
    """A two-task network of the user's own (no mtlexport base class)."""

    def __init__(self, width=8, classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width),
                                  nn.ReLU())
        self.seg = nn.Conv2d(2 * width, classes, 1)
        self.depth = nn.Conv2d(2 * width, 1, 1)

    def forward(self, images):
        f = self.body(self.stem(images))
        return {"seg": self.seg(f), "depth": self.depth(f)}


def build(width=8, classes=3):
    return Net(width, classes)


class Toy(torch.utils.data.Dataset):
    num_classes = 3

    def __init__(self, n, size, seed):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, size, size, generator=g)
        self.seg = (self.images[:, 0] > 0).long() + (self.images[:, 1] > 1).long()
        self.depth = self.images[:, 2:3].abs() + 0.1

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "segmentation": self.seg[i], "depth": self.depth[i]}


def data(n=16, size=16):
    return {"train": Toy(n, size, 0), "val": Toy(n // 2, size, 1), "test": Toy(n // 2, size, 2)}
'''

USER_CONFIG = '''
model:
  factory: "ownnet:build"
  kwargs: {width: 8}
  tasks:
    - {name: seg, type: segmentation}
    - {name: depth, type: depth}
data: {name: factory, factory: "ownnet:data", kwargs: {n: 16, size: 16}, height: 16, width: 16}
train: {epochs: 1, batch_size: 8}
optimizer: {name: proxadam, lr: 0.05, lambda: 0.2, grouping: coupled}
'''


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mtlexport", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _json(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_train_slim_export_bench_of_a_user_module(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "ownnet.py").write_text(USER_MODULE)
    (tmp_path / "user.yaml").write_text(USER_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(user), "OMP_NUM_THREADS": "1", "MTLEXPORT_NO_COLOR": "1"}

    train = _json(_cli(["train", "--config", "user.yaml", "--out", "R", "--json"], tmp_path, env))
    assert train["epochs_run"] == 1 and set(train["test_metrics"]) == {"seg", "depth"}
    raw = torch.load(tmp_path / "R" / "last.pt", weights_only=True)
    assert raw["spec"]["factory"] == "ownnet:build" and raw["spec"]["kwargs"] == {"width": 8}

    slim = _json(_cli(["slim", "R/last.pt", "--model", "ownnet:build", "--json"], tmp_path, env))
    assert slim["removed"] == slim["removable"] > 0 and slim["verification"]["passed"]
    assert slim["params_after"] < slim["params_before"]
    widths = torch.load(tmp_path / "R" / "last.slim.pt", weights_only=True)["spec"]["widths"]
    assert widths and all(isinstance(v, list) for v in widths.values())  # the per-layer widths of the slim model

    export = _json(_cli(["export", "R/last.slim.pt", "--model", "ownnet:build", "--out", "X", "--batch", "1:2:2",
                         "--no-simplify", "--json"], tmp_path, env))
    assert all(c["passed"] for c in export["checks"])
    import onnx

    graph = onnx.load(str(tmp_path / "X" / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["seg", "depth"]
    manifest = json.loads((tmp_path / "X" / "manifest.json").read_text())
    assert manifest["source"]["spec"]["factory"] == "ownnet:build" and manifest["input"]["shape"] == ["batch", 3, 16, 16]

    bench = _json(_cli(["bench", "--engine", "X", "--duration-s", "0.05", "--iterations", "5", "--warmup-ms", "0",
                        "--json"], tmp_path, env))
    (result,) = bench["results"]
    assert result["backend"] == "ort" and result["check"]["reference"] == "passed"

    # Without --model, or with another factory, the checkpoint is refused in one line.
    refused = _cli(["export", "R/last.slim.pt", "--out", "Y"], tmp_path, env)
    assert refused.returncode != 0 and "pass --model package.module:factory" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "Y").exists()
    other = _cli(["inspect", "R/last.slim.pt", "--model", "ownnet:data"], tmp_path, env)
    assert other.returncode != 0 and "was built by factory 'ownnet:build', not ownnet:data" in other.stderr


@pytest.fixture()
def os_system_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint whose spec names ``os:system`` with a command that would leave a marker file."""
    marker = tmp_path / "ran"
    spec = ModelSpec(backbone=BackboneSpec(), tasks=(TaskSpec(name="x", type="custom"),), factory="os:system",
                     kwargs={"command": f"touch {marker}"})
    data = {"name": "factory", "factory": "os:system", "kwargs": {"command": f"touch {marker}"}}
    path = tmp_path / "evil.pt"
    save_checkpoint(path, Checkpoint(spec=spec, state_dict={}, config={"data": data}))
    return path, marker


@pytest.mark.parametrize("command", [
    ["inspect"], ["eval"], ["slim"], ["export", "--out", "{tmp}/out"], ["bench", "--engine"],
    ["inspect", "--model", "tests.models.user_model:build"],
    ["eval", "--model", "tests.models.user_model:build", "--data", "factory=tests.data.user_data:splits"],
    ["slim", "--model", "tests.models.user_model:build"],
    ["export", "--model", "tests.models.user_model:build", "--out", "{tmp}/out"],
    ["bench", "--model", "tests.models.user_model:build", "--engine"],
])
def test_a_checkpoint_naming_os_system_is_refused_and_runs_nothing(
        command: list[str], os_system_checkpoint: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path, marker = os_system_checkpoint
    rc = main([a.replace("{tmp}", str(path.parent)) for a in command] + [str(path)])
    err = capsys.readouterr().err
    assert rc != 0 and not marker.exists() and not (path.parent / "out").exists()
    assert len(err.strip().splitlines()) == 1
    if "--model" in command:
        assert "was built by factory 'os:system', not tests.models.user_model:build" in err
    else:
        assert "mtlexport never imports code a file names" in err
