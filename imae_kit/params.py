"""Typed parameter fields: the one validation system of recipes, registered entries and [eval].

Every recipe section, term, network, data set and the evaluation settings is an attrs class whose
fields come from here. A converter refuses a value of the wrong type with ``ParamTypeError`` (which
knows what it expected); a validator refuses a value out of range with a ``ValueError`` naming the
field. ``first_conversion_error`` finds the first refusal so that callers can say where it is.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, Callable, Sequence

import attrs


def is_number(value: Any) -> bool:
    """True for an int or float that is not a bool (TOML's numbers)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def show_value(value: Any) -> str:
    """A value as an error message shows it: its repr (cut at 60 characters) and its type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


class ParamTypeError(TypeError):
    """A value of the wrong type for a field; ``expected`` says what would do ('an integer')."""

    def __init__(self, expected: str, value: Any):
        super().__init__(f"expected {expected}, got {value!r} ({type(value).__name__})")
        self.expected = expected
        self.value = value


def _number(value: Any) -> float:
    if not is_number(value):
        raise ParamTypeError("a number", value)
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ParamTypeError("an integer", value)
    return value


def _optional_integer(value: Any) -> int | None:
    return None if value is None else _integer(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ParamTypeError("true or false", value)
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ParamTypeError("a string", value)
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


def _check(name_check: str, ok: Callable[[Any], bool]):
    def validator(inst, attribute, value):
        if value is not None and not ok(value):
            raise ValueError(f"parameter {attribute.name!r} must be {name_check}, got {value!r}")
    return validator


def _bounds(min: float | None, max: float | None, min_exclusive: bool) -> list:
    checks = []
    if min is not None:
        if min_exclusive:
            checks.append(_check(f"> {min:g}", lambda v: v > min))
        else:
            checks.append(_check(f">= {min:g}", lambda v: v >= min))
    if max is not None:
        checks.append(_check(f"<= {max:g}", lambda v: v <= max))
    return checks


def float_field(default: float | None = None, *, min: float | None = None, max: float | None = None,
                min_exclusive: bool = False, doc: str = "") -> Any:
    """A finite float parameter with optional bounds."""
    checks = [_check("finite", math.isfinite)] + _bounds(min, max, min_exclusive)
    kw = {} if default is None else {"default": float(default)}
    return attrs.field(converter=_number, validator=checks, metadata={"doc": doc}, **kw)


def int_field(default: int | None = None, *, min: int | None = None, optional: bool = False, doc: str = "") -> Any:
    """An integer parameter with an optional lower bound; ``optional`` also allows None (absent)."""
    kw: dict[str, Any] = {"default": None} if optional else ({} if default is None else {"default": int(default)})
    return attrs.field(converter=_optional_integer if optional else _integer, validator=_bounds(min, None, False),
                       metadata={"doc": doc}, **kw)


def bool_field(default: bool, *, doc: str = "") -> Any:
    """A boolean parameter."""
    return attrs.field(default=default, converter=_bool, metadata={"doc": doc})


def str_field(default: str | None = None, *, pattern: str | None = None, rule: str = "", doc: str = "") -> Any:
    """A string parameter; with ``pattern`` it must match it in full (``rule`` says how, for the error)."""
    checks = []
    if pattern is not None:
        compiled = re.compile(pattern)

        def validator(inst, attribute, value):
            if not compiled.fullmatch(value):
                raise ValueError(f"{attribute.name!r} must be {rule or 'of the form ' + pattern}, got {value!r}")
        checks.append(validator)
    kw = {} if default is None else {"default": default}
    return attrs.field(converter=_string, validator=checks, metadata={"doc": doc}, **kw)


def choice_field(default: str, choices: Sequence[str], *, doc: str = "") -> Any:
    """A string parameter restricted to ``choices``."""
    allowed = tuple(choices)

    def validator(inst, attribute, value):
        if not isinstance(value, str):
            raise TypeError(f"parameter {attribute.name!r} must be a string, one of {list(allowed)}; got {value!r}")
        if value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"parameter {attribute.name!r} must be one of {list(allowed)}, got {value!r}{hint}")

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
