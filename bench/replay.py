"""Replay speed: generate a day of N orders as quickfix FileLog message logs, then time the replay of it.

    .venv/bin/python -m bench replay [--orders 100000] [--config cfg/fixproxy.toml]

Prints one JSON line: orders and messages replayed, seconds, orders per second (wall clock, one
process, the reading and parsing of the logs included), and the time to write the CSV, JSON
and HTML reports. The generated logs replay with zero differences, which it checks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from fixproxy.config import load
from fixproxy.replay import open_sources, replay
from fixproxy.replay.report import summarize, to_csv, to_html, to_json
from fixproxy.replay.synth import write_day


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument("--config", default="cfg/fixproxy.toml")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    loaded = load(args.config, secrets=False)  # replay needs no passwords or tokens
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "log"
        write_day(loaded, logs, args.orders, seed=args.seed)
        size = sum(f.stat().st_size for f in logs.rglob("*.log"))
        start = time.perf_counter()
        sources = open_sources([str(logs)])
        result = replay(loaded, sources)
        replay_s = time.perf_counter() - start
        summary = summarize(result, args.config, None)
        start = time.perf_counter()
        for name, text in (
            ("r.csv", to_csv(result)),
            ("r.json", to_json(result, summary)),
            ("r.html", to_html(result, summary)),
        ):
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        report_s = time.perf_counter() - start
    new_orders = summary["by_message_type"].get("D", 0)
    print(
        json.dumps(
            {
                "orders": new_orders,
                "order_messages": summary["orders"],
                "log_lines": sum(i["lines"] for i in summary["inputs"]),
                "log_mib": round(size / 2**20, 1),
                "replay_s": round(replay_s, 2),
                "orders_per_s": round(new_orders / replay_s),
                "log_lines_per_s": round(sum(i["lines"] for i in summary["inputs"]) / replay_s),
                "reports_s": round(report_s, 2),
                "differences": summary["differences"],
            }
        )
    )
    return 0 if summary["differences"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
