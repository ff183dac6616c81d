"""Shared test settings: deterministic, CPU-only, small thread pools."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MTLEXPORT_NO_COLOR", "1")
# Tiny test models gain nothing from a second thread, and on a busy 2-core machine
# two OpenMP threads per process make each step many times slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU and TensorRT tests cleanly where they cannot run."""
    has_cuda = torch.cuda.is_available()
    try:
        import tensorrt  # noqa: F401

        has_trt = has_cuda
    except ImportError:
        has_trt = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs the tensorrt package and a CUDA GPU"))
