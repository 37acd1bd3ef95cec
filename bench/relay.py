"""A byte relay between the load generator and the venue simulator: the cost of one more hop.

It forwards TCP bytes both ways on one uvloop thread and does nothing else (no FIX parsing, no
store, no log): the floor under any proxy in its own process on this machine. the benchmark's
``relay`` setup puts it where the proxy sits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import uvloop


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.peer: _Side | None = None
        self.transport: asyncio.Transport | None = None
        self.held: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.held.append(data)

    def connection_lost(self, exc) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def main(listen: int, to: int) -> None:
    loop = asyncio.get_running_loop()

    class _Client(_Side):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.connecting = loop.create_task(self._connect())  # held: the loop keeps only a weak reference

        async def _connect(self) -> None:
            _, upstream = await loop.create_connection(_Side, "127.0.0.1", to)
            upstream.peer, self.peer = self, upstream
            for data in self.held:
                upstream.transport.write(data)
            self.held.clear()

    server = await loop.create_server(_Client, "127.0.0.1", listen)
    sys.stdout.write(json.dumps({"event": "listening", "port": listen}) + "\n")
    sys.stdout.flush()
    await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--to", type=int, required=True)
    a = p.parse_args()
    uvloop.run(main(a.listen, a.to))
