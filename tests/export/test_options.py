"""Option parsing and validation: every bad argument is a one-line ConfigError."""

from __future__ import annotations

import pytest

from mtlexport.errors import ConfigError
from mtlexport.export.options import BatchRange, ExportOptions, resolve_size


def test_batch_parse_range_and_fixed() -> None:
    assert BatchRange.parse("1:4:8") == BatchRange(1, 4, 8)
    assert BatchRange.parse("3") == BatchRange(3, 3, 3)
    assert BatchRange(2, 2, 4).shape("max", 3, 32, 32) == (4, 3, 32, 32)


@pytest.mark.parametrize("text, words", [
    ("8:4:1", "larger than MAX"),
    ("1:9:8", r"OPT \(9\) must lie between"),
    ("0:1:2", "positive"),
    ("1:2", "MIN:OPT:MAX"),
    ("a:b:c", "integers"),
])
def test_batch_parse_rejects(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        BatchRange.parse(text)


@pytest.mark.parametrize("kwargs, words", [
    ({"precision": "int8"}, "unknown precision"),
    ({"opset": 16}, "between 17 and 21"),
    ({"opset": 22}, "between 17 and 21"),
    ({"height": 0}, "positive"),
    ({"width": -32}, "positive"),
    ({"trt_version": 9}, "trt-version"),
    ({"exporter": "tf"}, "unknown exporter"),
])
def test_options_reject(kwargs: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ExportOptions(**kwargs)


def test_resolve_size_prefers_options_then_data_then_default() -> None:
    assert resolve_size(ExportOptions(height=64, width=96), {"height": 32, "width": 32}, 8) == (64, 96)
    assert resolve_size(ExportOptions(), {"height": 48, "width": 40}, 8) == (48, 40)
    assert resolve_size(ExportOptions(), None, 8) == (256, 256)


def test_resolve_size_rejects_sizes_not_divisible_by_stride() -> None:
    with pytest.raises(ConfigError, match="not divisible by the backbone's output stride 16; use e.g. 32"):
        resolve_size(ExportOptions(height=36, width=32), None, 16)


def test_options_to_dict_is_plain() -> None:
    d = ExportOptions(batch=BatchRange(1, 2, 4)).to_dict()
    assert d["batch"] == {"min": 1, "opt": 2, "max": 4} and d["precision"] == "fp32"


def test_trt_target_follows_request_then_installed_then_the_extra() -> None:
    from mtlexport.export.options import DEFAULT_TRT_VERSION, choose_trt_major

    assert choose_trt_major(10, 11) == (10, "requested")
    assert choose_trt_major(None, 10) == (10, "installed")
    assert choose_trt_major(None, 11) == (11, "installed")
    assert choose_trt_major(None, 12) == (11, "installed")  # newest supported
    assert choose_trt_major(None, None) == (DEFAULT_TRT_VERSION, "default") == (11, "default")
    assert ExportOptions().tf32 is True


def test_default_fp16_export_without_tensorrt_has_no_fp16_flag() -> None:
    """An fp16 folder exported with defaults must build under the trtexec the trt extra installs (11)."""
    from mtlexport.export import trtexec
    from mtlexport.export.options import choose_trt_major

    major, _ = choose_trt_major(ExportOptions(precision="fp16").trt_version, None)
    flags = trtexec.build_flags(major, "fp16", BatchRange(), (3, 64, 64), 4096, 3)
    assert "--fp16" not in flags and "--onnx=model.fp16.onnx" in flags
