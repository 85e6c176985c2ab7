"""Where in a recipe a mistake is: the file, the section or term, and the line, for every RecipeError."""

from __future__ import annotations

import difflib
import re
from typing import Any, Iterable, Mapping

import attrs

from imae_kit.errors import RecipeError
from imae_kit.params import show_value


@attrs.define
class RecipeText:
    """A recipe's source name and text, to place errors: ``error(where, message, key, section)``."""

    source: str
    text: str

    def line_of(self, key: str, section: str | None = None) -> str:
        """' (line N)' where ``key = ...`` first appears (after ``[section]`` if given), else ''."""
        lines = self.text.splitlines()
        start = 0
        if section:
            pat = re.compile(r"^\s*\[+\s*" + re.escape(section) + r"\s*\]+\s*(#.*)?$")
            for i, line in enumerate(lines):
                if pat.match(line):
                    start = i
                    break
        keypat = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
        for i in range(start, len(lines)):
            if keypat.match(lines[i]):
                return f" (line {i + 1})"
        inline = re.compile(r"[{,]\s*" + re.escape(key) + r"\s*=")
        for i in range(start, len(lines)):
            if inline.search(lines[i]):
                return f" (line {i + 1})"
        return ""

    def error(self, where: str, message: str, key: str | None = None, section: str | None = None) -> RecipeError:
        """A RecipeError '<source>: <where> (line N): <message>'."""
        line = self.line_of(key, section) if key else ""
        return RecipeError(f"{self.source}: {where}{line}: {message}")


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], ctx: RecipeText, where: str,
               section: str | None = None) -> None:
    """Refuse a key that is not ``allowed``, suggesting the nearest one."""
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ctx.error(where, f"unknown key {key!r}; {hint}valid keys: {', '.join(allowed)}", key, section)


def want_table(value: Any, ctx: RecipeText, where: str) -> dict:
    """``value`` if it is a table, else a placed RecipeError."""
    if not isinstance(value, dict):
        raise ctx.error(where, f"must be a table (a [section] or {{ ... }}), got {show_value(value)}")
    return value
