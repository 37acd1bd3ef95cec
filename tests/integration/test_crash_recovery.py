"""kill -9 of the proxy mid-flow: nothing lost, nothing sent twice to the venue."""

from __future__ import annotations

import signal
import time
from collections import Counter

from .harness import messages
from .test_order_path import order


def venue_orders(stack) -> Counter:
    """How many times the venue received each NewOrderSingle ClOrdID."""
    return Counter(r["fields"]["11"] for r in list(stack.venue.lines)
                   if r.get("dir") == "in" and r["fields"].get("35") == "D")


def test_kill9_mid_flow_loses_nothing_and_duplicates_nothing(fresh_stack):
    """Working orders survive kill -9; orders sent while the proxy is down arrive once after it is back
    (as possible duplicates); every order ends with exactly one answer at the OMS and reaches the venue
    at most once."""
    s = fresh_stack(behaviours={"MSFT": "ack"})
    oms = s.connect("oms1")
    m = messages(oms)
    working = [f"W{i}" for i in range(5)]
    for cl in working:
        oms.send_line(order(cl, symbol="MSFT", price="410", account="K9"))
    for cl in working:
        oms.wait_for(m(**{"35": "8", "11": cl, "39": "0"}))
    # A burst, and the proxy killed while it is in flight.
    burst = [f"B{i}" for i in range(20)]
    for cl in burst[:10]:
        oms.send_line(order(cl, symbol="MSFT", price="410", account="K9"))
    assert s.proxy.stop(signal.SIGKILL) == -signal.SIGKILL
    for cl in burst[10:]:
        oms.send_line(order(cl, symbol="MSFT", price="410", account="K9"))  # kept by the OMS's quickfix store
    time.sleep(0.5)
    mark = oms.mark()
    s.start_proxy()
    oms.wait_for(lambda r: r.get("event") == "logon", start=mark)

    # Every burst order ends with exactly one answer: acknowledged (then it reached the venue exactly
    # once), or refused VENUE_UNAVAILABLE if the crash caught it between quickfix's store and the wire
    # (the venue then asked for it again, and the proxy does not send orders late).
    def answers(cl: str) -> list[str]:
        out = []
        for r in list(oms.lines):
            f = r.get("fields", {})
            if r.get("dir") != "in":
                continue
            if f.get("35") == "8" and f.get("11") == cl and f.get("39") == "0":
                # A venue report the proxy relays again after a crash is marked PossResend (97=Y):
                # the OMS checks its ExecID; only an unmarked repeat would be a duplicate "as new".
                if f.get("97") != "Y" and f.get("43") != "Y":
                    out.append("ack")
            elif f.get("35") == "j" and f.get("379") == cl:
                out.append(f.get("58", "").split(":")[0])
        return out

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(answers(cl) for cl in burst):
        time.sleep(0.1)
    time.sleep(1)  # anything sent twice would show up by now
    counts = venue_orders(s)
    for cl in working + burst:
        got = answers(cl)
        assert got in (["ack"], ["VENUE_UNAVAILABLE"]), (cl, got)
        assert counts[f"oms1.{cl}"] == (1 if got == ["ack"] else 0), (cl, counts[f"oms1.{cl}"])

    # The working orders from before the crash are still known: each can be cancelled.
    for cl in working:
        oms.send_line(f"35=F|11={cl}-C|41={cl}|55=MSFT|54=1|38=100")
        done = oms.wait_for(m(**{"35": "8", "11": f"{cl}-C"}))["fields"]
        assert done["39"] == "4", done


def test_orders_missing_from_state_are_rebuilt_from_the_venue_store(fresh_stack):
    """With the state file gone (the crash came before it was written), quickfix's own store of what
    was sent tells the proxy about today's orders: they can still be cancelled, and their ClOrdIDs
    are still taken."""
    s = fresh_stack(behaviours={"MSFT": "ack"})
    oms = s.connect("oms1")
    m = messages(oms)
    for cl in ("L1", "L2"):
        oms.send_line(order(cl, symbol="MSFT", price="410", account="K9"))
        oms.wait_for(m(**{"35": "8", "11": cl, "39": "0"}))
    s.proxy.stop(signal.SIGKILL)
    for suffix in ("", "-wal", "-shm"):
        (s.root / "var" / f"state.sqlite{suffix}").unlink(missing_ok=True)
    mark = oms.mark()
    s.start_proxy()
    started = next(r for r in s.proxy.lines if r.get("event") == "started")
    assert started["recovered_from_store"] == 2
    oms.wait_for(lambda r: r.get("event") == "logon", start=mark)
    oms.send_line(order("L1", account="K9"))
    assert oms.wait_for(m(**{"35": "j", "379": "L1"}))["fields"]["58"].startswith("DUPLICATE_CLORDID")
    for cl in ("L1", "L2"):
        oms.send_line(f"35=F|11={cl}-C|41={cl}|55=MSFT|54=1|38=100")
        assert oms.wait_for(m(**{"35": "8", "11": f"{cl}-C"}))["fields"]["39"] == "4"
    assert venue_orders(s)["oms1.L1"] == 1
