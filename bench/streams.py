"""Order latency with many event-stream clients (issue 17 item 7).

A proxy per engine; a light OMS sends orders at ``--rate`` a second to a light venue that acknowledges
and fills each at once, and times each order to its acknowledgement. Windows of ``--window`` seconds
alternate, A/B interleaved (the order rotates every round), between 0 and ``--clients`` viewer-token
streams on GET /api/v1/events, read by another process (on the peers' CPU) that counts the events each
stream received. Every order is a decision on every stream.

    .venv/bin/python -m bench streams [--clients 300] [--engines native,quickfix]
    .venv/bin/python -m bench streams --code /tmp/before   # the proxy from another source tree
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import desk
from bench.desk import TOKEN, Oms, Proxy, Venue, emit
from bench.histogram import new_histogram, record_ns, summary

# ---------------------------------------------------------------- the stream clients' process


async def clients(port: int) -> None:
    """Commands on stdin: "open N" connects N streams (prints how many were let in), "close" closes them
    (prints the events each received); end of input ends the process."""
    loop = asyncio.get_running_loop()
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, list[int]]] = []
    tasks: list[asyncio.Task] = []

    async def read(reader: asyncio.StreamReader, count: list[int]) -> None:
        try:
            while data := await reader.read(65536):
                count[0] += data.count(b"event: decision")
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def open_one() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            writer.close()
            return False
        count = [0]
        streams.append((reader, writer, count))
        tasks.append(asyncio.create_task(read(reader, count)))
        return True

    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := (await stdin.readline()).decode().strip():
        if line.startswith("open"):
            n = int(line.split()[1])
            ok = 0
            for _ in range(n):
                ok += await open_one()
            print(json.dumps({"open": ok}), flush=True)
        elif line == "close":
            counts = [c[0] for _, _, c in streams]
            for _, writer, _ in streams:
                writer.close()
            for t in tasks:
                t.cancel()
            streams.clear()
            tasks.clear()
            print(
                json.dumps({"decisions_min": min(counts, default=0), "decisions_max": max(counts, default=0)}),
                flush=True,
            )


# ---------------------------------------------------------------- the driver


async def measure(engine: str, root: Path, args) -> list[dict]:
    proxy = Proxy(root / engine, engine, max_stream_clients=max(args.clients, 1), legacy=bool(args.code))
    venue = Venue()
    await venue.start(proxy.venue_port)
    env = {"PYTHONPATH": args.code} if args.code else None
    await proxy.start(env=env)
    oms = Oms()
    await oms.connect(proxy.acceptor)
    await oms.run(3, args.rate)  # warm up
    peer = subprocess.Popen(  # noqa: ASYNC220 - blocking pipes, used between windows
        [sys.executable, "-m", "bench.streams", "--stream-clients", str(proxy.http)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    out = []
    try:
        counts = [0, args.clients]
        for r in range(args.rounds):
            for n in counts if r % 2 == 0 else counts[::-1]:
                opened = None
                if n:
                    peer.stdin.write(f"open {n}\n")
                    opened = json.loads(peer.stdout.readline())["open"]
                    await asyncio.sleep(1.0)
                lat = await oms.run(args.window, args.rate)
                hist = new_histogram()
                record_ns(hist, lat)
                rec = {
                    "engine": engine,
                    "round": r + 1,
                    "clients": n,
                    "ack_us": summary(hist),
                    "unanswered": len(oms.sent),
                    "rss_mb": round(proxy.rss_mb()),
                }
                oms.sent.clear()
                if n:
                    peer.stdin.write("close\n")
                    rec["streams"] = {"open": opened, **json.loads(peer.stdout.readline())}
                    await asyncio.sleep(1.5)  # the proxy notices the closed streams
                emit(rec)
                out.append(rec)
    finally:
        peer.stdin.close()
        peer.wait(30)
        proxy.stop()
        venue.server.close()
    return out


def median(values: list) -> float | None:
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


async def main_async(args) -> int:
    desk.pin_self(0)
    root = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    engines = args.engines.split(",")
    records = []
    for engine in engines:
        records += await measure(engine, root, args)
    table = {
        e: {
            str(n): {
                k: median([r["ack_us"][k] for r in records if r["engine"] == e and r["clients"] == n])
                for k in ("p50", "p99", "p99.9", "max")
            }
            for n in (0, args.clients)
        }
        for e in engines
    }
    emit(
        {
            "event": "result",
            "clients": args.clients,
            "rate": args.rate,
            "window_s": args.window,
            "rounds": args.rounds,
            "code": args.code or "this tree",
            "table": table,
        }
    )
    shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--stream-clients"]:
        desk.pin_self(0)
        asyncio.run(clients(int(argv[1])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=300)
    p.add_argument("--engines", default="native,quickfix")
    p.add_argument("--rate", type=float, default=200.0, help="orders a second during the windows")
    p.add_argument("--window", type=float, default=8.0, help="seconds per window")
    p.add_argument("--rounds", type=int, default=3, help="rounds (each: a window without streams and one with)")
    p.add_argument(
        "--code",
        default="",
        help="run the proxy from this source tree (e.g. `git archive` of an older commit) to compare",
    )
    return asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
