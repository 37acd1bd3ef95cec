"""The benchmark's light FIX peers: a load-generating OMS and a venue in one uvloop process.

Both ends cost a few microseconds a message, so the setup under test, not its peers, sets the
figures: raw asyncio Protocols, a hand-rolled framer that reads only the tags it needs, outbound
messages from pre-built templates where only the sequence number, the time, ClOrdID and the
venue's ids change, and the timestamp text made once per millisecond. The venue acknowledges
(39=0) and fills (39=2) each NewOrderSingle at once, in one write. Both answer Logon, Heartbeat,
TestRequest, ResendRequest (a gap fill) and Logout. FIX 4.4, with every field quickfix's
``FIX44.xml`` requires.

Started by the benchmark (bench/setups.py) and driven over stdin, one JSON command a line, one
JSON answer a line on stdout::

    (at start)                                      -> {"event": "listening", "port": P, ...}
    {"cmd": "connect", "port": P}                   -> {"event": "logon", ...}
    {"cmd": "window", "id": 3, "rate": 5000, "duration_s": 8, "max_in_flight": 1000,
     "ack_timeout_s": 2, "abort_lag_s": null}       -> {"event": "window", ...}
    {"cmd": "quit"}

How a window measures (open loop, no coordinated omission): order ``i`` has the intended send
time ``t0 + i / rate``, fixed before the window starts. A timerfd wakes the loop at the next
intended time (uvloop's own timers have a resolution of a millisecond); every order due by then
goes out in one write. Latency runs from the intended time to the read that brought the
ExecutionReport 39=0 for that ClOrdID, so a stall anywhere, in this process too, shows in the
figures instead of slowing the schedule; the service time (from the actual send) is kept beside it.
In-flight orders are bounded: at the bound the sender waits (the wait counts as latency), and
orders not sent by the window's hard end (its length plus the ack timeout) count as unsent. A
window may give up once the sender is ``abort_lag_s`` behind schedule: the rest is unsent.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import socket
import sys
import time
from array import array
from collections import Counter
from typing import Any, cast

import uvloop

from bench import histogram

mono_ns = time.monotonic_ns  # CLOCK_MONOTONIC, the timerfd's clock

SOH = b"\x01"
BEGIN = b"8=FIX.4.4\x019="


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- time and framing


class Clock:
    """UTCTimestamp text (YYYYMMDD-HH:MM:SS.sss), made once per millisecond."""

    def __init__(self) -> None:
        self._ms = -1
        self._second = -1
        self._second_text = b""
        self.text = b""

    def stamp(self) -> bytes:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            second, milli = divmod(ms, 1000)
            if second != self._second:
                self._second = second
                self._second_text = time.strftime("%Y%m%d-%H:%M:%S.", time.gmtime(second)).encode()
            self._ms = ms
            self.text = self._second_text + b"%03d" % milli
        return self.text


def frame(body: bytes) -> bytes:
    """BeginString, BodyLength and CheckSum around a body (from 35= to its last SOH)."""
    msg = BEGIN + b"%d\x01" % len(body) + body
    return msg + b"10=%03d\x01" % (sum(msg) & 0xFF)


def value(buf: bytes, tag: bytes, start: int, stop: int) -> bytes:
    """The value of ``tag`` (``b"\\x0111="``) in buf[start:stop], b"" when absent."""
    i = buf.find(tag, start, stop)
    if i < 0:
        return b""
    i += len(tag)
    return buf[i : buf.find(SOH, i, stop)]


class Alarm:
    """A timerfd on CLOCK_MONOTONIC set to absolute times: wakes the loop at the microsecond."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._settime = libc.timerfd_settime
        fd = libc.timerfd_create(1, os.O_NONBLOCK | os.O_CLOEXEC)  # CLOCK_MONOTONIC; TFD_* = O_*
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self.fd: int = fd
        self._spec = (ctypes.c_long * 4)()  # struct itimerspec: interval (0: one shot), value

    def at(self, t_ns: int) -> None:
        self._spec[2], self._spec[3] = divmod(max(t_ns, 1), 1_000_000_000)
        if self._settime(self.fd, 1, self._spec, None) != 0:  # TFD_TIMER_ABSTIME
            raise OSError(ctypes.get_errno(), "timerfd_settime")

    def clear(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass


# ---------------------------------------------------------------- one FIX session end


class Session(asyncio.Protocol):
    """Framing, sequence numbers and the session messages; ``app`` gets the application messages."""

    def __init__(self, clock: Clock, sender: bytes = b"", target: bytes = b"", initiator: bool = False) -> None:
        self.clock = clock
        self.initiator = initiator
        self.seq = 1
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.logged_on = asyncio.get_running_loop().create_future()
        self.session_rejects = 0
        self.set_ids(sender, target)

    def set_ids(self, sender: bytes, target: bytes) -> None:
        self.sender, self.target = sender, target
        self.head = b"49=" + sender + b"\x0156=" + target + b"\x0134="  # after 35=X

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if self.initiator:
            self.write([self.admin(b"A", b"98=0\x01108=30\x01141=Y\x01")])

    def admin(self, msg_type: bytes, fields: bytes) -> bytes:
        """One framed message with the next sequence number; ``fields`` end with SOH."""
        body = b"35=%b\x01%b%d\x0152=%b\x01%b" % (msg_type, self.head, self.seq, self.clock.stamp(), fields)
        self.seq += 1
        return frame(body)

    def write(self, messages: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(messages))

    def data_received(self, data: bytes) -> None:
        now = mono_ns()
        buf = self.buf + data if self.buf else data
        n, pos = len(buf), 0
        out: list[bytes] = []
        while True:
            j = buf.find(b"\x019=", pos)
            if j < 0:
                break
            k = buf.find(SOH, j + 3)
            if k < 0:
                break
            stop = k + 1 + int(buf[j + 3 : k])  # the body ends with the SOH before 10=
            end = stop + 7
            if end > n:
                break
            t = buf.find(SOH, k + 4)  # 35= opens the body
            msg_type = buf[k + 4 : t]
            if msg_type in (b"8", b"D", b"j", b"9", b"F", b"G"):
                self.app(msg_type, buf, k, stop, now, out)
            else:
                self.session_message(msg_type, buf, k, stop, out)
            pos = end
        self.buf = buf[pos:]
        if out:
            self.write(out)

    def session_message(self, msg_type: bytes, buf: bytes, start: int, stop: int, out: list[bytes]) -> None:
        if msg_type == b"A":
            if not self.initiator:  # the venue answers as the CompIDs it was called by
                self.set_ids(value(buf, b"\x0156=", start, stop), value(buf, b"\x0149=", start, stop))
                reset = b"141=Y\x01" if value(buf, b"\x01141=", start, stop) == b"Y" else b""
                hb = value(buf, b"\x01108=", start, stop) or b"30"
                out.append(self.admin(b"A", b"98=0\x01108=" + hb + b"\x01" + reset))
            if not self.logged_on.done():
                self.logged_on.set_result(True)
        elif msg_type == b"1":
            out.append(self.admin(b"0", b"112=" + value(buf, b"\x01112=", start, stop) + b"\x01"))
        elif msg_type == b"2":  # nothing is kept to resend: fill the gap up to the next number
            begin = int(value(buf, b"\x017=", start, stop) or b"1")
            body = b"35=4\x01%b%d\x0143=Y\x0152=%b\x01122=%b\x01123=Y\x0136=%d\x01" % (
                self.head,
                begin,
                self.clock.stamp(),
                self.clock.stamp(),
                self.seq,
            )
            out.append(frame(body))
        elif msg_type == b"3":
            self.session_rejects += 1
            print(f"session reject: {buf[start:stop]!r}", file=sys.stderr)
        elif msg_type == b"5":
            out.append(self.admin(b"5", b""))
            if self.transport is not None:
                self.transport.close()

    def app(self, msg_type: bytes, buf: bytes, start: int, stop: int, now: int, out: list[bytes]) -> None:
        """An application message: buf[start] is the SOH before its 35=."""

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.logged_on.done():
            self.logged_on.set_exception(ConnectionError("the session closed before its Logon"))
        self.transport = None


# The venue's answers, after 35=8: header (CompIDs, MsgSeqNum, SendingTime), then OrderID, ClOrdID,
# ExecID, ExecType, OrdStatus, the order's own fields, and the quantities.
ACK = (
    b"35=8\x01%b%d\x0152=%b\x0137=V%d\x0111=%b\x0117=A%d\x01150=0\x0139=0\x01"
    b"55=%b\x0154=%b\x0138=%b\x0144=%b\x01151=%b\x0114=0\x016=0\x01"
)
FILL = (
    b"35=8\x01%b%d\x0152=%b\x0137=V%d\x0111=%b\x0117=F%d\x01150=F\x0139=2\x01"
    b"55=%b\x0154=%b\x0138=%b\x0144=%b\x0132=%b\x0131=%b\x01151=0\x0114=%b\x016=%b\x01"
)


class Venue(Session):
    """Acknowledges and fills each NewOrderSingle at once (one write for both)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.n = 0

    def app(self, msg_type: bytes, buf: bytes, start: int, stop: int, now: int, out: list[bytes]) -> None:
        if msg_type != b"D":
            return
        self.n += 1
        n = self.n
        cl = value(buf, b"\x0111=", start, stop)
        side = value(buf, b"\x0154=", start, stop)
        symbol = value(buf, b"\x0155=", start, stop)
        qty = value(buf, b"\x0138=", start, stop)
        px = value(buf, b"\x0144=", start, stop)
        stamp, seq = self.clock.stamp(), self.seq
        self.seq += 2
        out.append(frame(ACK % (self.head, seq, stamp, n, cl, n, symbol, side, qty, px, qty)))
        out.append(frame(FILL % (self.head, seq + 1, stamp, n, cl, n, symbol, side, qty, px, qty, px, qty, px)))


class Window:
    """One window's schedule and what came back, indexed by order number."""

    def __init__(self, cmd: dict[str, Any], run_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.id = int(cmd["id"])
        self.rate = float(cmd["rate"])
        self.duration_s = float(cmd["duration_s"])
        self.max_in_flight = int(cmd["max_in_flight"])
        self.ack_timeout_ns = int(float(cmd["ack_timeout_s"]) * 1e9)
        self.abort_lag_ns = int(float(cmd["abort_lag_s"]) * 1e9) if cmd.get("abort_lag_s") else None
        self.prefix = f"{run_id}w{self.id}-".encode()
        self.plen = len(self.prefix)
        self.n = max(1, int(self.rate * self.duration_s))
        self.interval = int(1e9 / self.rate)
        self.sent_at = array("q", bytes(8 * self.n))
        self.acked_at = array("q", bytes(8 * self.n))
        self.t0 = 0
        self.hard_end = 0
        self.sent = 0
        self.done = 0  # acked + rejected
        self.rejected = 0
        self.first_reject = ""
        self.max_lag = 0
        self.max_in_flight_seen = 0
        self.waits = 0
        self.aborted = False
        self.send_end = 0
        self.sending = True
        self.sending_over = loop.create_future()
        self.finished = loop.create_future()  # sending over and every sent order answered


class Oms(Session):
    """Sends the windows' orders (buys and sells alternate) and stamps the answers."""

    def __init__(self, clock: Clock, args: argparse.Namespace) -> None:
        super().__init__(clock, args.sender.encode(), args.target.encode(), initiator=True)
        self.window: Window | None = None
        self.late = 0
        common = f"\x011={args.account}\x0121=1\x0155={args.symbol}\x0138={args.qty}\x0140=2"
        # 35=D, header, 11=<prefix><i>, then the side's fields and 60=<time>
        self.tails = [
            f"{common}\x0154=1\x0144={args.buy_price}\x0160=".encode(),
            f"{common}\x0154=2\x0144={args.sell_price}\x0160=".encode(),
        ]
        self.alarm: Alarm | None = None

    def app(self, msg_type: bytes, buf: bytes, start: int, stop: int, now: int, out: list[bytes]) -> None:
        w = self.window
        if msg_type == b"8":
            status = value(buf, b"\x0139=", start, stop)
            if status != b"0" and status != b"8":
                return  # fills and other reports: the latency is to the acknowledgement
            cl = value(buf, b"\x0111=", start, stop)
        elif msg_type == b"j":
            status, cl = b"8", value(buf, b"\x01379=", start, stop)
        else:
            return
        if w is None or not cl.startswith(w.prefix):
            self.late += 1
            return
        try:
            i = int(cl[w.plen :])
        except ValueError:
            self.late += 1
            return
        if status == b"0":
            if w.acked_at[i]:
                return
            w.acked_at[i] = now
        else:
            w.rejected += 1
            if not w.first_reject:
                w.first_reject = value(buf, b"\x0158=", start, stop).decode("latin-1")
        w.done += 1
        if not w.sending and w.done >= w.sent and not w.finished.done():
            w.finished.set_result(None)

    # -------- the sender, woken by the alarm

    def tick(self) -> None:
        assert self.alarm is not None
        self.alarm.clear()
        w = self.window
        if w is None or not w.sending:
            return
        now = mono_ns()
        due = w.t0 + w.sent * w.interval
        if due > now:
            self.alarm.at(due)
            return
        if now > w.hard_end or (w.abort_lag_ns is not None and now - due > w.abort_lag_ns):
            w.aborted = now <= w.hard_end
            self._stop_sending(w, now)
            return
        in_flight = w.sent - w.done
        room = w.max_in_flight - in_flight
        if room <= 0:
            w.waits += 1
            self.alarm.at(now + 100_000)
            return
        if in_flight > w.max_in_flight_seen:
            w.max_in_flight_seen = in_flight
        k = min((now - w.t0) // w.interval + 1, w.n) - w.sent
        k = min(k, room, 256)  # one write at most this big: the answers get their turn
        first = w.sent
        stamp = self.clock.stamp()
        head, prefix, tails, seq = self.head, w.prefix, self.tails, self.seq
        msgs = [
            frame(b"35=D\x01%b%d\x0152=%b\x0111=%b%d%b%b\x01" % (head, seq + j, stamp, prefix, i, tails[i & 1], stamp))
            for j, i in enumerate(range(first, first + k))
        ]
        self.seq = seq + k
        self.write(msgs)
        after = mono_ns()
        sent_at = w.sent_at
        for i in range(first, first + k):
            sent_at[i] = after
        if after - due > w.max_lag:
            w.max_lag = after - due
        w.sent = first + k
        if w.sent >= w.n:
            self._stop_sending(w, after)
        else:
            self.alarm.at(w.t0 + w.sent * w.interval)

    def _stop_sending(self, w: Window, now: int) -> None:
        w.sending = False
        w.send_end = now
        w.sending_over.set_result(None)
        if w.done >= w.sent and not w.finished.done():
            w.finished.set_result(None)

    async def run_window(self, cmd: dict[str, Any], run_id: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        w = Window(cmd, run_id, loop)
        late_before, rejects_before = self.late, self.session_rejects
        self.window = w
        w.t0 = mono_ns() + 2_000_000
        w.hard_end = w.t0 + int(w.duration_s * 1e9) + w.ack_timeout_ns
        assert self.alarm is not None
        self.alarm.at(w.t0)
        await w.sending_over
        try:
            await asyncio.wait_for(
                asyncio.shield(w.finished), max(0.0, (w.send_end + w.ack_timeout_ns - mono_ns()) / 1e9)
            )
        except TimeoutError:
            pass
        self.window = None
        return self._summary(w, cmd, self.late - late_before, self.session_rejects - rejects_before)

    @staticmethod
    def _summary(w: Window, cmd: dict[str, Any], late: int, session_rejects: int) -> dict[str, Any]:
        latency_us: list[Counter[int]] = [Counter(), Counter(), Counter()]  # per third of the window
        service_us: Counter[int] = Counter()
        acked_at, sent_at, t0, interval, n = w.acked_at, w.sent_at, w.t0, w.interval, w.n
        top = histogram.HIGHEST_US
        for i in range(w.sent):
            t = acked_at[i]
            if t:
                latency_us[min(3 * i // n, 2)][min(max((t - t0 - i * interval) // 1000, 1), top)] += 1
                service_us[min(max((t - sent_at[i]) // 1000, 1), top)] += 1
        latency, service = histogram.new_histogram(), histogram.new_histogram()
        thirds = []
        for counts in latency_us:
            h = histogram.new_histogram()
            for v, c in counts.items():
                h.record_value(v, c)
            thirds.append(h.get_value_at_percentile(50) if h.get_total_count() else None)
            latency.add(h)
        for v, c in service_us.items():
            service.record_value(v, c)
        acked = latency.get_total_count()
        send_s = (w.send_end - t0) / 1e9
        return {
            "event": "window",
            "id": cmd["id"],
            "rate": w.rate,
            "duration_s": w.duration_s,
            "planned": w.n,
            "sent": w.sent,
            "acked": acked,
            "rejected": w.rejected,
            "timeouts": w.sent - acked - w.rejected,
            "unsent": w.n - w.sent,
            "aborted": w.aborted,
            "late_answers": late,
            "session_rejects": session_rejects,
            "first_reject": w.first_reject,
            "achieved_send_rate": round(w.sent / send_s, 1) if send_s > 0 else None,
            "max_send_lag_us": w.max_lag // 1000,
            "max_in_flight_seen": w.max_in_flight_seen,
            "p50_first_third_us": thirds[0],
            "p50_last_third_us": thirds[2],
            "waits_for_in_flight_slot": w.waits,
            "latency": histogram.encode(latency),
            "service": histogram.encode(service),
        }


# ---------------------------------------------------------------- the process


def _tighten_timers() -> None:
    """Linux: 1 ns timer slack, so the timerfd wakes the loop when it is set for."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    clock = Clock()
    venues: list[Venue] = []

    def make_venue() -> Venue:
        venues.append(Venue(clock))
        return venues[-1]

    server = await loop.create_server(make_venue, "127.0.0.1", args.listen)
    _emit({"event": "listening", "port": args.listen, "pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0))})
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    oms: Oms | None = None
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            what = cmd.get("cmd")
            if what == "quit":
                break
            if what == "connect":
                _, oms = await loop.create_connection(lambda: Oms(clock, args), "127.0.0.1", int(cmd["port"]))
                try:
                    await asyncio.wait_for(oms.logged_on, 30)
                except (TimeoutError, ConnectionError) as exc:
                    _emit({"event": "error", "detail": f"no Logon on 127.0.0.1:{cmd['port']}: {exc!r}"})
                    continue
                oms.alarm = Alarm()
                loop.add_reader(oms.alarm.fd, oms.tick)
                gc.collect()
                gc.freeze()
                _emit({"event": "logon", "pid": os.getpid()})
            elif what == "window":
                if oms is None or oms.transport is None:
                    _emit({"event": "error", "detail": "the OMS session is not logged on"})
                    continue
                venue_rejects = sum(v.session_rejects for v in venues)
                result = await oms.run_window(cmd, args.run_id)
                # Rejects of the venue's own messages: the FIX the venue writes must pass the proxy's checks.
                result["venue_session_rejects"] = sum(v.session_rejects for v in venues) - venue_rejects
                gc.collect()  # between windows: the peers' own collections stay out of the figures
                _emit(result)
    finally:
        if oms is not None and oms.transport is not None:
            oms.write([oms.admin(b"5", b"")])
        server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=int, required=True, help="the venue's port")
    p.add_argument("--sender", default="OMS1", help="the OMS's SenderCompID")
    p.add_argument("--target", default="FIXPROXY", help="the OMS's TargetCompID")
    p.add_argument("--run-id", required=True, help="ClOrdID prefix unique to this run (ClOrdIDs are unique per day)")
    p.add_argument("--symbol", default="AAPL")
    p.add_argument("--qty", default="10")
    p.add_argument("--account", default="BENCH")
    # Buys below sells: the orders never cross each other, so the self-match rule lets them through.
    p.add_argument("--buy-price", default="189")
    p.add_argument("--sell-price", default="191")
    p.add_argument("--cpu", type=int, help="run on this CPU only")
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    _tighten_timers()
    gc.disable()  # collections run between windows (serve); the peers keep no cycles while measuring
    return uvloop.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
