"""Entry point: builds the typer app and maps library errors to one line and an exit code."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from mtlexport.errors import MtlexportError

DEBUG_ENV = "MTLEXPORT_DEBUG"

# typer >= 0.22 vendors click (typer._click) and no longer installs it; older typer uses click
# itself. Reach the usage-error base class through typer's public BadParameter either way.
_UsageErrorBase: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

# Modules that define a ``register(app)`` function; missing ones are skipped so that
# commands can land one at a time.
COMMAND_MODULES = (
    "cli.train",
    "cli.sweep",
    "cli.eval",
    "cli.inspect",
    "cli.plot",
    "cli.slim",
    "cli.export",
    "cli.bench",
    "cli.demo",
)


def build_app() -> typer.Typer:
    """Create the typer app with every available command registered."""
    app = typer.Typer(
        name="mtlexport",
        help="Train group-sparse multi-task CNNs, slim them, export to ONNX/TensorRT, benchmark.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code (the console script exits with it)."""
    debug = bool(os.environ.get(DEBUG_ENV))
    app = build_app()
    try:
        result = app(args=argv, prog_name="mtlexport", standalone_mode=False)
    except MtlexportError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except _UsageErrorBase as exc:
        exc.show()  # type: ignore[attr-defined]
        return exc.exit_code  # type: ignore[attr-defined]
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line, no traceback
        if debug:
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} "
            f"(set {DEBUG_ENV}=1 to see the traceback and please report it)",
            file=sys.stderr,
        )
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
