"""DataConfig validation, round trip and the factory's error messages."""

from __future__ import annotations

import pytest

from mtlexport.data import DATASETS, DataConfig, build_dataset, dataset_info
from mtlexport.errors import ConfigError


def test_defaults_round_trip() -> None:
    cfg = DataConfig()
    assert cfg.name == "synthetic" and (cfg.height, cfg.width) == (64, 64)
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
    assert DataConfig.from_dict(None) == cfg
    assert cfg.to_dict()["attributes"] == []


def test_from_dict_accepts_yaml_lists() -> None:
    cfg = DataConfig.from_dict({"name": "celebamask_hq", "root": "/x", "attributes": ["Male"], "height": 32})
    assert cfg.attributes == ("Male",) and cfg.height == 32
    assert DataConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"heigth": 64}, "heigth"),
        ({"height": "64"}, "data.height"),
        ({"width": True}, "data.width"),
        ({"height": 60}, "multiple of 8"),
        ({"width": 0}, "multiple of 8"),
        ({"num_train": -1}, "data.num_train"),
        ({"max_objects": 0}, "data.max_objects"),
        ({"attributes": "Male"}, "data.attributes"),
        ({"attributes": ["a", "A"]}, "duplicates"),
        ({"root": 3}, "data.root"),
        ({"name": ""}, "data.name"),
    ],
)
def test_bad_values_raise_config_error(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        DataConfig.from_dict(data)


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        DataConfig.from_dict(["synthetic"])  # type: ignore[arg-type]


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="celebamask_hq, factory, nyuv2, synthetic"):
        build_dataset(DataConfig(name="imagenet"), "train")
    with pytest.raises(ConfigError, match="synthetic"):
        dataset_info(DataConfig(name="imagenet"))


def test_bad_split() -> None:
    with pytest.raises(ConfigError, match="train, val, test"):
        build_dataset(DataConfig(num_train=1), "validation")


def test_registry_names() -> None:
    assert DATASETS.names() == ["celebamask_hq", "factory", "nyuv2", "synthetic"]


def test_info_without_data() -> None:
    info = dataset_info(DataConfig(name="nyuv2", root="/does/not/exist"))
    assert info["num_classes"] == 40 and info["label_keys"] == ("segmentation", "depth", "normals")
    info = dataset_info(DataConfig(name="celebamask_hq"))
    assert info["attribute_names"] == ("male", "smiling") and info["num_classes"] == 3
    info = dataset_info(DataConfig(attributes=("has_sphere",)))
    assert info["label_keys"] == ("segmentation", "depth", "normals", "has_sphere")
