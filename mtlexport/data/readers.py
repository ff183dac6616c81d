"""File readers for the real-dataset loaders: every failure becomes a one-line DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtlexport.errors import DataError


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def require_dir(path: Path, what: str, fix: str) -> Path:
    """Return ``path`` if it is a directory, else raise DataError naming it and ``fix``."""
    if not path.is_dir():
        raise DataError(f"{what} {path} does not exist or is not a folder; {fix}")
    return path


def require_root(root: str | Path | None, dataset: str, layout: str) -> Path:
    """The dataset root as a Path; DataError when unset or not a folder."""
    if root is None:
        raise DataError(f"dataset {dataset!r} needs data.root: the folder that holds {layout}")
    fix = f"set data.root to the folder that holds {layout}"
    return require_dir(Path(root).expanduser(), f"{dataset} root", fix)


def require_files(paths: list[Path], fix: str) -> None:
    """Raise DataError naming the first missing file of ``paths`` (and how many are missing)."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"missing file {missing[0]}{more}; {fix}")


def check_target_size(target: tuple[int, ...], image: tuple[int, ...], path: Path, image_path: Path) -> bool:
    """Refuse a label whose shape cannot belong to its image (another aspect ratio, by more than
    2% or one pixel); return True when it only has another resolution (it is then resized)."""
    (th, tw), (ih, iw) = tuple(target[:2]), tuple(image[:2])
    if (th, tw) == (ih, iw):
        return False
    if abs(th * iw - tw * ih) > max(0.02 * ih * iw, th + tw):
        raise DataError(f"{path} is {th}x{tw} but its image {image_path.name} is {ih}x{iw} (another aspect "
                        "ratio): the label does not belong to that image; replace it or remove the id")
    return True


def read_numbered_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty, stripped lines of a text file with their 1-based line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"missing file {path}; create it or check data.root") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} ({_reason(exc)}); replace the file") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text file."""
    return [line for _, line in read_numbered_lines(path)]


def _open_image(path: Path):  # noqa: ANN202 - PIL type kept private
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise DataError(f"missing file {path}; restore it or remove its id from the split") from None
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot decode image {path} ({_reason(exc)}); replace the file") from None


def read_rgb(path: Path) -> Tensor:
    """An image file as a uint8 3xHxW RGB tensor."""
    img = _open_image(path)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def read_label_png(path: Path) -> np.ndarray:
    """A single-channel 8-bit label PNG as an HxW uint8 array."""
    img = _open_image(path)
    if img.mode not in ("L", "P"):
        raise DataError(
            f"label image {path} has mode {img.mode}; expected a single-channel 8-bit PNG "
            "(values 0 = void, 1..N = classes)"
        )
    return np.asarray(img, dtype=np.uint8)


def read_npy(path: Path, shape: str, ndim: tuple[int, ...], channels: int | None = None) -> np.ndarray:
    """A numeric ``.npy`` array with ``ndim`` dimensions (``channels`` in the last one)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"missing file {path}; restore it or remove its id from the split") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read array {path} ({_reason(exc)}); re-save it with numpy.save") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"array {path} is not numeric; expected {shape}")
    bad_channels = channels is not None and arr.ndim >= 1 and arr.shape[-1] != channels
    if arr.ndim not in ndim or bad_channels or 0 in arr.shape:
        raise DataError(f"array {path} has shape {tuple(arr.shape)}; expected {shape}")
    return arr
