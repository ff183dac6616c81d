"""``mtlexport sweep --methods``: option errors are one line on stderr (nothing is trained)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtlexport.cli.main import main
from tests.train.conftest import tiny_config_dict


@pytest.mark.parametrize(("args", "message"), [
    (["--methods", "disparse"], "--methods needs --target-macs"),
    (["--methods", "snip", "--target-macs", "0.5"], "unknown sparsifier 'snip'; valid names: adapmtl, disparse"),
    (["--methods", "disparse", "--target-macs", "0.5", "--structure", "filter"], "channel or element"),
])
def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_config_dict()))
    code = main(["sweep", "-c", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert code != 0 and message in err and len(err.splitlines()) == 1
