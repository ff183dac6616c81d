"""One runner per backend, registered in ``RUNNERS`` under its CLI name (torch, inductor, ort, trt).

Backend packages (onnxruntime, tensorrt, torch's compiler) are imported inside ``activate``, never here.
"""

from mtlexport.bench.runners import inductor as _inductor  # noqa: F401  (registers "inductor")
from mtlexport.bench.runners import onnxrt as _onnxrt  # noqa: F401  (registers "ort")
from mtlexport.bench.runners import pytorch as _pytorch  # noqa: F401  (registers "torch")
from mtlexport.bench.runners import trt as _trt  # noqa: F401  (registers "trt")
from mtlexport.bench.runners.base import RUNNERS, Runner

__all__ = ["RUNNERS", "Runner"]
