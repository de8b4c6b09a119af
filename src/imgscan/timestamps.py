"""Reading image timestamps, shared by the gate (image age) and the writers (report times).

A module of its own so that the gate need not import the writers' helpers to read a date.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 timestamp (nanoseconds allowed, as Go writes them) or None."""
    if not text:
        return None
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?",
                     text.strip())
    if not m:
        return None
    frac = (m.group(2) or "")[:7]
    tz = m.group(3) or "Z"
    tz = "+00:00" if tz == "Z" else tz
    try:
        dt = datetime.fromisoformat(m.group(1).replace(" ", "T") + frac + tz)
    except ValueError:
        return None
    return dt.astimezone(UTC)
