"""Running counts of the edge for GET /metrics: messages, orders, decisions, alerts, decision latency.

The bridge updates them under the core lock as it works (a dict increment or two per message);
``admin/metrics.py`` copies them out under the same lock when Prometheus scrapes and turns them
into metric families then. Plain ints and dicts: no lock of their own, no allocation but a key's
first sight. They count from the process's start (Prometheus counters), not from the trading day.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import cast

from ..core import events as ev

#: Upper bounds (nanoseconds) of the decision latency histogram's buckets; one more bucket, +Inf.
LATENCY_BOUNDS_NS = (
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
)

#: How an action of the core's is counted, by its class (decided once per class, see ``_kind_of``).
_DECISION, _ALERT, _FLAGGED, _ADMIN, _NOTICE, _OTHER = range(6)


def _kind_of(cls: type) -> int:
    """Decisions, alerts (``Alert`` and any action class named ``...Alert``), other actions that carry
    a reject ``code`` and are not FIX messages (e.g. a monitored rule's "would have refused"), admin
    results, notices; the rest are FIX messages, counted as messages out."""
    if cls is ev.Decision:
        return _DECISION
    if cls is ev.AdminResult:
        return _ADMIN
    if cls is ev.Notice:
        return _NOTICE
    if cls.__name__.endswith("Alert"):
        return _ALERT
    if cls not in ev.MESSAGE_ACTIONS and "code" in getattr(cls, "__struct_fields__", ()):
        return _FLAGGED
    return _OTHER


def alert_name(action: object) -> str:
    """What an alert is about: the limit of a limit alert, or the first of the fields that name a
    detector or a kind on an alert of another class."""
    for field in ("limit_name", "detector", "kind", "name", "code"):
        value = getattr(action, field, None)
        if isinstance(value, str) and value:
            return value
    return ""


class EdgeCounts:
    """What the edge has seen and done since the process started (the caller holds the core lock)."""

    __slots__ = (
        "messages_in",
        "messages_out",
        "received",
        "forwarded",
        "refused",
        "flagged",
        "alerts",
        "admin",
        "notices",
        "latency_buckets",
        "latency_sum_ns",
        "_kinds",
    )

    def __init__(self) -> None:
        #: session -> application messages received on it (journaled and handed to the core).
        self.messages_in: dict[str, int] = {}
        #: session -> application messages sent on it.
        self.messages_out: dict[str, int] = {}
        #: (session, MsgType) -> messages an OMS session sent (orders, replaces, cancels, anything else).
        self.received: dict[tuple[str, str], int] = {}
        #: (session, MsgType) -> decisions that let the message through to its venue.
        self.forwarded: dict[tuple[str, str], int] = {}
        #: (session, MsgType, code) -> decisions that refused it.
        self.refused: dict[tuple[str, str, str], int] = {}
        #: (action class, session, code) -> other actions with a reject code (a decision accepted
        #: with a code counts here too: let through, but a rule would have refused it).
        self.flagged: dict[tuple[str, str, str], int] = {}
        #: (alert class, what it is about) -> alerts raised.
        self.alerts: dict[tuple[str, str], int] = {}
        #: (AdminResult kind, ok) -> admin results.
        self.admin: dict[tuple[str, bool], int] = {}
        #: Notice kind -> notices.
        self.notices: dict[str, int] = {}
        #: Decision latency: counts per bucket of ``LATENCY_BOUNDS_NS`` (not cumulative), +Inf last.
        self.latency_buckets = [0] * (len(LATENCY_BOUNDS_NS) + 1)
        self.latency_sum_ns = 0
        self._kinds: dict[type, int] = {}

    def inbound(self, session: str, msg_type: str, oms: bool) -> None:
        """An application message received on ``session`` (``oms``: an OMS session)."""
        c = self.messages_in
        c[session] = c.get(session, 0) + 1
        if oms:
            key = (session, msg_type)
            r = self.received
            r[key] = r.get(key, 0) + 1

    def outbound(self, session: str) -> None:
        c = self.messages_out
        c[session] = c.get(session, 0) + 1

    def latency(self, elapsed_ns: int) -> None:
        """One OMS message from its arrival at the engine to the core's answer."""
        if elapsed_ns < 0:  # the wall clock stepped back in between
            elapsed_ns = 0
        self.latency_buckets[bisect_left(LATENCY_BOUNDS_NS, elapsed_ns)] += 1
        self.latency_sum_ns += elapsed_ns

    def action(self, action: ev.Action) -> None:
        """A decision, alert, admin result or notice of the core (or another action it added)."""
        cls = type(action)
        kind = self._kinds.get(cls)
        if kind is None:
            kind = self._kinds[cls] = _kind_of(cls)
        if kind == _DECISION:
            d = cast(ev.Decision, action)
            if d.accepted:
                k2 = (d.session, d.msg_type)
                self.forwarded[k2] = self.forwarded.get(k2, 0) + 1
                if d.code:
                    self._flag("Decision", d.session, d.code)
            else:
                k3 = (d.session, d.msg_type, d.code)
                self.refused[k3] = self.refused.get(k3, 0) + 1
        elif kind == _ALERT:
            ka = (cls.__name__, alert_name(action))
            self.alerts[ka] = self.alerts.get(ka, 0) + 1
        elif kind == _FLAGGED:
            self._flag(cls.__name__, getattr(action, "session", ""), getattr(action, "code", ""))
        elif kind == _ADMIN:
            r = cast(ev.AdminResult, action)
            kr = (r.kind, r.ok)
            self.admin[kr] = self.admin.get(kr, 0) + 1
        elif kind == _NOTICE:
            n = cast(ev.Notice, action)
            self.notices[n.kind] = self.notices.get(n.kind, 0) + 1

    def _flag(self, cls: str, session: object, code: object) -> None:
        key = (cls, str(session or ""), str(code or ""))
        self.flagged[key] = self.flagged.get(key, 0) + 1

    def copy(self) -> EdgeCounts:
        """A copy to render outside the core lock (O(sessions + codes + kinds), never O(orders))."""
        out = EdgeCounts()
        out.messages_in = dict(self.messages_in)
        out.messages_out = dict(self.messages_out)
        out.received = dict(self.received)
        out.forwarded = dict(self.forwarded)
        out.refused = dict(self.refused)
        out.flagged = dict(self.flagged)
        out.alerts = dict(self.alerts)
        out.admin = dict(self.admin)
        out.notices = dict(self.notices)
        out.latency_buckets = list(self.latency_buckets)
        out.latency_sum_ns = self.latency_sum_ns
        return out
