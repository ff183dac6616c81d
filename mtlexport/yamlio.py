"""YAML reading with one fix: ``1e-5`` is a float (YAML 1.1 would read it as a string)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mtlexport.errors import ConfigError

# YAML 1.1's float pattern needs a dot ("1.0e-5"); users write "1e-5". Accept both.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose float resolver also matches exponents without a dot."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in list("-+0123456789."):
    _Loader.yaml_implicit_resolvers[_first] = [
        (tag, rx) for tag, rx in _Loader.yaml_implicit_resolvers.get(_first, []) if tag != "tag:yaml.org,2002:float"
    ]
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse YAML (or JSON) text safely; scientific notation without a dot gives a float."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader


def read_yaml_file(path: str | Path, what: str) -> Any:
    """Parse the YAML/JSON file ``path``; unreadable or invalid files raise a one-line ConfigError
    naming ``what`` (e.g. "config")."""
    p = Path(path)
    try:
        return load_yaml(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{p} is not valid YAML/JSON: {first}") from None
