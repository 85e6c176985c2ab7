"""Typed parameter fields for registered entries, so a recipe typo gets a clear error."""

from __future__ import annotations

import math
from typing import Any, Sequence

import attrs


def is_number(value: Any) -> bool:
    """True for an int or float that is not a bool (TOML's numbers)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r} ({type(value).__name__})")
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"expected an integer, got {value!r} ({type(value).__name__})")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r} ({type(value).__name__})")
    return value


def first_conversion_error(cls: type, values: dict[str, Any]) -> tuple[str, Exception] | None:
    """(name, error) of the first value that its attrs field's converter refuses, else None.

    Converters do not know their field's name, so callers report it from here."""
    fields = {f.name: f for f in attrs.fields(cls)}
    for key, value in values.items():
        converter = fields[key].converter if key in fields else None
        if converter is not None:
            try:
                converter(value)
            except (TypeError, ValueError) as exc:
                return key, exc
    return None


def _check(name_check: str, ok):
    def validator(inst, attribute, value):
        if not ok(value):
            raise ValueError(f"parameter {attribute.name!r} must be {name_check}, got {value!r}")
    return validator


def float_field(default: float | None = None, *, min: float | None = None, max: float | None = None,
                min_exclusive: bool = False, doc: str = "") -> Any:
    """A float parameter with optional bounds."""
    checks = [_check("finite", math.isfinite)]
    if min is not None:
        if min_exclusive:
            checks.append(_check(f"> {min}", lambda v: v > min))
        else:
            checks.append(_check(f">= {min}", lambda v: v >= min))
    if max is not None:
        checks.append(_check(f"<= {max}", lambda v: v <= max))
    kw = {} if default is None else {"default": float(default)}
    return attrs.field(converter=_number, validator=checks, metadata={"doc": doc}, **kw)


def int_field(default: int | None = None, *, min: int | None = None, doc: str = "") -> Any:
    """An integer parameter with an optional lower bound."""
    checks = [] if min is None else [_check(f">= {min}", lambda v: v >= min)]
    kw = {} if default is None else {"default": int(default)}
    return attrs.field(converter=_integer, validator=checks, metadata={"doc": doc}, **kw)


def bool_field(default: bool, *, doc: str = "") -> Any:
    """A boolean parameter."""
    return attrs.field(default=default, converter=_bool, metadata={"doc": doc})


def choice_field(default: str, choices: Sequence[str], *, doc: str = "") -> Any:
    """A string parameter restricted to ``choices``."""
    allowed = tuple(choices)

    def validator(inst, attribute, value):
        if not isinstance(value, str):
            raise TypeError(f"parameter {attribute.name!r} must be a string, one of {list(allowed)}; got {value!r}")
        if value not in allowed:
            raise ValueError(f"parameter {attribute.name!r} must be one of {list(allowed)}, got {value!r}")

    return attrs.field(default=default, validator=validator, metadata={"doc": doc})


def int_list_field(default: Sequence[int], *, doc: str = "") -> Any:
    """A list of positive integers (e.g. hidden layer widths), stored as a tuple."""
    def convert(value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list of integers, got {value!r}")
        out = tuple(_integer(v) for v in value)
        if any(v <= 0 for v in out):
            raise ValueError(f"expected positive integers, got {list(value)}")
        return out

    return attrs.field(default=tuple(default), converter=convert, metadata={"doc": doc})


def optional_str_field(default: str | None = None, *, doc: str = "") -> Any:
    """An optional string parameter (e.g. a path)."""
    def validator(inst, attribute, value):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"parameter {attribute.name!r} must be a string, got {value!r}")

    return attrs.field(default=default, validator=validator, metadata={"doc": doc})
