"""The ExecIDs the venues sent, so that a report sent again is known: a fill is booked once.

Fills' ExecIDs are kept for this trading day and the one before. Other reports' are kept for two
grace periods (or the day, without one): a PossDup repeat of a recent report is not relayed twice;
an older one is relayed with PossResend (97=Y) and the OMS checks its ExecID, as after a crash.
All are kept hashed (compact.py).
"""

from __future__ import annotations

from .compact import CompactIdSet


class ExecIds:
    """ExecIDs seen, by kind; part of the core's snapshot (``export`` / ``load``)."""

    __slots__ = ("fills", "fills_prev", "reports", "reports_since")

    def __init__(self) -> None:
        self.fills = CompactIdSet()  # this trading day's
        self.fills_prev = CompactIdSet()  # the day before's
        self.reports = [CompactIdSet(), CompactIdSet()]  # [this period, the one before]
        self.reports_since = 0  # when this period began (events' clock)

    def seen(self, exec_id: str, is_fill: bool) -> bool:
        """Note ``exec_id``; True if it came before."""
        if is_fill:
            return not self.fills.add(exec_id) or exec_id in self.fills_prev
        return exec_id in self.reports[1] or not self.reports[0].add(exec_id)

    def had_fill(self, exec_id: str) -> bool:
        """Whether a fill with this ExecID came today or the day before."""
        return exec_id in self.fills or exec_id in self.fills_prev

    def expire(self, cutoff_ns: int, now_ns: int) -> None:
        """Start a new period of reports' ExecIDs if the current one began by ``cutoff_ns``."""
        if self.reports_since <= cutoff_ns:
            self.reports = [CompactIdSet(), self.reports[0]]
            self.reports_since = now_ns

    def new_day(self, now_ns: int) -> None:
        self.fills_prev, self.fills = self.fills, CompactIdSet()
        self.reports, self.reports_since = [CompactIdSet(), self.reports[0]], now_ns

    def export(self) -> dict:
        return {
            "exec_ids": self.fills,
            "exec_ids_prev": self.fills_prev,
            "reports_seen": (self.reports, self.reports_since),
        }

    def load(self, state: dict) -> None:
        """Take over what ``export`` gave, within a snapshot (older snapshots lack some of it)."""
        fills = state["exec_ids"]
        self.fills = CompactIdSet(fills) if isinstance(fills, set) else fills  # a set: before ExecIDs were hashed
        self.fills_prev = state.get("exec_ids_prev") or CompactIdSet()
        if "reports_seen" in state:
            self.reports, self.reports_since = state["reports_seen"]
