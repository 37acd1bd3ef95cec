"""The trading day in the configured time zone (``[proxy] day_roll``, ``timezone``): the edge's side
of the day roll. The core never reads a clock: the edge journals a ``DayRoll`` event when the day
it computes here differs from the core's, and the core acts on that event (and replays it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def trading_day(now_ns: int, roll: str = "00:00", timezone: str = "UTC") -> str:
    """The trading day (ISO date) at ``now_ns``: a day begins at ``roll`` local time and is named by
    the local date of most of its hours (a 17:00 roll: Monday 17:00 begins Tuesday's day)."""
    hours, minutes, seconds = (int(x) for x in (roll + ":00").split(":")[:3])
    local = datetime.fromtimestamp(now_ns / 1e9, _zone(timezone)).replace(tzinfo=None)
    offset = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if offset > timedelta(hours=12):
        offset -= timedelta(days=1)  # a late roll names the day by the date it mostly falls on
    return (local - offset).date().isoformat()
