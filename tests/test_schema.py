"""One validation mechanism for model spec, data config and training sections: the same message
shapes everywhere, with the full key path."""

from __future__ import annotations

import pytest

from mtlexport.data.config import DataConfig
from mtlexport.errors import ConfigError
from mtlexport.models.spec import BackboneSpec, HeadSpec, ModelSpec
from mtlexport.schema import parse_section
from mtlexport.train.config import OptimizerConfig, TrainConfig, TrainSettings

TASK = {"name": "d", "type": "depth"}


def _message(fn, *args) -> str:  # noqa: ANN001
    with pytest.raises(ConfigError) as info:
        fn(*args)
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(("build", "message"), [
    (lambda: ModelSpec.from_dict({"backbone": {"base_width": 0}, "tasks": [TASK]}),
     "model.backbone.base_width must be a positive integer, got 0"),
    (lambda: DataConfig.from_dict({"num_val": -2}), "data.num_val must be an integer >= 0, got -2"),
    (lambda: TrainConfig.from_dict({"model": {"backbone": {}, "tasks": [TASK]}, "train": {"batch_size": 0}}),
     "train.batch_size must be a positive integer, got 0"),
    (lambda: ModelSpec.from_dict({"backbone": {}, "tasks": [TASK, {"name": "s", "type": "seg", "head": {"rates": [0]}}]}),
     "model.tasks[1].head.rates must be a list of positive dilation rates, got [0]"),
    (lambda: ModelSpec.from_dict({"backbone": {}, "tasks": [TASK], "widths": {"a.b": [1, "x"]}}),
     "model.widths.a.b must be a list of layer widths (integers >= 0), got [1, 'x']"),
])
def test_bad_values_name_the_key_path(build, message: str) -> None:  # noqa: ANN001
    assert _message(build) == message


@pytest.mark.parametrize(("build", "where"), [
    (lambda: ModelSpec.from_dict({"backbone": {"depth": 3}, "tasks": [TASK]}), "model.backbone"),
    (lambda: ModelSpec.from_dict({"backbone": {}, "tasks": [{**TASK, "colour": 1}]}), "model.tasks[0]"),
    (lambda: DataConfig.from_dict({"colour": 1}), "data"),
    (lambda: parse_section(OptimizerConfig, "optimizer", {"colour": 1}), "optimizer"),
])
def test_unknown_keys_list_the_valid_ones(build, where: str) -> None:  # noqa: ANN001
    text = _message(build)
    assert text.startswith(f"unknown key(s) ['colour'] in {where}; valid keys: [") or "'depth'" in text


def test_required_keys_and_yaml_aliases() -> None:
    assert _message(lambda: ModelSpec.from_dict({"tasks": [TASK]})) == "model needs 'backbone'"
    assert _message(lambda: ModelSpec.from_dict({"backbone": {}, "tasks": [{"name": "x"}]})) == "model.tasks[0] needs 'type'"
    assert parse_section(OptimizerConfig, "optimizer", {"lambda": 0.5, "name": "proxadam"}).lam == 0.5
    assert "'lambda'" in _message(lambda: parse_section(OptimizerConfig, "optimizer", {"lam": 1}))


def test_direct_construction_is_validated_the_same_way() -> None:
    assert _message(lambda: BackboneSpec(output_stride=4)) == "model.backbone.output_stride must be one of 8, 16, 32, got 4"
    assert _message(lambda: DataConfig(height=12)) == "data.height must be a positive multiple of 8, got 12"
    assert _message(lambda: TrainSettings(epochs=0)) == "train.epochs must be a positive integer, got 0"
    assert HeadSpec(rates=[1, 2]).rates == (1, 2) and BackboneSpec(width_mult=1).width_mult == 1.0
    assert isinstance(BackboneSpec(width_mult=1).width_mult, float)
