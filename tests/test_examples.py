"""The scripts under ``examples/`` run as the README shows them."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_own_loop(tmp_path: Path, capsys) -> None:  # noqa: ANN001 - pytest fixture
    main = runpy.run_path(str(EXAMPLES / "own_loop.py"))["main"]
    result = main(tmp_path, steps=20)
    assert result["passed"] == 1.0 and result["removed"] == result["removable"] > 0
    assert (tmp_path / "slim" / "model.onnx").is_file() and result["slim_ms"] > 0 and result["dense_ms"] > 0
    out = capsys.readouterr().out
    assert "outputs vs references: passed" in out and "exact: True" in out
