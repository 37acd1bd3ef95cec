"""The audit store as a follower of the journal.

Every input and output of the core is in the journal (fixproxy/journal/) before anything acts on
it; the audit store is derived from it by one process, the follower, that reads the journal from
where it last committed:

- ``journal_draft`` turns one journal record into the audit record the old in-process recorder
  wrote for the same thing (I and O: a ``message``; A: a decision, notice, alert or admin result;
  E: a ``command`` for a risk-desk command, nothing for other inputs, whose effects are A records;
  S: the ``audit_started`` notice that marks a start of the proxy, with the segment's number);
- ``Follower`` chains and inserts those records and saves the journal position it reached in the
  same SQLite transaction: after a kill (of the follower or the proxy) it resumes exactly where it
  committed, with no record lost and none twice. With a key it writes keyed checkpoints;
- ``AuditFollowerProcess`` runs a ``Follower`` in a child process for the proxy, restarts it when
  it dies and says how it is doing (``health``).

Keyed checkpoints: a ``checkpoint`` record holds the seq and hash of the record before it and
HMAC-SHA256(key, "<seq>:<hash>"). The key is never in the store, so whoever rewrites records and
recomputes the hashes after them cannot make the checkpoints after the change verify. The follower
writes one ``checkpoint_interval_s`` after the first record it has not yet covered (by the wall
clock), before any record more than that interval later (by the records' own times) than the
first uncovered one, and when it stops; ``audit verify`` checks both the MACs and that rule.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.util
import os
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import sqlite_utils
import structlog

from ..core import events as ev
from ..journal import format as fmt
from ..journal.reader import Tail
from ..logs import configure_logging
from ..offload import WriterPriority, WriterStartError
from .records import (
    KIND_CHECKPOINT,
    KIND_NOTICE,
    Draft,
    action_draft,
    bare_draft,
    canonical_data,
    chain,
    checkpoint_draft,
    command_draft,
    message_draft,
    segment_start_draft,
)
from .store import INSERT, SAVE_POSITION, TABLE, AuditError, head, open_for_writing, read_position

if TYPE_CHECKING:
    from ..config import LoadedConfig

#: How often the follower reads the journal when it has caught up.
WORK_INTERVAL_S = 0.02


_DIRECTIONS = {fmt.INBOUND: "in", fmt.OUTBOUND: "out"}


def journal_draft(kind: bytes, payload: bytes, segment: int = 0, offset: int = 0) -> Draft | None:
    """The audit record (a draft: not yet chained) of one journal record, or None when it has none.

    Deterministic: ``audit verify`` makes the same drafts from the journal and compares them with
    the store. ``segment`` and ``offset`` (after the record) only name a record that cannot be read.
    """
    try:
        direction = _DIRECTIONS.get(kind)
        if direction is not None:  # most records: a message, decoded by its own decoder
            session, now_ns, raw = fmt.decode_message(payload)
            return message_draft(direction, session, raw, now_ns)
        value = fmt.decode(kind, payload)
        if kind == fmt.ACTION:
            return None if isinstance(value, ev.MESSAGE_ACTIONS) else action_draft(value)
        if kind == fmt.EVENT:
            return command_draft(value) if isinstance(value, ev.ADMIN_COMMANDS) else None
        if kind == fmt.START:
            return segment_start_draft(value.segment, value.start_ns, value.note)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, KeyError) as exc:
        # A record this version cannot read (written by another version?): recorded as such, never skipped.
        detail = f"journal segment {segment} record ending at {offset}: {fmt.KINDS.get(kind, kind)!s}: {exc}"
        return bare_draft(0, KIND_NOTICE, "journal_record_unreadable", canonical_data({"detail": detail}))
    return None


class Follower:
    """Follows the journal into the audit store: one instance, one thread (the child process's).

    ``open`` (AuditError if the store cannot be opened), then ``step`` repeatedly (each reads what
    was appended, inserts it and commits at the cadence below), ``close`` at the end (it catches
    up, writes a last checkpoint and commits). Records are committed every ``flush_interval_ms``
    after the first uncommitted one, or when ``batch_size`` are pending; the journal position is
    saved in the same transaction.
    """

    def __init__(
        self,
        store: Path,
        journal_dir: Path,
        *,
        batch_size: int = 1000,
        flush_interval_ms: int = 200,
        key: bytes = b"",
        checkpoint_interval_s: float = 5.0,
        clock: Callable[[], int] = time.time_ns,
    ):
        self.store, self.journal_dir = Path(store), Path(journal_dir)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_ms / 1000
        self.key = key
        self.checkpoint_interval_s = checkpoint_interval_s
        self._interval_ns = int(checkpoint_interval_s * 1e9)
        self.clock = clock
        self.db: sqlite_utils.Database | None = None
        self.tail: Tail | None = None
        #: Called after each commit with the follower (shared memory in the child process).
        self.on_commit: Callable[[Follower], None] | None = None
        self.error = ""  # why the last commit failed ("" after a successful one)
        self.lost_transactions = 0
        self.checkpoints = 0
        self._log = structlog.get_logger("fixproxy.audit")

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Open the store and continue from the position it saved (the journal's start for a new store)."""
        db = self.db = open_for_writing(self.store)
        conn = db.conn
        try:
            self.seq, self.hash = head(db)
            saved = read_position(db)
            self.position = (saved.segment, saved.offset) if saved else (0, 0)
            # The first record after the last checkpoint: the run a checkpoint has to cover next.
            row = conn.execute(
                f"SELECT ts_ns FROM {TABLE} WHERE seq > (SELECT coalesce(max(seq), 0) FROM {TABLE} "
                f"WHERE kind = ?) AND kind != ? ORDER BY seq LIMIT 1",
                (KIND_CHECKPOINT, KIND_CHECKPOINT),
            ).fetchone()
        except sqlite3.Error as exc:
            conn.close()
            self.db = None
            raise AuditError(f"{self.store}: cannot read the audit store ({exc})") from None
        self._first_ts = row[0] if row else None  # records' time of the first uncovered record
        self._first_at = time.monotonic() if row else None  # when the follower saw it (this run)
        self.committed = (self.seq, self.hash, self.position, self._first_ts, self._first_at)
        self._rows: list[list[Any]] = []
        self._pending = 0  # rows inserted in the open transaction
        self._moved = False  # the position moved since the last commit
        self._pending_since = 0.0
        self.tail = Tail(self.journal_dir, *self.position)

    def close(self, checkpoint: bool = True) -> None:
        """Catch up with the journal, write a last checkpoint (with a key), commit, close the store."""
        if self.db is None:
            return
        try:
            while self.step(force=True) and not self.error:
                pass
            if checkpoint:
                self._checkpoint_if_uncovered()
            self._flush(force=True)
        finally:
            if self.tail is not None:
                self.tail.close()
            self.db.conn.close()
            self.db = None

    # ------------------------------------------------------------ work

    def step(self, force: bool = False) -> int:
        """Read what the journal has beyond the position, insert it, commit when due (or ``force``).
        Returns how many journal records were read."""
        if self.tail is None:
            raise AuditError(f"{self.store}: the follower is not open")
        items = self.tail.poll()
        interval_ns, key, batch_size = self._interval_ns, self.key, self.batch_size
        drafts: list[Draft] = []
        for segment, offset, kind, payload in items:
            draft = journal_draft(kind, payload, segment, offset)
            if draft is None:
                continue
            if key:
                ts = draft[0]
                if self._first_ts is None:
                    self._first_ts, self._first_at = ts, time.monotonic()
                elif ts - self._first_ts > interval_ns:
                    # Records further apart than the interval: a checkpoint between them.
                    self._add(drafts)
                    drafts = []
                    self._checkpoint()
                    self._first_ts, self._first_at = ts, time.monotonic()
            drafts.append(draft)
            if len(drafts) + len(self._rows) >= batch_size:
                # The position moves only with whole batches (records without a draft after them
                # move it below): a commit saves where its last record ended.
                self.position, self._moved = (segment, offset), True
                self._add(drafts)
                drafts = []
                if not self._insert() or (self._pending >= batch_size and not self._commit()):
                    return len(items)  # rolled back to the last commit: the rest is read again next time
        if items and items[-1][:2] != self.position:
            self.position, self._moved = (items[-1][0], items[-1][1]), True
        self._add(drafts)
        if self.key and self._first_at is not None and time.monotonic() - self._first_at >= self.checkpoint_interval_s:
            self._checkpoint_if_uncovered()
        self._flush(force)
        return len(items)

    def _flush(self, force: bool) -> None:
        if not self._insert():
            return
        if (self._pending or self._moved) and (
            force or self._pending >= self.batch_size or time.monotonic() - self._pending_since >= self.flush_interval_s
        ):
            self._commit()

    def _add(self, drafts: list[Draft]) -> None:
        """Chain drafts after the current head (rows wait in ``_rows`` until ``_insert``)."""
        if drafts:
            rows, self.seq, self.hash = chain(self.seq, self.hash, drafts)
            self._rows.extend(rows)

    def _checkpoint(self) -> None:
        self._add([checkpoint_draft(self.key, self.seq, self.hash, self.clock())])
        self.checkpoints += 1

    def _checkpoint_if_uncovered(self) -> None:
        if self.key and self._first_ts is not None:
            self._checkpoint()
            self._first_ts = self._first_at = None

    def _insert(self) -> bool:
        rows, self._rows = self._rows, []
        if not rows and not self._moved:
            return True
        try:
            if rows:
                self._open_db().conn.executemany(INSERT, rows)
        except sqlite3.Error as exc:
            self._roll_back(exc)
            return False
        if not self._pending and not self._pending_since:
            self._pending_since = time.monotonic()
        self._pending += len(rows)
        return True

    def _open_db(self) -> sqlite_utils.Database:
        if self.db is None:
            raise AuditError(f"{self.store}: the follower is not open")
        return self.db

    def _commit(self) -> bool:
        conn = self._open_db().conn
        segment, offset = self.position
        try:
            conn.execute(SAVE_POSITION, (segment, offset, self.seq, self.hash, time.time_ns()))
            conn.commit()
        except sqlite3.Error as exc:
            self._roll_back(exc)
            return False
        self._pending = 0
        self._pending_since = 0.0
        self._moved = False
        self.error = ""
        self.committed = (self.seq, self.hash, self.position, self._first_ts, self._first_at)
        if self.on_commit is not None:
            self.on_commit(self)
        return True

    def _roll_back(self, exc: sqlite3.Error) -> None:
        """The open transaction is gone: back to the last commit, journal position included, so the
        same records are read and written again on the next try (nothing lost, nothing twice)."""
        try:
            self._open_db().conn.rollback()
        except sqlite3.Error:
            pass
        self.lost_transactions += 1
        self.error = f"cannot write the audit store: {exc}"
        self._log.error(
            "audit_write_failed",
            error=str(exc),
            path=str(self.store),
            detail="the follower goes back to its last commit and tries again",
        )
        self.seq, self.hash, self.position, self._first_ts, self._first_at = self.committed
        self._rows, self._pending, self._pending_since, self._moved = [], 0, 0.0, False
        if self.tail is not None:
            self.tail.close()
        self.tail = Tail(self.journal_dir, *self.position)

    @property
    def committed_position(self) -> tuple[int, int]:
        return self.committed[2]

    @property
    def committed_seq(self) -> int:
        return self.committed[0]


# ---------------------------------------------------------------- the child process

# Shared progress, one int64 each (a RawArray: no lock a killed child could leave held). The child
# writes under a sequence counter (odd while it writes), the parent reads until it sees one even
# value before and after.
_VERSION, _SEGMENT, _OFFSET, _SEQ, _BEAT, _COMMITS, _PID, _DONE, _CHECKPOINTS = range(9)
_FIELDS = 9
_ERROR_BYTES = 240


class _Shared:
    def __init__(self, ctx: SpawnContext) -> None:
        self.values = ctx.RawArray(ctypes.c_int64, _FIELDS)
        self.error = ctx.RawArray(ctypes.c_char, _ERROR_BYTES)

    def write(self, **fields: int) -> None:
        v = self.values
        v[_VERSION] += 1
        for name, value in fields.items():
            v[_NAMES[name]] = value
        v[_VERSION] += 1

    def set_error(self, text: str) -> None:
        data = text.encode("utf-8", "replace")[: _ERROR_BYTES - 1]
        self.error.value = data

    def read(self) -> dict[str, int]:
        v = self.values
        for _ in range(1000):
            before = v[_VERSION]
            if before % 2 == 0:
                snapshot = v[:]
                if v[_VERSION] == before:
                    break
            time.sleep(0)
        else:  # a writer died mid-write: take what is there
            snapshot = v[:]
        return {name: snapshot[i] for name, i in _NAMES.items()}

    def read_error(self) -> str:
        return self.error.value.decode("utf-8", "replace")


_NAMES = {
    "segment": _SEGMENT,
    "offset": _OFFSET,
    "seq": _SEQ,
    "beat": _BEAT,
    "commits": _COMMITS,
    "pid": _PID,
    "done": _DONE,
    "checkpoints": _CHECKPOINTS,
}


def _child(
    settings: dict, shared: _Shared, stop: ProcessEvent, ready: Connection, log_level: str, priority: str
) -> None:
    """The follower process: follow until told to stop (or the proxy is gone), then catch up and end."""
    configure_logging(log_level)
    log = structlog.get_logger("fixproxy.audit")
    # ^C in a terminal and a service manager's SIGTERM reach the whole process group: the follower
    # stops when the proxy says so (after the journal's last record), or when the proxy is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    follower = Follower(
        Path(settings["store"]),
        Path(settings["journal_dir"]),
        batch_size=settings["batch_size"],
        flush_interval_ms=settings["flush_interval_ms"],
        key=settings["key"],
        checkpoint_interval_s=settings["checkpoint_interval_s"],
    )
    try:
        follower.open()
    except (AuditError, sqlite3.Error, OSError) as exc:
        ready.send(("error", str(exc)))
        return
    pacer = None
    if priority == "idle":
        if WriterPriority.available():
            pacer = WriterPriority()
            pacer.lower()
        else:
            log.warning(
                "writer_priority_unavailable",
                detail="no right to raise a thread's priority back "
                "(CAP_SYS_NICE or RLIMIT_NICE); the audit follower runs at normal priority",
            )

    def publish(f: Follower) -> None:
        segment, offset = f.committed_position
        shared.write(
            segment=segment,
            offset=offset,
            seq=f.committed_seq,
            commits=shared.values[_COMMITS] + 1,
            beat=time.monotonic_ns(),
            checkpoints=f.checkpoints,
        )
        shared.set_error(f.error)

    follower.on_commit = publish
    shared.write(
        segment=follower.position[0],
        offset=follower.position[1],
        seq=follower.seq,
        beat=time.monotonic_ns(),
        pid=os.getpid(),
        done=0,
    )
    ready.send(("ready", str(os.getpid())))
    ready.close()
    parent = os.getppid()
    log.info(
        "audit_follower_started",
        store=str(follower.store),
        journal=str(follower.journal_dir),
        segment=follower.position[0],
        offset=follower.position[1],
        records=follower.seq,
        checkpoints=bool(follower.key),
    )
    retry_at = 0.0
    while True:
        started = time.monotonic()
        stopping = stop.is_set() or os.getppid() != parent
        read = 0
        if started >= retry_at:
            read = follower.step(force=stopping)
            if follower.error:
                shared.set_error(follower.error)
                retry_at = time.monotonic() + 1.0  # a full disk, a locked file: try again in a second
        shared.write(beat=time.monotonic_ns())
        if stopping and not read and not follower.error:
            break
        if read < 1000:
            time.sleep(WORK_INTERVAL_S)
        if pacer is not None:
            pacer.cycle(time.monotonic() - started - WORK_INTERVAL_S)
    follower.close(checkpoint=True)
    publish(follower)
    shared.write(done=1)
    log.info("audit_follower_stopped", segment=follower.position[0], offset=follower.position[1], records=follower.seq)


# ---------------------------------------------------------------- the supervisor (in the proxy)


class FollowerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the follower process needs: the store, the journal, the [audit] cadence and the key."""

    store: str
    journal_dir: str
    batch_size: int = 1000
    flush_interval_ms: int = 200
    key: bytes = b""
    checkpoint_interval_s: float = 5.0

    @classmethod
    def from_config(cls, loaded: LoadedConfig) -> FollowerSettings:
        audit = loaded.config.audit
        return cls(
            store=str(loaded.audit_path),
            journal_dir=str(loaded.journal_dir),
            batch_size=audit.batch_size,
            flush_interval_ms=audit.flush_interval_ms,
            key=loaded.audit_key,
            checkpoint_interval_s=audit.checkpoint_interval_s,
        )


def lag_bytes(journal_dir: Path, committed: tuple[int, int], end: tuple[int, int]) -> int:
    """Bytes of journal between the follower's position and the writer's (segments in between counted
    by their file sizes: a segment whose writer was killed counts its unwritten allocation too)."""
    (seg, off), (end_seg, end_off) = committed, end
    if (seg, off) >= (end_seg, end_off):
        return 0
    if seg == end_seg:
        return end_off - off
    total = end_off
    for path in Path(journal_dir).glob("*.journal"):
        try:
            n = int(path.stem)
        except ValueError:
            continue
        if seg <= n < end_seg:
            try:
                total += path.stat().st_size - (off if n == seg else 0)
            except OSError:
                pass
    return max(total, 0)


class AuditFollowerProcess:
    """The audit follower in a child process, watched from the proxy.

    ``source``: a LoadedConfig (the store, the journal under its state dir, ``[audit]``'s cadence and
    key) or FollowerSettings. ``journal_position()``: the journal writer's (segment, bytes written)
    now (``lambda: journal.position``); without it the lag is not known and the state is only
    "ok", "stuck" (no sign of life) or "dead". ``on_problem(kind, detail)`` is called from the
    watcher thread once per change of state: ``kind`` "behind", "stuck" or "dead", and "ok" when it
    is well again.

    A thread checks every ``check_interval_s``: "dead" when the process is gone (it is started
    again after 1 s, then 2, 4 ... up to ``max_backoff_s``); "stuck" when it shows no sign of life
    for ``stuck_s``, or has not committed anything for ``stuck_s`` while the journal is ahead of it;
    "behind" when it has not reached where the journal was ``behind_s`` ago.
    """

    def __init__(
        self,
        source: LoadedConfig | FollowerSettings,
        *,
        journal_position: Callable[[], tuple[int, int]] | None = None,
        on_problem: Callable[[str, str], None] | None = None,
        log_level: str = "info",
        priority: str = "normal",
        check_interval_s: float = 1.0,
        behind_s: float = 5.0,
        stuck_s: float = 10.0,
        start_timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
    ):
        self.settings = source if isinstance(source, FollowerSettings) else FollowerSettings.from_config(source)
        self.journal_position = journal_position
        self.on_problem = on_problem
        self.log_level, self.priority = log_level, priority
        self.check_interval_s, self.behind_s, self.stuck_s = check_interval_s, behind_s, stuck_s
        self.start_timeout_s, self.max_backoff_s = start_timeout_s, max_backoff_s
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")  # never fork a process that runs FIX engine threads
        self._shared = _Shared(self._ctx)
        self._stop = self._ctx.Event()
        self._process: SpawnProcess | None = None
        self._lock = threading.Lock()  # the watcher's state against health() and stop()
        self._state, self._detail = "ok", ""
        self._ends: deque[tuple[float, tuple[int, int]]] = deque()  # (when, journal end) samples
        self._progress_at = time.monotonic()
        self._last_position = (-1, -1)
        self._backoff = 1.0
        self._restart_at = 0.0
        self._up_since = 0.0
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._log = structlog.get_logger("fixproxy.audit")
        # At the interpreter's exit multiprocessing joins its children: tell the follower to end
        # first (it ignores SIGTERM), or that join would wait for ever when stop() was not called.
        multiprocessing.util.Finalize(self, self._stop.set, exitpriority=100)

    # ------------------------------------------------------------ start and stop

    def _spawn(self) -> None:
        """Start a follower process and wait until it has opened the store (WriterStartError if it cannot)."""
        values = self._shared.values
        if values[_VERSION] % 2:  # a follower killed while it wrote its progress: even again, before the next
            values[_VERSION] += 1
        ready, child_ready = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_child,
            name="fixproxy-audit-follower",
            daemon=True,
            args=(
                msgspec.structs.asdict(self.settings),
                self._shared,
                self._stop,
                child_ready,
                self.log_level,
                self.priority,
            ),
        )
        process.start()
        child_ready.close()
        try:
            if not ready.poll(self.start_timeout_s):
                process.kill()
                process.join(5)
                raise WriterStartError(
                    f"the audit follower did not open {self.settings.store} within {self.start_timeout_s:g} s"
                )
            try:
                kind, detail = ready.recv()
            except EOFError:
                process.join(5)
                raise WriterStartError(
                    f"the audit follower ended before it opened {self.settings.store} (exit code {process.exitcode})"
                ) from None
        finally:
            ready.close()
        if kind == "error":
            process.join(5)
            raise WriterStartError(detail)
        self._process = process
        self._up_since = time.monotonic()
        self._progress_at = time.monotonic()

    def start(self) -> None:
        """Start the follower (WriterStartError naming the cause if it cannot open the store) and its watcher."""
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="fixproxy-audit-watch", daemon=True)
        self._watcher.start()

    def stop(self, timeout: float = 120.0) -> bool:
        """Let the follower catch up with the journal (its writer stopped first), checkpoint and end.
        A follower found dead is started once more to catch up. False if it did not end in time (it
        is killed then; the next start goes on from its last commit)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(self.check_interval_s + 10)
        self._stop.set()
        process = self._process
        if process is not None and not process.is_alive():
            process.join(0)
            try:
                self._spawn()
                process = self._process
            except WriterStartError as exc:
                self._log.error("audit_follower_stop_failed", error=str(exc))
                return False
        if process is None:
            return True
        process.join(timeout)
        if process.is_alive():
            self._log.error(
                "audit_follower_stop_timeout",
                timeout_s=timeout,
                position=self._position(),
                detail="killed; the next start goes on from its last commit",
            )
            process.kill()
            process.join(5)
            return False
        return True

    # ------------------------------------------------------------ watching

    def _position(self) -> tuple[int, int]:
        s = self._shared.read()
        return s["segment"], s["offset"]

    def _journal_end(self) -> tuple[int, int] | None:
        if self.journal_position is None:
            return None
        try:
            segment, offset = self.journal_position()
        except Exception:  # noqa: BLE001 - a journal closing meanwhile
            return None
        return segment, offset

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_interval_s):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the watcher must go on
                self._log.error("audit_watch_error", error=repr(exc))

    def check(self) -> str:
        """One look at the follower (the watcher thread calls it every ``check_interval_s``); its state."""
        now = time.monotonic()
        process = self._process
        if process is None or not process.is_alive():
            if self._stopping.is_set():
                return self._state
            if self._restart_at == 0.0:
                self._restart_at = now + self._backoff
                self._backoff = min(self._backoff * 2, self.max_backoff_s)
                code = process.exitcode if process is not None else None
                self._set(
                    "dead",
                    f"the audit follower process ended (exit code {code}); starting it again in "
                    f"{self._restart_at - now:g} s",
                )
            if now < self._restart_at:
                return self._state
            try:
                self._spawn()
            except WriterStartError as exc:
                self._log.error("audit_follower_restart_failed", error=str(exc))
                self._restart_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self.max_backoff_s)
                return self._state
            self._restart_at = 0.0
            self.restarts += 1
            self._log.warning("audit_follower_restarted", restarts=self.restarts, pid=self.pid)
            now = time.monotonic()
        if now - self._up_since > 60:
            self._backoff = 1.0
        shared = self._shared.read()
        position = (shared["segment"], shared["offset"])
        if position != self._last_position:
            self._last_position, self._progress_at = position, now
        end = self._journal_end()
        lag = lag_bytes(Path(self.settings.journal_dir), position, end) if end is not None else -1
        if end is not None:
            self._ends.append((now, end))
            while len(self._ends) > 1 and self._ends[1][0] <= now - self.behind_s:
                self._ends.popleft()
        silent_s = (time.monotonic_ns() - shared["beat"]) / 1e9
        error = self._shared.read_error()
        if silent_s > self.stuck_s:
            self._set(
                "stuck", f"the audit follower (pid {shared['pid']}) has shown no sign of life for {silent_s:.0f} s"
            )
        elif lag > 0 and now - self._progress_at > self.stuck_s:
            self._set(
                "stuck",
                f"the audit follower has committed nothing for {now - self._progress_at:.0f} s, "
                f"{lag} bytes of journal behind" + (f": {error}" if error else ""),
            )
        elif end is not None and self._ends and self._ends[0][0] <= now - self.behind_s and position < self._ends[0][1]:
            self._set(
                "behind",
                f"the audit follower is {lag} bytes of journal behind (more than "
                f"{self.behind_s:g} s)" + (f": {error}" if error else ""),
            )
        else:
            self._set("ok", "the audit follower is up to date" if self._state != "ok" else self._detail)
        return self._state

    def _set(self, state: str, detail: str) -> None:
        with self._lock:
            changed = state != self._state
            self._state, self._detail = state, detail
        if changed:
            (self._log.info if state == "ok" else self._log.error)("audit_follower_" + state, detail=detail)
            if self.on_problem is not None:
                try:
                    self.on_problem(state, detail)
                except Exception as exc:  # noqa: BLE001 - the caller's problem must not stop the watcher
                    self._log.error("audit_on_problem_error", error=repr(exc))

    def health(self) -> dict:
        """{"state": "ok" | "behind" | "stuck" | "dead", "detail", "pid", "restarts", "position":
        {"segment", "offset"} (committed), "journal_end": {"segment", "offset"} (or None), "lag_bytes"
        (-1 when unknown), "records" (the committed head seq), "checkpoints" (keyed: bool),
        "checkpoints_written", "error" (the last write error, "" if none)}."""
        shared = self._shared.read()
        position = (shared["segment"], shared["offset"])
        end = self._journal_end()
        with self._lock:
            state, detail = self._state, self._detail
        process = self._process
        return {
            "state": state,
            "detail": detail,
            "pid": process.pid if process is not None and process.is_alive() else None,
            "restarts": self.restarts,
            "position": {"segment": position[0], "offset": position[1]},
            "journal_end": {"segment": end[0], "offset": end[1]} if end is not None else None,
            "lag_bytes": lag_bytes(Path(self.settings.journal_dir), position, end) if end is not None else -1,
            "records": shared["seq"],
            "checkpoints": bool(self.settings.key),
            "checkpoints_written": shared["checkpoints"],
            "error": self._shared.read_error(),
        }

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


__all__ = ["AuditFollowerProcess", "Follower", "FollowerSettings", "WriterStartError", "journal_draft", "lag_bytes"]
