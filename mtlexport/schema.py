"""One validation mechanism for every config dataclass: model spec, data and training sections.

A section is a frozen dataclass with a class attribute ``_checks`` mapping each field to a
check: a function ``(where, value) -> clean value`` that raises a one-line ``ConfigError``
"<where> must be <what>, got <value>". ``parse_section(cls, where, data)`` builds a section from
a mapping (unknown keys are listed beside the valid ones; ``_yaml_keys`` maps field names to
YAML keys such as ``lambda``; required fields are named when missing); ``validate(obj)`` runs
the same checks on a directly constructed object and is called from ``__post_init__``.
Cross-field rules stay in ``__post_init__``. Nested sections use ``section(cls)`` and
``section_list(cls)``, so every message carries the full key path (``model.tasks[1].head.width``).

To add a field: give it a default and an entry in ``_checks``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from mtlexport.errors import ConfigError

Check = Callable[[str, Any], Any]
# The key path of the section ``parse_section`` is constructing (read by ``validate``).
_WHERE: contextvars.ContextVar[str | None] = contextvars.ContextVar("mtlexport_schema_where", default=None)

__all__ = [
    "Check", "boolean", "choice", "fraction", "integer", "mapping_of", "multiple_of", "number", "optional",
    "parse_section", "section", "section_dict", "section_list", "sequence", "string", "validate",
]


def _fail(where: str, what: str, value: Any) -> ConfigError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ConfigError(f"{where} must be {what}, got {shown}")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


# ----------------------------------------------------------------------------- value checks
def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    """An integer in [minimum, maximum] (bounds optional)."""
    if minimum == 1 and maximum is None:
        what = "a positive integer"
    elif minimum is not None and maximum is not None:
        what = f"an integer between {minimum} and {maximum}"
    elif minimum is not None:
        what = f"an integer >= {minimum}"
    else:
        what = "an integer"

    def check(where: str, v: Any) -> int:
        if not _is_int(v) or (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            raise _fail(where, what, v)
        return int(v)

    return check


def multiple_of(step: int) -> Check:
    """A positive integer multiple of ``step``."""

    def check(where: str, v: Any) -> int:
        if not _is_int(v) or v <= 0 or v % step:
            raise _fail(where, f"a positive multiple of {step}", v)
        return int(v)

    return check


def number(minimum: float = 0.0, strict: bool = False, maximum: float | None = None) -> Check:
    """A real number >= ``minimum`` (> with ``strict``), <= ``maximum``; ints become floats."""
    if maximum is not None:
        what = f"a number in [{minimum:g}, {maximum:g}]"
    else:
        what = "a positive number" if strict and minimum == 0 else f"a number {'>' if strict else '>='} {minimum:g}"

    def check(where: str, v: Any) -> float:
        ok = _is_num(v) and v == v  # NaN compares unequal to itself
        if ok:
            ok = v > minimum if strict else v >= minimum
            ok = ok and (maximum is None or v <= maximum)
        if not ok:
            raise _fail(where, what, v)
        return float(v)

    return check


def fraction(where: str, v: Any) -> float:
    """A number strictly between 0 and 1."""
    if not _is_num(v) or not 0 < v < 1:
        raise _fail(where, "a number strictly between 0 and 1", v)
    return float(v)


def choice(*options: Any) -> Check:
    """One of ``options``."""

    def check(where: str, v: Any) -> Any:
        if isinstance(v, bool) or v not in options:
            raise _fail(where, f"one of {', '.join(str(o) for o in options)}", v)
        return v

    return check


def boolean(where: str, v: Any) -> bool:
    """true or false."""
    if not isinstance(v, bool):
        raise _fail(where, "true or false", v)
    return v


def string(nonempty: bool = True, identifier: bool = False) -> Check:
    """A string (non-empty by default; a Python identifier with ``identifier``)."""
    what = "a valid identifier (it names an output)" if identifier else (
        "a non-empty string" if nonempty else "a string")

    def check(where: str, v: Any) -> str:
        if not isinstance(v, str) or (nonempty and not v) or (identifier and not v.isidentifier()):
            raise _fail(where, what, v)
        return v

    return check


def optional(check: Check) -> Check:
    """``check``, or None (YAML ``null``) for "not set"."""

    def opt(where: str, v: Any) -> Any:
        return None if v is None else check(where, v)

    opt.inner = check  # type: ignore[attr-defined]
    return opt


def sequence(item: Check, what: str, length: int | None = None) -> Check:
    """A list (or tuple) of items passing ``item``, as a tuple; ``what`` describes the list."""

    def check(where: str, v: Any) -> tuple[Any, ...]:
        if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length):
            raise _fail(where, what, v)
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(f"{where}[{i}]", x))
            except ConfigError:
                raise _fail(where, what, v) from None
        return tuple(out)

    return check


def mapping_of(value: Check, what: str) -> Check:
    """A mapping from strings to values passing ``value`` (keys named in the message)."""

    def check(where: str, v: Any) -> dict[str, Any]:
        if not isinstance(v, Mapping):
            raise _fail(where, what, v)
        return {str(k): value(f"{where}.{k}", x) for k, x in v.items()}

    return check


def section(cls: type) -> Check:
    """A nested section: a mapping parsed with ``parse_section`` (or an instance of ``cls``)."""

    def check(where: str, v: Any) -> Any:
        return parse_section(cls, where, {} if v is None else v)

    return check


def section_list(cls: type, nonempty_message: str | None = None) -> Check:
    """A list of nested sections, as a tuple; ``[i]`` in every path."""

    def check(where: str, v: Any) -> tuple[Any, ...]:
        if not isinstance(v, (list, tuple)):
            raise _fail(where, f"a list of {cls.__name__} mappings", v)
        if not v and nonempty_message:
            raise ConfigError(nonempty_message)
        return tuple(parse_section(cls, f"{where}[{i}]", x) for i, x in enumerate(v))

    return check


# ----------------------------------------------------------------------------- sections
def _aliases(cls: type) -> dict[str, str]:
    return dict(getattr(cls, "_yaml_keys", {}))


def parse_section(cls: type, where: str, data: Any) -> Any:
    """Build the dataclass ``cls`` from a mapping: unknown keys, missing required keys and bad
    values raise a ConfigError naming the key path."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} section must be a mapping, got {type(data).__name__}")
    aliases = _aliases(cls)
    inverse = {v: k for k, v in aliases.items()}
    names = {f.name for f in dataclasses.fields(cls)}
    # A field with a YAML alias is spelled only by its alias (``lambda``, not ``lam``).
    unknown = sorted(str(k) for k in data if inverse.get(k, k) not in names or k in aliases)
    if unknown:
        known = sorted(aliases.get(n, n) for n in names)
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {known}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for name in required:
        if aliases.get(name, name) not in data:
            raise ConfigError(f"{where} needs '{aliases.get(name, name)}'")
    checks: Mapping[str, Check] = getattr(cls, "_checks", {})
    clean = {}
    for key, value in data.items():
        attr = inverse.get(key, key)
        check = checks.get(attr)
        clean[attr] = check(f"{where}.{key}", value) if check else value
    token = _WHERE.set(where)
    try:
        return cls(**clean)
    finally:
        _WHERE.reset(token)


def validate(obj: Any) -> None:
    """Run ``_checks`` on a constructed section and store the clean values (tuples for lists,
    floats for numbers); call from ``__post_init__``. Paths start at the section's ``_where``
    (e.g. ``data``) unless ``parse_section`` is building it."""
    cls = type(obj)
    where = _WHERE.get() or getattr(cls, "_where", cls.__name__)
    aliases = _aliases(cls)
    for name, check in getattr(cls, "_checks", {}).items():
        value = getattr(obj, name)
        clean = check(f"{where}.{aliases.get(name, name)}", value)
        if clean is not value:
            object.__setattr__(obj, name, clean)


def section_dict(obj: Any) -> dict[str, Any]:
    """A section as a plain mapping under its YAML keys (tuples as lists, nested sections too)."""
    aliases = _aliases(type(obj))
    return {aliases.get(f.name, f.name): _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return section_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
