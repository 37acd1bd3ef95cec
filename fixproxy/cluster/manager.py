"""This instance's part in a cluster of proxies (``[cluster]``, docs/cluster.md).

Three threads of its own, none on the order path:

- the lease thread keeps this instance's share of every shared limit ahead of its usage (one
  PostgreSQL transaction a limit, the database's trigger holding the sum within the limit), gives
  back what it does not use, renews its leases, writes its status and publishes the risk desk's
  commands made here (INSERT + NOTIFY);
- the listener thread LISTENs for the other instances' commands and applies each one through the
  core, journaled and audited here like a local command;
- the watchdog fences the core off new headroom when the leases ran out with the database away.

Ordering keeps the invariant through any crash: an allowance grows in PostgreSQL first, then in the
core (a journaled ClusterShare event); it shrinks in the core first, then in PostgreSQL.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
import structlog

from .. import pgconn
from ..core import cluster as shared, events as ev
from . import schema

if TYPE_CHECKING:
    from ..config import ClusterSection
    from ..engines.bridge import CoreBridge
    from .mirror_process import MirrorProcess

#: Desk commands every instance applies (a day roll is each instance's own timer).
SHARED_COMMANDS = (ev.AdminKill, ev.AdminSetLimit, ev.AdminSetReference, ev.AdminSetMode)
_command_decoder = msgspec.json.Decoder(ev.AdminKill | ev.AdminSetLimit | ev.AdminSetReference | ev.AdminSetMode)
_ZERO = Decimal(0)


def connect(settings: ClusterSection, password: str = "") -> psycopg.Connection[Any]:
    """A connection in autocommit mode whose statements time out after ``db_timeout_ms``."""
    conn: psycopg.Connection[Any] = pgconn.connect(
        settings.url, password, settings.db_timeout_ms, f"fixproxy:{settings.instance}"
    )
    return conn


def step_of(key: str, limit: Decimal, pct: float) -> Decimal:
    """How much an allowance grows or shrinks at a time: ``pct`` of the limit (a whole order for open orders)."""
    step = limit * Decimal(str(pct)) / 100
    if shared.split(key)[0] == shared.OPEN_ORDERS:
        return Decimal(max(1, math.ceil(step)))
    return step if step > 0 else Decimal(1)


def needs_top_up(usage: Decimal, allowance: Decimal, step: Decimal, wanted: Decimal = _ZERO) -> bool:
    """Half a step or less left (the core's low mark: core/cluster.py ``watch``), or an order did not fit."""
    return allowance - usage <= step / 2 or wanted > allowance


def plan(
    usage: Decimal,
    allowance: Decimal,
    bound: Decimal,
    avail: Decimal,
    step: Decimal,
    reserve_steps: int,
    wanted: Decimal = _ZERO,
) -> tuple[Decimal, Decimal]:
    """(new allowance, new reserve) for one shared limit. ``avail``: the limit less what every other
    instance holds (their allowances, and the reserves of their live leases); ``bound``: this
    instance's allowance as PostgreSQL has it; ``wanted``: the usage a refused order would have
    reached. Tops up to usage + a step when less than half a step is left (or an order did not fit),
    gives back above usage + three steps, never asks for more than is available."""
    want = allowance
    if needs_top_up(usage, allowance, step, wanted) or allowance - usage > 3 * step:
        want = max(usage + step, wanted + step / 2)
    new = max(min(want, max(avail, bound)), _ZERO)
    reserve = max(min(step * reserve_steps, avail - new), _ZERO)
    return new, reserve


class ClusterManager:
    """Leases, shared commands and the firm-wide view for one instance (see the module's docstring)."""

    def __init__(
        self,
        settings: ClusterSection,
        bridge: CoreBridge,
        state_dir: Path,
        status: Callable[[], dict[str, Any]],
        password: str = "",
    ) -> None:
        self.settings = settings
        self.name = settings.instance
        self.bridge = bridge
        self.core = bridge.core
        self.status = status
        self.password = password
        self.log = structlog.get_logger("fixproxy.cluster")
        self._cursor_file = state_dir / "cluster-commands.json"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._outbox: deque[ev.Event] = deque()
        self._applying: ev.Event | None = None  # the other instance's command being applied now
        self._threads: list[threading.Thread] = []
        self._ttl_s = settings.lease_ttl_ms / 1000
        self._renew_s = settings.renew_ms / 1000
        #: monotonic time of the start of the last tick that renewed every lease (None: none yet).
        self._renewed: float | None = None
        self._db_error = ""
        self._db_lost_at: float | None = None
        self._listen_error = "not connected yet"
        self._view: dict[str, Any] = {"instances": [], "limits": []}
        self._last_dry = 0.0
        self._steps: dict[str, Decimal] = {}  # the step each shared limit has grown to
        self._started_at = time.time()
        self._started_mono = time.monotonic()
        #: The journal's follower into fp_fill and fp_position (cluster/mirror_process.py), run beside the leases.
        self.mirror: MirrorProcess | None = None
        self.applied = 0  # other instances' commands applied (status, tests)
        self.published = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for name, target in (
            ("cluster-leases", self._lease_loop),
            ("cluster-listen", self._listen_loop),
            ("cluster-watchdog", self._watchdog),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self._wake.set()  # the first leases at once
        if self.mirror is not None:
            self.mirror.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the leases were taken once (False: not within ``timeout_s``; the proxy starts anyway,
        refusing what needs a share it does not hold)."""
        deadline = time.monotonic() + timeout_s
        while self._renewed is None and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.01)
        return self._renewed is not None

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=5)
        if self.mirror is not None:
            self.mirror.stop()

    def wake(self) -> None:
        """The core wants a top-up (an order reached a share's low mark, or was refused by one)."""
        self._wake.set()

    # ------------------------------------------------------------ commands made here

    def command_done(self, event: ev.Event, actions: list[ev.Action]) -> None:
        """Called by the bridge (under the core lock) after the core took a desk command: one made
        here and carried out is queued for the other instances."""
        if event is self._applying or not isinstance(event, SHARED_COMMANDS):
            return
        if any(isinstance(a, ev.AdminResult) and a.ok for a in actions):
            self._outbox.append(event)
            self._wake.set()

    def _publish(self, conn: psycopg.Connection[Any]) -> None:
        while self._outbox:
            event = self._outbox[0]
            with conn.transaction():
                conn.execute(
                    "INSERT INTO fp_command (origin, event) VALUES (%s, %s)",
                    (self.name, msgspec.json.encode(event).decode()),
                )
                if isinstance(event, ev.AdminSetLimit):
                    self._publish_limit(conn, event)
                conn.execute("NOTIFY fp_command")
            self._outbox.popleft()
            self.published += 1

    def _publish_limit(self, conn: psycopg.Connection[Any], e: ev.AdminSetLimit) -> None:
        """A shared limit's new value is the one every instance's leases are held within."""
        with self.bridge.lock:
            limits = shared.shared_limits(self.core.limits.limits)
        for k in _keys_of(e.layer, e.field):
            value = limits.get(k)
            if value is None:
                conn.execute("DELETE FROM fp_limit WHERE key = %s", (k,))
            else:
                conn.execute(
                    "INSERT INTO fp_limit (key, value, set_by) VALUES (%s, %s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, set_by = EXCLUDED.set_by, set_at = now()",
                    (k, value, self.name),
                )

    # ------------------------------------------------------------ the lease thread

    def _lease_loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        last_status = 0.0
        while not self._stop.is_set():
            self._wake.wait(self._renew_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            started = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = connect(self.settings, self.password)
                    schema.ensure(conn)
                self._publish(conn)
                due = started - last_status >= self._renew_s * 0.9
                hungry = self.core.shares.hungry
                if due or (hungry and started - self._last_dry >= self._renew_s / 5):
                    self._leases(conn)
                    self._renewed = started
                if due:
                    self._write_status(conn)
                    self._read_view(conn)
                    last_status = started
                self._db_ok()
            except (psycopg.Error, OSError) as exc:
                self._db_failed(exc)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(min(self._renew_s, 0.2))
            except Exception as exc:  # noqa: BLE001 - the thread must outlive a bug; the watchdog fences meanwhile
                self.log.error("cluster_lease_error", error=repr(exc))
                self._db_failed(exc)
                self._stop.wait(self._renew_s)
        if conn is not None:
            conn.close()

    def _leases(self, conn: psycopg.Connection[Any]) -> None:
        with self.bridge.lock:
            limits = shared.shared_limits(self.core.limits.limits)
            held = set(self.core.shares.allowance)
        for k in sorted(set(limits) | held):
            try:
                if k in limits:
                    self._lease(conn, k, limits[k])
                else:
                    self._drop(conn, k)
            except psycopg.errors.IntegrityError as exc:
                # The database refused this share (its limit moved or went meanwhile): the core keeps
                # what it held (or less); the next renewal plans again. Not a lost database.
                self.log.warning("cluster_share_refused", key=k, error=str(exc).strip().splitlines()[0])

    def _lease(self, conn: psycopg.Connection[Any], k: str, limit: Decimal) -> None:
        shares = self.core.shares
        with conn.transaction():
            lock = "SELECT value, short_until > now() AND short_by <> %s FROM fp_limit WHERE key = %s FOR UPDATE"
            row = conn.execute(lock, (self.name, k)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO fp_limit (key, value, set_by) VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING",
                    (k, limit, self.name),
                )
                row = conn.execute(lock, (self.name, k)).fetchone()
            assert row is not None
            others_short = row[1]
            # Within the lower of the two: a limit change is in the database before it reaches an instance.
            cap = min(limit, row[0])
            others_row = conn.execute(
                "SELECT coalesce(sum(bound + CASE WHEN expires_at > now() THEN reserve ELSE 0 END), 0) "
                "FROM fp_lease WHERE key = %s AND instance <> %s",
                (k, self.name),
            ).fetchone()
            mine = conn.execute(
                "SELECT bound FROM fp_lease WHERE key = %s AND instance = %s", (k, self.name)
            ).fetchone()
            bound = mine[0] if mine is not None else _ZERO
            with self.bridge.lock:
                use = shared.usage(self.core.book, k)
                allowance = shares.allowance.get(k, _ZERO)
                wanted = shares.wanted.pop(k, _ZERO)
                # A step at least as large as the largest order refused for want of one so far.
                if wanted > use:
                    self._steps[k] = max(self._steps.get(k, _ZERO), wanted - use)
                step = max(step_of(k, cap, self.settings.step_pct), self._steps.get(k, _ZERO))
                new, reserve = plan(
                    use,
                    allowance,
                    bound,
                    cap - (others_row[0] if others_row else _ZERO),
                    step,
                    0 if others_short else self.settings.reserve_steps,
                    wanted,
                )
                if others_short and not wanted:
                    # Another instance is short: keep at most half a step unused, take nothing more.
                    new = min(new, max(use, min(allowance, use + step / 2)))
                if new < allowance:
                    # Shrinks in the core first (never below what it uses now), then in the database.
                    new = max(new, shared.usage(self.core.book, k))
                    if new < allowance:
                        self._share(k, new, step)
                        allowance = new
            conn.execute(
                "INSERT INTO fp_lease (key, instance, bound, reserve, used, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s)) "
                "ON CONFLICT (key, instance) DO UPDATE SET bound = EXCLUDED.bound, reserve = EXCLUDED.reserve, "
                "used = EXCLUDED.used, expires_at = EXCLUDED.expires_at",
                (k, self.name, max(new, allowance), reserve, use, self._ttl_s),
            )
            if wanted > new:
                conn.execute(
                    "UPDATE fp_limit SET short_by = %s, short_until = now() + make_interval(secs => %s) WHERE key = %s",
                    (self.name, self._renew_s * 3, k),
                )
        if new > allowance or (new == allowance and k not in shares.low):
            with self.bridge.lock:
                self._share(k, new, step)  # grows in the database first, then in the core
        elif needs_top_up(use, allowance, step, wanted):
            self._last_dry = time.monotonic()
            shares.dry = True  # nothing left to give: orders do not wait for a top-up
            shares.hungry = False
            return
        else:
            shares.hungry = False  # nothing needed (usage fell meanwhile)
        shares.dry = False

    def _share(self, k: str, allowance: Decimal, step: Decimal) -> None:
        """Hand an allowance to the core as a journaled event (the caller holds the core lock; the
        event sends nothing, so any thread may run it)."""
        self.bridge._run(ev.ClusterShare(k, allowance, max(allowance - step / 2, _ZERO), self.bridge.clock()))

    def _drop(self, conn: psycopg.Connection[Any], k: str) -> None:
        """A limit no longer shared (cleared, or monitored): nothing to hold."""
        with self.bridge.lock:
            self.core.shares.allowance.pop(k, None)
            self.core.shares.set_low(k, None)
        conn.execute("DELETE FROM fp_lease WHERE key = %s AND instance = %s", (k, self.name))

    # ------------------------------------------------------------ status and the firm-wide view

    def _write_status(self, conn: psycopg.Connection[Any]) -> None:
        with self.bridge.lock:
            shares = self.core.shares
            usage = {
                k: {"used": str(shared.usage(self.core.book, k)), "allowance": str(a)}
                for k, a in shares.allowance.items()
            }
            up = set(self.core.up)
        status = {
            "sessions": [
                {"name": s.name, "role": s.role, "up": s.name in up}
                for s in self.bridge.sessions()
                if s.role in ("oms", "venue", "drop_copy")
            ],
            "usage": usage,
            "fenced": self.core.shares.fence,
            **self.status(),
        }
        conn.execute(
            "INSERT INTO fp_instance (instance, started_at, heartbeat, status) "
            "VALUES (%s, to_timestamp(%s), now(), %s) "
            "ON CONFLICT (instance) DO UPDATE SET heartbeat = now(), status = EXCLUDED.status, "
            "started_at = EXCLUDED.started_at",
            (self.name, self._started_at, json.dumps(status, default=str)),
        )

    def _read_view(self, conn: psycopg.Connection[Any]) -> None:
        ttl = self._ttl_s
        instances = [
            {
                "instance": r[0],
                "started_at": r[1].isoformat(),
                "heartbeat": r[2].isoformat(),
                "alive": r[3],
                "status": r[4],
                "positions": [],
            }
            for r in conn.execute(
                "SELECT instance, started_at, heartbeat, heartbeat > now() - make_interval(secs => %s), status "
                "FROM fp_instance ORDER BY instance",
                (ttl,),
            )
        ]
        by_name = {i["instance"]: i for i in instances}
        for inst, account, symbol, qty, avg in conn.execute(
            "SELECT instance, account, symbol, qty, avg_cost FROM fp_position WHERE qty <> 0 "
            "ORDER BY instance, account, symbol LIMIT 2000"
        ):
            if inst in by_name:
                by_name[inst]["positions"].append(
                    {"account": account, "symbol": symbol, "qty": str(qty), "avg_cost": str(avg)}
                )
        limits: dict[str, dict[str, Any]] = {}
        for k, value in conn.execute("SELECT key, value FROM fp_limit ORDER BY key"):
            field, scope = shared.split(k)
            limits[k] = {"key": k, "field": field, "scope": scope, "limit": str(value), "shares": []}
        for k, inst, bound, reserve, used, live in conn.execute(
            "SELECT key, instance, bound, reserve, used, expires_at > now() FROM fp_lease ORDER BY key, instance"
        ):
            if k in limits:
                limits[k]["shares"].append(
                    {
                        "instance": inst,
                        "allowance": str(bound),
                        "reserve": str(reserve if live else 0),
                        "used": str(used),
                        "lease_live": live,
                    }
                )
        self._view = {"instances": instances, "limits": list(limits.values())}

    def view(self) -> dict[str, Any]:
        """The firm-wide picture as last read (every ``renew_ms``): instances, their sessions, usage,
        positions, and every shared limit with each instance's share."""
        return {"instance": self.name, "health": self.health(), **self._view}

    # ------------------------------------------------------------ health and the watchdog

    def _db_ok(self) -> None:
        if self._db_lost_at is not None:
            self.log.info("cluster_database_ok", instance=self.name)
            self.bridge.notice(
                ev.Notice(
                    "cluster_database_ok", self.bridge.clock(), f"{self.name}: the cluster database answers again"
                )
            )
        self._db_error, self._db_lost_at = "", None
        if self.core.shares.fence:
            self.bridge.submit(ev.ClusterFence("", self.bridge.clock()))

    def _db_failed(self, exc: BaseException) -> None:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._db_error = message
        if self._db_lost_at is None:
            self._db_lost_at = time.time()
            self.log.warning("cluster_database_lost", instance=self.name, error=message)
            self.bridge.notice(
                ev.Notice(
                    "cluster_database_lost",
                    self.bridge.clock(),
                    f"{self.name}: the cluster database is unreachable ({message}); trading goes on within "
                    f"the shares held until the leases expire in {self._ttl_s:g}s",
                )
            )

    def _watchdog(self) -> None:
        """Fence the core once the leases ran out with the database away (checked apart from the lease
        thread, which a hung database can keep waiting)."""
        while not self._stop.wait(min(self._renew_s / 2, 0.1)):
            renewed = self._renewed if self._renewed is not None else self._started_mono
            expired = time.monotonic() - renewed > self._ttl_s
            if expired and self._db_lost_at is not None and not self.core.shares.fence:
                why = f"the cluster database is unreachable ({self._db_error}) and this instance's leases expired"
                try:
                    self.bridge.submit(ev.ClusterFence(why, self.bridge.clock()))
                except Exception as exc:  # noqa: BLE001 - retried at the next check
                    self.log.error("cluster_fence_failed", error=repr(exc))

    def health(self) -> dict[str, Any]:
        lost = self._db_lost_at
        renewed = self._renewed
        left = None if renewed is None else max(0.0, self._ttl_s - (time.monotonic() - renewed))
        mirror = self.mirror.health() if self.mirror is not None else {"state": "disabled"}
        state = "ok" if lost is None and mirror["state"] != "failed" else "degraded"
        return {
            "mirror": mirror,
            "state": state,
            "instance": self.name,
            "database": "up" if lost is None else "lost",
            "reason": "" if lost is None else self._db_error,
            "lost_since": lost,
            "fenced": self.core.shares.fence,
            "leases_expire_in_s": None if left is None else round(left, 3),
            "listener": "ok" if not self._listen_error else self._listen_error,
            "commands_applied": self.applied,
            "commands_published": self.published,
        }

    # ------------------------------------------------------------ other instances' commands

    def _cursor(self) -> int:
        try:
            return int(json.loads(self._cursor_file.read_text())["last"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _save_cursor(self, last: int) -> None:
        tmp = self._cursor_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"last": last}))
        os.replace(tmp, self._cursor_file)

    def _listen_loop(self) -> None:
        last = self._cursor()
        while not self._stop.is_set():
            try:
                with connect(self.settings, self.password) as conn:
                    schema.ensure(conn)
                    conn.execute("LISTEN fp_command")
                    self._listen_error = ""
                    while not self._stop.is_set():
                        last = self._catch_up(conn, last)
                        # Wakes on a NOTIFY, or after a while to catch up anyway (and notice the stop).
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            pass
            except (psycopg.Error, OSError) as exc:
                self._listen_error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                self._stop.wait(0.2)
            except Exception as exc:  # noqa: BLE001 - logged; the loop reconnects
                self.log.error("cluster_listen_error", error=repr(exc))
                self._listen_error = repr(exc)
                self._stop.wait(1.0)

    def _catch_up(self, conn: psycopg.Connection[Any], last: int) -> int:
        rows = conn.execute(
            "SELECT id, origin, event::text FROM fp_command WHERE id > %s ORDER BY id", (last,)
        ).fetchall()
        for cid, origin, raw in rows:
            if origin != self.name:
                self._apply(cid, origin, raw)
            last = cid
            self._save_cursor(last)
        return last

    def _apply(self, cid: int, origin: str, raw: str) -> None:
        try:
            event = _command_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            self.log.error("cluster_command_unreadable", id=cid, origin=origin, error=str(exc))
            return
        # Recorded here as that instance's operator, with the time it reached this one.
        event = msgspec.structs.replace(event, operator=f"{event.operator}@{origin}", now_ns=self.bridge.clock())
        self._applying = event
        try:
            self.bridge.submit(event)
            self.applied += 1
        finally:
            self._applying = None


def _keys_of(layer: str, field: str) -> list[str]:
    """The shared-limit keys one limit of one layer makes."""
    if not (layer == "firm" or layer.startswith("account:")):
        return []
    if field == "max_net_exposure":
        return [shared.key(shared.NET_LONG, layer), shared.key(shared.NET_SHORT, layer)]
    if field in ("max_gross_exposure", "max_open_orders"):
        return [shared.key(field, layer)]
    return []
