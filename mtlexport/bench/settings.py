"""``BenchSettings``: how to measure, shared by every runner; validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mtlexport.errors import ConfigError

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16")
GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")
ORT_GPU_PROVIDERS = ("cuda", "tensorrt")
MAX_BATCH = 4096


@dataclass(frozen=True)
class BenchSettings:
    """Measurement and backend settings (the same for every model of a comparison).

    ``threads`` / ``inter_op_threads`` None keep the backend's default. ``ort_provider`` picks
    ORT's GPU provider (cuda by default, or tensorrt) on ``device="cuda"``. ``precision`` fp16
    means autocast for PyTorch and the ``model.fp16.onnx`` of an export directory for ORT.
    ``transfers`` includes host<->device copies in GPU timings (always zero-length on CPU).
    ``input_size`` (H, W) overrides the size taken from a checkpoint's config or manifest.
    """

    device: str = "cpu"
    warmup_ms: float = 200.0
    duration_s: float = 3.0
    iterations: int = 10
    threads: int | None = None
    inter_op_threads: int | None = None
    graph_opt_level: str = "all"
    ort_provider: str | None = None
    precision: str = "fp32"
    channels_last: bool = False
    cuda_graph: bool = False
    transfers: bool = True
    input_size: tuple[int, int] | None = None
    verify: bool = True
    seed: int = 0
    cv_warn: float = 0.05

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.graph_opt_level not in GRAPH_OPT_LEVELS:
            raise ConfigError(f"graph optimisation level must be one of {', '.join(GRAPH_OPT_LEVELS)}, "
                              f"got {self.graph_opt_level!r}")
        if self.ort_provider is not None:
            if self.ort_provider not in ORT_GPU_PROVIDERS:
                raise ConfigError(f"--ort-provider must be one of {', '.join(ORT_GPU_PROVIDERS)}, got {self.ort_provider!r}")
            if self.device != "cuda":
                raise ConfigError(f"--ort-provider {self.ort_provider} needs --device cuda")
        if self.warmup_ms < 0:
            raise ConfigError(f"--warmup-ms must be >= 0, got {self.warmup_ms}")
        if self.duration_s < 0:
            raise ConfigError(f"--duration-s must be >= 0, got {self.duration_s}")
        if self.iterations < 1:
            raise ConfigError(f"--iterations must be >= 1, got {self.iterations}")
        for name in ("threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {value}")
        if self.input_size is not None:
            size = tuple(int(s) for s in self.input_size)
            if len(size) != 2 or min(size) < 1:
                raise ConfigError(f"input size must be two positive integers (H, W), got {self.input_size}")
            object.__setattr__(self, "input_size", size)
        if self.cuda_graph and self.device != "cuda":
            raise ConfigError("CUDA graphs need --device cuda")
        if self.cv_warn <= 0:
            raise ConfigError(f"cv_warn must be positive, got {self.cv_warn}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_size"] = list(self.input_size) if self.input_size else None
        return out


def parse_batches(text: str | int | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """Parse ``"1,8,16"`` (or an export's ``"1:4:8"``, or ints) into unique batch sizes in the given order."""
    if isinstance(text, int):
        items: list[Any] = [text]
    elif isinstance(text, str):
        items = [p.strip() for p in text.replace(":", ",").split(",")]
    else:
        items = list(text)
    out: list[int] = []
    for item in items:
        try:
            value = int(item)
        except (TypeError, ValueError):
            raise ConfigError(f"--batch takes positive integers separated by commas (e.g. 1,8,16), got {text!r}") from None
        if isinstance(item, float) and item != value:
            raise ConfigError(f"batch sizes must be integers, got {item}")
        if not 1 <= value <= MAX_BATCH:
            raise ConfigError(f"batch sizes must be between 1 and {MAX_BATCH}, got {value}")
        if value not in out:
            out.append(value)
    if not out:
        raise ConfigError("--batch is empty; give at least one batch size")
    return tuple(out)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"64x64"`` / ``"64,64"`` / ``"64"`` into (H, W)."""
    parts = [p for p in text.lower().replace(",", "x").split("x") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"input size must look like 64x64, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise ConfigError(f"input size must look like 64x64, got {text!r}")
    return values[0], values[1]
