"""Progress reporting injected into library code; the library itself never prints."""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """What long-running library functions report through. The CLI passes a rich one."""

    def start(self, key: str, description: str, total: int | None) -> None:
        """Begin a progress task ``key`` with ``total`` steps (None when unknown)."""

    def advance(self, key: str, steps: int = 1, **fields: Any) -> None:
        """Advance task ``key``; ``fields`` (e.g. loss=0.3) are shown beside the bar."""

    def finish(self, key: str) -> None:
        """End task ``key``."""

    def message(self, text: str) -> None:
        """A one-line notice for the user (e.g. why an engine was not built)."""


class NullReporter:
    """Reports nothing. The default for library calls."""

    def start(self, key: str, description: str, total: int | None) -> None:
        return None

    def advance(self, key: str, steps: int = 1, **fields: Any) -> None:
        return None

    def finish(self, key: str) -> None:
        return None

    def message(self, text: str) -> None:
        return None


class RecordingReporter(NullReporter):
    """Keeps messages and final fields; useful in tests and for ``--json`` runs."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.fields: dict[str, dict[str, Any]] = {}

    def advance(self, key: str, steps: int = 1, **fields: Any) -> None:
        self.fields.setdefault(key, {}).update(fields)

    def message(self, text: str) -> None:
        self.messages.append(text)
