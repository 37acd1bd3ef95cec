"""Driving OMS simulators from a test: a flow of orders that keeps a window of them unanswered, and
polling with a bound. Shared by the cluster tests (test_cluster.py) and the active/passive pair's
(ha_harness.py): a flow works on anything with OMS simulators in ``oms`` (a Stack, a Pair)."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from fixproxy.sim.process import Proc

from .test_order_path import order


class HasOms(Protocol):
    oms: dict[str, Proc]


def until(check: Callable[[], object], what: str, timeout: float = 20.0) -> object:
    """Poll ``check`` until it returns something true (not a timed assertion: a bound on waiting)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.05)


class Flow:
    """One OMS sending buy orders of AAPL as fast as it can (``window`` unanswered at a time); once
    refused it sends one order at a time, so a refused instance keeps asking without flooding."""

    def __init__(
        self, name: str, stack: HasOms, window: int = 8, qty: int = 100, price: Decimal = Decimal(190)
    ) -> None:
        self.name = name
        self.oms = stack.oms["oms1"]
        self.window = window
        self.qty = qty
        self.price = price
        self.seen = self.oms.mark()
        self.sent = 0
        self.pending: set[str] = set()
        self.accepted = 0
        self.refusals: list[tuple[str, str]] = []  # (code, text) in the order they came
        self.last_accept = time.monotonic()
        self.refused_since_accept = 0
        self.last_refusal = 0.0
        self.paused = False

    def pump(self, sending: bool) -> None:
        lines = self.oms.lines
        end = len(lines)
        for rec in lines[self.seen : end]:
            f = rec.get("fields") or {}
            if rec.get("dir") != "in":
                continue
            if f.get("35") == "8" and f.get("11") in self.pending:
                self.pending.discard(f["11"])
                if f.get("150") == "8":
                    self._refused(f.get("58", ""))
                else:
                    self.accepted += 1
                    self.last_accept = time.monotonic()
                    self.refused_since_accept = 0
            elif f.get("35") == "j" and f.get("379") in self.pending:
                self.pending.discard(f["379"])
                self._refused(f.get("58", ""))
        self.seen = end
        if not sending or self.paused:
            return
        if self.refused_since_accept:
            if self.pending or time.monotonic() - self.last_refusal < 0.02:
                return
            room = 1
        else:
            room = self.window - len(self.pending)
        lines_out = []
        for _ in range(room):
            self.sent += 1
            cl = f"{self.name}{self.sent}"
            self.pending.add(cl)
            lines_out.append(order(cl, qty=str(self.qty), price=str(self.price)))
        if lines_out:
            self.oms.send_lines(lines_out)

    def _refused(self, text: str) -> None:
        self.refusals.append((text.split(":")[0], text))
        self.refused_since_accept += 1
        self.last_refusal = time.monotonic()

    def again(self) -> None:
        """Try again at full speed, as if just accepted."""
        self.refused_since_accept = 0
        self.last_accept = time.monotonic()

    def refusing(self, quiet_s: float) -> bool:
        """Refused at least three times in a row, with nothing accepted for ``quiet_s``."""
        return self.refused_since_accept >= 3 and time.monotonic() - self.last_accept >= quiet_s


def run(flows: list[Flow], stop: Callable[[], bool], timeout: float = 60.0) -> None:
    """Pump every flow until ``stop()``, then until each has its answers."""
    deadline = time.monotonic() + timeout
    while not stop():
        assert time.monotonic() < deadline, {f.name: (f.accepted, f.refusals[-3:]) for f in flows}
        for f in flows:
            f.pump(sending=True)
        time.sleep(0.002)
    while any(f.pending for f in flows):
        assert time.monotonic() < deadline, {f.name: sorted(f.pending)[:5] for f in flows}
        for f in flows:
            f.pump(sending=False)
        time.sleep(0.01)


def until_all_refuse(flows: list[Flow], quiet_s: float) -> Callable[[], bool]:
    def stop() -> bool:
        return all(f.refusing(quiet_s) for f in flows)

    return stop
