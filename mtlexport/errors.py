"""The exception hierarchy. The CLI maps every ``MtlexportError`` to one line on stderr."""

from __future__ import annotations


class MtlexportError(Exception):
    """Base class. The message must name the problem and, where there is one, the fix."""

    exit_code: int = 1


class ConfigError(MtlexportError):
    """A configuration, option or model spec is invalid."""

    exit_code = 2


class CheckpointError(MtlexportError):
    """A checkpoint is missing, unreadable or of an unknown format."""


class DataError(MtlexportError):
    """A dataset folder or file is missing or malformed."""


class OutputError(MtlexportError):
    """An output path cannot be written: a folder where a file is meant (or the reverse), no
    permission, a read-only file system, a full disk, or an existing output without --force."""


class ExportError(MtlexportError):
    """Export to ONNX or TensorRT failed or did not validate."""


class VerificationError(MtlexportError):
    """A transformed model does not compute the same function as its source."""


class BackendUnavailableError(MtlexportError):
    """An optional backend (onnxruntime-gpu, tensorrt, CUDA) is not installed or usable here."""

    exit_code = 3


class MtlexportWarning(UserWarning):
    """Something suspicious that does not stop the work (the CLI prints it as one line)."""
