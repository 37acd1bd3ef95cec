"""Timestamps as the audit store, the replay and their commands read and write them (always UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

_NS = 1_000_000_000
_DAY_NS = 86_400 * _NS
_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()


@lru_cache(maxsize=64)
def _day_ns(yyyymmdd: str) -> int:
    day = datetime(int(yyyymmdd[0:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    return (day.toordinal() - _EPOCH_ORDINAL) * _DAY_NS


def fix_time_ns(text: str) -> int:
    """Nanoseconds since the epoch from a FIX UTCTimestamp (``20261125-12:28:04.277``, any fraction).

    Also reads quickfix's FileLog stamps, which carry nine fraction digits. Raises ValueError.
    A log holds one or two dates, so the date part is cached: this runs once a line in replay.
    """
    if len(text) < 17 or text[8] != "-" or text[11] != ":" or text[14] != ":":
        raise ValueError(f"not a FIX timestamp: {text!r}")
    ns = _day_ns(text[:8]) + (int(text[9:11]) * 3600 + int(text[12:14]) * 60 + int(text[15:17])) * _NS
    if len(text) > 17:
        fraction = text[18:]
        if text[17] != "." or not fraction.isdigit() or len(fraction) > 9:
            raise ValueError(f"not a FIX timestamp: {text!r}")
        ns += int(fraction.ljust(9, "0"))
    return ns


def iso(ns: int, digits: int = 3) -> str:
    """``2026-11-25T12:28:04.277Z`` (``digits`` fraction digits, 0 to 9)."""
    seconds, fraction = divmod(ns, _NS)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{fraction:09d}"[:digits]
    return text + "Z"


_WHEN = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})(?:[T -](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?Z?$")


def parse_when(text: str) -> int:
    """A time given on the command line, in UTC: ``2026-11-25``, ``2026-11-25T12:30``,
    ``2026-11-25 12:30:05.5``, ``20261125-12:30:05``. Raises ValueError naming the text."""
    m = _WHEN.match(text.strip())
    if not m:
        raise ValueError(f"not a time: {text!r} (use 2026-11-25 or 2026-11-25T12:30:00, UTC)")
    y, mo, d, h, mi, s, frac = m.groups()
    try:
        day = datetime(int(y), int(mo), int(d))
    except ValueError as exc:
        raise ValueError(f"not a time: {text!r} ({exc})") from None
    seconds = int(h or 0) * 3600 + int(mi or 0) * 60 + int(s or 0)
    if seconds >= 86_400 or int(mi or 0) > 59 or int(s or 0) > 59:
        raise ValueError(f"not a time: {text!r}")
    return (day.toordinal() - _EPOCH_ORDINAL) * _DAY_NS + seconds * _NS + int((frac or "").ljust(9, "0") or 0)


# The last whole second formatted (one strftime a second, not one a message); one tuple, replaced
# whole, so a thread never reads one second's number with another second's text.
_second: tuple[int, str] = (-1, "")


def fix_second(second: int) -> str:
    """``20261125-12:28:04.`` for a whole second since the epoch (cached: messages come many a second)."""
    global _second
    cached = _second
    if second != cached[0]:
        cached = _second = (second, datetime.fromtimestamp(second, tz=UTC).strftime("%Y%m%d-%H:%M:%S."))
    return cached[1]


# The last millisecond formatted: an order's messages (SendingTime, TransactTime) mostly share one.
_milli: tuple[int, str] = (-1, "")


def fix_timestamp_ms(now_ns: int) -> str:
    """FIX UTCTimestamp with milliseconds, e.g. ``20261125-12:28:04.277`` (SendingTime, TransactTime)."""
    global _milli
    milli = now_ns // 1_000_000
    cached = _milli
    if milli != cached[0]:
        second, ms = divmod(milli, 1000)
        cached = _milli = (milli, f"{fix_second(second)}{ms:03d}")
    return cached[1]


_second_bytes: tuple[int, bytes] = (-1, b"")


def fix_second_bytes(second: int) -> bytes:
    """``fix_second`` as ASCII bytes (cached the same way)."""
    global _second_bytes
    cached = _second_bytes
    if second != cached[0]:
        cached = _second_bytes = (second, fix_second(second).encode())
    return cached[1]
