"""Leadership of an active/passive pair: one row in PostgreSQL with a fencing token.

The instance holding an unexpired lease of its pair is the active one. A lease is taken only once
the previous holder's has expired (by the database's clock), and each taking increments the token:
a former active that comes back finds a newer token and knows it lost. The active renews every
``renew_ms``; it counts itself leader only until ``deadline``, reckoned from *before* it sent the
renewal (a local monotonic clock), so it stops believing in its lease before the database lets the
standby take it, whatever the network delayed.

The row also says what the standby may take over with: ``standby`` (the instance the active is
copying to) and ``copy_state`` ("sync", "async", "catching_up", "alone"). A standby takes over only
from a lapsed lease whose row names it with a copy in "sync" or "async": a copy that stopped while
the active went on alone is older than what the OMSs and venues saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from .. import pgconn
from ..config import HaSection

DDL = """
CREATE TABLE IF NOT EXISTS fp_ha_leader (
    pair        text PRIMARY KEY,
    holder      text NOT NULL,
    token       bigint NOT NULL,
    copy_addr   text NOT NULL,
    copy_state  text NOT NULL DEFAULT 'alone',
    standby     text NOT NULL DEFAULT '',
    since       timestamptz NOT NULL DEFAULT clock_timestamp(),
    renewed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz NOT NULL
);
"""

#: Copy states under which the standby named in the row may take over a lapsed lease.
TAKEOVER_STATES = ("sync", "async")


@dataclass(frozen=True)
class Row:
    """The pair's leadership row as read."""

    holder: str
    token: int
    copy_addr: str
    copy_state: str
    standby: str
    expired: bool
    left_ms: float  # the lease's time left by the database's clock (negative: lapsed that long ago)


def connect(settings: HaSection, password: str) -> Any:
    return pgconn.connect(
        settings.url, password, settings.db_timeout_ms, f"fixproxy-ha:{settings.pair}:{settings.instance}"
    )


def ensure(conn: Any) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7263540022)")
        conn.execute(DDL)


def read(conn: Any, pair: str) -> Row | None:
    r = conn.execute(
        "SELECT holder, token, copy_addr, copy_state, standby, expires_at < clock_timestamp(),"
        " extract(epoch FROM expires_at - clock_timestamp()) * 1000 FROM fp_ha_leader WHERE pair = %s",
        (pair,),
    ).fetchone()
    if r is None:
        return None
    return Row(r[0], int(r[1]), r[2], r[3], r[4], bool(r[5]), float(r[6]))


def acquire(conn: Any, pair: str, me: str, copy_addr: str, ttl_ms: int, expect_token: int | None) -> int | None:
    """Take the pair's lease if there is none or it has lapsed (and, ``expect_token`` given, it is still
    that one: the standby takes over only the lease it was copying under). The new token, or None."""
    r = conn.execute(
        "INSERT INTO fp_ha_leader AS l (pair, holder, token, copy_addr, expires_at)"
        " VALUES (%s, %s, 1, %s, clock_timestamp() + make_interval(secs => %s))"
        " ON CONFLICT (pair) DO UPDATE SET holder = EXCLUDED.holder, token = l.token + 1,"
        " copy_addr = EXCLUDED.copy_addr, copy_state = 'alone', standby = '',"
        " since = clock_timestamp(), renewed_at = clock_timestamp(), expires_at = EXCLUDED.expires_at"
        " WHERE l.expires_at < clock_timestamp() AND (%s::bigint IS NULL OR l.token = %s::bigint)"
        " RETURNING token",
        (pair, me, copy_addr, ttl_ms / 1000, expect_token, expect_token),
    ).fetchone()
    return int(r[0]) if r else None


def renew(conn: Any, pair: str, me: str, token: int, ttl_ms: int, copy_state: str, standby: str) -> bool:
    """Extend the lease this instance holds under ``token``; False if it no longer does."""
    r = conn.execute(
        "UPDATE fp_ha_leader SET expires_at = clock_timestamp() + make_interval(secs => %s),"
        " renewed_at = clock_timestamp(), copy_state = %s, standby = %s"
        " WHERE pair = %s AND holder = %s AND token = %s RETURNING 1",
        (ttl_ms / 1000, copy_state, standby, pair, me, token),
    ).fetchone()
    return r is not None


def release(conn: Any, pair: str, me: str, token: int) -> None:
    """Give the lease up at once (a clean stop): the standby need not wait for it to lapse."""
    conn.execute(
        "UPDATE fp_ha_leader SET expires_at = clock_timestamp() - interval '1 millisecond'"
        " WHERE pair = %s AND holder = %s AND token = %s",
        (pair, me, token),
    )


class Leadership:
    """The active's lease, renewed on a thread of its own.

    ``valid()`` is what the wire gate asks before any byte goes out: True while the local deadline
    has not passed. When a renewal finds another holder, ``on_lost(reason)`` is called (once).
    ``copy_report()`` gives (copy_state, standby) to write with each renewal; ``set_copy_state`` writes
    a change at once (the active going on alone must be in the row before it sends what the standby
    lacks).
    """

    def __init__(
        self,
        settings: HaSection,
        password: str,
        token: int,
        deadline: float,
        copy_report: Callable[[], tuple[str, str]],
        on_lost: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.password = password
        self.token = token
        #: time.monotonic() after which this instance no longer counts as leader unless renewed.
        self.deadline = deadline
        self.copy_report = copy_report
        self.on_lost = on_lost
        self.database = "ok"
        self.lost = ""
        self.renewals = 0
        self._conn: Any = None
        self._lock = threading.Lock()  # one statement at a time on the connection
        self._stop = threading.Event()
        self._renewed = threading.Event()
        self._reported: tuple[str, str] | None = None
        self._log = structlog.get_logger("fixproxy.ha")
        self._thread = threading.Thread(target=self._run, name="fixproxy-ha-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, release_lease: bool = True) -> None:
        self._stop.set()
        self._thread.join(5)
        if release_lease and not self.lost:
            try:
                with self._lock:
                    conn = self._connection()
                    release(conn, self.settings.pair, self.settings.instance, self.token)
            except Exception as exc:  # noqa: BLE001 - the lease lapses by itself
                self._log.warning("ha_release_failed", error=str(exc))

    def valid(self) -> bool:
        return not self.lost and time.monotonic() < self.deadline

    def left_ms(self) -> float:
        return max(0.0, (self.deadline - time.monotonic()) * 1000)

    def wait_valid(self, timeout_s: float) -> bool:
        """Block until the lease is valid again (a renewal went through) or ``timeout_s`` passed."""
        end = time.monotonic() + timeout_s
        while not self.valid():
            if self.lost:
                return False
            left = end - time.monotonic()
            if left <= 0:
                return False
            self._renewed.clear()
            self._renewed.wait(min(left, 0.05))
        return True

    def set_copy_state(self, state: str, standby: str) -> bool:
        """Write a copy state change now; False if the database did not take it (the lease then decides)."""
        return self._renew_once((state, standby))

    # ------------------------------------------------------------ the thread

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, self.password)
        return self._conn

    def _renew_once(self, report: tuple[str, str] | None = None) -> bool:
        settings = self.settings
        sent = time.monotonic()
        try:
            with self._lock:
                # Read under the lock: a copy state change written meanwhile is never overwritten by
                # an older report (the shipper changes its state before it writes it).
                report = report or self.copy_report()
                ok = renew(
                    self._connection(),
                    settings.pair,
                    settings.instance,
                    self.token,
                    settings.lease_ttl_ms,
                    report[0],
                    report[1],
                )
        except Exception as exc:  # noqa: BLE001 - any database failure: the lease runs down
            if self.database == "ok":
                self._log.error("ha_database_lost", error=str(exc), lease_left_ms=round(self.left_ms()))
            self.database = "lost"
            try:
                if self._conn is not None:
                    self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None
            return False
        if self.database != "ok":
            self._log.info("ha_database_back")
        self.database = "ok"
        if not ok:
            self._lose("another instance holds the pair's lease now (a newer token)")
            return False
        # The database's expiry is at least ``sent`` + ttl on its clock; a drift margin of a tenth.
        self.deadline = sent + settings.lease_ttl_ms * 0.9 / 1000
        self._reported = report
        self.renewals += 1
        self._renewed.set()
        return True

    def _lose(self, reason: str) -> None:
        if not self.lost:
            self.lost = reason
            self._log.error("ha_leadership_lost", token=self.token, reason=reason)
            self.on_lost(reason)

    def _run(self) -> None:
        # At a fixed rate from each renewal's start, not a pause after it: a slow statement eats
        # into the next interval, not into the lease's margin.
        every = self.settings.renew_ms / 1000
        due = time.monotonic() + every
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            if self.lost:
                return
            due = max(due + every, time.monotonic())
            self._renew_once()
