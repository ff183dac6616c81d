"""``benchmarks/gpu_check.py --device cpu --quick``: the CI run of the GPU check script (the
CUDA-only parts record that they were skipped); its JSON file holds every section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_quick_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout and "realised" in proc.stdout
    result = json.loads(out.read_text())
    meta = result["meta"]
    assert meta["device"] == "cpu" and meta["quick"] is True and meta["batches"] == [1]
    for name in ("optimizer", "training", "latency"):
        assert result[name]["status"] == "ok", (name, result[name]["status"])
    assert result["host_sync"]["status"].startswith("skipped: needs CUDA")
    rows = {(r["model"], r["config"]): r for r in result["latency"]["rows"]}
    assert set(rows) == {("quick", "eager-fp32"), ("quick", "inductor")}
    for row in rows.values():
        assert row["batch"] == 1 and row["macs_ratio"] > 1.5  # the committed slim sample: 1.95x fewer MACs
        assert row["realised"] == row["speedup"] / row["macs_ratio"]
    assert rows[("quick", "inductor")]["dense_compile_s"] > 0 and rows[("quick", "eager-fp32")]["dense_compile_s"] is None
    assert result["latency"]["skipped"] == [{"what": "quick/eager-fp16-cl", "reason": "fp16 autocast needs CUDA"}]
    assert result["optimizer"]["proxadam_ms"] > 0 and result["optimizer"]["adamw_ms"] > 0
    assert {r["optimizer"] for r in result["training"]["rows"]} == {"adamw", "proxadam"}


def test_gpu_check_refuses_cuda_without_a_gpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and not (tmp_path / "x.json").exists()
