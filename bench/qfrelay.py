"""A quickfix relay: the proxy's quickfix sessions with nothing of the proxy in them.

It opens the sessions the quickfix engine opens, from the same config and with the same settings
(``fixproxy.engines.quickfix.engine.QuickfixSessions``: file stores, message logs, data-dictionary validation, the
single-threaded socket classes), and hands every application message to the other side as it
came: one OMS session and one venue, no decoding, no checks, no book, no audit, no state. Its
Python callback makes three calls into the binding per message (the session's name, a copy and
``sendToTarget``); the proxy makes five. The benchmark's ``qf_relay`` setup puts it where the proxy sits: what is left is what
quickfix itself, driven from Python on two threads, costs, which is the floor under the quickfix
engine on this machine.

    .venv/bin/python -m bench.qfrelay --config var/bench/<run>/qf_relay/fixproxy.toml
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

import quickfix as fix

from fixproxy.config import ConfigError, load
from fixproxy.engines.quickfix.engine import QuickfixSessions


class Relay(fix.Application):
    """Forwards application messages OMS -> venue and venue -> OMS; admin messages stay with quickfix."""

    def __init__(self, oms: fix.SessionID, venue: fix.SessionID):
        fix.Application.__init__(self)
        self.oms, self.venue = oms, venue
        self.other = {oms.toString(): venue, venue.toString(): oms}
        self.venue_up = threading.Event()

    def onCreate(self, sid):
        pass

    def onLogon(self, sid):
        if sid.toString() == self.venue.toString():
            self.venue_up.set()

    def onLogout(self, sid):
        pass

    def toAdmin(self, message, sid):
        pass

    def fromAdmin(self, message, sid):
        pass

    def toApp(self, message, sid):
        pass

    def fromApp(self, message, sid):
        # A copy: quickfix fills in the header of the message it sends, and this one is still its own.
        fix.Session.sendToTarget(fix.Message(message), self.other[sid.toString()])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    args = p.parse_args(argv)
    try:
        loaded = load(args.config)
    except ConfigError as exc:
        print(f"bench_qfrelay: {exc}", file=sys.stderr)
        return 2
    sessions = QuickfixSessions(loaded)
    oms = next(s for s in sessions.infos if s.role == "oms")
    venue = next(s for s in sessions.infos if s.role == "venue")
    relay = Relay(oms.handle, venue.handle)
    acceptor, initiator = sessions.engines(relay)
    initiator.start()
    if not relay.venue_up.wait(30):
        print("bench_qfrelay: the venue session did not log on within 30 s", file=sys.stderr)
        return 1
    acceptor.start()
    sys.stdout.write(json.dumps({"event": "listening", "port": loaded.config.acceptor.port}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the driver is gone (the benchmark stops this process by its id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
