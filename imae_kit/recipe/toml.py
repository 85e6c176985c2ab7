"""The TOML writer: a recipe-shaped dict (after ``--set`` and ``${vars}``) as text a run directory keeps."""

from __future__ import annotations

import datetime
import math
import re
from typing import Any, Mapping


def dump_toml(data: Mapping[str, Any]) -> str:
    """Write a recipe-shaped dict (scalars, lists, tables, arrays of tables) as TOML."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_array(v)}
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    _dump_tables(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _dump_tables(data: Mapping[str, Any], prefix: list[str], lines: list[str]) -> None:
    for k, v in data.items():
        path = prefix + [k]
        if _is_table(v):
            lines.append("")
            lines.append(f"[{'.'.join(_key(p) for p in path)}]")
            for kk, vv in v.items():
                if not _is_table(vv) and not _is_table_array(vv):
                    lines.append(f"{_key(kk)} = {_value(vv)}")
            _dump_tables(v, path, lines)
        elif _is_table_array(v):
            for entry in v:
                lines.append("")
                lines.append(f"[[{'.'.join(_key(p) for p in path)}]]")
                for kk, vv in entry.items():
                    lines.append(f"{_key(kk)} = {_value(vv)}")


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(e, dict) for e in v)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _string(k)


def _string(s: str) -> str:
    """A TOML basic string: backslash, quote and every control character escaped (TOML 1.0)."""
    out = []
    for ch in s:
        if ch == "\\" or ch == '"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (datetime.date, datetime.time)):  # datetime.datetime is a date
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(e)}" for k, e in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
