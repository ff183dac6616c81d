"""Shared option aliases, output rendering and the rich progress reporter."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")]
CheckpointArg = Annotated[Path, typer.Argument(help="Checkpoint file (.pt) written by mtlexport.", show_default=False)]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]

stdout = Console(soft_wrap=False)
stderr = Console(stderr=True)


def emit_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as one JSON object on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def make_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table with right-aligned numeric columns."""
    table = Table(title=title, show_lines=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[fmt(v) for v in row])
    return table


def fmt(value: Any) -> str:
    """Format a table cell: floats with 4 significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class RichReporter:
    """Progress bars on stderr (so ``--json`` stdout stays clean) and notices as dim lines."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or stderr
        self.enabled = enabled
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def _ensure(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=False,
                disable=not self.enabled,
            )
            self._progress.start()
        return self._progress

    def start(self, key: str, description: str, total: int | None) -> None:
        progress = self._ensure()
        if key in self._tasks:
            progress.reset(self._tasks[key], total=total, description=description, info="")
        else:
            self._tasks[key] = progress.add_task(description, total=total, info="")

    def advance(self, key: str, steps: int = 1, **fields: Any) -> None:
        if self._progress is None or key not in self._tasks:
            return
        info = "  ".join(f"{k}={fmt(v)}" for k, v in fields.items())
        if info:
            self._progress.update(self._tasks[key], advance=steps, info=info)
        else:
            self._progress.update(self._tasks[key], advance=steps)

    def finish(self, key: str) -> None:
        if self._progress is None or key not in self._tasks:
            return
        self._progress.remove_task(self._tasks.pop(key))
        if not self._tasks:
            self.close()

    def message(self, text: str) -> None:
        self.console.print(f"[dim]{escape(text)}[/dim]", highlight=False)

    def __enter__(self) -> RichReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live display."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()
