"""``mtlexport slim``: table and JSON output, the plot, --model, one-line errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from mtlexport.cli.main import main
from mtlexport.models import ModelSpec, create_model
from mtlexport.train.checkpoint import Checkpoint, save_checkpoint

SPEC = {
    "backbone": {"name": "resnet18", "base_width": 8},
    "tasks": [
        {"name": "seg", "type": "segmentation", "num_outputs": 3, "head": {"width": 8, "rates": [1]}},
        {"name": "attrs", "type": "attributes", "attributes": ["a"], "head": {"width": 8, "hidden": 8}},
    ],
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = ModelSpec.from_dict(SPEC)
    model = create_model(spec).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Conv2d) and mod.in_channels > 3:
                mod.weight[:, torch.rand(mod.in_channels, generator=gen) < 0.5] = 0
    path = tmp_path_factory.mktemp("slim") / "dense.pt"
    save_checkpoint(path, Checkpoint(spec=spec, state_dict=model.state_dict()))
    return path


def test_slim_json_and_plot(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "s.pt", tmp_path / "channels.png"
    rc = main(["slim", str(ckpt), "--out", str(out), "--json", "--plot", str(png), "--input-size", "32"])
    payload = json.loads(capsys.readouterr().out)
    assert rc == 0 and out.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert payload["removed"] > 0 and payload["verification"]["passed"]
    assert payload["params_after"] < payload["params_before"]
    assert any("random inputs only" in n for n in payload["notices"])  # no data config in this checkpoint


def test_slim_table_default_output(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["slim", str(ckpt), "--round-to", "2", "--input-size", "32"])
    text = capsys.readouterr().out
    assert rc == 0 and ckpt.with_name("dense.slim.pt").is_file()
    assert "slim summary" in text and "verification" in text


def test_slim_plain_state_dict_with_model_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tiny_factory.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def build():
            torch.manual_seed(0)
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import tiny_factory

    model = tiny_factory.build()
    with torch.no_grad():
        model[2].weight[:, [1, 6]] = 0
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    rc = main(["slim", str(tmp_path / "sd.pt"), "--model", "tiny_factory:build", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert rc == 0 and payload["removed"] == 2
    raw = torch.load(tmp_path / "sd.slim.pt", weights_only=True)
    assert raw["widths"]["0"] == [3, 6, 1] and raw["widths"]["2"] == [6, 4, 1]


def test_missing_checkpoint_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["slim", str(tmp_path / "nope.pt")])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("error:") and len(err.strip().splitlines()) == 1


AUTO_FAST = ["--round-to", "auto", "--duration-s", "0", "--warmup-ms", "0", "--layer-ms", "0.3", "--input-size", "32"]


def test_slim_round_to_auto_json_and_table(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MTLEXPORT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "auto.pt"
    rc = main(["slim", str(ckpt), "--out", str(out), *AUTO_FAST, "--backend", "torch", "--json"])
    payload = json.loads(capsys.readouterr().out)
    auto = payload["auto"]
    assert rc == 0 and out.is_file() and payload["verification"]["passed"] and payload["round_to"] == "auto"
    assert auto["options"]["backend"] == "torch" and auto["options"]["batch"] == 1 and auto["options"]["threads"] == 1
    assert Path(auto["table"]).is_relative_to(tmp_path / "cache" / "latency")
    for g in auto["groups"]:
        assert g["live"] <= g["width"] <= g["dense"] and g["dead_kept"] == g["width"] - g["live"]
    variants = {v["name"]: v for v in auto["variants"]}
    assert {"dense", "round-to 1", "auto", auto["best_fixed"]} <= set(variants)
    assert all(v["realised"] is None or v["realised"] > 0 for v in variants.values())

    rc = main(["slim", str(ckpt), "--out", str(out), *AUTO_FAST, "--backend", "torch", "--batch", "2", "--force"])
    text = capsys.readouterr().out
    assert rc == 0 and "latency-aware widths per group (torch, batch 2, 1 thread)" in text
    assert "whole model" in text and "round-to 1" in text and "kept " in text and "entries used" in text


@pytest.mark.parametrize("args, message", [
    (["--backend", "torch"], "--backend only apply with --round-to auto"),
    (["--round-to", "eight"], "--round-to takes a positive integer or 'auto'"),
    (["--round-to", "auto", "--backend", "trt"], "--round-to auto measures on ort, torch, inductor"),
])
def test_slim_option_errors_are_one_line(ckpt: Path, args: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["slim", str(ckpt), "--force", *args])  # --force: dense.slim.pt may exist from another test
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_slim_auto_of_a_plain_state_dict_is_refused(ckpt: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "weights.pt"
    torch.save(create_model(ModelSpec.from_dict(SPEC)).state_dict(), weights)
    rc = main(["slim", str(weights), "--round-to", "auto", "--model", "tiny_factory:build"])
    err = capsys.readouterr().err
    assert rc == 2 and "needs an mtlexport checkpoint" in err and len(err.strip().splitlines()) == 1
    rc = main(["slim", str(ckpt), "--force", "--round-to", "auto", "--model", "tiny_factory:build"])
    err = capsys.readouterr().err  # an mtlexport checkpoint of a built-in model with --model
    assert rc == 1 and "holds a built-in mtlexport model" in err and len(err.strip().splitlines()) == 1


def test_slim_auto_without_onnxruntime_is_one_line_error(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the import fails at the boundary
    monkeypatch.setenv("MTLEXPORT_CACHE_DIR", str(tmp_path))
    rc = main(["slim", str(ckpt), "--out", str(tmp_path / "x.pt"), *AUTO_FAST, "--backend", "ort"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 3 and len(errors) == 1 and "onnxruntime is not installed" in errors[0]
    assert not (tmp_path / "x.pt").exists()


def test_existing_outputs_are_refused_before_the_surgery_unless_forced(
        ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "s.pt", tmp_path / "c.png"
    out.write_bytes(b"old")
    rc = main(["slim", str(ckpt), "--out", str(out), "--input-size", "32"])
    err = capsys.readouterr().err
    assert rc == 1 and f"--out {out} already exists; pass --force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"old"
    png.write_bytes(b"old")
    assert main(["slim", str(ckpt), "--out", str(tmp_path / "new.pt"), "--plot", str(png)]) == 1
    assert f"--plot {png} already exists" in capsys.readouterr().err and not (tmp_path / "new.pt").exists()
    assert main(["slim", str(ckpt), "--out", str(out), "--plot", str(png), "--input-size", "32x40", "--force",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert out.read_bytes()[:3] != b"old" and payload["input_shape"][-2:] == [32, 40]
    for flag in ("--out", "--plot"):  # a folder where a file is meant: one line, nothing left behind
        argv = ["slim", str(ckpt), "--out", str(tmp_path / "x.pt"), flag, str(tmp_path)]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"{flag} {tmp_path} is a folder; give a file path" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "s.pt"]
