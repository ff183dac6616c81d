"""The files of a run folder and the helpers that keep them consistent across a kill and a resume.

``last.pt`` and ``best.pt`` (checkpoints), ``metrics.jsonl`` and ``sparsity.jsonl`` (one line per
epoch), ``config.yaml`` (the resolved config). ``truncate_jsonl`` and ``stored_epoch`` serve the
repair ``--resume`` makes after a process was killed between writing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtlexport.errors import DataError, OutputError
from mtlexport.io import write_text
from mtlexport.train.checkpoint import load_checkpoint
from mtlexport.train.config import TrainConfig
from mtlexport.train.loaders import open_split

LAST, BEST, METRICS, SPARSITY, CONFIG = "last.pt", "best.pt", "metrics.jsonl", "sparsity.jsonl", "config.yaml"
RUN_FILES = (LAST, BEST, METRICS, SPARSITY, CONFIG)


def truncate_jsonl(path: Path, max_epoch: int) -> set[int]:
    """Drop lines of epochs after ``max_epoch`` (written after the checkpoint a run resumes from),
    repeated epochs and a line cut short by a kill; return the epochs kept."""
    import json

    if not path.is_file():
        return set()
    keep, epochs = [], set()
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        epoch = record.get("epoch", 0) if isinstance(record, dict) else None
        if isinstance(epoch, int) and epoch <= max_epoch and epoch not in epochs:
            keep.append(line)
            epochs.add(epoch)
    write_text(path, "".join(line + "\n" for line in keep))
    return epochs


def stored_epoch(path: Path) -> int | None:
    """The epoch of the checkpoint at ``path``; None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path).epoch
    except Exception:  # a damaged file is what the repair replaces
        return None


def plain_json(obj: Any) -> Any:
    """``obj`` as data ``torch.load(weights_only=True)`` reads back (non-finite floats as None)."""
    from mtlexport.io import json_safe

    return json_safe(obj)[0]


def already_a_run(out: Path) -> OutputError:
    return OutputError(f"{out} already holds a run ({LAST}); pass --resume to continue it, --force to replace it, "
                       "or choose another --out")


def open_checked(config: TrainConfig, split: str) -> Any:
    """Open ``split`` and read its first sample, so missing or malformed data fails before training."""
    try:
        dataset = open_split(config.data, split)
    except DataError as exc:
        raise DataError(f"the {split} split: {exc}") from None
    if len(dataset) > 0:  # type: ignore[arg-type]
        dataset[0]
    return dataset
