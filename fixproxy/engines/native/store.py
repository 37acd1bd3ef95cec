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
from datetime import datetime, timezone
from pathlib import Path

_DAY_NS = 86_400 * 1_000_000_000
_SEQNUMS_SIZE = 43  # "%020d : %020d"


class Cork:
    """Defers file and socket writes while the engine handles one batch of input.

    Everything read from one socket read is handled first; then the stores' sent messages are
    written (in the page cache before anything goes on the wire), then the sockets. One system
    call per file and socket per batch instead of one per message. Not held, writes happen at once.
    """

    __slots__ = ("depth", "dirty")

    def __init__(self) -> None:
        self.depth = 0
        self.dirty: tuple[dict, dict] = ({}, {})  # stores, then connections (dicts keep order)

    def hold(self) -> None:
        self.depth += 1

    def flush_stores(self) -> None:
        """Write the held store changes now (before a socket's held bytes go out early)."""
        for store in self.dirty[0]:
            store.flush()

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            for group in self.dirty:
                while group:
                    group.popitem()[0].flush()


#: Used by stores and logs made without one: writes happen at once.
NO_CORK = Cork()


def _open(path: Path, truncate: bool = False) -> int:
    flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    return os.open(path, flags, 0o644)


def _created_text(now_ns: int) -> str:
    return datetime.fromtimestamp(now_ns // 1_000_000_000, tz=timezone.utc).strftime("%Y%m%d-%H:%M:%S")


class FileStore:
    """Sequence numbers and sent messages of one session."""

    def __init__(self, directory: Path, prefix: str, now_ns: int, cork: Cork = NO_CORK):
        directory.mkdir(parents=True, exist_ok=True)
        self._cork = cork
        self._body_parts: list[bytes] = []
        self._header_parts: list[bytes] = []
        self._seqnums_map: mmap.mmap | None = None
        self._paths = {k: directory / f"{prefix}.{k}" for k in ("body", "header", "seqnums", "session")}
        self.index: dict[int, tuple[int, int]] = {}
        self.next_sender = self.next_target = 1
        self.created_day = now_ns // _DAY_NS
        session_file = self._paths["session"]
        if session_file.exists():
            try:
                created = datetime.strptime(session_file.read_text().strip(), "%Y%m%d-%H:%M:%S")
                self.created_day = created.replace(tzinfo=timezone.utc).timestamp() // 86_400
            except ValueError:
                self.created_day = -1
        if not session_file.exists() or self.created_day != now_ns // _DAY_NS:
            self.reset(now_ns)
            return
        self._load()
        self._body = _open(self._paths["body"])
        self._header = _open(self._paths["header"])
        self._seqnums = _open(self._paths["seqnums"])
        self._map_seqnums()
        self._offset = os.lseek(self._body, 0, os.SEEK_END)
        os.lseek(self._header, 0, os.SEEK_END)

    def _load(self) -> None:
        text = self._paths["seqnums"].read_text() if self._paths["seqnums"].exists() else ""
        sender, sep, target = text.partition(":")
        if sep and sender.strip().isdigit() and target.strip().isdigit():
            self.next_sender, self.next_target = int(sender), int(target)
        header = self._paths["header"].read_text() if self._paths["header"].exists() else ""
        for entry in header.split():
            parts = entry.split(",")
            if len(parts) == 3 and all(p.isdigit() for p in parts):
                self.index[int(parts[0])] = (int(parts[1]), int(parts[2]))

    def reset(self, now_ns: int) -> None:
        """Start again at 1/1 with no messages (a new day, or a Logon with ResetSeqNumFlag)."""
        self._unmap_seqnums()
        for name in ("_body", "_header", "_seqnums"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
        self._body_parts.clear()
        self._header_parts.clear()
        self._body = _open(self._paths["body"], truncate=True)
        self._header = _open(self._paths["header"], truncate=True)
        self._seqnums = _open(self._paths["seqnums"], truncate=True)
        self._offset = 0
        self.index = {}
        self.next_sender = self.next_target = 1
        self.created_day = now_ns // _DAY_NS
        self._paths["session"].write_text(_created_text(now_ns))
        self._map_seqnums()

    def _map_seqnums(self) -> None:
        # The sequence numbers change with every message in or out: written through a shared
        # mapping of the file (the page cache, as a write() would reach) instead of a system call each.
        os.ftruncate(self._seqnums, _SEQNUMS_SIZE)
        self._seqnums_map = mmap.mmap(self._seqnums, _SEQNUMS_SIZE)
        self.save_seqnums()

    def _unmap_seqnums(self) -> None:
        if self._seqnums_map is not None:
            self._seqnums_map.close()
            self._seqnums_map = None

    def save_seqnums(self) -> None:
        self._seqnums_map[:] = b"%020d : %020d" % (self.next_sender, self.next_target)

    def sent(self, seq: int, data: bytes) -> None:
        """Store message ``seq`` (before it goes on the wire) and move the sender sequence past it."""
        self._body_parts.append(data)
        self._header_parts.append(b"%d,%d,%d " % (seq, self._offset, len(data)))
        self.index[seq] = (self._offset, len(data))
        self._offset += len(data)
        self.next_sender = seq + 1
        self.save_seqnums()
        if self._cork.depth:
            self._cork.dirty[0][self] = None
        else:
            self.flush()

    def flush(self) -> None:
        if self._body_parts:
            os.write(self._body, b"".join(self._body_parts))
            os.write(self._header, b"".join(self._header_parts))
            self._body_parts.clear()
            self._header_parts.clear()

    def get(self, begin: int, end: int) -> list[tuple[int, str]]:
        """Stored messages ``begin``..``end`` (inclusive) that exist, oldest first."""
        self.flush()
        out = []
        for seq in range(begin, end + 1):
            where = self.index.get(seq)
            if where is not None:
                out.append((seq, os.pread(self._body, where[1], where[0]).decode("latin-1")))
        return out

    def close(self) -> None:
        if getattr(self, "_body", None) is not None:
            self.flush()
        self._unmap_seqnums()
        for name in ("_body", "_header", "_seqnums"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


_log_second = [-1, b""]


def log_stamp(now_ns: int) -> bytes:
    """quickfix FileLog's stamp: ``20261125-14:05:54.081165000``."""
    second, frac = divmod(now_ns, 1_000_000_000)
    if second != _log_second[0]:
        _log_second[1] = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y%m%d-%H:%M:%S.").encode()
        _log_second[0] = second
    return _log_second[1] + b"%09d" % frac


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
