#!/usr/bin/env python3
"""How long a restart takes to rebuild the core from the journal: a day of N orders (each a
NewOrderSingle, an acknowledgement and a fill, with the decisions and the messages sent, as the
live proxy journals them), then ``journal.recovery.recover`` timed on it. Prints JSON.

    .venv/bin/python -m bench recovery --orders 20000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench import REPO
from fixproxy.assemble import build_core, exec_id_generator
from fixproxy.config import load
from fixproxy.core import events as ev
from fixproxy.engines.bridge import CoreBridge, SessionInfo
from fixproxy.journal import format as fmt
from fixproxy.journal.recovery import recover
from fixproxy.journal.writer import Journal

CONFIG = REPO / "tests" / "replay_fixtures" / "fixproxy.toml"


class Wire(CoreBridge):
    """The bridge with sessions that always send (the bytes are journaled as the engines journal them)."""

    def _send(self, info, msg_type, body, now):
        self._sent(info.name, "".join(f"{t}={v}\x01" for t, v in [(35, msg_type), *body]), now)
        return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=20000)
    args = p.parse_args(argv)
    loaded = load(CONFIG)
    root = Path(tempfile.mkdtemp(prefix="recovery-speed-"))
    try:
        t0 = time.time_ns()
        journal = Journal(root, 1, fmt.Start(1, t0, 0), chunk=64 << 20)
        infos = [SessionInfo("oms1", "oms", "FIX.4.4"), SessionInfo("sim", "venue", "FIX.4.4")]
        wire = Wire(build_core(loaded, t0), infos, lambda a: None, journal=journal)
        wire.submit(ev.SessionUp("sim", t0))
        oms, sim = infos
        started = time.perf_counter()
        for i in range(args.orders):
            now = t0 + i * 1000
            cl = f"O{i}"
            wire.receive(
                oms,
                f"8=FIX.4.4\x0135=D\x0134={i + 2}\x0149=OMS1\x0156=FIXPROXY\x0111={cl}\x011=ACC{i % 50}"
                f"\x0155=AAPL\x0154={1 + i % 2}\x0138=100\x0140=2\x0144=190\x01",
                now,
            )
            for n, (t, s, cum, leaves, last) in enumerate((("0", "0", 0, 100, 0), ("F", "2", 100, 0, 100))):
                wire.receive(
                    sim,
                    f"8=FIX.4.4\x0135=8\x0134={2 * i + n + 2}\x0149=VENUE\x0156=FIXPROXY\x0111=oms1.{cl}"
                    f"\x0137=V{i}\x0117=E{i}-{n}\x01150={t}\x0139={s}\x0155=AAPL\x0154={1 + i % 2}"
                    f"\x0138=100\x0114={cum}\x01151={leaves}\x016=190\x0132={last}\x0131=190\x01",
                    now,
                )
        live_s = time.perf_counter() - started
        journal.close()
        size = journal.size
        started = time.perf_counter()
        rec = recover(
            root, loaded.config, lambda: build_core(loaded, t0), exec_id_generator, lambda v: {}, lambda s: {}
        )
        took = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "orders": args.orders,
                    "journal_bytes": size,
                    "inputs_replayed": rec.replayed,
                    "recover_s": round(took, 2),
                    "orders_per_s": round(args.orders / took),
                    "live_handling_s_for_comparison": round(live_s, 2),
                    "snapshot_bytes": len(rec.snapshot),
                },
                indent=1,
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
