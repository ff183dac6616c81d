"""``mtlexport bench``: table, --json, --export-times, --csv, --plot, --compare and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlexport.cli.main import main

FAST = ["--duration-s", "0.02", "--warmup-ms", "5", "--iterations", "3", "--threads", "1"]
TRTEXEC_KEYS = ["startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs",
                "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs"]


def _checkpoint(path: Path, width: int, size: int = 32) -> Path:
    from mtlexport.models import ModelSpec, create_model
    from mtlexport.train.checkpoint import Checkpoint, save_checkpoint

    head = {"width": width, "rates": [1, 2]}
    spec = ModelSpec.from_dict({
        "backbone": {"name": "resnet18", "base_width": width, "output_stride": 8},
        "tasks": [{"name": "seg", "type": "segmentation", "num_outputs": 3, "head": head},
                  {"name": "depth", "type": "depth", "head": head}]})
    return save_checkpoint(path, Checkpoint(spec=spec, state_dict=create_model(spec).state_dict(),
                                            config={"data": {"height": size, "width": size}}))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli_bench")
    return _checkpoint(folder / "dense.pt", 8), _checkpoint(folder / "slim.pt", 4)


def test_table_by_default(models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "--engine", str(models[0]), *FAST])
    out = capsys.readouterr().out
    assert rc == 0
    assert "dense/torch" in out and "median" in out


def test_json_sweep_and_files(models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    times, table = tmp_path / "times.json", tmp_path / "bench.csv"
    rc = main(["bench", "--engine", str(models[0]), "--batch", "1,2", "--json", "--export-times", str(times),
               "--csv", str(table), "--plot", str(tmp_path / "sweep.png"), *FAST])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    meta = payload["metadata"]
    assert meta["device"] == "cpu" and meta["cpu"] and meta["versions"]["torch"]
    assert [r["batch"] for r in payload["results"]] == [1, 2]
    first = payload["results"][0]
    assert first["precision"] == "fp32" and first["input_shape"] == [1, 3, 32, 32]
    assert first["settings"]["threads"] == 1
    assert set(first["latency_ms"]) >= {"min", "max", "mean", "median", "p90", "p95", "p99", "cv"}
    assert len(payload["files"]) == 4  # one exportTimes file per batch size, CSV, PNG
    for path in payload["files"][:2]:
        records = json.loads(Path(path).read_text())
        assert isinstance(records, list) and records and all(list(r) == TRTEXEC_KEYS for r in records)
    assert len(table.read_text().strip().splitlines()) == 3


def test_export_times_single_result_goes_to_the_given_file(models: tuple[Path, Path], tmp_path: Path) -> None:
    times = tmp_path / "times.json"
    assert main(["bench", "--engine", str(models[0]), "--export-times", str(times), *FAST]) == 0
    records = json.loads(times.read_text())
    assert len(records) >= 3 and list(records[0]) == TRTEXEC_KEYS
    for r in records:
        assert r["latencyMs"] == pytest.approx(r["h2dMs"] + r["computeMs"] + r["d2hMs"])


def test_compare(models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "--engine", str(models[0]), "--compare", str(models[1]), "--batch", "1,2", "--rounds", "2",
               "--json", *FAST])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert [c["batch"] for c in payload["comparisons"]] == [1, 2]
    c = payload["comparisons"][0]
    assert c["baseline"] == "dense" and c["candidate"] == "slim" and c["macs_ratio"] > 1
    assert c["realised"] == (None if c["slower"] else pytest.approx(c["speedup"] / c["macs_ratio"]))
    assert c["input_shape"] == [3, 32, 32]
    assert payload["metadata"]["compare"]["baseline"] == "dense"


def test_compare_table_names_the_baseline(models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(models[0]), "--compare", str(models[1]), *FAST]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "candidate slim vs baseline dense on torch, inputs 3x32x32" in out and "realised" in out
    assert "dense/torch (baseline)" in out and "slim/torch (candidate)" in out


def test_a_slower_candidate_shows_no_realised_share(models: tuple[Path, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # the bigger model as the candidate: more MACs and (almost always) slower
    assert main(["bench", str(models[1]), "--compare", str(models[0]), "--json", *FAST]) == 0
    (c,) = json.loads(capsys.readouterr().out)["comparisons"]
    assert c["macs_ratio"] < 1 and c["realised"] is None and c["realised_min"] is None
    assert "does not have fewer MACs" in c["note"] and c["slower"] == (c["speedup"] < 1)


def test_compare_of_different_input_sizes(models: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    big = _checkpoint(tmp_path / "big.pt", 4, size=64)
    assert main(["bench", str(models[0]), "--compare", str(big), *FAST]) == 2
    _one_line_error(capsys, "dense (baseline) takes 3x32x32 inputs but big takes 3x64x64", "--input-size HxW")
    assert main(["bench", str(models[0]), "--compare", str(big), "--input-size", "48", "--json", *FAST]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [r["input_shape"] for r in payload["results"]] == [[1, 3, 48, 48]] * 2
    assert payload["comparisons"][0]["input_shape"] == [3, 48, 48]


def test_engine_as_positional_or_option(models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(models[0]), "--engine", str(models[0]), "--json", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["label"] == "dense"
    assert main(["bench", *FAST]) == 2
    _one_line_error(capsys, "no model given; pass ENGINE")
    assert main(["bench", str(models[0]), "--engine", str(models[1]), *FAST]) == 2
    _one_line_error(capsys, "two models given", "--compare")


def test_existing_outputs_are_refused_before_measuring_unless_forced(
        models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "bench.csv"
    table.write_text("old")
    assert main(["bench", str(models[0]), "--csv", str(table), *FAST]) == 1
    _one_line_error(capsys, f"--csv {table} already exists; pass --force")
    assert table.read_text() == "old"
    assert main(["bench", str(models[0]), "--csv", str(table), "--force", *FAST]) == 0
    assert table.read_text().startswith("label,")
    for flag in ("--plot", "--export-times", "--csv"):  # a folder where a file is meant
        assert main(["bench", str(models[0]), flag, str(tmp_path), *FAST]) == 1
        _one_line_error(capsys, f"{flag} {tmp_path} is a folder; give a file path")
    times = tmp_path / "t.json"
    (tmp_path / "t.dense.torch.b2.json").write_text("[]")  # one of the per-result files of a sweep
    assert main(["bench", str(models[0]), "--batch", "1,2", "--export-times", str(times), *FAST]) == 1
    _one_line_error(capsys, "t.dense.torch.b2.json already exists")
    assert not (tmp_path / "t.dense.torch.b1.json").exists()


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    assert "Traceback" not in "\n".join(err)
    assert len(err[-1]) <= 300 and all(n in err[-1] for n in needles), err[-1]
    return err[-1]


@pytest.mark.parametrize(("args", "needle"), [
    (["--batch", "0"], "between 1 and"),
    (["--batch", "abc"], "positive integers"),
    (["--iterations", "0"], "--iterations"),
    (["--backend", "tvm"], "valid names: inductor, ort, torch, trt"),
    (["--input-size", "axb"], "input size"),
])
def test_bad_options(models: tuple[Path, Path], args: list[str], needle: str,
                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--engine", str(models[0]), *FAST, *args]) == 2
    assert needle in _one_line_error(capsys)


def test_missing_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--engine", str(tmp_path / "nope.pt"), *FAST]) == 2
    assert "does not exist" in _one_line_error(capsys)


def test_cuda_without_gpu(models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert main(["bench", "--engine", str(models[0]), "--device", "cuda", *FAST]) == 3
    assert "CUDA" in _one_line_error(capsys)


def test_missing_tensorrt(models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    assert main(["bench", "--engine", str(models[0]), "--backend", "trt", *FAST]) == 3
    assert "tensorrt" in _one_line_error(capsys)


def test_missing_backend_does_not_stop_the_others(models: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    assert main(["bench", "--engine", str(models[0]), "--backend", "torch,trt", "--json", *FAST]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert [r["backend"] for r in payload["results"]] == ["torch"]
    assert payload["skipped"][0]["backend"] == "trt"
    assert "skipped dense on trt" in captured.err


def test_inductor_compare_on_cpu(models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "--engine", str(models[0]), "--backend", "inductor", "--compare", str(models[1]),
               "--rounds", "2", "--json", *FAST])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert [(r["label"], r["backend"]) for r in payload["results"]] == [("dense", "inductor"), ("slim", "inductor")]
    assert all(r["prepare_s"] > 0 and r["settings"]["compiled_batches"] == [1] for r in payload["results"])
    (c,) = payload["comparisons"]
    assert c["backend"] == "inductor" and c["macs_ratio"] > 1 and c["realised"] is not None
