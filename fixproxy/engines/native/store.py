"""Session stores and message logs in quickfix's own file formats.

The native engine writes what quickfix's FileStore and FileLog write, file for file, so the
proxy's recovery (which reads the venue store), compliance replay (which reads the message
logs) and an operator's habits work whichever engine ran, and a state folder can move from one
engine to the other. Like quickfix, writes reach the page cache (no fsync).

- ``<prefix>.seqnums``: ``<next sender seq> : <next target seq>``, 20 digits each;
- ``<prefix>.body``: the sent messages back to back; ``<prefix>.header``: ``seq,offset,size `` each;
- ``<prefix>.session``: when the store was created (a new UTC day starts a new store);
- ``<prefix>.messages.current.log`` / ``.event.current.log``: ``<stamp> : <message or event>``.
"""

from __future__ import annotations

import mmap
import os
from array import array
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ...timefmt import fix_second_bytes

_DAY_NS = 86_400 * 1_000_000_000
_SEQNUMS_SIZE = 43  # "%020d : %020d"


class Cork:
    """Holds socket writes while the engine handles the rest of a socket read.

    The first message of a read is answered at once (``Connection.data_received``); the messages
    after it are all handled, then each connection gets one write for them: one system call per
    socket instead of one per outbound message. Not held, writes happen at once.
    """

    __slots__ = ("depth", "dirty", "gate")

    def __init__(self) -> None:
        self.depth = 0
        self.dirty: dict = {}  # connections with held bytes (a dict keeps their order)
        #: ``[ha]``: asked before bytes go on any socket (ha/node.py HaNode.gate); False: they do not,
        #: and the connection is dropped (a fenced former active sends nothing).
        self.gate: Callable[[], bool] | None = None

    def hold(self) -> None:
        self.depth += 1

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            dirty = self.dirty
            if dirty and self.gate is not None and not self.gate():
                while dirty:
                    dirty.popitem()[0].abort()
                return
            while dirty:
                dirty.popitem()[0].flush()


#: For connections made without one: writes happen at once.
NO_CORK = Cork()


def _open(path: Path, truncate: bool = False) -> int:
    flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    return os.open(path, flags, 0o644)


def _created_text(now_ns: int) -> str:
    return datetime.fromtimestamp(now_ns // 1_000_000_000, tz=UTC).strftime("%Y%m%d-%H:%M:%S")


class _MappedFile:
    """A file written through a shared mapping (the page cache, as a write() reaches, without a
    system call per message). Appends grow the file in chunks; ``size`` is what was written, and
    the file is cut back to it on close. After a crash the tail is zeros, which readers skip."""

    CHUNK = 1 << 22
    RELEASE = 1 << 19  # written pages are unmapped from the process every this many bytes

    def __init__(self, path: Path, size: int | None = None, truncate: bool = False, fixed: int = 0):
        self.fd = _open(path, truncate)
        actual = os.fstat(self.fd).st_size
        self.size = fixed or (actual if size is None else min(size, actual))
        self.fixed = fixed
        self.capacity = fixed or max(self.CHUNK, (self.size // self.CHUNK + 1) * self.CHUNK)
        os.ftruncate(self.fd, self.capacity)
        self.map = mmap.mmap(self.fd, self.capacity)
        self.released = 0

    def append(self, data: bytes) -> int:
        """Write ``data`` at the end; returns where it starts."""
        start = self.size
        end = start + len(data)
        if end > self.capacity:
            self.capacity = (end // self.CHUNK + 1) * self.CHUNK
            os.ftruncate(self.fd, self.capacity)
            self.map.resize(self.capacity)
        self.map[start:end] = data
        self.size = end
        if end - self.released >= self.RELEASE:
            # The pages written so far leave the process's RSS (they stay in the page cache; a resend
            # reads them back): a day's messages would otherwise all count as the proxy's memory.
            done = (start // mmap.PAGESIZE) * mmap.PAGESIZE
            first = (self.released // mmap.PAGESIZE) * mmap.PAGESIZE
            if done > first and hasattr(mmap, "MADV_DONTNEED"):
                self.map.madvise(mmap.MADV_DONTNEED, first, done - first)
            self.released = done
        return start

    def put(self, data: bytes) -> None:
        """Overwrite the whole (fixed-size) file."""
        self.map[:] = data

    def close(self) -> None:
        self.map.close()
        os.ftruncate(self.fd, self.size)
        os.close(self.fd)


class _Index:
    """Where each sent message is in the body file, by sequence number, for the last ``WINDOW`` to
    ``2 * WINDOW`` messages (two ``array('q')``, 16 bytes a message); older ones are found by reading
    the header file (``seq,offset,size`` entries in order) when a resend asks for them, so a day's
    messages cost the process no memory."""

    WINDOW = 8192
    __slots__ = ("first", "offsets", "sizes")

    def __init__(self) -> None:
        self.first = 1  # the sequence number of offsets[0]
        self.offsets = array("q")  # -1: not stored
        self.sizes = array("q")

    def __setitem__(self, seq: int, where: tuple[int, int]) -> None:
        i = seq - self.first
        if i == len(self.offsets):  # the usual case: the next number
            self.offsets.append(where[0])
            self.sizes.append(where[1])
        elif i < 0:
            return  # older than the window: the header file has it
        else:
            if i > len(self.offsets):
                gap = i + 1 - len(self.offsets)
                self.offsets.extend([-1] * gap)
                self.sizes.extend([0] * gap)
            self.offsets[i], self.sizes[i] = where
        if len(self.offsets) >= 2 * self.WINDOW:
            drop = len(self.offsets) - self.WINDOW
            del self.offsets[:drop], self.sizes[:drop]
            self.first += drop

    def get(self, seq: int) -> tuple[int, int] | None:
        i = seq - self.first
        if 0 <= i < len(self.offsets) and self.offsets[i] >= 0:
            return self.offsets[i], self.sizes[i]
        return None

    def __len__(self) -> int:
        return sum(1 for o in self.offsets if o >= 0)


class FileStore:
    """Sequence numbers and sent messages of one session (quickfix FileStore files)."""

    def __init__(self, directory: Path, prefix: str, now_ns: int):
        directory.mkdir(parents=True, exist_ok=True)
        self._paths = {k: directory / f"{prefix}.{k}" for k in ("body", "header", "seqnums", "session")}
        self._files: tuple[_MappedFile, _MappedFile, _MappedFile] | None = None
        self.index = _Index()
        self.next_sender = self.next_target = 1
        self.created_day = now_ns // _DAY_NS
        session_file = self._paths["session"]
        if session_file.exists():
            try:
                created = datetime.strptime(session_file.read_text().strip(), "%Y%m%d-%H:%M:%S")
                self.created_day = int(created.replace(tzinfo=UTC).timestamp()) // 86_400
            except ValueError:
                self.created_day = -1
        if not session_file.exists() or self.created_day != now_ns // _DAY_NS:
            self.reset(now_ns)
            return
        body_size, header_size = self._load()
        self._files = (
            _MappedFile(self._paths["body"], body_size),
            _MappedFile(self._paths["header"], header_size),
            _MappedFile(self._paths["seqnums"], fixed=_SEQNUMS_SIZE),
        )
        self.save_seqnums()

    def _load(self) -> tuple[int, int]:
        """Sequence numbers and the index of sent messages; the sizes of body and header written."""
        text = self._paths["seqnums"].read_bytes().split(b"\0")[0].decode() if self._paths["seqnums"].exists() else ""
        sender, sep, target = text.partition(":")
        if sep and sender.strip().isdigit() and target.strip().isdigit():
            self.next_sender, self.next_target = int(sender), int(target)
        header = self._paths["header"].read_bytes().split(b"\0")[0] if self._paths["header"].exists() else b""
        body_size = 0
        for entry in header.decode("latin-1").split():
            parts = entry.split(",")
            if len(parts) == 3 and all(p.isdigit() for p in parts):
                seq, offset, size = (int(p) for p in parts)
                self.index[seq] = (offset, size)
                body_size = max(body_size, offset + size)
        return body_size, len(header)

    def reset(self, now_ns: int) -> None:
        """Start again at 1/1 with no messages (a new day, or a Logon with ResetSeqNumFlag)."""
        self.close()
        self._files = (
            _MappedFile(self._paths["body"], truncate=True),
            _MappedFile(self._paths["header"], truncate=True),
            _MappedFile(self._paths["seqnums"], truncate=True, fixed=_SEQNUMS_SIZE),
        )
        self.index = _Index()
        self.next_sender = self.next_target = 1
        self.created_day = now_ns // _DAY_NS
        self._paths["session"].write_text(_created_text(now_ns))
        self.save_seqnums()

    def _open(self) -> tuple[_MappedFile, _MappedFile, _MappedFile]:
        assert self._files is not None, "the store is closed"
        return self._files

    def save_seqnums(self) -> None:
        self._open()[2].put(b"%020d : %020d" % (self.next_sender, self.next_target))

    def sent(self, seq: int, data: bytes) -> None:
        """Store message ``seq`` (before it goes on the wire) and move the sender sequence past it."""
        body, header, _ = self._open()
        offset = body.append(data)
        header.append(b"%d,%d,%d " % (seq, offset, len(data)))
        self.index[seq] = (offset, len(data))
        self.next_sender = seq + 1
        self.save_seqnums()

    def get(self, begin: int, end: int) -> list[tuple[int, str]]:
        """Stored messages ``begin``..``end`` (inclusive) that exist, oldest first."""
        body = self._open()[0].map
        out = []
        older: dict[int, tuple[int, int]] = {}
        if begin < self.index.first:  # before the in-memory window: read the header file once
            header = self._open()[1]
            for entry in bytes(header.map[: header.size]).decode("latin-1").split():
                parts = entry.split(",")
                if len(parts) == 3 and all(p.isdigit() for p in parts) and begin <= int(parts[0]) <= end:
                    older[int(parts[0])] = (int(parts[1]), int(parts[2]))
        for seq in range(begin, end + 1):
            where = self.index.get(seq) or older.get(seq)
            if where is not None:
                out.append((seq, body[where[0] : where[0] + where[1]].decode("latin-1")))
        return out

    def close(self) -> None:
        if self._files is not None:
            for f in self._files:
                f.close()
            self._files = None


class MemoryStore:
    """A session store in memory (for tests of the sans-IO session): what FileStore keeps, no files."""

    def __init__(self, now_ns: int):
        self.messages: dict[int, str] = {}
        self.next_sender = self.next_target = 1
        self.created_day = now_ns // _DAY_NS

    def reset(self, now_ns: int) -> None:
        """Start again at 1/1 with no messages."""
        self.messages.clear()
        self.next_sender = self.next_target = 1
        self.created_day = now_ns // _DAY_NS

    def save_seqnums(self) -> None:
        pass  # nothing outlives the process

    def sent(self, seq: int, data: bytes) -> None:
        self.messages[seq] = data.decode("latin-1")
        self.next_sender = seq + 1

    def get(self, begin: int, end: int) -> list[tuple[int, str]]:
        return [(seq, self.messages[seq]) for seq in range(begin, end + 1) if seq in self.messages]

    def close(self) -> None:
        pass


def log_stamp(now_ns: int) -> bytes:
    """quickfix FileLog's stamp: ``20261125-14:05:54.081165000``."""
    second, frac = divmod(now_ns, 1_000_000_000)
    return b"%s%09d" % (fix_second_bytes(second), frac)


class FileLog:
    """A session's message and event logs: written per line, or (``deferred``) when the owner flushes."""

    def __init__(self, directory: Path, prefix: str, deferred: bool = False):
        directory.mkdir(parents=True, exist_ok=True)
        self.deferred = deferred  # message lines wait for flush() (the engine's timer) instead of one write each
        self._lines: list[bytes] = []
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._messages = os.open(directory / f"{prefix}.messages.current.log", flags, 0o644)
        self._events = os.open(directory / f"{prefix}.event.current.log", flags, 0o644)

    def message(self, data: bytes, now_ns: int) -> None:
        self._lines.append(log_stamp(now_ns) + b" : " + data + b"\n")
        if not self.deferred:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            os.write(self._messages, b"".join(self._lines))
            self._lines.clear()

    def event(self, text: str, now_ns: int) -> None:
        os.write(self._events, log_stamp(now_ns) + b" : " + text.encode("latin-1", "replace") + b"\n")

    def close(self) -> None:
        self.flush()
        for fd in (self._messages, self._events):
            os.close(fd)
