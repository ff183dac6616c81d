"""Surgery time for the paper's model: dilated ResNet-50 (deep stem, OS8) with ASPP heads for
segmentation, depth and normals, ~70% of the backbone's input-channel groups zeroed.

Prints the time of every stage side by side. Graph tracing runs at a small input (the graph does
not depend on the size); verification forward passes dominate, so they run at ``--verify-size``
(64 by default: every layer and every coupling is exercised, at 1/16 of the 256x256 cost); MACs
are counted at ``--size`` on a weightless copy.

    python benchmarks/slim_time.py [--size 256] [--verify-size 64] [--sparsity 0.7]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from mtlexport.models import ModelSpec, create_model
from mtlexport.surgery import slim_model

PAPER_SPEC = {
    "backbone": {"name": "resnet50", "deep_stem": True, "output_stride": 8},
    "tasks": [
        {"name": "segmentation", "type": "segmentation", "num_outputs": 40},
        {"name": "depth", "type": "depth"},
        {"name": "normals", "type": "normals"},
    ],
}


def zero_backbone_groups(model: nn.Module, share: float, seed: int) -> float:
    """Zero ``share`` of every backbone conv's input-channel groups, as the proximal step would."""
    gen = torch.Generator().manual_seed(seed)
    zero = total = 0
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.startswith("backbone.") and isinstance(mod, nn.Conv2d) and mod.in_channels > 3:
                mask = torch.rand(mod.in_channels, generator=gen) < share
                mod.weight[:, mask] = 0
                zero += int(mask.sum())
                total += mod.in_channels
    return zero / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="input side for the MAC count")
    parser.add_argument("--verify-size", type=int, default=64, help="input side for the verification passes")
    parser.add_argument("--trace-size", type=int, default=32, help="input side for the graph trace")
    parser.add_argument("--sparsity", type=float, default=0.7, help="share of zeroed backbone input groups")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model = create_model(ModelSpec.from_dict(PAPER_SPEC)).eval()
    share = zero_backbone_groups(model, args.sparsity, seed=0)
    build_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(1)
    verify = {"random": torch.randn(1, 3, args.verify_size, args.verify_size, generator=gen)}
    example = torch.randn(1, 3, args.trace_size, args.trace_size, generator=gen)

    t0 = time.perf_counter()
    torch.relu(torch.empty(1, device="meta"))  # meta tensors import torch's Python kernels once per process
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = slim_model(model, example, verify, profile_shape=(3, args.size, args.size))
    wall = time.perf_counter() - t0

    print(f"model: dilated ResNet-50 OS8 + 3 ASPP heads, {torch.get_num_threads()} threads "
          f"(built and sparsified in {build_s:.1f} s, {share:.0%} zero groups)")
    print(f"trace {args.trace_size}px, verify {args.verify_size}px ({report.dtype}), MACs at {args.size}px")
    print(f"{'stage':<14}{'seconds':>9}{'share':>8}")
    for key, value in report.seconds.items():
        if key != "total":
            print(f"{key:<14}{value:>9.2f}{value / wall:>8.0%}")
    print(f"{'surgery total':<14}{wall:>9.2f}   (target < 10 s)")
    print(f"{'+ meta warm-up':<14}{warm:>9.2f}   (once per process, for the MAC count; cold total {wall + warm:.2f} s)")
    print(f"params  {report.params_before / 1e6:8.2f} M -> {report.params_after / 1e6:8.2f} M "
          f"(x{report.params_after / report.params_before:.3f})")
    print(f"MACs    {report.macs_before / 1e9:8.2f} G -> {report.macs_after / 1e9:8.2f} G "
          f"(x{report.macs_after / report.macs_before:.3f}) per {args.size}x{args.size} sample")
    print(f"group sparsity {report.group_sparsity:.1%}, realised {report.realised:.1%}, removed "
          f"{report.removed} of {report.removable} removable channels, kept {report.kept}")
    print(f"max relative output error {report.max_rel_error:.2e} (tol {report.tol:g})")


if __name__ == "__main__":
    main()
