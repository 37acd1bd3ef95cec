"""What bench/desk_reads.py and bench/streams.py share: a proxy in a temporary folder, light FIX peers
(an OMS that times each order to its acknowledgement, a venue that acknowledges and fills at once, both
raw asyncio sockets costing a few microseconds a message), a day of orders put into the proxy's memory
through its journal's snapshot, and the A/B window loop.

Nothing here asserts a speed: the scripts print what they measured.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import REPO
from fixproxy.sim.process import free_port

SOH = "\x01"
TOKEN = "bench-viewer-token-0123456789"


# ---------------------------------------------------------------- FIX text


def _ts() -> str:
    t = time.time()
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


def frame(body: str, begin: str = "FIX.4.4") -> bytes:
    head = f"8={begin}{SOH}9={len(body.encode('latin-1'))}{SOH}"
    text = head + body
    return (text + f"10={sum(text.encode('latin-1')) % 256:03d}{SOH}").encode("latin-1")


def parse(raw: bytes) -> dict[int, str]:
    out = {}
    for part in raw.split(b"\x01"):
        if b"=" in part:
            k, _, v = part.partition(b"=")
            if k.isdigit():
                out.setdefault(int(k), v.decode("latin-1"))
    return out


class Peer(asyncio.Protocol):
    """One FIX session end: frames messages, answers Logon, Heartbeat and TestRequest, hands the rest on."""

    def __init__(self, sender: str, target: str, on_message, initiator: bool):
        self.sender, self.target = sender, target
        self.on_message = on_message
        self.initiator = initiator
        self.seq = 1
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.logged_on = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.initiator:
            self.send("A", "98=0|108=30|141=Y")

    def send(self, msg_type: str, fields: str) -> None:
        body = (
            f"35={msg_type}{SOH}34={self.seq}{SOH}49={self.sender}{SOH}52={_ts()}{SOH}56={self.target}{SOH}"
            + "".join(f"{f}{SOH}" for f in fields.split("|") if f)
        )
        self.seq += 1
        self.transport.write(frame(body))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\x0110=")
            if end < 0:
                return
            stop = self.buf.find(b"\x01", end + 4)
            if stop < 0:
                return
            raw, self.buf = self.buf[: stop + 1], self.buf[stop + 1 :]
            m = parse(raw)
            kind = m.get(35)
            if kind == "A":
                if not self.initiator:
                    self.send("A", "98=0|108=30")
                if not self.logged_on.done():
                    self.logged_on.set_result(True)
            elif kind == "1":
                self.send("0", f"112={m.get(112, '')}")
            elif kind in ("0", "5", "2", "4", "3"):
                continue
            else:
                self.on_message(self, m)

    def connection_lost(self, exc) -> None:
        if not self.logged_on.done():
            self.logged_on.set_exception(ConnectionError("the proxy closed the session"))


class Venue:
    """Listens as the venue: every NewOrderSingle is acknowledged (39=0) and filled (39=2) at once."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.peer: Peer | None = None

    def _message(self, peer: Peer, m: dict[int, str]) -> None:
        if m.get(35) != "D":
            return
        n = next(self.ids)
        common = f"11={m[11]}|37=V{n}|55={m[55]}|54={m[54]}|38={m[38]}|44={m.get(44, '0')}"
        peer.send("8", f"{common}|17=A{n}|150=0|39=0|151={m[38]}|14=0|6=0")
        peer.send(
            "8", f"{common}|17=F{n}|150=F|39=2|151=0|14={m[38]}|6={m.get(44, '1')}|32={m[38]}|31={m.get(44, '1')}"
        )

    async def start(self, port: int) -> None:
        loop = asyncio.get_running_loop()

        def make() -> Peer:
            self.peer = Peer("VENUE", "FIXPROXY", self._message, initiator=False)
            return self.peer

        self.server = await loop.create_server(make, "127.0.0.1", port)


class Oms:
    """Logs on as OMS1 and sends orders on a schedule; times each from send to its acknowledgement."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.latencies: list[int] = []
        self.refused = 0
        self.n = itertools.count(1)

    def _message(self, peer: Peer, m: dict[int, str]) -> None:
        if m.get(35) == "8" and m.get(39) == "0":
            t0 = self.sent.pop(m.get(11, ""), None)
            if t0 is not None:
                self.latencies.append(time.perf_counter_ns() - t0)
        elif m.get(35) in ("j", "3") or (m.get(35) == "8" and m.get(39) == "8"):
            self.refused += 1
            self.sent.pop(m.get(379) or m.get(11, ""), None)

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        _, self.peer = await loop.create_connection(
            lambda: Peer("OMS1", "FIXPROXY", self._message, True), "127.0.0.1", port
        )
        await asyncio.wait_for(self.peer.logged_on, 30)

    def order(self) -> None:
        cl = f"B{next(self.n)}"
        self.sent[cl] = time.perf_counter_ns()
        self.peer.send("D", f"11={cl}|1=BENCH|55=AAPL|54=1|38=10|40=2|44=190|60={_ts()}")

    async def run(self, seconds: float, rate: float) -> list[int]:
        """Orders at ``rate`` a second for ``seconds``; the acknowledgement times (ns) of this window."""
        self.latencies = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        k = 0
        while loop.time() - start < seconds:
            k += 1
            due = start + k / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.order()
        await asyncio.sleep(0.3)  # the last acknowledgements
        return self.latencies


# ---------------------------------------------------------------- the proxy


def config_text(
    engine: str,
    acceptor: int,
    venue: int,
    http: int,
    *,
    grace_s: float = -1,
    max_stream_clients: int = 50,
    legacy: bool = False,
) -> str:
    """The bench proxy's config; ``legacy``: without the settings an older proxy does not know."""
    proxy_extra = "" if legacy else f"finished_grace_s = {grace_s}"
    admin_extra = "" if legacy else f"max_stream_clients = {max_stream_clients}"
    return f"""
[proxy]
state_dir = "var"
log_level = "info"
engine = "{engine}"
{proxy_extra}

[acceptor]
port = {acceptor}
comp_id = "FIXPROXY"

[[oms]]
name = "oms1"
comp_id = "OMS1"
fix_version = "FIX.4.4"
default_venue = "sim"

[[venues]]
name = "sim"
port = {venue}
comp_id = "VENUE"
our_comp_id = "FIXPROXY"
fix_version = "FIX.4.4"

[risk]
instruments = "instruments.csv"

[limits.firm]
max_order_qty = 100000
max_order_notional = 100000000
price_collar_pct = 50
reference_max_age_s = 864000

[audit]
enabled = false

[admin]
http_port = {http}
{admin_extra}

[[admin.tokens]]
name = "bench-viewer"
role = "viewer"
token = "{TOKEN}"
"""


def seed(config: Path, orders: int, open_every: int = 100) -> float:
    """Put a day of ``orders`` orders into the proxy's state before it starts (its journal's snapshot):
    each accepted, acknowledged and filled, except every ``open_every``-th, left working. Driven through
    the core's own handle() (risk rules off: only the state matters). Returns the seconds it took."""
    from fixproxy.assemble import build_core
    from fixproxy.config import load
    from fixproxy.core import events as ev, snapshot
    from fixproxy.core.model import ExecReport, ExecType, OrderRequest, OrdStatus, OrdType, Side
    from fixproxy.journal.recovery import write_snapshot

    started = time.monotonic()
    loaded = load(config)
    now = time.time_ns()
    core = build_core(loaded, now)
    core.rules = ()
    core.handle(ev.SessionUp("sim", now))
    from decimal import Decimal

    qty, px = Decimal(10), Decimal(190)
    for i in range(orders):
        cl = f"S{i}"
        accounts = f"A{i % 50}"
        req = OrderRequest(cl, "AAPL", Side.BUY if i % 2 else Side.SELL, qty, OrdType.LIMIT, px, accounts)
        core.handle(ev.NewOrder("oms1", i + 1, now, req))
        vid = f"oms1.{cl}"
        if i % open_every == 0:
            core.handle(
                ev.VenueReport(
                    "sim", now, ExecReport(ExecType.NEW, OrdStatus.NEW, vid, f"V{i}", f"E{i}", leaves_qty=qty)
                )
            )
        else:
            core.handle(
                ev.VenueReport(
                    "sim",
                    now,
                    ExecReport(
                        ExecType.TRADE,
                        OrdStatus.FILLED,
                        vid,
                        f"V{i}",
                        f"E{i}",
                        cum_qty=qty,
                        last_qty=qty,
                        last_px=px,
                        avg_px=px,
                    ),
                )
            )
    core.sessions_gone()
    journal = config.parent / "var" / "journal"
    write_snapshot(journal, 1, pickle.dumps(snapshot.export_state(core), protocol=pickle.HIGHEST_PROTOCOL))
    return time.monotonic() - started


class Proxy:
    """``python -m fixproxy run`` in its own process (on CPU ``cpu`` when given)."""

    def __init__(
        self,
        root: Path,
        engine: str,
        *,
        orders: int = 0,
        max_stream_clients: int = 50,
        cpu: int | None = 1,
        legacy: bool = False,
    ):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "cfg" / "instruments.csv", root / "instruments.csv")
        self.acceptor, self.venue_port, self.http = free_port(), free_port(), free_port()
        self.config = root / "fixproxy.toml"
        self.config.write_text(
            config_text(
                engine, self.acceptor, self.venue_port, self.http, max_stream_clients=max_stream_clients, legacy=legacy
            )
        )
        self.seed_s = seed(self.config, orders) if orders else 0.0
        self.cpu = cpu
        self.url = f"http://127.0.0.1:{self.http}/api/v1"

    async def start(self, env: dict | None = None) -> None:
        cmd = [sys.executable, "-m", "fixproxy", "run", "--config", str(self.config)]
        if self.cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        self.log = open(self.root / "proxy.log", "wb")  # noqa: ASYNC230, SIM115 - the child's log, open for its life; closed in stop()
        env = {**os.environ, "FIXPROXY_DESK_PASSWORD": "bench-desk-password-0123", **(env or {})}
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=self.log, stderr=subprocess.STDOUT, env=env)  # noqa: ASYNC220 - a plain child the sync stop() and rss_mb() manage
        started = time.monotonic()
        while True:
            text = (self.root / "proxy.log").read_text(errors="replace")
            if '"started"' in text or '"event": "started"' in text:
                break
            if self.proc.poll() is not None or time.monotonic() - started > 600:
                raise SystemExit(f"the proxy did not start:\n{text[-3000:]}")
            await asyncio.sleep(0.2)
        self.start_s = time.monotonic() - started

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def pin_self(cpu: int = 0) -> None:
    """The peers on one CPU, the proxy on the other (where the machine has two)."""
    try:
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)
