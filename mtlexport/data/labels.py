"""Label conventions shared by every dataset: the void index, split names, class names."""

from __future__ import annotations

from mtlexport.errors import ConfigError

#: Segmentation value of void / unlabelled pixels (ignored by the loss and the metrics).
IGNORE_INDEX = 255

#: The split names every dataset accepts.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Classes of the synthetic scenes, in label order.
SYNTHETIC_CLASSES: tuple[str, ...] = ("wall", "floor", "ceiling", "sphere", "box", "cylinder")

#: Binary attributes of the synthetic scenes (sample keys), in label order.
SYNTHETIC_ATTRIBUTES: tuple[str, ...] = ("has_sphere", "is_cluttered", "light_from_left")

#: The 40 NYUv2 classes (Gupta et al.), labels 1..40 on disk, 0..39 in samples.
NYUV2_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip

#: Classes of the formatted CelebAMask-HQ masks.
CELEBA_CLASSES: tuple[str, ...] = ("background", "hair", "skin")

#: Attributes used by the Less-is-More CelebA experiments (names as in the annotation file).
CELEBA_DEFAULT_ATTRIBUTES: tuple[str, ...] = ("Male", "Smiling")


def check_split(split: str) -> str:
    """Return ``split`` if it is one of ``SPLITS``, else raise a ConfigError."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split
