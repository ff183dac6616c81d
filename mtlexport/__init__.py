"""mtlexport: group-sparse multi-task CNNs from training to a deployed engine.

Subpackages own one stage each: ``models`` (zoo and specs), ``tasks`` (heads, losses,
metrics, tolerances), ``data``, ``sparsity``, ``train``, ``surgery`` (slimming), ``export``
and ``bench``. Heavy optional imports (onnxruntime, tensorrt, matplotlib) stay inside the
modules that need them so ``import mtlexport`` is fast.
"""

from mtlexport.errors import (
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    DataError,
    ExportError,
    MtlexportError,
    MtlexportWarning,
    OutputError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExportError",
    "MtlexportError",
    "MtlexportWarning",
    "OutputError",
    "VerificationError",
    "__version__",
]
