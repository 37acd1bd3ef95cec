"""Reading the journal: its segments, their records, from any position, while it is written."""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from . import format as fmt
from .writer import JournalError

_SEGMENT = re.compile(r"^(\d{8})\.journal$")


def segments(directory: Path) -> list[int]:
    """The segment numbers in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for name in os.listdir(directory) if (m := _SEGMENT.match(name)))


def read_segment(path: Path, offset: int = 0) -> Iterator[tuple[int, bytes, bytes]]:
    """(offset after the record, kind, payload) of each whole record of one segment file from ``offset``
    (0: its start). Stops at the end of what is written."""
    with open(path, "rb") as f:
        data = f.read()
    if data[: len(fmt.MAGIC)] != fmt.MAGIC:
        raise JournalError(f"{path}: not a fixproxy journal segment (it does not start with {fmt.MAGIC!r})")
    pos = max(offset, len(fmt.MAGIC))
    while (found := fmt.unframe(data, pos)) is not None:
        kind, payload, pos = found
        yield pos, kind, payload


_KIND_CRC = {kind: zlib.crc32(kind) for kind in fmt.KINDS}


def _whole_records(data: bytes, segment: int, base: int, out: list[tuple[int, int, bytes, bytes]]) -> int:
    """Append (segment, ``base`` + offset after the record, kind, payload) for each whole record at
    the start of ``data``; returns where they end. The checks of ``fmt.unframe`` (a zero header or a
    short, garbled or unknown-kind record ends them) in one loop: the follower reads every record."""
    unpack_from, crc32, kind_crc, append = fmt.HEADER.unpack_from, zlib.crc32, _KIND_CRC, out.append
    header, n, pos = fmt.HEADER.size, len(data), 0
    while pos + header <= n:
        length, crc, kind = unpack_from(data, pos)
        start = pos + header
        end = start + length
        if end > n or (not length and not crc):
            break
        payload = data[start:end]
        kind_crc0 = kind_crc.get(kind)
        if kind_crc0 is None or crc32(payload, kind_crc0) != crc:
            break
        pos = end
        append((segment, base + pos, kind, payload))
    return pos


class Tail:
    """Follows the journal from a position as it is written (the audit follower's reader).

    ``poll`` returns the whole records written since the last call; it moves to the next segment
    once one exists and the current one has nothing more.
    """

    def __init__(
        self, directory: Path, segment: int = 0, offset: int = 0, max_bytes: int = 4 << 20, first_read: int = 64 << 10
    ):
        self.directory = Path(directory)
        self.segment, self.offset = segment, offset
        self.max_bytes = max_bytes
        # A poll reads this much (a quiet journal costs little), doubled while reads come back full.
        self.first_read = first_read
        self._read = first_read
        self._fd: int | None = None
        self._fd_segment = -1

    def _open(self) -> int | None:
        """The descriptor of the current segment, or None while that file does not exist."""
        if self._fd is not None and self._fd_segment == self.segment:
            return self._fd
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = self.directory / f"{self.segment:08d}.journal"
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        self._fd_segment = self.segment
        if self.offset < len(fmt.MAGIC):
            self.offset = len(fmt.MAGIC)
        return self._fd

    def poll(self) -> list[tuple[int, int, bytes, bytes]]:
        """[(segment, offset after the record, kind, payload)] of what is new."""
        out: list[tuple[int, int, bytes, bytes]] = []
        while True:
            if not self.segment:
                existing = segments(self.directory)
                if not existing:
                    return out
                self.segment, self.offset = existing[0], 0
            fd = self._open()
            if fd is None:
                nxt = [s for s in segments(self.directory) if s > self.segment]
                if not nxt:
                    return out
                self.segment, self.offset = nxt[0], 0
                continue
            size = self._read
            data = os.pread(fd, size, self.offset)
            pos = _whole_records(data, self.segment, self.offset, out)
            self.offset += pos
            # More to read: the read was full and the next record (a non-zero header) did not fit in it.
            rest = data[pos : pos + fmt.HEADER.size]
            more = (
                len(data) == size
                and len(rest) == fmt.HEADER.size
                and rest != bytes(fmt.HEADER.size)
                and pos + fmt.HEADER.size + fmt.HEADER.unpack(rest)[0] > len(data)
            )
            self._read = min(size * 2, self.max_bytes) if more else self.first_read
            if more and len(out) < 10_000 and (pos or size < self.max_bytes):
                continue
            if pos:
                return out
            nxt = [s for s in segments(self.directory) if s > self.segment]
            if not nxt:
                return out
            # A later segment exists: this one is finished (its writer is gone).
            self.segment, self.offset = nxt[0], 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
