"""``ExportOptions``: every export setting, validated before anything is written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mtlexport.errors import ConfigError

PRECISIONS = ("fp32", "fp16")
EXPORTERS = ("dynamo", "torchscript")
FORMATS = ("onnx", "pt2")
OPSET_MIN, OPSET_MAX = 17, 21
DEFAULT_OPSET = 18
TRT_VERSIONS = (10, 11)
# The major version the ``trt`` extra installs (pyproject: tensorrt>=10,<12 resolves to 11.x):
# the target when no TensorRT is installed here. A test keeps the two in step.
DEFAULT_TRT_VERSION = 11
DEFAULT_SIZE = 256


@dataclass(frozen=True)
class BatchRange:
    """The dynamic batch range of the ``images`` input: MIN <= OPT <= MAX, all positive."""

    min: int = 1
    opt: int = 4
    max: int = 8

    def __post_init__(self) -> None:
        for key in ("min", "opt", "max"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"batch {key} must be a positive integer, got {value!r}")
        if self.min > self.max:
            raise ConfigError(f"batch MIN ({self.min}) is larger than MAX ({self.max}); use --batch MIN:OPT:MAX")
        if not self.min <= self.opt <= self.max:
            raise ConfigError(f"batch OPT ({self.opt}) must lie between MIN ({self.min}) and MAX ({self.max})")

    @classmethod
    def parse(cls, text: str) -> BatchRange:
        """Parse ``MIN:OPT:MAX`` (or ``MIN,OPT,MAX``, or ``N`` for a fixed batch)."""
        parts = text.strip().replace(",", ":").split(":")
        if len(parts) not in (1, 3):
            raise ConfigError(f"--batch must be MIN:OPT:MAX (e.g. 1:4:8) or N, got {text!r}")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--batch must be integers MIN:OPT:MAX, got {text!r}") from None
        if len(values) == 1:
            values = values * 3
        return cls(*values)

    def shape(self, which: str, channels: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The NCHW input shape at ``which`` (min, opt or max)."""
        return (getattr(self, which), channels, height, width)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class ExportOptions:
    """Settings of one export. ``height``/``width`` None take the checkpoint's data size.

    ``trt_version`` None means the installed TensorRT's major version, or the one the ``trt``
    extra installs (``DEFAULT_TRT_VERSION``) when none is installed. ``workspace_mib`` is the
    builder's workspace memory pool limit. ``tf32`` lets TensorRT use TF32 for FP32 convolutions
    and matrix products (its default); the engine is then validated with TF32-sized tolerances.
    ``formats`` always holds ``onnx``; ``pt2`` adds a validated ``torch.export`` program.
    """

    batch: BatchRange = field(default_factory=BatchRange)
    height: int | None = None
    width: int | None = None
    precision: str = "fp32"
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    engine: bool = True
    trt_version: int | None = None
    exporter: str = "dynamo"
    workspace_mib: int = 4096
    optimization_level: int = 3
    tf32: bool = True
    formats: tuple[str, ...] = ("onnx",)
    real_data: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        unknown = [self.formats] if isinstance(self.formats, str) else [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ConfigError(f"unknown export format {unknown[0]!r}; valid: {', '.join(FORMATS)} (give a tuple)")
        object.__setattr__(self, "formats", tuple(f for f in FORMATS if f == "onnx" or f in self.formats))
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"unknown exporter {self.exporter!r}; valid: {', '.join(EXPORTERS)}")
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not OPSET_MIN <= self.opset <= OPSET_MAX:
            raise ConfigError(f"opset must be between {OPSET_MIN} and {OPSET_MAX} (safe for TensorRT and ONNX Runtime), got {self.opset}")
        for key in ("height", "width"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"input {key} (--input-size HxW) must be a positive integer, got {value!r}")
        if self.trt_version is not None and self.trt_version not in TRT_VERSIONS:
            raise ConfigError(f"--trt-version must be one of {', '.join(map(str, TRT_VERSIONS))}, got {self.trt_version}")
        if self.workspace_mib < 1:
            raise ConfigError(f"workspace must be a positive number of MiB, got {self.workspace_mib}")
        if not 0 <= self.optimization_level <= 5:
            raise ConfigError(f"builder optimisation level must be 0..5, got {self.optimization_level}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["batch"] = self.batch.to_dict()
        out["formats"] = list(self.formats)
        return out


def choose_trt_major(requested: int | None, installed: int | None) -> tuple[int, str]:
    """The TensorRT major version the export targets, and where it came from.

    ``requested`` (``--trt-version``) wins, then the ``installed`` major version (clamped to the
    supported range), then ``DEFAULT_TRT_VERSION`` (what the ``trt`` extra installs).
    """
    if requested is not None:
        return requested, "requested"
    if installed is not None:
        return min(max(installed, TRT_VERSIONS[0]), TRT_VERSIONS[-1]), "installed"
    return DEFAULT_TRT_VERSION, "default"


def resolve_size(options: ExportOptions, data_config: dict[str, Any] | None, stride: int) -> tuple[int, int]:
    """The (H, W) to export at: options first, then the checkpoint's data size, then 256.

    Both must be divisible by the backbone's output ``stride`` (ConfigError otherwise).
    """
    data_config = data_config or {}
    height = options.height or _int_or(data_config.get("height"), DEFAULT_SIZE)
    width = options.width or _int_or(data_config.get("width"), DEFAULT_SIZE)
    for key, value in (("height", height), ("width", width)):
        if value % stride:
            lower = max(stride, value - value % stride)
            raise ConfigError(f"input {key} {value} is not divisible by the backbone's output stride {stride}; "
                              f"use e.g. {lower} (--input-size HxW)")
    return height, width


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
