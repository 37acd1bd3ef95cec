"""OMS sessions with Username/Password: the right credentials log on, wrong ones are refused."""

from __future__ import annotations

from .harness import messages
from .rawfix import RawFix
from .test_order_path import order


def test_oms_logon_checks_username_and_password(fresh_stack):
    """A session configured with credentials refuses a wrong Password (554) and one without any;
    the OMS simulator, given the right ones, logs on and trades."""
    s = fresh_stack(oms1_extra='username = "trader"\npassword = "s3cret-pass"')
    for extra in ("553=trader|554=wrong", ""):
        intruder = RawFix(s.acceptor_port, "OMS1")
        intruder.send("A", "98=0|108=30|141=Y" + ("|" + extra if extra else ""))
        reply = intruder.read(10)
        assert reply is None or reply.get(35) == "5"
        assert intruder.closed(10)
        intruder.close()
    s.proxy.wait_for(lambda r: r.get("event") == "logon_refused")
    oms = s.connect("oms1")
    oms.send_line(order("AUTH-1"))
    oms.wait_for(messages(oms)(**{"35": "8", "11": "AUTH-1", "39": "2"}))


def test_reports_sent_while_oms_was_away_reach_it_on_logon(fresh_stack):
    """With cancel on disconnect, the cancels of an OMS's orders happen while it is gone; when it logs
    on again its session recovers them (resent as possible duplicates)."""
    s = fresh_stack(behaviours={"MSFT": "ack"}, cancel_on_disconnect=("oms1",))
    oms = s.connect("oms1")
    oms.send_line(order("AWAY-1", symbol="MSFT", price="410"))
    oms.wait_for(messages(oms)(**{"35": "8", "11": "AWAY-1", "39": "0"}))
    mark = s.proxy.mark()
    oms.stop()
    s.venue.wait_for(messages(s.venue)(**{"35": "F", "41": "oms1.AWAY-1"}))
    s.proxy.wait_for(lambda r: r.get("event") == "admin_action" and r.get("kind") == "cancel_on_disconnect", start=mark)
    back = s.connect("oms1")
    cancelled = back.wait_for(messages(back)(**{"35": "8", "11": "AWAY-1", "39": "4"}))["fields"]
    assert cancelled.get("43") == "Y"
