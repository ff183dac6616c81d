"""Config validation: one-line errors naming the key path, overrides, round trips."""

from __future__ import annotations

import pytest

from mtlexport.errors import ConfigError
from mtlexport.train import TrainConfig, apply_overrides, resolve_config

from .conftest import tiny_config_dict


def test_round_trip(tiny: dict) -> None:
    cfg = TrainConfig.from_dict(tiny)
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert TrainConfig.from_dict(yaml_load(cfg.to_yaml())) == cfg


def yaml_load(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def test_defaults_and_lambda_key(tiny: dict) -> None:
    tiny["optimizer"] = {"name": "proxadam", "lambda": 1e-4}
    cfg = TrainConfig.from_dict(tiny)
    assert cfg.optimizer.lam == 1e-4 and cfg.optimizer.name == "proxadam"
    assert cfg.to_dict()["optimizer"]["lambda"] == 1e-4
    assert cfg.loss_weighting.name == "uncertainty"
    assert TrainConfig.from_dict({"model": tiny["model"]}).optimizer.name == "adamw"


@pytest.mark.parametrize(("override", "message"), [
    ("optimizer.lr=-1", r"^optimizer\.lr must be a positive number, got -1$"),
    ("optimizer.lr=fast", "optimizer.lr must be a positive number, got 'fast'"),
    ("optimizer.name=sgd", "optimizer.name must be one of adamw, proxadam, proxsgd, got 'sgd'"),
    ("optimizer.betas=[0.9]", "optimizer.betas must be a list of two numbers"),
    ("optimizer.lambda=0.001", "optimizer.lambda is 0.001 but adamw does not apply the group lasso"),
    ("train.epochs=0", "train.epochs must be a positive integer, got 0"),
    ("train.epochs=1.5", "train.epochs must be a positive integer, got 1.5"),
    ("train.deterministic=maybe", "train.deterministic must be true or false"),
    ("train.device=tpu", "train.device must be one of auto, cpu, cuda"),
    ("train.monitor=depth", "train.monitor must be 'loss' or 'task.metric'"),
    ("train.lr=1", r"unknown key\(s\) \['lr'\] in train; valid keys"),
    ("schedule.name=linear", "schedule.name must be one of none, cosine, step, poly"),
    ("loss_weighting.weights={seg: 1}", r"loss_weighting.weights names unknown task\(s\) \['seg'\]"),
    ("loss_weighting.weights={depth: -1}", "loss_weighting.weights.depth must be a number >= 0"),
    ("data.height=30", "data.height must be a positive multiple of 8"),
    ("model.backbone.width=3", r"unknown key\(s\) \['width'\] in model.backbone"),
    ("trainer.epochs=3", r"unknown section\(s\) \['trainer'\]"),
])
def test_errors_name_the_key(tiny: dict, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        TrainConfig.from_dict(apply_overrides(tiny, [override]))
    assert "\n" not in str(info.value)


def test_overrides_parse_yaml_and_index_lists(tiny: dict) -> None:
    data = apply_overrides(tiny, ["train.epochs=3", "optimizer.betas=[0.8, 0.9]",
                                  "model.tasks.0.head.width=4", "loss_weighting.name=fixed"])
    cfg = TrainConfig.from_dict(data)
    assert cfg.train.epochs == 3 and cfg.optimizer.betas == (0.8, 0.9)
    assert cfg.model.tasks[0].head.width == 4 and cfg.loss_weighting.name == "fixed"
    assert tiny["train"]["epochs"] == 2  # the input is not modified
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(tiny, ["train.epochs"])
    with pytest.raises(ConfigError, match="has no item 9"):
        apply_overrides(tiny, ["model.tasks.9.name=x"])


def test_from_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        TrainConfig.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.from_file(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_file(bad)


def test_resolve_fills_classes_and_attributes() -> None:
    data = tiny_config_dict()
    data["model"]["tasks"][3]["attributes"] = ["HAS_SPHERE"]
    cfg = resolve_config(TrainConfig.from_dict(data))
    assert cfg.model.task("segmentation").num_outputs == 6
    assert cfg.model.task("attributes").attributes == ("has_sphere",)
    assert cfg.data.attributes == ("HAS_SPHERE",)
    assert cfg.model.task("depth").head.kind == "aspp"


def test_resolve_errors() -> None:
    data = tiny_config_dict()
    data["model"]["tasks"][0]["num_outputs"] = 5
    with pytest.raises(ConfigError, match=r"num_outputs is 5 but dataset 'synthetic' has 6 classes"):
        resolve_config(TrainConfig.from_dict(data))
    info = {"num_classes": 6, "attribute_names": ("has_sphere",), "label_keys": ("segmentation", "depth", "normals")}
    data = tiny_config_dict()
    data["model"]["tasks"][3]["attributes"] = ["smiling"]
    with pytest.raises(ConfigError, match=r"attributes \['smiling'\] are not in dataset"):
        resolve_config(TrainConfig.from_dict(data), info)
    info = {"num_classes": None, "attribute_names": (), "label_keys": ("depth",)}
    with pytest.raises(ConfigError, match="has no segmentation labels"):
        resolve_config(TrainConfig.from_dict(tiny_config_dict()), info)
