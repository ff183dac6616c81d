"""Entry point: builds the typer app and maps library errors to one line and an exit code."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from mtlexport.errors import MtlexportError, MtlexportWarning

DEBUG_ENV = "MTLEXPORT_DEBUG"
MAX_LINE = 300  # longest error line; the rest is in --json ("error.message") or MTLEXPORT_DEBUG=1

# typer >= 0.22 vendors click (typer._click) and no longer installs it; older typer uses click
# itself. Reach the usage-error base class through typer's public BadParameter either way.
_UsageErrorBase: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

# Modules that define a ``register(app)`` function; missing ones are skipped so that
# commands can land one at a time.
COMMAND_MODULES = (
    "mtlexport.cli.train",
    "mtlexport.cli.sweep",
    "mtlexport.cli.eval",
    "mtlexport.cli.inspect",
    "mtlexport.cli.plot",
    "mtlexport.cli.slim",
    "mtlexport.cli.export",
    "mtlexport.cli.bench",
    "mtlexport.cli.demo",
)


class Interrupted(BaseException):
    """Raised by our SIGINT / SIGTERM handler. Not a KeyboardInterrupt, so typer cannot turn it
    into a silent exit, and not an Exception, so no library ``except Exception`` swallows it;
    ``finally`` blocks still run (temporary files and staging folders are removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _version(value: bool) -> None:
    if value:
        import mtlexport

        print(f"mtlexport {mtlexport.__version__}")
        raise typer.Exit(0)


def build_app() -> typer.Typer:
    """Create the typer app with every available command registered."""
    app = typer.Typer(
        name="mtlexport",
        help="Train group-sparse multi-task CNNs, slim them, export to ONNX/TensorRT, benchmark.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain help: "[default: ...]" in a help string stays text (rich markup would swallow it)
        # and flags show no "<bool>" value placeholder.
        rich_markup_mode=None,
    )

    @app.callback()
    def _root(
        version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                              help="Print the version and exit.")] = False,
    ) -> None:
        """Train group-sparse multi-task CNNs, slim them, export to ONNX/TensorRT, benchmark."""

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app)
    return app


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters with a pointer
    to the full message."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    tail = f"... (full message: --json or {DEBUG_ENV}=1)"
    return flat[: limit - len(tail)].rstrip() + tail


def _error_json(kind: str, message: str, code: int) -> None:
    from mtlexport.io import dumps_json

    sys.stdout.write(dumps_json({"error": {"type": kind, "message": message, "exit_code": code}}) + "\n")


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` while a command runs (main thread only)."""
    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    print(f"warning: {one_line(str(message))}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code (the console script exits with it)."""
    from mtlexport.cli import _common

    debug = bool(os.environ.get(DEBUG_ENV))
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    _common.interrupt_note.clear()
    app = build_app()
    with warnings.catch_warnings(), _signals():
        if not debug:
            original = warnings.showwarning

            def show(message: Any, category: type[Warning], *rest: Any, **kw: Any) -> None:
                if issubclass(category, MtlexportWarning):
                    _show_warning(message, category, *rest, **kw)
                else:
                    original(message, category, *rest, **kw)

            warnings.showwarning = show
        try:
            result = app(args=args, prog_name="mtlexport", standalone_mode=False)
        except MtlexportError as exc:
            if debug:
                raise
            message = str(exc)
            print(f"error: {one_line(message)}", file=sys.stderr)
            if as_json:
                _error_json(type(exc).__name__, message, exc.exit_code)
            return exc.exit_code
        except typer.Exit as exc:
            return exc.exit_code
        except _UsageErrorBase as exc:
            exc.show()  # type: ignore[attr-defined]
            return exc.exit_code  # type: ignore[attr-defined]
        except (Interrupted, typer.Abort, KeyboardInterrupt) as exc:
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            name = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
            kept = _common.interrupt_note.describe()
            print(f"{name}: {one_line(kept)}", file=sys.stderr)
            code = 128 + int(signum)
            if as_json:
                _error_json("Interrupted", f"{name}: {kept}", code)
            return code
        except Exception as exc:  # the last line of defence: one line, no traceback
            if debug:
                raise
            if isinstance(exc, OSError) and exc.filename:
                from mtlexport.io import describe_os_error

                message = describe_os_error(exc)
                print(f"error: {one_line(message)}", file=sys.stderr)
            else:
                message = f"{type(exc).__name__}: {exc}"
                print(f"internal error: {one_line(message, MAX_LINE - 80)} "
                      f"(set {DEBUG_ENV}=1 to see the traceback and please report it)", file=sys.stderr)
            if as_json:
                _error_json(type(exc).__name__, message, 1)
            return 1
    if result == 130:  # a KeyboardInterrupt raised by code (not our signal handler): typer made it Exit(130)
        print(f"interrupted: {one_line(_common.interrupt_note.describe())}", file=sys.stderr)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
