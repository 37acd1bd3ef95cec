"""Order latency while the risk desk reads, with a day of orders in the proxy's memory (issue 17 item 10).

A proxy per engine starts from a snapshot holding ``--orders`` orders of the day (made once, through the
core itself: 99% filled, 1% working; ``finished_grace_s = -1`` keeps every one in memory). A light OMS
sends orders at ``--rate`` a second to a light venue that acknowledges and fills each at once, and times
each order to its acknowledgement. Windows of ``--window`` seconds alternate, A/B interleaved (the order
rotates every round), between:

  off        no desk reads
  dashboard  what an open dashboard asks: /summary, one page of /orders and /exposure-history, each second
  heavy      /summary 20 times a second and a walk through 5 pages of 1,000 open orders each second

The reads come from another process (on the peers' CPU); it also times each /summary call.

    .venv/bin/python -m bench desk-reads [--orders 1000000] [--engines native,quickfix]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import desk
from bench.desk import TOKEN, Oms, Proxy, Venue, emit
from bench.histogram import new_histogram, record_ns, summary

MODES = {"off": None, "dashboard": (1.0, 1, 200), "heavy": (20.0, 5, 1000)}


# ---------------------------------------------------------------- the reader process


def reader(port: int) -> None:
    """Read as the desk, in the mode the driver writes on stdin (a line: off, dashboard or heavy); the
    line "report" prints the /summary call times (µs) and the count of reads since the last report."""
    import select

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def get(path: str):
        conn.request("GET", "/api/v1" + path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        return json.loads(body), len(body)

    mode = None
    hist, reads, size = new_histogram(), 0, 0
    next_summary = next_pages = time.monotonic()
    while True:
        wait = 0.5 if mode is None else max(0.0, min(next_summary, next_pages) - time.monotonic())
        if select.select([sys.stdin], [], [], wait)[0]:
            line = sys.stdin.readline().strip()
            if not line:
                return
            if line == "report":
                print(json.dumps({"reads": reads, "summary_bytes": size, "summary_us": summary(hist)}), flush=True)
                hist, reads = new_histogram(), 0
            else:
                mode = MODES[line]
                next_summary = next_pages = time.monotonic()
            continue
        if mode is None:
            continue
        summary_hz, pages, page_size = mode
        now = time.monotonic()
        if now >= next_summary:
            t0 = time.perf_counter_ns()
            _, size = get("/summary")
            record_ns(hist, [time.perf_counter_ns() - t0])
            reads += 1
            next_summary += 1 / summary_hz
        if now >= next_pages:
            after = ""
            for _ in range(pages):
                page, _ = get(f"/orders?limit={page_size}" + (f"&after={after}" if after else ""))
                reads += 1
                if len(page) < page_size:
                    break
                after = page[-1]["key"]
            if summary_hz <= 1:
                get("/exposure-history?since_ns=" + str(time.time_ns() - 2_000_000_000))
                reads += 1
            next_pages += 1.0


# ---------------------------------------------------------------- the driver


async def measure(engine: str, root: Path, seeded: Path | None, args) -> list[dict]:
    proxy = Proxy(root / engine, engine, orders=0 if seeded else args.orders)
    if seeded is not None:
        shutil.copytree(seeded, root / engine / "var" / "journal")
    venue = Venue()
    await venue.start(proxy.venue_port)
    await proxy.start()
    emit({"engine": engine, "event": "started", "start_s": round(proxy.start_s, 1), "rss_mb": round(proxy.rss_mb())})
    oms = Oms()
    await oms.connect(proxy.acceptor)
    await oms.run(3, args.rate)  # warm up
    out = []
    reads = subprocess.Popen(  # noqa: ASYNC220 - blocking pipes, used between windows
        [sys.executable, "-m", "bench.desk_reads", "--reader", str(proxy.http)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        modes = list(MODES)
        for r in range(args.rounds):
            for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
                reads.stdin.write(mode + "\n")
                await asyncio.sleep(1.0)  # the reads under way before the window opens
                reads.stdin.write("report\n")
                reads.stdout.readline()
                lat = await oms.run(args.window, args.rate)
                reads.stdin.write("report\n")
                done = json.loads(reads.stdout.readline())
                hist = new_histogram()
                record_ns(hist, lat)
                rec = {
                    "engine": engine,
                    "round": r + 1,
                    "mode": mode,
                    "ack_us": summary(hist),
                    "unanswered": len(oms.sent),
                    "rss_mb": round(proxy.rss_mb()),
                }
                oms.sent.clear()
                if MODES[mode] is not None:
                    rec["reads"] = done
                emit(rec)
                out.append(rec)
    finally:
        reads.stdin.close()
        reads.wait(30)
        proxy.stop()
        venue.server.close()
    return out


def merged(records: list[dict], engine: str, mode: str) -> dict:
    """p50/p99 over the windows of one engine and mode: the median of the windows' values."""
    rows = [r for r in records if r["engine"] == engine and r["mode"] == mode]
    out = {}
    for key in ("p50", "p99", "p99.9", "max"):
        values = sorted(r["ack_us"][key] for r in rows if r["ack_us"][key] is not None)
        out[key] = values[len(values) // 2] if values else None
    summ = sorted(r["reads"]["summary_us"]["p50"] for r in rows if r.get("reads", {}).get("summary_us", {}).get("p50"))
    if summ:
        out["summary_call_p50_us"] = summ[len(summ) // 2]
        out["summary_call_max_us"] = max(r["reads"]["summary_us"]["max"] for r in rows)
        out["summary_bytes"] = rows[-1]["reads"]["summary_bytes"]
    return out


async def main_async(args) -> int:
    desk.pin_self(0)
    root = Path(tempfile.mkdtemp(prefix="bench-desk-"))
    seeded = None
    if args.orders:
        seed_root = root / "seed"
        probe = Proxy.__new__(Proxy)  # only its config: the snapshot is the same for every engine
        seed_root.mkdir(parents=True)
        shutil.copy(desk.REPO / "cfg" / "instruments.csv", seed_root / "instruments.csv")
        (seed_root / "fixproxy.toml").write_text(desk.config_text("native", 1, 2, 3))
        seconds = desk.seed(seed_root / "fixproxy.toml", args.orders)
        emit({"event": "seeded", "orders": args.orders, "seconds": round(seconds, 1)})
        seeded = seed_root / "var" / "journal"
        del probe
    records = []
    for engine in args.engines.split(","):
        records += await measure(engine, root, seeded, args)
    table = {engine: {mode: merged(records, engine, mode) for mode in MODES} for engine in args.engines.split(",")}
    emit(
        {
            "event": "result",
            "orders_in_memory": args.orders,
            "rate": args.rate,
            "window_s": args.window,
            "rounds": args.rounds,
            "table": table,
        }
    )
    shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--reader"]:
        desk.pin_self(0)
        reader(int(argv[1]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=1_000_000, help="orders of the day in memory (default 1,000,000)")
    p.add_argument("--engines", default="native,quickfix")
    p.add_argument("--rate", type=float, default=200.0, help="orders a second during the windows")
    p.add_argument("--window", type=float, default=6.0, help="seconds per window")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the three modes")
    return asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
