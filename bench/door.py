"""What the quickfix engine's front door (fixproxy/engines/quickfix/door.py) costs per message.

The door runs on this process's event loop (uvloop), as in the proxy; an echo server stands in for
quickfix and a ping-pong client for the OMS, both in a child process. Measured: the door's CPU time
per relayed message (getrusage of this process, which runs nothing else meanwhile) and the round
trip through the door against the same round trip straight to the echo server, in alternating
windows.

    .venv/bin/python -m bench door --messages 20000 --windows 6
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import textwrap
from types import SimpleNamespace

from fixproxy.engines.quickfix.door import Door, _Client

CHILD = textwrap.dedent(r"""
    import socket, sys, threading, time
    echo = socket.create_server(("127.0.0.1", 0))
    print(echo.getsockname()[1], flush=True)
    def serve():
        while True:
            c, _ = echo.accept()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=lambda c=c: [c.sendall(d) for d in iter(lambda: c.recv(65536), b"")], daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    body = "35=D\x0134=2\x0149=OMS1\x0152=20261206-09:00:00.000\x0156=FIXPROXY\x0111=ORDER-000001\x0155=AAPL\x0154=1\x0138=100\x0140=2\x0144=190\x0160=20261206-09:00:00.000\x01"
    msg = f"8=FIX.4.4\x019={len(body)}\x01{body}10=000\x01".encode()
    logon_body = "35=A\x0134=1\x0149=OMS1\x0152=20261206-09:00:00.000\x0156=FIXPROXY\x0198=0\x01108=30\x01"
    logon = f"8=FIX.4.4\x019={len(logon_body)}\x01{logon_body}10=000\x01".encode()
    for line in sys.stdin:
        port, n = map(int, line.split())
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(logon); got = b""
        while len(got) < len(logon): got += s.recv(65536)
        rtts = []
        for _ in range(n):
            t = time.perf_counter_ns(); s.sendall(msg); got = b""
            while len(got) < len(msg): got += s.recv(65536)
            rtts.append(time.perf_counter_ns() - t)
        s.close(); rtts.sort()
        print(rtts[len(rtts) // 2], rtts[len(rtts) * 99 // 100], flush=True)
""")


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(args: argparse.Namespace) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220 - after its port, its replies are read off the loop (run_in_executor)
    echo_port = int(child.stdout.readline())
    acc = SimpleNamespace(
        host="127.0.0.1",
        port=0,
        allowed_remote_addresses=("127.0.0.1",),
        logon_timeout_s=5.0,
        max_logon_bytes=4096,
        max_connections=512,
        max_connections_per_address=64,
    )
    door = Door(acc, echo_port, {("FIX.4.4", "OMS1", "FIXPROXY")}, lambda why: print("refused:", why))
    # The echo answers the Logon with the Logon itself (35=A): the door counts it as logged on.
    loop = asyncio.get_running_loop()
    door.server = await loop.create_server(lambda: _Client(door), "127.0.0.1", 0)
    door_port = door.server.sockets[0].getsockname()[1]

    async def window(port: int) -> tuple[int, int, float]:
        before = cpu()
        child.stdin.write(f"{port} {args.messages}\n")
        child.stdin.flush()
        line = await loop.run_in_executor(None, child.stdout.readline)
        p50, p99 = map(int, line.split())
        return p50, p99, cpu() - before

    rows = {"direct": [], "door": []}
    for _ in range(args.windows):
        for name, port in (("direct", echo_port), ("door", door_port)):
            rows[name].append(await window(port))
    child.stdin.close()
    child.wait()
    for name, r in rows.items():
        p50 = statistics.median(x[0] for x in r) / 1000
        p99 = statistics.median(x[1] for x in r) / 1000
        per_msg = statistics.median(x[2] for x in r) / (2 * args.messages) * 1e6
        print(
            f"{name:6}  round trip p50 {p50:7.1f} µs  p99 {p99:7.1f} µs  "
            f"this process's CPU per relayed message {per_msg:5.1f} µs  ({args.windows} windows of {args.messages})"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--windows", type=int, default=6)
    import uvloop

    uvloop.run(measure(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
