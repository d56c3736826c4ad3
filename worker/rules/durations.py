"""Durations as ops write them (``90s``, ``2m``, ``12h``, ``1h30m``) and as people read them."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class DurationError(ValueError):
    """A duration string that does not parse; the message says what is accepted."""


def parse_duration(text: object) -> float:
    """Seconds in a duration such as ``30s``, ``10m``, ``1h30m`` or ``2d``.

    Raises:
        DurationError: for anything else, including bare numbers, so that ``for: 2``
            (two what?) is an error instead of a guess.
    """
    if not isinstance(text, str) or not text:
        raise DurationError(f"expected a duration such as 30s, 10m, 12h or 1h30m, found {text!r}")
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise DurationError(f"expected a duration such as 30s, 10m, 12h or 1h30m, found {text!r}")
    return total


def humanize_seconds(seconds: float) -> str:
    """``125`` -> ``2 min 5 s``; ``7260`` -> ``2 h 1 min``; the two largest units only."""
    total = round(seconds)
    total = max(total, 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{value} {unit}" for value, unit in parts if value]
    return " ".join(shown[:2]) if shown else "0 s"
