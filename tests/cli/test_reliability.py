"""The CLI as a new user meets it: one short error line for every bad input, strict --json,
Ctrl-C and SIGTERM say what was kept, a second train into the same folder is refused,
--version, help text, and a progress bar that fits 80 columns."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from mtlexport.cli._common import RichReporter, emit_json
from mtlexport.cli.eval import headline
from mtlexport.cli.main import build_app, main, one_line
from mtlexport.train import TrainConfig
from mtlexport.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mtlexport.train.config import resolve_config

HEAD = {"width": 8, "rates": [1, 2]}
TINY = {
    "model": {"backbone": {"name": "resnet18", "base_width": 4, "output_stride": 8},
              "tasks": [{"name": "segmentation", "type": "segmentation", "head": HEAD},
                        {"name": "depth", "type": "depth", "head": HEAD}]},
    "data": {"name": "synthetic", "height": 32, "width": 32, "num_train": 8, "num_val": 8, "num_test": 8},
    "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.yaml and an untrained checkpoint of it (ok.pt), written without training."""
    root = tmp_path_factory.mktemp("reliability")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cfg = resolve_config(TrainConfig.from_dict(TINY))
    from mtlexport.models import create_model

    model = create_model(cfg.model)
    save_checkpoint(root / "ok.pt", Checkpoint(spec=cfg.model, state_dict=model.state_dict(), config=cfg.to_dict()))
    return root


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str, *needles: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert len(lines[0]) <= 300, lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- errors: one line
def test_train_out_naming_a_file(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "afile").write_text("x")
    code, _, err = run(capsys, ["train", "-c", str(files / "tiny.yaml"), "--out", str(files / "afile")])
    assert code == 1
    one_error_line(err, "afile is a file; give a folder")


def test_bad_size_and_channels_are_refused_by_train(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, ["train", "-c", str(files / "tiny.yaml"), "--out", str(files / "r"),
                                "--set", "model.backbone.output_stride=16", "--set", "data.height=40"])
    assert code == 2
    one_error_line(err, "data.height 40 is not divisible by the backbone's output stride 16")
    code, _, err = run(capsys, ["train", "-c", str(files / "tiny.yaml"), "--out", str(files / "r"),
                                "--set", "model.in_channels=0"])
    assert code == 2
    one_error_line(err, "model.in_channels must be a positive integer, got 0")
    assert not (files / "r").exists()


def test_eval_of_non_finite_weights_is_refused_with_strict_json(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = load_checkpoint(files / "ok.pt")
    state = {k: v.clone() for k, v in ckpt.state_dict.items()}
    state["heads.depth.classifier.weight" if "heads.depth.classifier.weight" in state else next(
        k for k in state if k.startswith("heads.depth") and k.endswith("weight"))].fill_(float("nan"))
    save_checkpoint(files / "nan.pt", replace(ckpt, state_dict=state))
    code, out, err = run(capsys, ["eval", str(files / "nan.pt"), "--json"])
    assert code == 1
    one_error_line(err, "NaN", "heads.depth")
    payload = json.loads(out)  # strict: json.loads would accept NaN, so check the text too
    assert "NaN" not in out.replace("NaN and", "") and payload["error"]["type"] == "CheckpointError"


def test_long_messages_are_cut_with_a_pointer() -> None:
    text = one_line("validation failed " + "max abs inf; " * 200)
    assert len(text) <= 300 and text.endswith("(full message: --json or MTLEXPORT_DEBUG=1)")
    assert one_line("a\nb   c") == "a b c"


def test_output_folder_checks_happen_at_parse_time(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "plainfile").write_text("x")
    code, _, err = run(capsys, ["export", str(files / "ok.pt"), "--out", str(files / "plainfile")])
    assert code == 1
    one_error_line(err, "plainfile is a file")


def test_plot_into_a_file_path(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "notadir").write_text("x")
    code, _, err = run(capsys, ["plot", str(files / "ok.pt"), "--out", str(files / "notadir")])
    assert code == 1
    one_error_line(err, "notadir is a file; give a folder")


def test_demo_refuses_a_non_empty_folder_unless_forced(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "demo_out").mkdir()
    (files / "demo_out" / "keep.txt").write_text("mine")
    code, _, err = run(capsys, ["demo", "--skip-train", "--out", str(files / "demo_out")])
    assert code == 1
    one_error_line(err, "is not empty", "--force")


# ----------------------------------------------------------------------------- strict JSON
def test_emit_json_is_strict(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    emit_json({"metrics": {"depth": {"rmse": float("nan")}}, "ok": 1.0})
    out = capsys.readouterr().out
    assert "NaN" not in out
    assert json.loads(out) == {"metrics": {"depth": {"rmse": None}}, "ok": 1.0, "non_finite": ["metrics.depth.rmse"]}


# ----------------------------------------------------------------------------- eval headline
def test_eval_headline_never_hides_a_losing_task() -> None:
    text = headline({"segmentation": 2400.0, "depth": -35.2, "overall": 1182.4})
    assert text.startswith("WORSE than the trivial baseline on depth.")
    assert "segmentation +2400.0%" in text and "depth -35.2%" in text and "mean +1182.4%" in text
    assert not headline({"depth": 12.0, "overall": 12.0}).startswith("WORSE")
    assert headline({}) == ""


# ----------------------------------------------------------------------------- version, help, progress
def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import mtlexport

    code, out, _ = run(capsys, ["--version"])
    assert code == 0 and out.strip() == f"mtlexport {mtlexport.__version__}"


def test_help_text_keeps_defaults_and_has_no_bool_metavars(capsys: pytest.CaptureFixture[str]) -> None:
    app = build_app()
    import typer.main

    group = typer.main.get_command(app)
    for name in group.commands:  # type: ignore[attr-defined]
        code, out, _ = run(capsys, [name, "--help"])
        assert code == 0, name
        assert "<bool>" not in out and "list[str]" not in out, name
    _, out, _ = run(capsys, ["slim", "--help"])
    assert "[default: <ckpt stem>.slim.pt]" in " ".join(out.split())
    _, out, _ = run(capsys, ["train", "--help"])
    assert "--set KEY=VALUE" in out and "--force" in out
    _, out, _ = run(capsys, ["demo", "--help"])
    assert "--force" in out and "--duration-s" in out


def test_progress_bar_fits_80_columns() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system=None)
    reporter = RichReporter(console=console)
    reporter.start("epoch", "epoch 12/100 of a long name", total=64)
    reporter.advance("epoch", 32, loss=0.1234567, lr=0.002, val_segmentation_miou=0.5, group_sparsity=23.4)
    reporter._progress.refresh()  # type: ignore[union-attr]
    reporter.close()
    frames = [f for f in buf.getvalue().replace("\x1b[2K", "").split("\r") if "32/64" in f]
    assert frames, buf.getvalue()
    frame = frames[-1].strip("\n").split("\n")[0]
    assert len(frame) <= 80, frame
    assert "━━━" in frame and "loss=0.1235" in frame  # the bar keeps its width; the info is cut instead


# ----------------------------------------------------------------------------- Ctrl-C, SIGTERM, lock
def _start_train(files: Path, out: Path, epochs: int) -> subprocess.Popen[str]:
    code = "import sys; from mtlexport.cli.main import main; sys.exit(main(sys.argv[1:]))"
    argv = ["train", "-c", str(files / "tiny.yaml"), "--out", str(out), "--set", f"train.epochs={epochs}"]
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-500:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_interrupt_says_what_was_kept_and_a_second_writer_is_refused(
        files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], sig: int, code: int, word: str) -> None:
    out = tmp_path / "run"
    proc = _start_train(files, out, epochs=500)
    try:
        _wait_for(out / ".lock", proc)
        if sig == signal.SIGINT:  # meanwhile a second train into the same folder is refused
            rc, _, err = run(capsys, ["train", "-c", str(files / "tiny.yaml"), "--out", str(out), "--resume"])
            assert rc == 1
            one_error_line(err, f"{out} is in use by another 'mtlexport train' (pid {proc.pid})")
        _wait_for(out / "last.pt", proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-500:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{word}: kept {out / 'last.pt'} (epoch ") and last.endswith("plus --resume"), last
    assert not (out / ".lock").exists() and not list(out.glob(".*.tmp"))
    assert load_checkpoint(out / "last.pt").epoch >= 1


def test_inspect_reports_non_finite_weights_instead_of_failing(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = load_checkpoint(files / "ok.pt")
    state = {k: v.clone() for k, v in ckpt.state_dict.items()}
    state["backbone.stem.0.weight"][0, 0, 0, 0] = float("inf")
    save_checkpoint(files / "inf.pt", replace(ckpt, state_dict=state))
    code, out, _ = run(capsys, ["inspect", str(files / "inf.pt"), "--json"])
    assert code == 0 and json.loads(out)["non_finite_tensors"] == ["backbone.stem.0.weight"]
    code, out, _ = run(capsys, ["inspect", str(files / "inf.pt"), "--no-layers"])
    assert code == 0 and "non-finite weights (NaN/Inf) in backbone.stem.0.weight" in " ".join(out.split())


def test_a_keyboard_interrupt_raised_inside_a_command_still_prints_its_line(
        files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import mtlexport.train

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mtlexport.train, "evaluate_checkpoint", interrupted)
    code, _, err = run(capsys, ["eval", str(files / "ok.pt")])
    assert code == 130
    one_error_line(err, "interrupted: nothing was written")
