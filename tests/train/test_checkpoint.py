"""The checkpoint format: weights-only round trip, stripping, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtlexport.errors import CheckpointError
from mtlexport.models import ModelSpec, create_model
from mtlexport.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, strip_training_state

SPEC = ModelSpec.from_dict({
    "backbone": {"name": "resnet18", "base_width": 8},
    "tasks": [{"name": "seg", "type": "segmentation", "num_outputs": 3, "head": {"width": 8, "rates": [1]}}],
})


def _ckpt() -> Checkpoint:
    model = create_model(SPEC)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3, 32, 32))["seg"].sum().backward()
    opt.step()
    return Checkpoint(spec=SPEC, state_dict=model.state_dict(), optimizer=opt.state_dict(), epoch=3,
                      extra={"rng": {"torch": torch.get_rng_state()}, "note": "kept"})


def test_round_trip_is_weights_only_and_rebuilds(tmp_path: Path) -> None:
    ckpt = _ckpt()
    path = save_checkpoint(tmp_path / "a.pt", ckpt)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "mtlexport.checkpoint" and raw["epoch"] == 3
    model = load_checkpoint(path).build_model()
    x = torch.randn(1, 3, 32, 32)
    reference = create_model(SPEC).eval()
    reference.load_state_dict(ckpt.state_dict)
    assert torch.equal(model(x)["seg"], reference(x)["seg"])


def test_strip_training_state_drops_optimizer_and_rng(tmp_path: Path) -> None:
    full = save_checkpoint(tmp_path / "full.pt", _ckpt())
    small = save_checkpoint(tmp_path / "small.pt", strip_training_state(load_checkpoint(full)))
    loaded = load_checkpoint(small)
    assert loaded.optimizer is None and "rng" not in loaded.extra and loaded.extra["note"] == "kept"
    assert small.stat().st_size < full.stat().st_size


def test_refuses_garbage_and_pickled_modules(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a checkpoint written by torch.save"):
        load_checkpoint(garbage)
    pickled = tmp_path / "module.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)
    with pytest.raises(CheckpointError, match="never unpickles arbitrary objects"):
        load_checkpoint(pickled)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not an mtlexport checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
