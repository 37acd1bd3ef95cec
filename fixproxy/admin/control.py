"""One thread-safe way in for every admin surface (HTTP API, FIX admin session, CLI via HTTP).

Commands go through the same lock and the same ``ProxyCore.handle`` as orders, so an admin
action is ordered with the order flow and lands in the audit trail like everything else.
Views are copied out under the lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from ..core import events as ev, monitor, views
from ..core.proxy import ProxyCore


class Feed:
    """Recent decisions, alerts and admin results, and the outbox of the event stream.

    ``add`` runs on the order path (under the core lock, on quickfix's threads or the native engine's
    loop): it appends to two bounded deques and, at most once per batch, wakes the event stream's fan-out
    (admin/http.py StreamHub), whatever the number of stream clients. Items become dicts and JSON only
    when someone reads them, off the order path.
    """

    def __init__(self, size: int = 500, outbox: int = 10_000):
        self._recent: dict[str, deque] = {k: deque(maxlen=size) for k in ("decision", "alert", "admin", "notice")}
        #: (kind, action) waiting for the fan-out; bounded: if the fan-out falls this far behind, the
        #: oldest are dropped (counted in ``lost``) rather than held.
        self._outbox: deque = deque(maxlen=outbox)
        self.lost = 0
        #: True while the event stream has clients: only then does ``add`` fill the outbox.
        self.streaming = False
        self._listener: tuple[asyncio.AbstractEventLoop, Callable[[], None]] | None = None
        self._wake_pending = False

    def add(self, action: ev.Action) -> None:
        kind = _KINDS.get(type(action))
        if kind is None:
            return
        # The action itself is kept (it is immutable); it becomes a dict only when someone reads it.
        self._recent[kind].append(action)
        if not self.streaming:
            return
        box = self._outbox
        if len(box) == box.maxlen:
            self.lost += 1
        box.append((kind, action))
        if not self._wake_pending and self._listener is not None:
            self._wake_pending = True
            loop, wake = self._listener
            try:
                loop.call_soon_threadsafe(wake)
            except RuntimeError:  # the loop is closed (shutting down): nobody is listening any more
                pass

    def recent(self, kind: str, limit: int = 100) -> list[dict]:
        items = list(self._recent[kind])
        return [_item(kind, a) for a in items[-limit:][::-1]]

    def listen(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        """The fan-out: ``wake`` is called on ``loop`` after ``add``, once until the next ``take``."""
        self._listener = (loop, wake)

    def take(self) -> list[tuple[str, ev.Action]]:
        """Everything added since the last take, oldest first (the fan-out, on its loop)."""
        self._wake_pending = False  # before draining: an add from now on wakes the fan-out again
        box = self._outbox
        return [box.popleft() for _ in range(len(box))]


def item(kind: str, action: ev.Action) -> dict:
    """A feed entry as the API shows it: the action's fields and ``feed`` naming its kind."""
    return _item(kind, action)


# An AnomalyAlert goes in the alerts feed; its ``detector`` tells it from a limit's Alert.
_KINDS = {
    ev.Decision: "decision",
    ev.WouldRefuse: "decision",  # marked ``would_refuse`` (see _item): monitor mode let the order go on
    ev.Alert: "alert",
    ev.AnomalyAlert: "alert",
    ev.AdminResult: "admin",
    ev.Notice: "notice",
}


def _item(kind: str, action: ev.Action) -> dict:
    # "feed" names the stream; the action's own fields (AdminResult.kind, Notice.kind) stay as they are.
    item = {"feed": kind, **msgspec.to_builtins(action)}
    if item.pop("type", None) == "WouldRefuse":
        item["would_refuse"] = True
    return item


class Control:
    """Admin commands and views over a running proxy's core."""

    def __init__(
        self,
        submit: Callable[[ev.Event], list[ev.Action]],
        lock: threading.Lock,
        core: ProxyCore,
        feed: Feed,
        clock: Callable[[], int] = time.time_ns,
        health: Callable[[], dict] | None = None,
        resume_recording: Callable[[str, str], ev.AdminResult] | None = None,
        cluster: Callable[[], dict] | None = None,
        ha: Callable[[], dict | None] | None = None,
    ):
        self._submit = submit
        self._cluster = cluster
        self._ha = ha
        self._lock = lock
        self._core = core
        self.feed = feed
        self.clock = clock
        self._health = health
        self._resume_recording = resume_recording

    def health(self) -> dict:
        """{"status": "ok" | "degraded" | "failed", "journal": {...}, "audit": {...}} (see app.Proxy.health)."""
        if self._health is None:
            failure = self._core.recording_failure
            return {
                "status": "failed" if failure else "ok",
                "journal": {"state": "failed" if failure else "ok", "reason": failure},
                "audit": {"state": "disabled"},
            }
        return self._health()

    def cluster(self) -> dict:
        """The firm-wide picture of a cluster of proxies (cluster/manager.py ``view``); {"cluster": "disabled"}
        for a proxy running alone."""
        if self._cluster is None:
            return {"cluster": "disabled"}
        return self._cluster()

    def ha(self) -> dict | None:
        """This instance's part in an active/passive pair (ha/node.py ``view``); None without ``[ha]``."""
        return self._ha() if self._ha is not None else None

    def resume_recording(self, operator: str, reason: str) -> ev.AdminResult:
        """After a recording failure: resume taking new orders once the journal can grow again."""
        if self._resume_recording is None:
            return ev.AdminResult(
                "recording", False, "firm", operator, reason, self.clock(), detail="this proxy has no journal to resume"
            )
        return self._resume_recording(operator, reason)

    def _result(self, event: ev.Event) -> ev.AdminResult:
        actions = self._submit(event)
        return next(a for a in actions if isinstance(a, ev.AdminResult))

    def kill(self, scope: str, action: str, reason: str, operator: str, request_id: str = "") -> ev.AdminResult:
        return self._result(ev.AdminKill(scope, action, reason, operator, self.clock(), request_id))

    def set_limit(self, layer: str, field: str, value: object, reason: str, operator: str) -> ev.AdminResult:
        return self._result(ev.AdminSetLimit(layer, field, value, reason, operator, self.clock()))

    def set_mode(self, rule: str, layer: str, field: str, mode: str, reason: str, operator: str) -> ev.AdminResult:
        return self._result(ev.AdminSetMode(rule, mode, reason, operator, self.clock(), layer, field))

    def modes(self) -> dict:
        """Every rule's mode and the limits in monitor mode (core/monitor.py ``modes``)."""
        with self._lock:
            return monitor.modes(self._core)

    def set_reference(self, symbol: str, price: str, reason: str, operator: str, force: bool = False) -> ev.AdminResult:
        return self._result(ev.AdminSetReference(symbol, price, reason, operator, self.clock(), force))

    def view(self, name: str, *args: object) -> Any:
        """One of core.views (summary, sessions, trading_states, limits, positions, exposure, orders,
        open_orders with a page size and the key to start after). Only copying the values out holds the
        core lock (never a walk over the day's orders); making the answer from them does not."""
        copy, render = views.READS[name]
        with self._lock:
            copied = copy(self._core, *args)
        return render(copied)

    def alert_levels(self) -> list[str]:
        """The ``[risk] alert_levels`` (percent), lowest first. Fixed at start-up, so read without the lock."""
        return [format(level, "f") for level in sorted(self._core.settings.alert_levels)]

    def kill_cancels_pending(self) -> int:
        with self._lock:
            return self._core.kill_cancels_pending()
