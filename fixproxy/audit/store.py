"""The audit store: one SQLite file (WAL), with one writer at a time.

In the proxy that writer is the journal's follower (``follower.py``), which uses this module's
table, prepared insert and position table. ``AuditWriter`` is a writer fed directly, without a
journal (tests and tools build stores with it):

Callers only enqueue (a ``SimpleQueue.put``); parsing, hashing, JSON and
SQLite all happen on the writer thread. Loss window on a crash: records not yet committed (still
in the queue, or inserted in the open transaction), that is at most ``flush_interval_ms`` (or
``batch_size`` records) before the crash. A transaction is committed with ``synchronous=FULL``,
so a committed record survives a power loss too.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import sqlite_utils
import structlog

from ..core import events as ev
from .records import COLUMNS, GENESIS, Draft, Record, action_draft, admin_draft, chain, message_draft

TABLE = "records"
#: One row: how far into the journal the follower has recorded (updated in each commit's transaction).
POSITION_TABLE = "journal_position"
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Page size of a new store (bench/audit.py measures the follower's cost with it).
PAGE_SIZE = 16384


class AuditError(Exception):
    """The audit store cannot be opened or read; the message names the file."""


def is_audit_store(path: Path) -> bool:
    """Whether ``path`` is a SQLite file (the replay's test for an audit store)."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _create(db: sqlite_utils.Database) -> None:
    table = db.table(TABLE)
    table.create(
        {
            "seq": int,
            "ts_ns": int,
            "kind": str,
            "session": str,
            "direction": str,
            "msg_type": str,
            "cl_ord_id": str,
            "account": str,
            "symbol": str,
            "decision": str,
            "code": str,
            "data": str,
            "prev_hash": str,
            "hash": str,
        },
        pk="seq",
        not_null=set(COLUMNS),
        if_not_exists=True,
    )
    for cols in (["ts_ns"], ["session", "ts_ns"], ["cl_ord_id"], ["kind", "code"]):
        table.create_index(cols, if_not_exists=True)
    # Append-only at the SQL level too: a change must first drop these, and the chain shows it.
    db.executescript(f"""
        CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
        CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
        CREATE TABLE IF NOT EXISTS {POSITION_TABLE} (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            segment INTEGER NOT NULL,
            journal_offset INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL,
            committed_ns INTEGER NOT NULL
        );
    """)


class FollowerPosition(NamedTuple):
    """Where the journal follower is: the journal position after the last record it recorded (the
    segment and the byte offset in it), and the chain head it had committed there."""

    segment: int
    offset: int
    seq: int
    hash: str
    committed_ns: int


#: Saves the follower's position; executed in the transaction of the records it covers.
SAVE_POSITION = (
    f"INSERT INTO {POSITION_TABLE} (id, segment, journal_offset, seq, hash, committed_ns) "
    "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET segment = excluded.segment, "
    "journal_offset = excluded.journal_offset, seq = excluded.seq, hash = excluded.hash, "
    "committed_ns = excluded.committed_ns"
)


def read_position(db: sqlite_utils.Database) -> FollowerPosition | None:
    """The journal follower's committed position, or None (no follower has written this store)."""
    try:
        row = db.execute(
            f"SELECT segment, journal_offset, seq, hash, committed_ns FROM {POSITION_TABLE} WHERE id = 1"
        ).fetchone()
    except sqlite3.OperationalError:  # a store written before the journal: no such table
        return None
    return FollowerPosition(*row) if row else None


def open_for_writing(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) the store for its one writer: WAL, full sync on commit."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite_utils.Database(sqlite3.connect(str(path), check_same_thread=False))
        # A new store only (an existing one keeps its page size): a quarter of the WAL frames, page
        # writes and checkpoint reads per record, each a system call; records are ~500 bytes.
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.enable_wal()
        db.execute("PRAGMA synchronous=FULL")
        _create(db)
    except (OSError, sqlite3.Error) as exc:
        raise AuditError(f"{path}: cannot open the audit store ({exc})") from None
    return db


def open_for_reading(path: Path) -> sqlite_utils.Database:
    """Open an existing store read-only (the proxy may be writing it meanwhile: WAL allows that)."""
    if not Path(path).is_file():
        raise AuditError(f"{path}: no audit store there")
    try:
        db = sqlite_utils.Database(sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True))
        if TABLE not in db.table_names():
            raise AuditError(f"{path}: not an audit store (no table {TABLE!r})")
    except sqlite3.Error as exc:
        raise AuditError(f"{path}: cannot read the audit store ({exc})") from None
    return db


def iter_records(
    db: sqlite_utils.Database, where: str = "", params: tuple | dict = (), limit: int | None = None
) -> Iterator[tuple[Record, str]]:
    """(record, stored hash) in chain order, optionally filtered by an SQL ``where`` clause."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"
    if where:
        sql += f" WHERE {where}"
    sql += " ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    for row in db.execute(sql, params):
        yield Record(*row[:-1]), row[-1]


def sessions(db: sqlite_utils.Database) -> list[str]:
    """Every session name in the store, one index seek per name (not a scan of the records)."""
    sql = f"""WITH RECURSIVE s(name) AS (
                  SELECT min(session) FROM {TABLE}
                  UNION ALL
                  SELECT (SELECT min(session) FROM {TABLE} WHERE session > s.name) FROM s WHERE s.name IS NOT NULL)
              SELECT name FROM s WHERE name IS NOT NULL"""
    return [name for (name,) in db.execute(sql)]


def head(db: sqlite_utils.Database) -> tuple[int, str]:
    """(seq, hash) of the newest record, or (0, GENESIS) for an empty store."""
    row = db.execute(f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, GENESIS)


#: Inserts one row (every column, the hash last), as ``records.chain`` makes them.
INSERT = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


#: How often the writer thread turns what came into rows (it commits every flush interval).
WORK_INTERVAL_S = 0.02

# Queue items: a tag and its arguments (tuples: the cheapest thing to build on the order path).
_MESSAGE, _ACTION, _DRAFT, _FLUSH, _STOP = range(5)


class AuditWriter:
    """The single writer of an audit store.

    ``message``, ``record`` and ``admin`` may be called from any thread and only enqueue.
    The writer thread wakes every ``WORK_INTERVAL_S`` (or on ``flush``/``close``) and inserts what
    arrived meanwhile; it commits every ``flush_interval_ms``, or when the open transaction holds
    ``batch_size`` records, or on ``flush``/``close``.
    """

    def __init__(self, path: Path, *, batch_size: int = 1000, flush_interval_ms: int = 200):
        self.path = Path(path)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_ms / 1000
        self.written = 0
        self.lost = 0
        self._queue: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._wake = threading.Event()  # set only by flush and close; records never wake the writer
        self._thread: threading.Thread | None = None
        self._db: sqlite_utils.Database | None = None
        self._seq, self._hash = 0, GENESIS
        self._committed = (0, GENESIS)  # the chain head as committed
        self._pending = 0  # records inserted in the open transaction, not yet committed
        self._pending_since = 0.0  # monotonic time of the open transaction's first insert
        self._log = structlog.get_logger("fixproxy.audit")

    # ------------------------------------------------------------ any thread: enqueue only

    def message(self, direction: str, session: str, raw: str, now_ns: int) -> None:
        """An application message that crossed ``session`` (``direction`` "in" or "out"), as sent."""
        self._queue.put((_MESSAGE, direction, session, raw, now_ns))

    def put(self, item: tuple) -> None:
        """A queue item as ``message``, ``record`` and ``admin`` make them (from a writer process's feed)."""
        self._queue.put(item)

    def record(self, action: ev.Action | ev.AdminCommand) -> None:
        """A decision, notice or other non-message action of the core, or a risk-desk command (the event)."""
        self._queue.put((_ACTION, action))

    def admin(
        self,
        *,
        who: str,
        what: str,
        scope: str = "",
        reason: str = "",
        before: Any = None,
        after: Any = None,
        now_ns: int | None = None,
    ) -> None:
        """An operator's action: ``who`` did ``what`` to ``scope`` because ``reason``, from ``before`` to ``after``."""
        draft = admin_draft(who, what, scope, reason, before, after, time.time_ns() if now_ns is None else now_ns)
        self._queue.put((_DRAFT, draft))

    # ------------------------------------------------------------ lifecycle

    def start(self, note: str = "") -> None:
        """Open the store, continue its chain, start the writer thread; record an ``audit_started`` notice."""
        db = self._db = open_for_writing(self.path)
        self._seq, self._hash = self._committed = head(db)
        self._thread = threading.Thread(target=self._run, args=(db,), name="fixproxy-audit", daemon=True)
        self._thread.start()
        # Marks a (re)start of the proxy: a replay of the store starts a fresh core here.
        self.record(ev.Notice("audit_started", time.time_ns(), note))

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything enqueued so far is committed; False on timeout or when not running."""
        if self._thread is None or not self._thread.is_alive():
            return False
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Commit everything enqueued, stop the thread, close the file."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put((_STOP,))
            self._wake.set()
            self._thread.join(timeout)
        self._thread = None
        if self._db is not None:
            self._db.conn.close()
            self._db = None

    # ------------------------------------------------------------ the writer thread

    def _run(self, db: sqlite_utils.Database) -> None:
        # The writer sleeps WORK_INTERVAL_S and then drains what came, instead of waking on every
        # record (a wake-up per order message would cost the order path a GIL hand-off each). It
        # turns what came into rows and inserts them at once, but commits only every flush interval
        # (or batch_size records, or a flush): draining a whole flush interval at once was a burst
        # of about 12 ms of CPU every 200 ms at 1,000 orders/s, and on two cores the order path's
        # processes waited behind it.
        interval = min(self.flush_interval_s, WORK_INTERVAL_S)
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            batch: list[Draft] = []
            waiters: list[threading.Event] = []
            stop = False
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                stop = self._collect(item, batch, waiters) or stop
                if len(batch) >= self.batch_size:
                    self._insert(db, batch)
                    batch = []
                    if self._pending >= self.batch_size:
                        self._commit(db)
            self._insert(db, batch)
            if self._pending and (
                waiters
                or stop
                or self._pending >= self.batch_size
                or time.monotonic() - self._pending_since >= self.flush_interval_s
            ):
                self._commit(db)
            for done in waiters:
                done.set()
            if stop:
                return

    def _collect(self, item: tuple, batch: list[Draft], waiters: list[threading.Event]) -> bool:
        """Turn one queue item into a draft (on this thread, off the order path). True: stop after this batch."""
        tag = item[0]
        try:
            if tag == _MESSAGE:
                batch.append(message_draft(*item[1:]))
            elif tag == _ACTION:
                batch.append(action_draft(item[1]))
            elif tag == _DRAFT:
                batch.append(item[1])
            elif tag == _FLUSH:
                waiters.append(item[1])
            elif tag == _STOP:
                return True
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the writer
            self.lost += 1
            self._log.error("audit_record_failed", error=repr(exc))
        return False

    def _insert(self, db: sqlite_utils.Database, batch: list[Draft]) -> None:
        """Chain and insert a batch into the open transaction (committed later by ``_commit``)."""
        if not batch:
            return
        rows, seq, prev = chain(self._seq, self._hash, batch)
        try:
            # One prepared statement for the batch (sqlite-utils' insert_all re-derives the columns
            # and JSON-checks each value of each row: a quarter of the proxy's CPU under load).
            db.conn.executemany(INSERT, rows)
        except sqlite3.Error as exc:
            self._roll_back(db, len(rows), exc)
            return
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending += len(rows)
        self._seq, self._hash = seq, prev

    def _commit(self, db: sqlite_utils.Database) -> None:
        try:
            db.conn.commit()
        except sqlite3.Error as exc:
            self._roll_back(db, 0, exc)
            return
        self.written += self._pending
        self._pending = 0
        self._committed = (self._seq, self._hash)

    def _roll_back(self, db: sqlite_utils.Database, failed: int, exc: sqlite3.Error) -> None:
        """The open transaction rolled back whole: its records are lost, the chain head goes back."""
        try:
            db.conn.rollback()
        except sqlite3.Error:
            pass
        lost = self._pending + failed
        self.lost += lost
        self._pending = 0
        self._seq, self._hash = self._committed
        self._log.error("audit_write_failed", records=lost, error=str(exc), path=str(self.path))
