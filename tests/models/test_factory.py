"""Your own model: factory names, specs that record them, the trust rule, plain state dicts,
and training a factory model on factory data with a custom task and loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtlexport.errors import CheckpointError, ConfigError, DataError
from mtlexport.models import BackboneSpec, ModelSpec, create_model
from mtlexport.models.factory import (
    build_user_model, call_factory, check_factory_name, trusted_factory, weights_checkpoint,
)
from mtlexport.train import TrainConfig, train
from mtlexport.train.checkpoint import load_checkpoint

FACTORY = "tests.models.user_model:build"
TASKS = [{"name": "seg", "type": "segmentation", "num_outputs": 3}, {"name": "cls", "type": "custom"}]


def _spec(**extra: object) -> ModelSpec:
    return ModelSpec.from_dict({"factory": FACTORY, "tasks": TASKS, **extra})


@pytest.mark.parametrize("text", ["os", "a b:c", ":fn", "pkg.mod:", "pkg.mod:fn()", "1pkg:fn", 3])
def test_factory_names_are_checked_without_importing(text: object) -> None:
    with pytest.raises(ConfigError, match="must look like package.module:function"):
        check_factory_name(text)


def test_spec_records_factory_and_kwargs_and_round_trips() -> None:
    spec = _spec(kwargs={"width": 4})
    data = spec.to_dict()
    assert data["factory"] == FACTORY and data["kwargs"] == {"width": 4}
    assert ModelSpec.from_dict(data) == spec
    zoo = ModelSpec.from_dict({"backbone": {}, "tasks": TASKS[:1]}).to_dict()
    assert "factory" not in zoo and "kwargs" not in zoo  # zoo checkpoints are unchanged


def test_spec_rules() -> None:
    with pytest.raises(ConfigError, match="remove model.backbone"):
        _spec(backbone={"name": "resnet34"})
    with pytest.raises(ConfigError, match="model.kwargs are the arguments of model.factory"):
        ModelSpec(backbone=BackboneSpec(), tasks=_spec().tasks, kwargs={"width": 4})
    with pytest.raises(ConfigError, match="model.factory must look like package.module:function"):
        _spec(factory="not a name")


def test_build_user_model_applies_kwargs_and_widths() -> None:
    model = build_user_model(_spec(kwargs={"width": 6}, widths={"trunk.0": [3, 4, 1]}), FACTORY)
    assert model.trunk[0].out_channels == 4 and model.trunk[3].in_channels == 6
    assert create_model(_spec(), FACTORY).seg.in_channels == 8


def test_trust_rule_messages() -> None:
    with pytest.raises(CheckpointError, match="never imports code a file names: pass --model"):
        trusted_factory("os:system", None, "x.pt")
    with pytest.raises(CheckpointError, match="was built by factory 'os:system', not mod:build"):
        trusted_factory("os:system", "mod:build", "x.pt")
    with pytest.raises(CheckpointError, match="built-in mtlexport model.*drop --model mod:build"):
        trusted_factory("", "mod:build", "x.pt")
    with pytest.raises(CheckpointError, match="pass --model"):
        create_model(_spec())


def test_factory_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz'.*PYTHONPATH"):
        call_factory("no_such_module_xyz:build")
    with pytest.raises(ConfigError, match="has no callable 'nothing'"):
        call_factory("tests.models.user_model:nothing")
    with pytest.raises(ConfigError, match="returned a int, not a torch.nn.Module"):
        call_factory("tests.models.user_model:not_a_module")
    with pytest.raises(ConfigError, match="does not take these kwargs"):
        call_factory(FACTORY, {"depth": 3})


def test_plain_state_dict_becomes_a_checkpoint(tmp_path: Path) -> None:
    model = call_factory(FACTORY)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    ckpt = weights_checkpoint(tmp_path / "w.pt", FACTORY, (16, 16))
    assert ckpt.spec.task_names == ("seg", "cls") and {t.type for t in ckpt.spec.tasks} == {"custom"}
    assert ckpt.spec.in_channels == 3 and ckpt.spec.factory == FACTORY
    rebuilt = ckpt.build_model(factory=FACTORY)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt(x)["seg"], model.eval()(x)["seg"])
    torch.save({"trunk.0.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not match the model tests.models.user_model:build builds"):
        weights_checkpoint(tmp_path / "bad.pt", FACTORY)


def _config(tmp_path: Path, **model: object) -> TrainConfig:
    return TrainConfig.from_dict({
        "model": {"factory": FACTORY, "tasks": [TASKS[0], {"name": "cls", "type": "custom",
                                                          "loss": "tests.models.user_model:bright_loss"}], **model},
        "data": {"name": "factory", "factory": "tests.data.user_data:splits", "kwargs": {"n": 8}, "height": 16,
                 "width": 16},
        "train": {"epochs": 1, "batch_size": 4},
        "optimizer": {"name": "proxadam", "lambda": 0.01, "grouping": "coupled"},
    })


def test_train_a_factory_model_on_factory_data_with_a_custom_loss(tmp_path: Path) -> None:
    result = train(_config(tmp_path, kwargs={"width": 6}), tmp_path / "run")
    assert result.epochs_run == 1 and set(result.best_metrics) == {"seg", "cls"}
    assert result.best_metrics["cls"]["loss"] > 0  # the custom task's loss, from the user's function
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt.spec.factory == FACTORY and ckpt.spec.kwargs == {"width": 6} and ckpt.spec.in_channels == 3
    assert "group_structure" in ckpt.extra  # coupled groups of the user's model
    model = ckpt.build_model(factory=FACTORY)
    assert model.trunk[0].out_channels == 6


def test_model_outputs_must_match_the_tasks(tmp_path: Path) -> None:
    config = _config(tmp_path)
    bad = TrainConfig.from_dict({**config.to_dict(), "model": {
        **config.model.to_dict(), "tasks": [TASKS[0], {"name": "other", "type": "custom", "loss": "a.b:c"}]}})
    with pytest.raises(ConfigError, match=r"returned \['cls', 'seg'\].*missing \['other'\]"):
        train(bad, tmp_path / "run")


def test_from_file_with_model_option(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {tasks: [{name: seg, type: segmentation, num_outputs: 3}]}\n")
    assert TrainConfig.from_file(path, factory=FACTORY).model.factory == FACTORY
    path.write_text(f"model: {{factory: '{FACTORY}', tasks: [{{name: seg, type: segmentation}}]}}\n")
    with pytest.raises(ConfigError, match="--model other.mod:fn differs from model.factory"):
        TrainConfig.from_file(path, factory="other.mod:fn")


def test_factory_data_size_must_match_the_config() -> None:
    from mtlexport.data import DataConfig, dataset_info

    with pytest.raises(DataError, match="gives 16x16 images but data.height x data.width is 32x32; set data.height: 16"):
        dataset_info(DataConfig(name="factory", factory="tests.data.user_data:splits", height=32, width=32))
    with pytest.raises(ConfigError, match="data.name factory needs data.factory"):
        DataConfig(name="factory")


def test_checkpoint_data_factories_are_never_imported() -> None:
    from mtlexport.data.samples import real_images

    images, note = real_images({"name": "factory", "factory": "os:system", "kwargs": {"command": "exit 1"}}, 2, 16, 16)
    assert images is None and "imports only when you name it" in (note or "")


def test_load_slim_state_dict_needs_the_factory(tmp_path: Path) -> None:
    from mtlexport.surgery import load_slim_state_dict

    model = call_factory(FACTORY)
    torch.save({"format": "mtlexport.slim_state_dict", "format_version": 1, "factory": "os:system", "widths": {},
                "state_dict": model.state_dict()}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="pass --model"):
        load_slim_state_dict(tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="not tests.models.user_model:build"):
        load_slim_state_dict(tmp_path / "s.pt", FACTORY)
    assert isinstance(load_slim_state_dict(tmp_path / "s.pt", lambda: call_factory(FACTORY)), torch.nn.Module)


@pytest.mark.parametrize("method", ["group_lasso", "disparse", "adapmtl"])
def test_every_sparsifier_trains_a_factory_model_and_slim_removes_its_zeros(method: str, tmp_path: Path) -> None:
    from mtlexport.surgery import slim_checkpoint

    raw = _config(tmp_path).to_dict()
    raw["optimizer"] = {"name": "adamw"}
    raw["sparsifier"] = {"name": method, "target_macs": 0.5}
    raw["train"]["epochs"] = 2
    result = train(TrainConfig.from_dict(raw), tmp_path / "run")
    assert result.sparsity["macs_ratio"] <= 0.5 + 0.1
    report = slim_checkpoint(tmp_path / "run" / "best.pt", factory=FACTORY)
    assert report.passed and report.removed == report.removable > 0
