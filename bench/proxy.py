"""The proxy as ``fixproxy run`` runs it, plus a timer for its residence time per message.

The timer wraps the quickfix edge's ``fromApp`` callback: for an OMS NewOrderSingle that is
decode -> core decision -> encode -> send to the venue (quickfix's ``send`` is synchronous, so the
store write and the socket write are inside); for a venue ExecutionReport it is the same path back
to the OMS. It costs two clock reads, a dict lookup and a list append per message. What it cannot see: the socket
read and quickfix's own parsing and validation before the callback. With the native engine it wraps
``NativeBridge.deliver`` (the same path) less the time spent in socket writes (see _install_native).

The benchmark talks to it over stdin, one JSON line per command, answers on stdout:
``{"cmd": "reset"}`` drops the samples so far; ``{"cmd": "dump"}`` answers with one HDR
histogram per direction (base64) and the garbage collector's pauses, and drops them. End of stdin (the driver is gone) stops the proxy.
If the edge no longer has the callback this wraps, the proxy runs untimed and ``dump`` says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import signal
import sys
import threading
import time
from threading import get_ident

from bench import histogram
from fixproxy import app as proxy_app
from fixproxy.config import ConfigError, load
from fixproxy.engines.quickfix import bridge as edge

perf_ns = time.perf_counter_ns


class ResidenceTimer:
    """Per-direction samples (ns) of the time spent in the edge's fromApp, and the garbage collector's pauses."""

    def __init__(self, venue_comp_ids: set[str]):
        self.venue_comp_ids = venue_comp_ids
        self.oms_to_venue: list[int] = []
        self.venue_to_oms: list[int] = []
        self.gc_pauses: list[tuple[int, int]] = []  # (generation, ns); a collection stops every thread
        self._gc_start = 0
        self.installed = False
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_start = perf_ns()
        else:
            self.gc_pauses.append((info["generation"], perf_ns() - self._gc_start))

    def install(self, engine: str = "quickfix") -> bool:
        if engine == "native":
            return self._install_native()
        cls = getattr(edge, "QuickfixBridge", None)
        original = getattr(cls, "fromApp", None)
        if original is None:
            return False
        timer = self
        # Each quickfix engine calls back on its own thread (acceptor: OMS sessions, initiator: venue
        # sessions), so the thread tells the direction; asking the SessionID each time costs binding calls.
        by_thread: dict[int, list[int]] = {}

        def timed_from_app(self, message, sid):
            t0 = perf_ns()
            try:
                return original(self, message, sid)
            finally:
                dt = perf_ns() - t0
                samples = by_thread.get(get_ident())
                if samples is None:
                    samples = timer._classify(sid, by_thread)
                samples.append(dt)

        cls.fromApp = timed_from_app
        self.installed = True
        return True

    def _install_native(self) -> bool:
        # Every session runs on the loop thread: the session's role tells the direction. The native
        # engine writes the first message of a read at once, and the scheduler may hand the CPU to
        # the woken peer inside that system call: the time spent in socket writes is left out, so
        # the figure is the proxy's own work. (quickfix writes to the socket inside sendToTarget, so its
        # figure includes the write: py-spy shows every send() of the proxy under sendToTarget.)
        from fixproxy.engines.native.bridge import NativeBridge
        from fixproxy.engines.native.connection import Connection

        original, write = NativeBridge.deliver, Connection.write
        timer = self
        in_writes = [0]

        def timed_write(conn, data: bytes) -> None:
            t0 = perf_ns()
            try:
                write(conn, data)
            finally:
                in_writes[0] += perf_ns() - t0

        def timed_deliver(self, session, raw, fields, now):
            t0, w0 = perf_ns(), in_writes[0]
            try:
                return original(self, session, raw, fields, now)
            finally:
                (timer.venue_to_oms if session.role == "venue" else timer.oms_to_venue).append(
                    perf_ns() - t0 - (in_writes[0] - w0)
                )

        Connection.write = timed_write
        NativeBridge.deliver = timed_deliver
        self.installed = True
        return True

    def _classify(self, sid, by_thread: dict[int, list[int]]) -> list[int]:
        from_venue = sid.getTargetCompID().getValue() in self.venue_comp_ids
        samples = self.venue_to_oms if from_venue else self.oms_to_venue
        by_thread[get_ident()] = samples
        return samples

    def take(self) -> tuple[list[int], list[int]]:
        """The samples so far, and start afresh (the threads' lists are emptied in place)."""
        out = list(self.oms_to_venue), list(self.venue_to_oms)
        self.oms_to_venue.clear()
        self.venue_to_oms.clear()
        return out

    def take_gc(self) -> dict[str, dict]:
        """Collections since the last call, per generation: how many, their total and longest pause."""
        pauses, self.gc_pauses = self.gc_pauses, []
        out = {}
        for gen in (0, 1, 2):
            ns = [p for g, p in pauses if g == gen]
            out[f"gen{gen}"] = {
                "count": len(ns),
                "total_ms": round(sum(ns) / 1e6, 2),
                "max_ms": round(max(ns, default=0) / 1e6, 2),
            }
        return out


class Timeline:
    """Where an order's round trip goes in the native engine (``--timeline``): per order, when it
    arrived from the OMS, when its write to the venue began, when the venue's ack arrived and when
    the ack's write to the OMS began (a write, and whatever the scheduler runs meanwhile, falls in
    the span after it). It reads each message's ClOrdID,
    MsgType and ExecType with a regex, so it costs a few µs per message: an explanation, not part
    of the benchmark's figures."""

    SPANS = ("order_in_to_venue_write", "venue_write_to_ack_in", "ack_in_to_oms_write")  # write: its start
    _FIELDS = re.compile(rb"\x01(35|11|150)=([^\x01]*)")

    def __init__(self) -> None:
        self.orders: dict[bytes, list[int]] = {}  # venue ClOrdID -> the four times (0: not yet)

    def install(self) -> None:
        from fixproxy.engines.native.connection import Connection

        handle, write = Connection._handle, Connection.write
        timeline = self

        def timed_handle(conn, data: bytes) -> None:
            timeline._stamp(conn, data, incoming=True)
            handle(conn, data)

        def timed_write(conn, data: bytes) -> None:
            timeline._stamp(conn, data, incoming=False)  # the write begins
            write(conn, data)

        Connection._handle, Connection.write = timed_handle, timed_write

    def _stamp(self, conn, data: bytes, incoming: bool) -> None:
        now = perf_ns()
        session = conn.session
        if session is None:
            return
        for message in data.split(b"\x018=FIX"):
            f = dict(self._FIELDS.findall(message))
            cl = f.get(b"11")
            if cl is None:
                continue
            key = cl if session.role == "venue" else session.name.encode() + b"." + cl
            if f.get(b"35") == b"D":
                slot = 0 if incoming else 1
            elif f.get(b"35") == b"8" and f.get(b"150") == b"0":
                slot = 2 if incoming else 3
            else:
                continue
            times = self.orders.setdefault(key, [0, 0, 0, 0])
            if not times[slot]:
                times[slot] = now

    def take(self) -> dict[str, str]:
        """One histogram per span (base64) over the orders complete so far; starts afresh."""
        hists = {name: histogram.new_histogram() for name in self.SPANS}
        for t in self.orders.values():
            if all(t):
                for i, name in enumerate(self.SPANS):
                    histogram.record_ns(hists[name], [t[i + 1] - t[i]])
        self.orders.clear()
        return {name: histogram.encode(h) for name, h in hists.items()}


def _control(timer: ResidenceTimer, timeline: Timeline | None = None) -> None:
    for line in sys.stdin:
        cmd = json.loads(line).get("cmd")
        if cmd == "reset":
            timer.take()
            timer.take_gc()
            if timeline is not None:
                timeline.orders.clear()
            _emit({"event": "reset"})
        elif cmd == "dump":
            record: dict = {"event": "residence", "measured": timer.installed, "gc": timer.take_gc()}
            for name, samples in zip(("oms_to_venue", "venue_to_oms"), timer.take(), strict=True):
                hist = histogram.new_histogram()
                histogram.record_ns(hist, samples)
                record[name] = histogram.encode(hist)
            if timeline is not None:
                record["timeline"] = timeline.take()
            _emit(record)
    os.kill(os.getpid(), signal.SIGTERM)  # stdin closed: the driver is gone, stop like on SIGTERM


def _freeze_loop(every_s: float) -> None:
    # Objects alive now (orders, book entries) move to the permanent generation: a full collection no
    # longer walks them, so its pause stays proportional to what is new instead of everything held.
    while True:
        time.sleep(every_s)
        gc.freeze()


def _emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval for the proxy (default: Python's, 5 ms); an experiment knob",
    )
    p.add_argument(
        "--gc-freeze-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="experiment: gc.freeze() this often, so full collections skip what survived until then",
    )
    p.add_argument(
        "--timeline",
        action="store_true",
        help="native engine: also time the order's arrival, its write to the venue, the ack's arrival "
        "and its write to the OMS (costs a few µs per message)",
    )
    args = p.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.gc_freeze_every:
        threading.Thread(target=_freeze_loop, args=(args.gc_freeze_every,), name="bench-gc-freeze", daemon=True).start()
    try:
        loaded = load(args.config)
    except ConfigError as exc:
        print(f"fixproxy: bad configuration: {exc}", file=sys.stderr)
        return 2
    timer = ResidenceTimer({v.comp_id for v in loaded.config.venues})
    timer.install(loaded.config.proxy.engine)
    timeline = None
    if args.timeline and loaded.config.proxy.engine == "native":
        timeline = Timeline()
        timeline.install()
    threading.Thread(target=_control, args=(timer, timeline), name="bench-control", daemon=True).start()
    proxy_app.run(loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
