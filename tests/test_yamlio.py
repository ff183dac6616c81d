"""Config YAML: exponents without a dot are floats, everything else as in safe YAML."""

from __future__ import annotations

import math

import pytest

from mtlexport.train.config import apply_overrides
from mtlexport.yamlio import load_yaml


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1e-5", 1e-5), ("-2E3", -2000.0), ("1.5", 1.5), (".5", 0.5), ("12", 12), ("1_000", 1000), ("abc", "abc"),
     ("'1e-5'", "1e-5"), ("true", True)],
)
def test_scalars(text: str, expected: object) -> None:
    value = load_yaml(text)
    assert value == expected and type(value) is type(expected)


def test_special_floats_and_lists() -> None:
    assert math.isinf(load_yaml(".inf"))
    assert load_yaml("[1e-3, 0, x]") == [0.001, 0, "x"]


def test_override_lambda_in_scientific_notation() -> None:
    out = apply_overrides({"optimizer": {"name": "proxadam"}}, ["optimizer.lambda=1e-5"])
    assert out["optimizer"]["lambda"] == pytest.approx(1e-5)
