"""Training images/s with 1 and 2 processes (torchrun, DDP) on the same config, side by side.

Each row is one ``torchrun --standalone --nproc-per-node N -m mtlexport train`` job with the same
per-process batch (so 2 processes train on twice the global batch); images/s is the global
training throughput of the last epoch from ``metrics.jsonl`` (all ranks' images over the epoch's
wall time, validation excluded). CPU rows use gloo with ``OMP_NUM_THREADS`` threads per process;
CUDA rows (nccl, one GPU per process) are added only when that many GPUs exist.

    python benchmarks/ddp_scaling.py [--config sample_models/quick.yaml] [--epochs 2] [--num-train 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run(config: Path, nproc: int, device: str, epochs: int, num_train: int, threads: int) -> float:
    """Global training images/s of the last epoch of one torchrun job."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "mtlexport", "train", "--config", str(config), "--out", str(out),
               "--set", f"train.epochs={epochs}", "--set", f"data.num_train={num_train}",
               "--set", f"train.device={device}", "--json"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        job = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        if job.returncode != 0:
            raise SystemExit(f"{nproc}-process {device} run failed:\n{job.stderr[-2000:]}")
        last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
        return float(last["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "sample_models" / "quick.yaml")
    parser.add_argument("--epochs", type=int, default=2, help="the last epoch is timed (the first warms up)")
    parser.add_argument("--num-train", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per CPU process")
    args = parser.parse_args()
    rows = []
    cpus = os.cpu_count() or 1
    for nproc in (1, 2):
        rows.append(("cpu", nproc, run(args.config, nproc, "cpu", args.epochs, args.num_train, args.threads)))
    gpus = torch.cuda.device_count()
    for nproc in (n for n in (1, 2) if n <= gpus):
        rows.append(("cuda", nproc, run(args.config, nproc, "cuda", args.epochs, args.num_train, args.threads)))
    print(f"config {args.config.name}, {args.num_train} train images, {args.threads} thread(s) per CPU process, "
          f"{cpus} CPU cores, {gpus} CUDA device(s)")
    print(f"{'device':<8}{'processes':>10}{'images/s':>12}{'vs 1 process':>14}")
    base = {d: ips for d, n, ips in rows if n == 1}
    for device, nproc, ips in rows:
        print(f"{device:<8}{nproc:>10}{ips:>12.1f}{ips / base[device]:>13.2f}x")
    if gpus == 0:
        print("no CUDA device here: CPU rows only")


if __name__ == "__main__":
    main()
