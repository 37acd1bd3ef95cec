"""The active/passive pair's harness (ha_harness.py) on a real pair, both engines: a takes the lease,
b copies it; a killed -9, b takes over and the OMS, given both addresses, follows it; the venue sees
each instance on its own connection; a started again comes back as the standby and the copy is in
step again. The failover tests proper build on this."""

from __future__ import annotations

import signal

from .flows import until
from .ha_harness import pair
from .harness import messages
from .test_order_path import order


def acked(oms, cl: str, start: int = 0) -> None:
    oms.wait_for(messages(oms)(**{"35": "8", "11": cl, "150": "0"}), start=start, timeout=30)


def via(p, cl: str) -> str | None:
    """The instance the venue received order ``cl`` of oms1 from."""
    for rec in p.venue_received():
        if rec["fields"].get("11") == f"oms1.{cl}" and rec["fields"].get("35") == "D":
            return p.venue_instance(rec["conn"])
    return None


def test_pair_fails_over_on_kill9_and_the_oms_follows(tmp_path, pg_url):
    """a active and b standby in sync copy; a killed -9: b says active with the next token, the OMS
    logs on to b's address and its order reaches the venue through b; a started again says standby
    and the copy is "sync" again, with b the active."""
    with pair(tmp_path, pg_url, copy="sync") as p:
        assert p.roles() == {"a": "active", "b": "standby"}
        token = p.view("a")["token"]
        oms = p.oms["oms1"]
        oms.send_line(order("P1"))
        acked(oms, "P1")
        assert until(lambda: via(p, "P1"), "P1 at the venue") == "a"

        start = oms.mark()
        p.kill("a", signal.SIGKILL)
        view = p.wait_role("b", "active")
        assert view["token"] == token + 1
        logon = oms.wait_for(lambda r: r.get("event") == "logon", start=start, timeout=30)
        assert logon["address"] == f"127.0.0.1:{p.nodes['b'].acceptor_port}"
        p.nodes["b"].wait_venue_up()  # an order before b's venue session is up is refused (VENUE_UNAVAILABLE)
        oms.send_line(order("P2"))
        acked(oms, "P2", start)
        assert until(lambda: via(p, "P2"), "P2 at the venue") == "b"
        assert p.active() == "b"

        p.restart("a")
        assert p.wait_role("a", "standby")["role"] == "standby"
        assert p.wait_copy("sync")["instance"] == "b"
        assert p.roles() == {"a": "standby", "b": "active"}
