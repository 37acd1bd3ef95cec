"""The venue simulator as ``fixproxy sim venue`` runs it, with the garbage collector kept out of the figures.

The simulator keeps every order it has seen, so over a benchmark run its full collections grow to
tens or hundreds of milliseconds and would show up in every setup's tail latency, the direct one
included. It is measuring apparatus, not the system under test: this wrapper calls ``gc.freeze()``
once a second (objects alive then are never walked again) and otherwise runs the simulator unchanged.

    python -m bench.venue [--gc-freeze-every SECONDS] -- <arguments of ``fixproxy sim venue``>
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time

from fixproxy.cli import main as fixproxy_main


def _freeze_loop(every_s: float) -> None:
    while True:
        time.sleep(every_s)
        gc.freeze()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gc-freeze-every", type=float, default=1.0, metavar="SECONDS", help="0: never")
    p.add_argument("venue_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    rest = args.venue_args[1:] if args.venue_args[:1] == ["--"] else args.venue_args
    if args.gc_freeze_every > 0:
        threading.Thread(target=_freeze_loop, args=(args.gc_freeze_every,), name="bench-gc-freeze", daemon=True).start()
    return fixproxy_main(["sim", "venue", *rest])


if __name__ == "__main__":
    sys.exit(main())
