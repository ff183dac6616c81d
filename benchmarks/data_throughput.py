"""Throughput of the synthetic scene generator: images per minute at 64x64 (and per sample read).

Usage: python benchmarks/data_throughput.py [--num 2048] [--size 64] [--threads N] [--repeats 3]
Prints the best of ``--repeats`` runs; rendering is deterministic, so runs are comparable.
"""

from __future__ import annotations

import argparse
import time

import torch

from mtlexport.data import SyntheticScenes, generate_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2048)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--max-objects", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="render threads (0 = torch's setting)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threads = args.threads or None
    generate_split(64, args.size, args.size, max_objects=args.max_objects, num_threads=threads)  # warm-up
    wall, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        generate_split(args.num, args.size, args.size, max_objects=args.max_objects, num_threads=threads)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best = min(wall)
    used = threads or torch.get_num_threads()
    print(f"synthetic {args.size}x{args.size}, {args.num} scenes, {used} render thread(s)")
    print(f"generate: {args.num / best * 60:,.0f} images/minute ({best:.2f} s wall, {min(cpu):.2f} s CPU)")
    ds = SyntheticScenes("train", min(args.num, 512), args.size, args.size)
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    per_item = (time.perf_counter() - t0) / len(ds)
    t0 = time.perf_counter()
    ds.get_batch(torch.arange(len(ds)))
    per_batch = (time.perf_counter() - t0) / len(ds)
    print(f"read: __getitem__ {per_item * 1e6:.0f} us/sample, get_batch {per_batch * 1e6:.1f} us/sample "
          f"({per_item / per_batch:.1f}x)")


if __name__ == "__main__":
    main()
