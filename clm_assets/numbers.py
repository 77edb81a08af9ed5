"""How every table, CLI line and gate reason shows a number."""

from __future__ import annotations

import math


def fmt_number(value: object, digits: int = 4) -> str:
    """``digits`` significant digits, and ``n/a`` for a missing or undefined value (never a
    stand-in number: a metric that could not be computed must not look like one)."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.{digits}g}" if math.isfinite(number) else "n/a"
