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

import msgspec

from ..core import events as ev
from ..core import views


class Feed:
    """Recent decisions, alerts and admin results, and live subscribers (for server-sent events).

    ``add`` is called on quickfix's threads: it only appends and schedules, never blocks.
    """

    def __init__(self, size: int = 500):
        self._recent: dict[str, deque] = {k: deque(maxlen=size) for k in ("decision", "alert", "admin", "notice")}
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self._lock = threading.Lock()

    def add(self, action: ev.Action) -> None:
        kind = _KINDS.get(type(action))
        if kind is None:
            return
        # The action itself is kept (it is immutable); it becomes a dict only when someone reads it.
        self._recent[kind].append(action)
        if not self._subscribers:  # read without the lock: a subscriber that just arrived misses nothing it asked for
            return
        item = _item(kind, action)
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, q in subscribers:
            loop.call_soon_threadsafe(_offer, q, item)

    def recent(self, kind: str, limit: int = 100) -> list[dict]:
        items = list(self._recent[kind])
        return [_item(kind, a) for a in items[-limit:][::-1]]

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue:
        """A queue that receives every new item (call from the event loop)."""
        q: asyncio.Queue = asyncio.Queue(maxsize)
        with self._lock:
            self._subscribers.append((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = [(lp, s) for lp, s in self._subscribers if s is not q]


_KINDS = {ev.Decision: "decision", ev.Alert: "alert", ev.AdminResult: "admin", ev.Notice: "notice"}


def _item(kind: str, action: ev.Action) -> dict:
    # "feed" names the stream; the action's own fields (AdminResult.kind, Notice.kind) stay as they are.
    item = {"feed": kind, **msgspec.to_builtins(action)}
    item.pop("type", None)
    return item


def _offer(q: asyncio.Queue, item: dict) -> None:
    if not q.full():  # a slow reader loses items rather than slowing the proxy down
        q.put_nowait(item)


class Control:
    """Admin commands and views over a running proxy's core."""

    def __init__(self, submit: Callable[[ev.Event], list[ev.Action]], lock: threading.Lock, core,
                 feed: Feed, clock: Callable[[], int] = time.time_ns, health: Callable[[], dict] | None = None,
                 resume_recording: Callable[[str, str], ev.AdminResult] | None = None):
        self._submit = submit
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
            return {"status": "failed" if failure else "ok",
                    "journal": {"state": "failed" if failure else "ok", "reason": failure}, "audit": {"state": "disabled"}}
        return self._health()

    def resume_recording(self, operator: str, reason: str) -> ev.AdminResult:
        """After a recording failure: resume taking new orders once the journal can grow again."""
        if self._resume_recording is None:
            return ev.AdminResult("recording", False, "firm", operator, reason, self.clock(),
                                  detail="this proxy has no journal to resume")
        return self._resume_recording(operator, reason)

    def _result(self, event: ev.Event) -> ev.AdminResult:
        actions = self._submit(event)
        return next(a for a in actions if isinstance(a, ev.AdminResult))

    def kill(self, scope: str, action: str, reason: str, operator: str, request_id: str = "") -> ev.AdminResult:
        return self._result(ev.AdminKill(scope, action, reason, operator, self.clock(), request_id))

    def set_limit(self, layer: str, field: str, value: object, reason: str, operator: str) -> ev.AdminResult:
        return self._result(ev.AdminSetLimit(layer, field, value, reason, operator, self.clock()))

    def set_reference(self, symbol: str, price: str, reason: str, operator: str,
                      force: bool = False) -> ev.AdminResult:
        return self._result(ev.AdminSetReference(symbol, price, reason, operator, self.clock(), force))

    def view(self, name: str):
        """One of core.views (summary, sessions, trading_states, limits, positions, exposure, open_orders)."""
        fn = getattr(views, name)
        with self._lock:
            return fn(self._core)

    def alert_levels(self) -> list[str]:
        """The ``[risk] alert_levels`` (percent), lowest first. Fixed at start-up, so read without the lock."""
        return [format(level, "f") for level in sorted(self._core.settings.alert_levels)]

    def kill_cancels_pending(self) -> int:
        with self._lock:
            return self._core.kill_cancels_pending()
