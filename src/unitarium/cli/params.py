"""Click parameter types of the ``unitarium`` command."""

from __future__ import annotations

import decimal
import re
from typing import Any

import click

__all__ = ["COUNT", "Count"]

_DIGITS = r"\d+(?:_\d+)*"
_NUMBER = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?\d+)?")
_MAX_DIGITS = 30
"""More digits than any count can need: ``1e100000`` is refused before Python builds the integer."""


class Count(click.ParamType):
    """A whole number written as people write large counts: ``1000000``, ``1_000_000``, ``1e6``,
    ``2.5e5`` (any value that is an integer). ``2.5`` and ``1,000,000`` are refused (a comma is a
    decimal point in much of the world); range checks are left to the spec, which names the bounds."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if "," in text:
            self.fail(f"{value!r} has a comma: write {text.replace(',', '_')} or a power of ten like 1e6", param, ctx)
        if not _NUMBER.fullmatch(text):
            self.fail(f"{value!r} is not a whole number (e.g. 1000000, 1_000_000 or 1e6)", param, ctx)
        number = decimal.Decimal(text.replace("_", ""))
        if number != number.to_integral_value():
            self.fail(f"{value!r} is not a whole number (e.g. 1000000, 1_000_000 or 1e6)", param, ctx)
        if number and number.adjusted() >= _MAX_DIGITS:
            self.fail(f"{value!r} is too large", param, ctx)
        return int(number)


COUNT = Count()
