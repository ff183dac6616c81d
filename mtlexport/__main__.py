"""``python -m mtlexport``: the ``mtlexport`` command, so ``torchrun -m mtlexport train ...`` works."""

from __future__ import annotations

import sys

from mtlexport.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
