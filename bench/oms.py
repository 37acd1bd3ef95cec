"""The benchmark's load-generating OMS: one quickfix initiator session, driven over stdin.

Started by the benchmark (bench/setups.py) as its own process. It prints ``{"event": "logon"}`` once the session is
up, then runs one measurement window per command line read from stdin::

    {"cmd": "window", "id": 3, "rate": 5000, "duration_s": 8, "max_in_flight": 1000, "ack_timeout_s": 5,
     "abort_lag_s": null}
    {"cmd": "quit"}

and answers each window with one JSON line: counts, and two HDR histograms (base64).

How it measures (open loop, no coordinated omission): order ``i`` of a window has the intended
send time ``t0 + i / rate``, fixed before the window starts. The sender sends each order at its
intended time or, when it fell behind, at once; latency is counted from the intended time to the
arrival of the ExecutionReport with OrdStatus 0 (New) for that ClOrdID, so a stall anywhere,
including in this client, shows in the figures instead of slowing the schedule. The service time
(from the actual send) is kept beside it, to tell client lag from path latency. In-flight orders
are bounded: at the bound the sender waits (the waiting counts as latency), and orders it could not
send before the window's hard end (its length plus the ack timeout) are counted as unsent. A throughput
step may also give up once the sender is ``abort_lag_s`` behind schedule; the rest is unsent.

The client is kept light so it distorts all setups as little as possible: an in-memory store, no
message log, a 0.5 ms GIL switch interval, 1 ns timer slack, and the callback only stamps a time
into a preallocated array; histograms are filled after the window.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import threading
import time
from array import array
from pathlib import Path

import quickfix as fix

from bench import histogram
from fixproxy.engines.quickfix.settings import session_block, write_settings

perf_ns = time.perf_counter_ns


def _emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _tighten_timers() -> None:
    """Linux: 1 ns timer slack, so a 100 µs sleep wakes close to 100 µs instead of 150 µs."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


class Window:
    """One window's schedule and what came back, indexed by order number."""

    def __init__(self, wid: int, run_id: str, rate: float, duration_s: float):
        self.prefix = f"{run_id}w{wid}-"
        self.plen = len(self.prefix)
        self.n = max(1, int(rate * duration_s))
        self.interval_ns = int(1e9 / rate)
        self.sent_at = array("q", bytes(8 * self.n))
        self.acked_at = array("q", bytes(8 * self.n))
        self.t0 = 0
        self.done = 0  # acked + rejected; written by the quickfix thread only
        self.rejected = 0
        self.first_reject = ""


class LoadOms(fix.Application):
    """Sends the window's orders from the main thread; the quickfix thread stamps the answers."""

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id
        self.logged_on = threading.Event()
        self.sid: fix.SessionID | None = None
        self.window: Window | None = None
        self.late = 0  # answers for an earlier window
        self.session_rejects = 0

    def onCreate(self, sid):
        self.sid = sid

    def onLogon(self, sid):
        self.logged_on.set()

    def onLogout(self, sid):
        self.logged_on.clear()

    def toAdmin(self, message, sid):
        pass

    def toApp(self, message, sid):
        pass

    def fromAdmin(self, message, sid):
        if message.getHeader().getField(35) == "3":
            self.session_rejects += 1

    def fromApp(self, message, sid):
        now = perf_ns()
        w = self.window
        if message.isSetField(11):
            cl_ord_id = message.getField(11)
            status = message.getField(39) if message.isSetField(39) else ""
        else:  # BusinessMessageReject: the ClOrdID is in 379
            cl_ord_id = message.getField(379) if message.isSetField(379) else ""
            status = "8"
        if w is None or not cl_ord_id.startswith(w.prefix):
            self.late += 1
            return
        try:
            i = int(cl_ord_id[w.plen :])
        except ValueError:
            self.late += 1
            return
        if status == "0":
            if w.acked_at[i] == 0:
                w.acked_at[i] = now
                w.done += 1
        elif status == "8":
            w.rejected += 1
            w.done += 1
            if not w.first_reject and message.isSetField(58):
                w.first_reject = message.getField(58)


class Sender:
    """Builds and sends NewOrderSingles for one session: buys and sells alternate, one limit price each."""

    def __init__(self, sid: fix.SessionID, symbol: str, qty: str, account: str, buy_price: str, sell_price: str):
        self.session = fix.Session.lookupSession(sid)
        self.begin = sid.getBeginString().getValue()
        self.fix42 = self.begin == "FIX.4.2"
        self.symbol, self.qty, self.account = symbol, qty, account
        self.price = {"1": buy_price, "2": sell_price}
        self._second = -1
        self._stamp = ""

    def _transact_time(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:  # formatting once a second is enough for TransactTime
            self._second = second
            self._stamp = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(now * 1000) % 1000:03d}"

    def send(self, cl_ord_id: str, side: str) -> None:
        msg = fix.Message()
        header = msg.getHeader()
        header.setField(fix.BeginString(self.begin))
        header.setField(fix.MsgType("D"))
        msg.setField(11, cl_ord_id)
        if self.account:
            msg.setField(1, self.account)
        if self.fix42:
            msg.setField(21, "1")
        msg.setField(55, self.symbol)
        msg.setField(54, side)
        msg.setField(38, self.qty)
        msg.setField(40, "2")
        msg.setField(44, self.price[side])
        msg.setField(60, self._transact_time())
        self.session.send(msg)


def _median(values: list[int]) -> int | None:
    return sorted(values)[len(values) // 2] if values else None


def run_window(app: LoadOms, sender: Sender, cmd: dict) -> dict:
    """Send one window's orders on schedule, wait for the answers, and summarise."""
    rate = float(cmd["rate"])
    duration_s = float(cmd["duration_s"])
    max_in_flight = int(cmd["max_in_flight"])
    ack_timeout_ns = int(float(cmd["ack_timeout_s"]) * 1e9)
    # Throughput steps give up once the sender is this far behind schedule: the step has failed already.
    abort_lag_ns = int(float(cmd["abort_lag_s"]) * 1e9) if cmd.get("abort_lag_s") else None
    w = Window(int(cmd["id"]), app.run_id, rate, duration_s)
    late_before, session_rejects_before = app.late, app.session_rejects
    app.window = w
    n, interval, prefix = w.n, w.interval_ns, w.prefix
    sent_at = w.sent_at
    w.t0 = t0 = perf_ns() + 2_000_000
    hard_end = t0 + int(duration_s * 1e9) + ack_timeout_ns
    sent = 0
    max_lag = 0
    max_in_flight_seen = 0
    waited_for_slots = 0
    aborted = False
    while sent < n:
        now = perf_ns()
        due = t0 + sent * interval
        if due > now:
            time.sleep((due - now) / 1e9)
            continue
        if abort_lag_ns is not None and now - due > abort_lag_ns:
            aborted = True
            break
        in_flight = sent - w.done
        if in_flight >= max_in_flight:
            if now > hard_end:
                break
            waited_for_slots += 1
            time.sleep(0.0005)
            continue
        max_in_flight_seen = max(max_in_flight_seen, in_flight)
        sender.send(f"{prefix}{sent}", "1" if sent & 1 == 0 else "2")
        sent_at[sent] = after = perf_ns()
        max_lag = max(max_lag, after - due)
        sent += 1
    send_end = perf_ns()
    # Wait for the answers: all of them, or until the ack timeout after the last send.
    deadline = send_end + ack_timeout_ns
    while w.done < sent and perf_ns() < deadline:
        time.sleep(0.002)
    app.window = None
    latency, service = histogram.new_histogram(), histogram.new_histogram()
    acked = 0
    acked_at = w.acked_at
    thirds: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i in range(sent):
        t = acked_at[i]
        if t:
            acked += 1
            lat_us = min(max((t - (t0 + i * interval)) // 1000, 1), histogram.HIGHEST_US)
            latency.record_value(lat_us)
            service.record_value(min(max((t - sent_at[i]) // 1000, 1), histogram.HIGHEST_US))
            thirds[min(3 * i // n, 2)].append(lat_us)
    send_s = (send_end - t0) / 1e9
    return {
        "event": "window",
        "id": cmd["id"],
        "rate": rate,
        "duration_s": duration_s,
        "planned": n,
        "sent": sent,
        "acked": acked,
        "rejected": w.rejected,
        "timeouts": sent - acked - w.rejected,
        "unsent": n - sent,
        "aborted": aborted,
        "late_answers": app.late - late_before,
        "session_rejects": app.session_rejects - session_rejects_before,
        "first_reject": w.first_reject,
        "achieved_send_rate": round(sent / send_s, 1) if send_s > 0 else None,
        "max_send_lag_us": max_lag // 1000,
        "max_in_flight_seen": max_in_flight_seen,
        # A setup that keeps up answers the last third of the window as fast as the first; a growing
        # backlog shows as a later median far above the earlier one.
        "p50_first_third_us": _median(thirds[0]),
        "p50_last_third_us": _median(thirds[2]),
        "waits_for_in_flight_slot": waited_for_slots,
        "latency": histogram.encode(latency),
        "service": histogram.encode(service),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sender", default="OMS1", help="our SenderCompID")
    p.add_argument("--target", default="FIXPROXY", help="the counterparty's CompID")
    p.add_argument("--fix-version", default="FIX.4.4")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--run-id", required=True, help="ClOrdID prefix unique to this run (ClOrdIDs are unique per day)")
    p.add_argument("--symbol", default="AAPL")
    p.add_argument("--qty", default="100")
    p.add_argument("--account", default="BENCH")
    # Buys below sells: the orders never cross each other, so the self-match rule lets them through.
    p.add_argument("--buy-price", default="189")
    p.add_argument("--sell-price", default="191")
    p.add_argument("--switch-interval", type=float, default=0.0005)
    args = p.parse_args(argv)

    sys.setswitchinterval(args.switch_interval)
    _tighten_timers()
    block = session_block(
        args.fix_version,
        args.sender,
        args.target,
        SocketConnectHost="127.0.0.1",
        SocketConnectPort=args.port,
        HeartBtInt=30,
        ReconnectInterval=1,
    )
    defaults = {
        "ConnectionType": "initiator",
        "StartTime": "00:00:00",
        "EndTime": "00:00:00",
        "UseDataDictionary": "Y",
        "ValidateUserDefinedFields": "N",
        "AllowUnknownMsgFields": "Y",
        "SocketNodelay": "Y",
        "ResetOnLogon": "N",
        "PersistMessages": "N",
    }
    settings = write_settings(args.state_dir / "quickfix-bench-oms.cfg", defaults, [block])
    app = LoadOms(args.run_id)
    store = fix.MemoryStoreFactory()
    engine = fix.SocketInitiator(app, store, settings)
    engine.start()
    rc = 0
    try:
        if not app.logged_on.wait(30):
            _emit({"event": "error", "detail": f"no logon to 127.0.0.1:{args.port} within 30 s"})
            rc = 2
            return rc
        sender = Sender(app.sid, args.symbol, args.qty, args.account, args.buy_price, args.sell_price)
        _emit({"event": "logon", "pid": os.getpid()})
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("cmd") == "quit":
                break
            if cmd.get("cmd") == "window":
                if not app.logged_on.is_set():
                    _emit({"event": "error", "detail": "session is not logged on"})
                    continue
                _emit(run_window(app, sender, cmd))
        return rc
    finally:
        session = fix.Session.lookupSession(app.sid) if app.sid is not None else None
        if session is not None and session.isLoggedOn():
            session.logout("benchmark done")
            time.sleep(0.3)
        engine.stop()
        sys.stdout.flush()
        os._exit(rc)  # skip interpreter teardown of the SWIG objects (it has crashed quickfix)


if __name__ == "__main__":
    sys.exit(main())
