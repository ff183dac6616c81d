"""Shared option aliases, output rendering and the rich progress reporter."""

from __future__ import annotations

import sys
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table


def writable_dir(value: Path | None) -> Path | None:
    """Option callback: refuse an output folder that cannot be written before any work starts."""
    if value is not None:
        from mtlexport.io import check_output_dir

        check_output_dir(value)
    return value


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")]
CheckpointArg = Annotated[Path, typer.Argument(help="Checkpoint file (.pt) written by mtlexport.", show_default=False)]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.", metavar="DIR", callback=writable_dir)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing outputs instead of refusing.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", metavar="PKG.MOD:FN", show_default=False,
    help="Your own model: the factory that builds it (its module importable, e.g. on PYTHONPATH). A checkpoint "
         "of your model is only loaded with the factory it records; mtlexport never imports code a file names.")]

stdout = Console(soft_wrap=False)
stderr = Console(stderr=True)


class InterruptNote:
    """What a command has kept on disk, for the one line printed when it is interrupted.

    A command calls ``set(describe)`` with a function that looks at its outputs; by default the
    line says that nothing was changed (every output is written atomically)."""

    DEFAULT = "nothing was written (outputs are only replaced once complete)"

    def __init__(self) -> None:
        self._describe: Callable[[], str] | None = None

    def set(self, describe: Callable[[], str]) -> None:
        self._describe = describe

    def clear(self) -> None:
        self._describe = None

    def describe(self) -> str:
        if self._describe is None:
            return self.DEFAULT
        try:
            return self._describe()
        except Exception:  # a note must never hide the interruption itself
            return self.DEFAULT


interrupt_note = InterruptNote()


def emit_json(payload: Any) -> None:
    """Print ``payload`` as one strict JSON object on stdout: NaN and infinities become null and
    ``"non_finite"`` lists where they were."""
    from mtlexport.io import dumps_json

    sys.stdout.write(dumps_json(payload) + "\n")


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


def _fixed(width: int, justify: str = "left") -> Column:
    return Column(width=width, min_width=width, no_wrap=True, overflow="ellipsis", justify=justify)  # type: ignore[arg-type]


class RichReporter:
    """Progress bars on stderr (so ``--json`` stdout stays clean) and notices as dim lines."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or stderr
        self.enabled = enabled
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def _ensure(self) -> Progress:
        if self._progress is None:
            # Fixed widths, and the info field gets exactly what is left (cut with an ellipsis):
            # a no-wrap column would otherwise claim its whole text and crush the bar.
            width = self.console.width
            desc, bar = (14, 12) if width < 100 else (28, 32)
            columns: list[Any] = [
                TextColumn("[bold]{task.description}", table_column=_fixed(desc)),
                BarColumn(bar_width=bar, table_column=_fixed(bar)),
                TextColumn("{task.completed}/{task.total}", table_column=_fixed(9, justify="right")),
                TimeElapsedColumn(table_column=_fixed(7)),
            ]
            if width >= 100:
                columns.append(TextColumn("eta", table_column=_fixed(3)))
            columns.append(TimeRemainingColumn(table_column=_fixed(7)))
            used = sum(c.get_table_column().width or 0 for c in columns) + len(columns)
            columns.append(TextColumn("{task.fields[info]}", markup=False,
                                      table_column=_fixed(max(width - used - 1, 0))))
            self._progress = Progress(
                *columns,
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
