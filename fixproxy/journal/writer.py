"""The journal's writer: records appended to a segment file through a shared mapping.

A record copied into the mapping is in the page cache at once, with no system call: a kill -9 of
the process after ``append`` returned loses nothing. The file is allocated ahead of the writer
(``posix_fallocate``), in chunks, so a full disk shows as a failed allocation while there is still
room (the reserve) for the records the proxy writes as it stops taking new risk, never as a write
into a hole the file system cannot back (which would end the process with SIGBUS).

``sync`` (``[journal] sync``) adds durability against a power loss: "none" leaves writing back to
the kernel, "interval" has a thread call ``fdatasync`` every ``sync_interval_ms``, "always" calls it
after every input record (I and E), before the core acts on it.
"""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path
from typing import Protocol

import structlog

from ..core import events as ev
from . import format as fmt

CHUNK = 4 << 20
RESERVE = 1 << 20
#: Written pages are unmapped from the process (``_release``) every this many bytes.
RELEASE = 1 << 20


def segment_path(directory: Path, segment: int) -> Path:
    return Path(directory) / f"{segment:08d}.journal"


def snapshot_path(directory: Path, segment: int, offset: int = 0) -> Path:
    """A snapshot of the core at a segment's start (``offset`` 0), or after the record of that segment
    ending at ``offset`` (the day roll's)."""
    if offset:
        return Path(directory) / f"{segment:08d}.{offset:012d}.snapshot"
    return Path(directory) / f"{segment:08d}.snapshot"


class JournalError(Exception):
    """The journal cannot be opened (the message names the file and the cause)."""


class JournalSink(Protocol):
    """What an engine's bridge journals into: a ``Journal``, or a ``ClosedJournal`` once the proxy stopped it."""

    #: Why nothing more can be written ("" while it can).
    failed: str

    def inbound(self, session: str, now_ns: int, raw: str) -> bool: ...

    def outbound(self, session: str, now_ns: int, raw: str) -> bool: ...

    def event(self, event: ev.Event) -> bool: ...

    def action(self, action: ev.Action) -> bool: ...

    def resume(self) -> str: ...


class Journal:
    """One segment, open for appending. Not thread-safe: the engine's core lock serialises callers."""

    def __init__(
        self,
        directory: Path,
        segment: int,
        start: fmt.Start,
        *,
        sync: str = "none",
        sync_interval_ms: int = 100,
        chunk: int = CHUNK,
        reserve: int = RESERVE,
    ):
        self.directory = Path(directory)
        self.segment = segment
        self.path = segment_path(directory, segment)
        self.chunk, self.reserve = chunk, reserve
        self.sync = sync
        #: Why the journal cannot grow ("" while it can); set by a failed allocation, cleared by ``resume``.
        self.failed = ""
        self.lost = 0  # records that found no room at all
        self.appended = 0
        self._released = 0  # the written bytes before this are unmapped from the process (``_release``)
        self._log = structlog.get_logger("fixproxy.journal")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot create the journal segment {self.path}: {exc.strerror or exc}") from None
        try:
            os.posix_fallocate(self.fd, 0, chunk)
            self.capacity = chunk
            self.map = mmap.mmap(self.fd, chunk)
        except OSError as exc:
            os.close(self.fd)
            self.path.unlink(missing_ok=True)
            raise JournalError(f"cannot allocate the journal segment {self.path}: {exc.strerror or exc}") from None
        self.map[: len(fmt.MAGIC)] = fmt.MAGIC
        self.size = len(fmt.MAGIC)
        self.append(fmt.START, fmt.encode(start))
        if sync != "none":
            os.fdatasync(self.fd)
            # The new file's name must survive too.
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        self._stop = threading.Event()
        self._syncer = None
        if sync == "interval":
            self._syncer = threading.Thread(
                target=self._sync_loop, args=(sync_interval_ms / 1000,), name="fixproxy-journal-sync", daemon=True
            )
            self._syncer.start()

    # ------------------------------------------------------------ appending

    def append(self, kind: bytes, payload: bytes) -> bool:
        """Append one record; False when it found no room (counted in ``lost``)."""
        record = fmt.frame(kind, payload)
        start = self.size
        end = start + len(record)
        if end > self.capacity - self.reserve and not self._grow(end) and end > self.capacity:
            self.lost += 1
            return False
        self.map[start:end] = record
        self.size = end
        self.appended += 1
        if end - self._released >= RELEASE:
            self._release()
        if self.sync == "always" and (kind == fmt.INBOUND or kind == fmt.EVENT):
            self._sync()
        return True

    def inbound(self, session: str, now_ns: int, raw: str) -> bool:
        return self.append(fmt.INBOUND, fmt.encode((session, now_ns, raw)))

    def outbound(self, session: str, now_ns: int, raw: str) -> bool:
        return self.append(fmt.OUTBOUND, fmt.encode((session, now_ns, raw)))

    def event(self, event: ev.Event) -> bool:
        return self.append(fmt.EVENT, fmt.encode(event))

    def action(self, action: ev.Action) -> bool:
        return self.append(fmt.ACTION, fmt.encode(action))

    def _grow(self, end: int) -> bool:
        """Allocate another chunk (or what ``end`` needs); False, with ``failed`` set, if the disk refuses."""
        if self.failed:
            return False
        capacity = max(self.capacity + self.chunk, end + self.reserve)
        try:
            os.posix_fallocate(self.fd, self.capacity, capacity - self.capacity)
            self.map.resize(capacity)
        except OSError as exc:
            self.failed = f"cannot grow the journal {self.path.name}: {exc.strerror or exc}"
            self._log.error(
                "journal_full",
                path=str(self.path),
                error=str(exc),
                size=self.size,
                reserve_left=self.capacity - self.size,
                detail="new orders are refused until the journal can grow and a risk user resumes",
            )
            return False
        self.capacity = capacity
        self._release()
        return True

    def _release(self) -> None:
        """Unmap the written pages behind the writer from this process (MADV_DONTNEED): they stay in the
        page cache, dirty until the kernel writes them back, but no longer count in the proxy's RSS
        (the mapping of a whole day's segment would otherwise hold every page it ever touched)."""
        done = (self.size // mmap.PAGESIZE) * mmap.PAGESIZE
        start = (self._released // mmap.PAGESIZE) * mmap.PAGESIZE
        if done > start and hasattr(mmap, "MADV_DONTNEED"):
            try:
                self.map.madvise(mmap.MADV_DONTNEED, start, done - start)
            except OSError:
                pass  # only memory accounting: the records are in the page cache either way
        self._released = done

    def resume(self) -> str:
        """Try to allocate room (and sync) again; "" when the journal can grow (``failed`` cleared), else why not."""
        reason, self.failed = self.failed, ""
        if self._grow(self.capacity + self.chunk) and (self.sync == "none" or self._sync()):
            return ""
        if not self.failed:
            self.failed = reason
        return self.failed

    @property
    def position(self) -> tuple[int, int]:
        """(segment, bytes written): where the next record goes."""
        return self.segment, self.size

    # ------------------------------------------------------------ durability

    def _sync(self) -> bool:
        """fdatasync; an I/O error fails the journal (new risk refused) like a full disk."""
        try:
            os.fdatasync(self.fd)  # releases the interpreter lock
            return True
        except OSError as exc:
            if not self.failed:
                self.failed = f"cannot sync the journal {self.path.name}: {exc.strerror or exc}"
                self._log.error(
                    "journal_sync_failed",
                    path=str(self.path),
                    error=str(exc),
                    detail="new orders are refused until a risk user resumes",
                )
            return False

    def _sync_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self._sync()
            except ValueError:  # closed meanwhile
                return

    def flush(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        """Write everything back and cut the file to what was written."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(5)
        try:
            self.map.flush()
            self.map.close()
            os.ftruncate(self.fd, self.size)
            os.fsync(self.fd)
        finally:
            os.close(self.fd)


class ClosedJournal:
    """What the engine journals into once the proxy stopped its journal: nothing is written, and the
    core refuses new risk (``failed``) for anything that still arrives while the sessions close."""

    def __init__(self, segment: int, size: int) -> None:
        self.failed = "the proxy is stopping"
        self.lost = 0
        self.segment, self.size = segment, size
        self.sync = "none"

    def append(self, kind: bytes, payload: bytes) -> bool:
        self.lost += 1
        return False

    def inbound(self, session: str, now_ns: int, raw: str) -> bool:
        return self.append(fmt.INBOUND, b"")

    outbound = inbound

    def event(self, event: ev.Event | ev.Action) -> bool:
        return self.append(fmt.EVENT, b"")

    action = event

    def resume(self) -> str:
        return self.failed

    @property
    def position(self) -> tuple[int, int]:
        return self.segment, self.size
