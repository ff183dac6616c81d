"""The ``mtlexport`` command line: typer wiring only.

Each command lives in its own module, parses options, calls one public library function and
renders the result (rich table or ``--json``). Library imports happen inside the command body
so ``mtlexport --help`` does not import torch. Add a command by writing ``mtlexport/cli/<name>.py`` with a
``register(app)`` function and listing it in ``mtlexport.cli.main.COMMAND_MODULES``.
"""
