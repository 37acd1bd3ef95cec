"""Failover of an active/passive pair over real sessions (issue 22), both engines, sync copy.

Orders flow from an OMS (given both proxies' addresses) at a steady rate; the active is killed -9,
or stopped (SIGSTOP: a hung host, its sockets open) and later resumed. The standby takes over, and
then: every order the OMS sent reached the venue exactly once or was refused; every execution
report the venue sent reached the OMS; positions and halts are what they were; the old active,
resumed, sends nothing to the venue and comes back as the standby.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from decimal import Decimal

from .flows import until
from .ha_harness import Pair, pair
from .harness import TOKENS
from .test_order_path import order

BEHAVIOURS = {"AAPL": "fill", "MSFT": "partial"}


class Stream:
    """Orders sent by one OMS simulator at a steady rate on a thread, until stopped."""

    def __init__(self, oms, prefix: str, every_s: float = 0.02) -> None:
        self.oms, self.prefix, self.every_s = oms, prefix, every_s
        self.sent: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            cl = f"{self.prefix}{i}"
            self.oms.send_line(order(cl, symbol="AAPL" if i % 2 else "MSFT", qty="10"))
            self.sent.append(cl)
            i += 1
            self._stop.wait(self.every_s)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(5)
        return list(self.sent)


def oms_in(oms) -> list[dict]:
    return [r["fields"] for r in list(oms.lines) if r.get("dir") == "in" and "fields" in r]


def answered(oms, cls: list[str]) -> bool:
    seen = {f.get("11") for f in oms_in(oms) if f.get("35") == "8"} | {
        f.get("379") for f in oms_in(oms) if f.get("35") == "j"
    }
    return all(cl in seen for cl in cls)


def refused(oms) -> set[str]:
    out = {f.get("379", "") for f in oms_in(oms) if f.get("35") == "j"}
    out |= {f.get("11", "") for f in oms_in(oms) if f.get("35") == "8" and f.get("150") == "8"}
    return out


def venue_orders(p: Pair) -> Counter:
    """OMS ClOrdID -> how many times the venue received it (over every connection)."""
    return Counter(
        r["fields"]["11"].removeprefix("oms1.")
        for r in p.venue_received()
        if r["fields"].get("35") == "D" and r["fields"].get("11", "").startswith("oms1.")
    )


def venue_reports(p: Pair) -> list[dict]:
    return [r["fields"] for r in list(p.venue.lines) if r.get("dir") == "out" and r.get("fields", {}).get("35") == "8"]


def get(p: Pair, instance: str, path: str) -> object:
    stack = p.nodes[instance]
    request = urllib.request.Request(stack.api_url + path, headers={"Authorization": f"Bearer {TOKENS['viewer']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def halt(p: Pair, instance: str, scope: str) -> None:
    body = json.dumps({"scope": scope, "action": "halt", "reason": "before the failover"}).encode()
    request = urllib.request.Request(
        p.nodes[instance].api_url + "/kill-switch",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {TOKENS['risk']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def check_nothing_lost(p: Pair, oms, sent: list[str], active: str) -> None:
    """Each order at the venue exactly once or refused; each venue report at the OMS; positions as filled."""
    until(lambda: answered(oms, sent), "every order answered", timeout=60)
    at_venue = venue_orders(p)
    twice = [cl for cl, n in at_venue.items() if n > 1]
    assert not twice, f"reached the venue twice: {twice[:10]}"
    no = refused(oms)
    lost = [cl for cl in sent if at_venue[cl] == 0 and cl not in no]
    assert not lost, f"neither at the venue nor refused: {lost[:10]}"
    both = [cl for cl in sent if at_venue[cl] and cl in no]
    assert not both, f"at the venue and refused to the OMS: {both[:10]}"
    # Every execution report the venue sent reached the OMS (a report sent again carries the same ExecID).
    sent_ids = {
        (f["11"].removeprefix("oms1."), f["17"]) for f in venue_reports(p) if f.get("11", "").startswith("oms1.")
    }

    def reports_arrived() -> bool:
        got = {(f.get("11"), f.get("17")) for f in oms_in(oms) if f.get("35") == "8"}
        return sent_ids <= got

    until(reports_arrived, "every venue report at the OMS", timeout=30)
    # Positions on the new active: what the venue filled.
    filled: dict[str, Decimal] = defaultdict(Decimal)
    for f in venue_reports(p):
        if f.get("150") in ("F", "1", "2") and f.get("11", "").startswith("oms1.") and f.get("32"):
            filled[f["55"]] += Decimal(f["32"])

    def positions() -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(Decimal)
        for pos in get(p, active, "/positions"):  # type: ignore[union-attr]
            out[pos["symbol"]] += Decimal(pos["qty"])
        return {k: v for k, v in out.items() if v}

    until(lambda: positions() == {k: v for k, v in filled.items() if v}, "positions equal to the fills", timeout=30)


def test_kill9_of_the_active_standby_takes_over_and_nothing_is_lost(tmp_path, pg_url):
    """Orders at 50/s; a halt on TSLA set on a; a killed -9 mid-flow: b takes over with the next
    token, the OMS follows; every order reached the venue once or was refused, every venue report
    reached the OMS, b's positions equal the fills, and TSLA is still halted on b."""
    with pair(tmp_path, pg_url, copy="sync", behaviours=BEHAVIOURS) as p:
        oms = p.oms["oms1"]
        token = p.view("a")["token"]
        halt(p, "a", "symbol:TSLA")
        stream = Stream(oms, "K")
        until(lambda: len(stream.sent) > 40, "orders flowing")
        p.kill("a", signal.SIGKILL)
        view = p.wait_role("b", "active")
        assert view["token"] == token + 1
        until(lambda: len(stream.sent) > 200, "orders flowing after the failover", timeout=60)
        sent = stream.stop()
        check_nothing_lost(p, oms, sent, "b")
        assert venue_orders(p)[sent[-1]] == 1 or sent[-1] in refused(oms)
        # The halt made on a holds on b.
        start = oms.mark()
        oms.send_line(order("T1", symbol="TSLA", qty="1", price=None))
        rec = oms.wait_for(
            lambda r: r.get("dir") == "in" and "T1" in (r["fields"].get("379"), r["fields"].get("11")),
            start=start,
            timeout=30,
        )
        assert "HALTED" in rec["fields"].get("58", "")


def test_stopped_active_is_replaced_and_once_resumed_sends_nothing(tmp_path, pg_url):
    """a stopped (SIGSTOP, its sockets open): b takes over once a's lease lapsed; the venue drops a's
    silent connection and takes b's; nothing is lost. a resumed (SIGCONT) finds a newer token: the
    venue receives nothing more from it, and it comes back as the standby of b, in copy."""
    with pair(
        tmp_path,
        pg_url,
        copy="sync",
        behaviours=BEHAVIOURS,
        venue_extra="heartbeat_s = 1",
        heartbeat_s=1,
    ) as p:
        oms = p.oms["oms1"]
        stream = Stream(oms, "S")
        until(lambda: len(stream.sent) > 40, "orders flowing")
        p.pause("a")
        p.wait_role("b", "active")
        taken_over = len(p.venue.lines)  # from here on, a byte from a at the venue is a split brain
        until(lambda: venue_orders(p).keys() & {s for s in stream.sent[-20:]}, "orders through b", timeout=60)
        until(lambda: len(stream.sent) > 250, "orders flowing after the failover", timeout=60)
        sent = stream.stop()
        check_nothing_lost(p, oms, sent, "b")
        p.resume("a")
        p.wait_role("a", "standby")
        p.wait_copy("sync")
        time.sleep(1)  # a's engine threads had time to do whatever they were going to
        from_a = [
            r
            for r in list(p.venue.lines)[taken_over:]
            if r.get("dir") == "in" and p.venue_instance(r.get("conn") or 0) == "a"
        ]
        assert from_a == [], f"the resumed old active sent to the venue: {from_a[:3]}"
        assert p.roles() == {"a": "standby", "b": "active"}
        # What a had is set aside, with why.
        aside = list((p.nodes["a"].root / "var" / "superseded").glob("*/WHY"))
        assert aside and "superseded" in aside[0].read_text()
