"""Per-layer latency lookup tables: one conv or linear layer, timed alone on the target backend.

An entry is keyed by the layer's geometry at its real input shape (``LayerShape.key``) and holds
its median latency in milliseconds. Tables are cached on disk, one JSON file per backend,
device and thread count, under ``$MTLEXPORT_CACHE_DIR/latency/`` (default
``~/.cache/mtlexport/latency/``), and reused by every later run on the same machine; a table
written by another version of the backend is discarded.

Backends: ``ort`` times a one-node ONNX model (Conv, Gemm or MatMul + Add) in an ONNX Runtime
CPU session with IO binding, as the bench runner runs whole models; ONNX Runtime fuses a batch
norm and activation into the convolution, so the convolution alone is what a slim width
changes. On x86, ONNX Runtime runs convolutions in a blocked layout (NCHWc, blocks of 8 or 16
channels) and reorders tensors at the graph's edges: a one-node session pays a reorder of its
input (when its channels fill whole blocks) and of its output that a model pays only where a
width is not a multiple of the block. The entry therefore subtracts those reorders (read from
the session's optimised graph, timed as ``reorder`` entries, half a round trip each) where the
model would not pay them, which is what makes block-aligned widths look as cheap as they are.
``torch`` times the eager layer. ``inductor`` shares the ``torch`` table: on the CPU
inductor calls the same ATen convolution / matmul kernels as extern kernels, so per-layer
costs are the eager ones (the whole-model check then compiles the candidates).

Timing (the only timing outside the bench harness, for layers too small for a runner): each
batch of new entries is warmed up, calibrated so that one block of calls lasts about
``layer_ms / rounds``, then timed in ``rounds`` alternating rounds; the entry is the fastest
block's per-call mean (other load only ever adds time, so on a shared machine the fastest
block is the least disturbed one; medians of these small layers moved by 2x between runs).
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from mtlexport.errors import BackendUnavailableError, ConfigError, MtlexportError
from mtlexport.io import atomic_path

CACHE_ENV = "MTLEXPORT_CACHE_DIR"
TABLE_FORMAT = "mtlexport.latency_table"
TABLE_VERSION = 1
LAYER_BACKENDS = ("ort", "torch", "inductor")
_TABLE_OF = {"ort": "ort", "torch": "torch", "inductor": "torch"}
NCHWC_DOMAIN = "com.microsoft.nchwc"
MAX_REPS = 10_000
MIN_SHARE = 0.1


@dataclass(frozen=True)
class LayerShape:
    """One conv or linear layer at one input shape (batch first): what an entry is measured for.

    Conv input is (N, C, H, W); linear input is (..., in_features). ``depthwise`` convolutions
    have one group per channel, so their input and output widths are equal.
    """

    kind: str
    input_shape: tuple[int, ...]
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    depthwise: bool = False
    bias: bool = False

    @property
    def in_channels(self) -> int:
        return self.input_shape[-1] if self.kind == "linear" else self.input_shape[1]

    @classmethod
    def reorder(cls, shape: tuple[int, ...]) -> LayerShape:
        """An NCHW -> NCHWc -> NCHW round trip of a tensor of ``shape`` (ONNX Runtime only)."""
        shape = tuple(int(s) for s in shape)
        return cls(kind="reorder", input_shape=shape, out_channels=shape[1])

    @classmethod
    def of(cls, module: nn.Module, input_shape: tuple[int, ...]) -> LayerShape:
        """The shape of ``module`` (Conv2d or Linear) called on an input of ``input_shape``."""
        shape = tuple(int(s) for s in input_shape)
        if isinstance(module, nn.Linear):
            return cls(kind="linear", input_shape=shape, out_channels=module.out_features, bias=module.bias is not None)
        if not isinstance(module, nn.Conv2d):
            raise ConfigError(f"latency tables time Conv2d and Linear layers, not {type(module).__name__}")
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        if module.groups > 1 and not depthwise:
            raise ConfigError("latency tables do not time grouped convolutions (their groups are never slimmed)")
        return cls(kind="conv", input_shape=shape, out_channels=module.out_channels, kernel=_pair(module.kernel_size),
                   stride=_pair(module.stride), padding=_padding(module), dilation=_pair(module.dilation),
                   depthwise=depthwise, bias=module.bias is not None)

    def with_widths(self, in_channels: int, out_channels: int) -> LayerShape:
        """The same layer with other input / output widths."""
        if self.depthwise and in_channels != out_channels:
            raise ConfigError(f"a depthwise convolution keeps in == out channels, got {in_channels} -> {out_channels}")
        shape = list(self.input_shape)
        shape[1 if self.kind == "conv" else -1] = in_channels
        return replace(self, input_shape=tuple(shape), out_channels=out_channels)

    def key(self) -> str:
        """A compact, stable text key, e.g. ``conv 1x16x32x32>32 k3x3 s1x1 p1x1 d1x1``."""
        if self.kind == "reorder":
            return f"reorder {'x'.join(map(str, self.input_shape))}"
        head = f"{self.kind} {'x'.join(map(str, self.input_shape))}>{self.out_channels}"
        if self.kind == "linear":
            return head + (" b" if self.bias else "")
        geo = " ".join(f"{tag}{a}x{b}" for tag, (a, b) in
                       (("k", self.kernel), ("s", self.stride), ("p", self.padding), ("d", self.dilation)))
        return f"{head} {geo}" + (" dw" if self.depthwise else "") + (" b" if self.bias else "")


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding_mode != "zeros":
        raise ConfigError(f"latency tables time zero-padded convolutions, not padding_mode={conv.padding_mode!r}")
    pad = conv.padding
    if pad == "valid":
        return 0, 0
    if pad == "same":  # symmetric for the odd kernels torch allows with 'same' and stride 1
        (dh, dw), (kh, kw) = _pair(conv.dilation), _pair(conv.kernel_size)
        return dh * (kh - 1) // 2, dw * (kw - 1) // 2
    return _pair(pad)


def cache_dir() -> Path:
    """Where latency tables live: ``$MTLEXPORT_CACHE_DIR/latency``, else ``~/.cache/mtlexport/latency``."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "mtlexport") / "latency"


def device_id() -> str:
    """The CPU model and core count as a file-name-safe slug (tables are per machine)."""
    name = ""
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((line.split(":", 1)[1] for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    return f"cpu-{slug}-{os.cpu_count() or 0}c"


class LatencyTable:
    """Per-layer latencies (ms) on ``backend`` with ``threads`` intra-op threads, cached on disk.

    ``latency(shape)`` measures entries it does not have; ``ensure(shapes)`` measures many at
    once (interleaved, so they share the machine's load). ``measured`` counts the entries this
    table measured (not read from the cache), ``used`` the keys looked up. Raises BackendUnavailableError (one line) when
    the backend cannot be imported.
    """

    def __init__(self, backend: str, threads: int = 1, *, directory: Path | None = None,
                 layer_ms: float = 20.0, rounds: int = 5) -> None:
        if backend not in LAYER_BACKENDS:
            raise ConfigError(f"latency tables exist for backends {', '.join(LAYER_BACKENDS)}, not {backend!r}")
        if threads < 1 or layer_ms <= 0 or rounds < 1:
            raise ConfigError(f"threads and rounds must be >= 1 and layer_ms > 0, got {threads}, {rounds}, {layer_ms}")
        self.backend = backend
        self.threads = threads
        self.layer_ms = layer_ms
        self.rounds = rounds
        self._timer = _OrtLayers(threads) if _TABLE_OF[backend] == "ort" else _TorchLayers(threads)
        self.device = device_id()
        self.path = (directory or cache_dir()) / f"{_TABLE_OF[backend]}-{self.device}-{threads}t.json"
        self.entries: dict[str, float] = self._load()
        self.measured = 0
        self.used: set[str] = set()
        self.save_error = ""

    @property
    def software(self) -> str:
        return self._timer.software

    def latency(self, shape: LayerShape) -> float:
        """Latency of ``shape`` in ms (measured and saved if not in the table)."""
        self.ensure([shape])
        self.used.add(shape.key())
        return self.entries[shape.key()]

    def ensure(self, shapes: Iterable[LayerShape]) -> int:
        """Measure every shape not yet in the table and save it; returns how many were new."""
        todo: dict[str, LayerShape] = {}
        for s in shapes:
            if s.key() not in self.entries:
                todo.setdefault(s.key(), s)
        if not todo:
            return 0
        calls: dict[str, Callable[[], None]] = {}
        minus: dict[str, list[LayerShape]] = {}
        for key, shape in todo.items():
            calls[key], minus[key] = self._timer.build(shape)
        for extra in {r.key(): r for rs in minus.values() for r in rs}.values():
            if extra.key() not in self.entries and extra.key() not in calls:
                calls[extra.key()], _ = self._timer.build(extra)
        with self._timer.threads_set():
            raw = dict(zip(calls, time_calls(list(calls.values()), self.layer_ms, self.rounds)))
        for key, ms in raw.items():
            saved = sum(0.5 * raw.get(r.key(), self.entries.get(r.key(), 0.0)) for r in minus.get(key, ()))
            # A floor: the reorders are timed apart, so noise could push the difference below zero.
            self.entries[key] = max(ms - saved, MIN_SHARE * ms)
        self.measured += len(todo)  # layer entries; the reorders they needed come with them
        self.save()
        return len(todo)

    def _load(self) -> dict[str, float]:
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if (not isinstance(raw, dict) or raw.get("format") != TABLE_FORMAT or raw.get("version") != TABLE_VERSION
                or raw.get("software") != self.software or not isinstance(raw.get("entries"), dict)):
            return {}  # another backend version (or a damaged file): measure afresh
        return {str(k): float(v) for k, v in raw["entries"].items() if isinstance(v, (int, float))}

    def save(self) -> None:
        """Write the table (merged with entries another process saved meanwhile), atomically."""
        merged = {**self._load(), **self.entries}
        payload = {"format": TABLE_FORMAT, "version": TABLE_VERSION, "backend": _TABLE_OF[self.backend],
                   "device": self.device, "threads": self.threads, "software": self.software,
                   "unit": "ms", "entries": dict(sorted(merged.items()))}
        try:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(payload, indent=1) + "\n")
        except (OSError, MtlexportError) as exc:  # a cache: an unwritable one costs only time
            self.save_error = f"latency table not saved to {self.path} ({exc})"


def time_calls(calls: list[Callable[[], None]], layer_ms: float, rounds: int) -> list[float]:
    """Per-call milliseconds of each call: the fastest of ``rounds`` alternating rounds (other
    load on the machine only ever adds time, so the fastest block is the least disturbed)."""
    block_ms = layer_ms / rounds
    reps = []
    for call in calls:
        call()
        call()  # warm-up: first-run allocations and kernel selection
        start = time.perf_counter()
        call()
        single = max((time.perf_counter() - start) * 1e3, 1e-4)
        reps.append(max(1, min(MAX_REPS, int(block_ms / single))))
    samples: list[list[float]] = [[] for _ in calls]
    for k in range(rounds):
        order = range(len(calls)) if k % 2 == 0 else reversed(range(len(calls)))
        for i in order:
            call, n = calls[i], reps[i]
            start = time.perf_counter()
            for _ in range(n):
                call()
            samples[i].append((time.perf_counter() - start) * 1e3 / n)
    return [min(s) for s in samples]


class _TorchLayers:
    """Eager torch layers with random weights, run under inference mode."""

    def __init__(self, threads: int) -> None:
        import torch

        self._torch = torch
        self.threads = threads
        self.software = f"torch {torch.__version__}"

    def build(self, shape: LayerShape) -> tuple[Callable[[], None], list[LayerShape]]:
        """A call running the layer once, and the reorder entries to subtract (none)."""
        torch = self._torch
        if shape.kind == "linear":
            layer: nn.Module = nn.Linear(shape.in_channels, shape.out_channels, bias=shape.bias)
        else:
            layer = nn.Conv2d(shape.in_channels, shape.out_channels, shape.kernel, stride=shape.stride,
                              padding=shape.padding, dilation=shape.dilation,
                              groups=shape.in_channels if shape.depthwise else 1, bias=shape.bias)
        layer.eval().requires_grad_(False)
        x = torch.randn(shape.input_shape)

        def call() -> None:
            with torch.inference_mode():
                layer(x)

        return call, []

    def threads_set(self) -> Any:
        return _TorchThreads(self._torch, self.threads)


class _TorchThreads:
    def __init__(self, torch: Any, threads: int) -> None:
        self._torch, self._threads, self._old = torch, threads, 0

    def __enter__(self) -> None:
        self._old = self._torch.get_num_threads()
        self._torch.set_num_threads(self._threads)

    def __exit__(self, *exc: object) -> None:
        self._torch.set_num_threads(self._old)


class _OrtLayers:
    """One-node ONNX models in ONNX Runtime CPU sessions, run through IO binding."""

    OPSET = 17

    def __init__(self, threads: int) -> None:
        try:
            import onnx
            import onnxruntime
        except ImportError:
            raise BackendUnavailableError("backend ort: onnxruntime (and onnx) is not installed; "
                                          "pip install 'mtlexport[cpu]' or choose --backend torch") from None
        self._onnx, self._ort = onnx, onnxruntime
        self.threads = threads
        self._scratch = tempfile.TemporaryDirectory(prefix="mtlexport-latency-")
        self._block = 0
        self._block = self._probe_block()
        self.software = f"onnxruntime {onnxruntime.__version__} nchwc {self._block}"

    def build(self, shape: LayerShape) -> tuple[Callable[[], None], list[LayerShape]]:
        """A call running the layer once, and the reorder round trips a model would not pay."""
        import numpy as np

        ort = self._ort
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape.input_shape, dtype=np.float32)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        optimised = Path(self._scratch.name) / "layer.onnx"
        if shape.kind != "reorder":
            opts.optimized_model_filepath = str(optimised)
        sess = ort.InferenceSession(self._model(shape, rng), sess_options=opts, providers=["CPUExecutionProvider"])
        out = np.empty(sess.run(None, {"x": x})[0].shape, dtype=np.float32)
        binding = sess.io_binding()
        binding.bind_cpu_input("x", x)
        binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(out))
        buffers = (x, out)  # the binding points into them: keep them alive as long as the call

        def call() -> None:
            assert buffers
            sess.run_with_iobinding(binding)

        if shape.kind == "reorder":
            return call, []
        ops = [n.op_type for n in self._onnx.load(str(optimised)).graph.node if n.domain == NCHWC_DOMAIN]
        minus = []
        if "ReorderInput" in ops:  # the producer in a model hands over a blocked tensor already
            minus.append(LayerShape.reorder(shape.input_shape))
        if "ReorderOutput" in ops and self._block and out.ndim == 4 and out.shape[1] % self._block == 0:
            minus.append(LayerShape.reorder(out.shape))  # a block-aligned output stays blocked
        return call, minus

    def _probe_block(self) -> int:
        """The NCHWc block size: the fewest channels whose 1x1 convolution gets a blocked input
        (0 where ONNX Runtime does not use NCHWc, e.g. off x86)."""
        for c in (4, 8, 16, 32, 64):
            _, minus = self.build(LayerShape(kind="conv", input_shape=(1, c, 4, 4), out_channels=c))
            if minus:
                return c
        return 0

    def _model(self, shape: LayerShape, rng: Any) -> bytes:
        import numpy as np

        helper, numpy_helper = self._onnx.helper, self._onnx.numpy_helper
        cin, cout = shape.in_channels, shape.out_channels
        inits = []
        opsets = [helper.make_opsetid("", self.OPSET)]
        if shape.kind == "reorder":
            nodes = [helper.make_node("ReorderInput", ["x"], ["t"], domain=NCHWC_DOMAIN),
                     helper.make_node("ReorderOutput", ["t"], ["y"], domain=NCHWC_DOMAIN, channels=cin)]
            opsets.append(helper.make_opsetid(NCHWC_DOMAIN, 1))
        elif shape.kind == "conv":
            groups = cin if shape.depthwise else 1
            w = rng.standard_normal((cout, cin // groups, *shape.kernel), dtype=np.float32)
            inits.append(numpy_helper.from_array(w, "w"))
            inputs = ["x", "w"]
            if shape.bias:
                inits.append(numpy_helper.from_array(rng.standard_normal(cout, dtype=np.float32), "b"))
                inputs.append("b")
            (ph, pw) = shape.padding
            nodes = [helper.make_node("Conv", inputs, ["y"], kernel_shape=list(shape.kernel),
                                      strides=list(shape.stride), pads=[ph, pw, ph, pw],
                                      dilations=list(shape.dilation), group=groups)]
        else:
            w = rng.standard_normal((cin, cout), dtype=np.float32)
            inits.append(numpy_helper.from_array(w, "w"))
            if len(shape.input_shape) == 2:
                inputs = ["x", "w"]
                if shape.bias:
                    inits.append(numpy_helper.from_array(rng.standard_normal(cout, dtype=np.float32), "b"))
                    inputs.append("b")
                nodes = [helper.make_node("Gemm", inputs, ["y"])]
            elif shape.bias:
                inits.append(numpy_helper.from_array(rng.standard_normal(cout, dtype=np.float32), "b"))
                nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
            else:
                nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        graph = helper.make_graph(
            nodes, "layer", [helper.make_tensor_value_info("x", self._onnx.TensorProto.FLOAT, list(shape.input_shape))],
            [helper.make_tensor_value_info("y", self._onnx.TensorProto.FLOAT, None)], initializer=inits)
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 8
        return model.SerializeToString()

    def threads_set(self) -> Any:
        import contextlib

        return contextlib.nullcontext()
