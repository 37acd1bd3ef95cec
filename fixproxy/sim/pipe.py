"""A fake asyncio transport for driving the native engine's connections in process (no socket): the
in-process conformance stack (tests/conformance/inprocess.py) and ``python -m bench path`` use it."""

from __future__ import annotations

from typing import Any


class Pipe:
    """Bytes written are kept for the other side to ``take``; a close is noted (``closing``), and
    ``lost`` is for the driver to mark once it has told the connection."""

    def __init__(self, port: int) -> None:
        self.data = bytearray()
        self.closing = False
        self.lost = False
        self.peer = ("127.0.0.1", port)

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closing = True

    abort = close

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out
