"""A venue that stops reading (issue 17 item 5), on both engines: the proxy marks it down and
refuses new orders for it (VENUE_UNAVAILABLE) at once instead of buffering them; orders that could
not leave within ``max_order_age_ms`` are refused, never sent late; every order either reached the
venue or was refused, none both; once the venue reads again it comes back up."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request

import pytest

from .harness import TOKENS, Stack
from .rawfix import RawFix

VENUE = """max_unsent_kb = 32
max_order_age_ms = 1000
answer_timeout_ms = 500"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine):
    s = Stack(tmp_path_factory.mktemp("slow-venue"), rules=[], venue_extra=VENUE)
    try:
        yield s
    finally:
        if s.venue is not None and s.venue.popen.poll() is None:
            os.kill(s.venue.pid, signal.SIGCONT)
        s.close()


class Oms:
    """A raw OMS session that sends as fast as it likes and collects every answer on a thread."""

    def __init__(self, port: int):
        self.fix = RawFix(port, "OMS1")
        self.fix.logon()
        self.fix.sock.settimeout(None)
        self.answers: list[dict[int, str]] = []
        self.new = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.fix.sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while (end := buf.find(b"\x0110=")) >= 0 and (stop := buf.find(b"\x01", end + 4)) >= 0:
                raw, buf = buf[: stop + 1], buf[stop + 1 :]
                msg = {
                    int(t): v
                    for t, _, v in (p.partition("=") for p in raw.decode("latin-1").split("\x01"))
                    if t.isdigit()
                }
                if msg.get(35) == "1":
                    self.fix.send("0", f"112={msg.get(112, '')}")
                with self.new:
                    self.answers.append(msg)
                    self.new.notify_all()

    def order(self, cl: str) -> None:
        self.fix.send("D", f"11={cl}|55=AAPL|54=1|38=1|40=2|44=190|60=20261125-12:00:00")

    def outcome(self) -> dict[str, set[str]]:
        """ClOrdID -> what came back: "reached" (an execution report from the venue), "refused:<code>"."""
        out: dict[str, set[str]] = {}
        with self.new:
            for m in self.answers:
                if m.get(35) == "8" and m.get(39) != "8":
                    out.setdefault(m.get(11, ""), set()).add("reached")
                elif m.get(35) == "j":
                    out.setdefault(m.get(379, ""), set()).add("refused:" + m.get(58, "").split(":")[0])
                elif m.get(35) == "8":
                    out.setdefault(m.get(11, ""), set()).add("refused:" + m.get(58, "").split(":")[0])
        return out

    def wait(self, predicate, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.new:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f"not answered in time; last answers {self.answers[-3:]}"
                self.new.wait(min(left, 0.2))

    def close(self) -> None:
        self.fix.close()


def venue_up(stack: Stack) -> bool:
    request = urllib.request.Request(
        stack.api_url + "/summary", headers={"Authorization": f"Bearer {TOKENS['viewer']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        venues = json.loads(response.read())["sessions"]["venues"]
    return next(v["up"] for v in venues if v["name"] == "sim")


def venue_received(stack: Stack) -> set[str]:
    return {
        r["fields"]["11"].removeprefix("oms1.")
        for r in list(stack.venue.lines)
        if r.get("dir") == "in" and r["fields"].get("35") == "D"
    }


def test_venue_that_stops_reading_is_marked_down_and_nothing_is_sent_late(stack):
    """The venue process is stopped (SIGSTOP) while the OMS keeps sending: VENUE_UNAVAILABLE
    refusals come while it is stopped, the API shows it down; after it resumes (SIGCONT) it comes
    back up and takes orders again, and every order either reached it or was refused, never both."""
    oms = Oms(stack.acceptor_port)
    try:
        warm = [f"W{i}" for i in range(20)]
        for cl in warm:
            oms.order(cl)
        oms.wait(lambda: all("reached" in oms.outcome().get(cl, ()) for cl in warm))

        start = stack.proxy.mark()
        os.kill(stack.venue.pid, signal.SIGSTOP)
        sent: list[str] = []
        try:
            for i in range(4000):
                cl = f"S{i}"
                oms.order(cl)
                sent.append(cl)
                if i % 200 == 199:
                    time.sleep(0.05)
            # Refusals come while the venue is still stopped, and the API shows it down.
            oms.wait(lambda: any("refused:VENUE_UNAVAILABLE" in oms.outcome().get(cl, ()) for cl in sent))
            assert venue_up(stack) is False
            stack.proxy.wait_for(
                lambda r: r.get("event") == "venue_backpressure" and r.get("detail", "").startswith("sim:"), start=start
            )
            # Orders still unsent when they became too old were refused and the connection reset
            # (venue_reset), unless the venue's own buffer had taken every one before it was marked down.
        finally:
            resumed = stack.proxy.mark()
            os.kill(stack.venue.pid, signal.SIGCONT)

        # It comes back up and takes orders again.
        stack.wait_venue_up(start=resumed)
        # (An order sent while the venue's ResendRequest after its Logon is still being answered may
        # be gap-filled and refused like the others: the next ones go through.)
        after = []
        for i in range(20):
            after.append(f"AFTER-{i}")
            oms.order(after[-1])
            oms.wait(lambda: after[-1] in oms.outcome())
            if "reached" in oms.outcome()[after[-1]]:
                break
            time.sleep(0.5)
        assert "reached" in oms.outcome()[after[-1]]
        assert venue_up(stack) is True

        # Every order is answered: it reached the venue or was refused, never both.
        oms.wait(lambda: all(cl in oms.outcome() for cl in sent), timeout=60)
        outcome = oms.outcome()
        both = [cl for cl in sent if "reached" in outcome[cl] and len(outcome[cl]) > 1]
        assert both == []
        refused = {cl for cl in sent if "reached" not in outcome[cl]}
        assert refused and all(outcome[cl] == {"refused:VENUE_UNAVAILABLE"} for cl in refused)
        # The venue's own record agrees: nothing refused reached it.
        time.sleep(1.0)
        assert venue_received(stack) & refused == set()
        assert {cl for cl in sent if "reached" in outcome[cl]} <= venue_received(stack)
    finally:
        oms.close()
