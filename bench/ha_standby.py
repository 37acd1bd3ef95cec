"""A standby's copy alone, for ``bench path --ha``: the real ``copy.Receiver`` writing what the
active sends into a folder and acknowledging each batch, until stdin closes.

    python -m bench.ha_standby --connect HOST:PORT --dir DIR

Run as a process of its own (exec'd: callgrind on the active does not follow it), so the active's
counts hold only the active's side of the copy. Prints ``{"event": "copying"}`` once welcomed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import structlog

from fixproxy.ha.copy import Receiver


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ha_standby", description=__doc__.split("\n\n")[0])
    p.add_argument("--connect", required=True, help="the active's copy address, host:port")
    p.add_argument("--dir", required=True, type=Path, help="the standby's state folder")
    args = p.parse_args(argv)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is for the parent
    host, _, port = args.connect.rpartition(":")
    receiver = Receiver(args.dir, "b", None, False)
    stop = threading.Event()
    copier = threading.Thread(target=receiver.run, args=(host, int(port), stop), name="bench-standby", daemon=True)
    copier.start()
    deadline = time.monotonic() + 30
    while not receiver.connected and copier.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not receiver.connected:
        print(
            json.dumps({"event": "error", "detail": receiver.refused or receiver.error or "not welcomed"}), flush=True
        )
        return 1
    print(json.dumps({"event": "copying"}), flush=True)
    sys.stdin.read()  # until the parent closes it
    stop.set()
    receiver.close()
    copier.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
