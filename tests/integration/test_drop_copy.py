"""Drop-copy sessions over real FIX sessions on loopback: copies of the reports the OMS gets, with the
OMS named in OnBehalfOfCompID (115), copies of refusals where configured, resends after a logout and
after kill -9, and no orders taken from a drop copy."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from .harness import Stack, messages
from .rawfix import RawFix
from .test_admin_http import api
from .test_order_path import order

#: Three drop copies: SURV (FIX 4.4, with a password, refusals copied), BACK (FIX 4.2, refusals not
#: copied) and FIXTDC (FIX 5.0SP2 over FIXT.1.1).
DROP_COPIES = """
[[drop_copy]]
name = "surv"
comp_id = "SURV"
username = "surveillance"
password = "surv-password-for-tests"

[[drop_copy]]
name = "back"
comp_id = "BACK"
fix_version = "FIX.4.2"
copy_refusals = false

[[drop_copy]]
name = "fixt"
comp_id = "FIXTDC"
fix_version = "FIX.5.0SP2"
"""

BEGIN = {"BACK": "FIX.4.2", "FIXTDC": "FIXT.1.1"}

Fields = dict[int, str]


class DropCopyClient:
    """A drop-copy client on the raw FIX client: keeps every message it read."""

    def __init__(self, stack: Stack, comp_id: str = "SURV", seq: int = 1):
        self.fix = RawFix(stack.acceptor_port, comp_id, begin=BEGIN.get(comp_id, "FIX.4.4"))
        self.fix.seq = seq
        self.comp_id = comp_id
        self.got: list[Fields] = []

    def logon(self, reset: bool = True) -> Fields:
        """Log on (``reset``: both sides start again at 1, as a fresh client would)."""
        extra = {"SURV": "|553=surveillance|554=surv-password-for-tests", "FIXTDC": "|1137=9"}.get(self.comp_id, "")
        self.fix.send("A", f"98=0|108=30{'|141=Y' if reset else ''}{extra}")
        return self.wait(lambda m: m.get(35) == "A")

    def wait(self, predicate: Callable[[Fields], bool], timeout: float = 15.0) -> Fields:
        """Read until a message matches (answering TestRequests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.fix.read(max(0.1, deadline - time.monotonic()))
            if msg is None:
                continue
            self.got.append(msg)
            if msg.get(35) == "1":
                self.fix.send("0", f"112={msg.get(112, '')}")
            if predicate(msg):
                return msg
        raise AssertionError(f"{self.comp_id}: no matching message; got {self.got[-10:]}")

    def report(self, cl: str, status: str, **tags: str) -> Fields:
        """The next ExecutionReport copy for ClOrdID ``cl`` with OrdStatus ``status`` (and ``tags``)."""
        return self.wait(
            lambda m: (
                m.get(35) == "8"
                and m.get(11) == cl
                and m.get(39) == status
                and all(m.get(int(k)) == v for k, v in tags.items())
            )
        )

    @property
    def last_seq(self) -> int:
        return max(int(m[34]) for m in self.got)

    def logout(self) -> None:
        """Log out and wait for the proxy's Logout (so the next Logon is not refused as a second one)."""
        self.fix.send("5")
        self.wait(lambda m: m.get(35) == "5")
        self.fix.close()


@pytest.fixture(scope="module")
def dc_stack(tmp_path_factory, engine):
    s = Stack(tmp_path_factory.mktemp("dropcopy"), behaviours={"MSFT": "ack"}, extra=DROP_COPIES)
    try:
        s.connect("oms1")
        s.connect("oms2")
        yield s
    finally:
        s.close()


@pytest.fixture
def surv(dc_stack):
    c = DropCopyClient(dc_stack)
    c.logon()
    yield c
    c.logout()


@pytest.fixture
def back(dc_stack):
    c = DropCopyClient(dc_stack, "BACK")
    c.logon()
    yield c
    c.logout()


@pytest.mark.parametrize(("session", "comp_id"), [("oms1", "OMS1"), ("oms2", "OMS2")])
def test_ack_and_fill_reach_each_drop_copy_with_the_oms_named(dc_stack, surv, back, session, comp_id, cl_ord_id):
    """The OMS's ack and fill reach both drop copies, as it got them, with 115 = the OMS's SenderCompID;
    the FIX 4.4 copy says it is one (797=Y), the FIX 4.2 copy is FIX 4.2."""
    oms = dc_stack.oms[session]
    start = oms.mark()
    oms.send_line(order(cl_ord_id))
    fill = oms.wait_for(messages(oms)(**{"35": "8", "11": cl_ord_id, "39": "2"}), start=start)["fields"]
    for client in (surv, back):
        ack = client.report(cl_ord_id, "0")
        copy = client.report(cl_ord_id, "2")
        assert (ack[115], copy[115], copy[49], copy[56]) == (comp_id, comp_id, "FIXPROXY", client.comp_id)
        assert (copy[17], copy[32], copy[14], copy[151]) == (fill["17"], "100", "100", "0")
    assert (copy[8], 797 in copy) == ("FIX.4.2", False)  # the last client: BACK
    assert surv.got[-1][797] == "Y" and surv.got[-1][8] == "FIX.4.4"


def test_fix50sp2_drop_copy_gets_fixt_copies_with_the_oms_named(dc_stack, cl_ord_id):
    """A FIX 5.0SP2 drop copy logs on over FIXT.1.1 (1137=9 both ways) and gets the ack and fill of a
    FIX 4.4 OMS as FIXT.1.1 messages, with 115 and 797=Y, and without FIX 4.2's ExecTransType (20)."""
    client = DropCopyClient(dc_stack, "FIXTDC")
    logon = client.logon()
    assert (logon[8], logon[1137]) == ("FIXT.1.1", "9")
    try:
        oms = dc_stack.oms["oms1"]
        oms.send_line(order(cl_ord_id))
        ack = client.report(cl_ord_id, "0")
        fill = client.report(cl_ord_id, "2")
        for copy in (ack, fill):
            assert (copy[8], copy[115], copy[797], 20 in copy) == ("FIXT.1.1", "OMS1", "Y", False)
        assert (fill[150], fill[32], fill[151]) == ("F", "100", "0")
        assert not [m for m in client.got if m.get(35) == "3"]
    finally:
        client.logout()


def test_refusal_is_copied_only_where_refusals_are_copied(dc_stack, surv, back, cl_ord_id):
    """A refused order (35=j to the OMS) reaches SURV as an ExecutionReport 150=8 39=8 with the reject code,
    and not BACK (copy_refusals = false), which still gets the next order's reports."""
    oms = dc_stack.oms["oms1"]
    start = oms.mark()
    oms.send_line(order(cl_ord_id, qty="20000"))
    bmr = oms.wait_for(messages(oms)(**{"35": "j", "379": cl_ord_id}), start=start)["fields"]
    copy = surv.report(cl_ord_id, "8")
    assert (copy[150], copy[115], copy[38], copy[55]) == ("8", "OMS1", "20000", "AAPL")
    assert copy[58] == bmr["58"] and copy[58].startswith("MAX_ORDER_QTY: ")
    oms.send_line(order(f"{cl_ord_id}-ok"))
    back.report(f"{cl_ord_id}-ok", "2")
    assert not [m for m in back.got if m.get(11) == cl_ord_id]


def test_refusal_on_an_execution_report_session_is_copied_with_its_exec_id(dc_stack, surv, cl_ord_id):
    """On an OMS session that is answered 35=8 150=8, the copy is that report: same ExecID, same code."""
    oms = dc_stack.oms["oms2"]
    start = oms.mark()
    oms.send_line(order(cl_ord_id, symbol="RSTR", price="40"))
    answer = oms.wait_for(messages(oms)(**{"35": "8", "11": cl_ord_id, "39": "8"}), start=start)["fields"]
    copy = surv.report(cl_ord_id, "8")
    assert (copy[17], copy[58], copy[115]) == (answer["17"], answer["58"], "OMS2")
    assert copy[58].startswith("RESTRICTED_SYMBOL: ")


def test_order_from_a_drop_copy_is_refused_and_never_reaches_the_venue(dc_stack, surv, cl_ord_id):
    """A NewOrderSingle on a drop-copy session is answered 35=j (NOT_AUTHORIZED, 380=6) and never reaches
    the venue; the session stays up and keeps receiving copies."""
    surv.fix.send("D", f"11={cl_ord_id}|1=ACC|55=AAPL|54=1|60=20231114-12:00:00.000|38=100|40=2|44=190|21=1")
    bmr = surv.wait(lambda m: m.get(35) == "j")
    assert (bmr[372], bmr.get(379), bmr[380]) == ("D", cl_ord_id, "6")
    assert bmr[58].startswith("NOT_AUTHORIZED: ")
    oms = dc_stack.oms["oms1"]
    oms.send_line(order(f"{cl_ord_id}-ok"))
    surv.report(f"{cl_ord_id}-ok", "2")
    seen = {r["fields"].get("11") for r in list(dc_stack.venue.lines) if r.get("dir") == "in"}
    assert f"oms1.{cl_ord_id}-ok" in seen and not [c for c in seen if c and c.endswith(cl_ord_id)]


def _resend_missed(client: DropCopyClient, expected: int) -> None:
    """After a Logon whose MsgSeqNum is past ``expected``: ask for the gap (ResendRequest)."""
    logon = client.got[-1]
    assert int(logon[34]) > expected, logon
    client.fix.send("2", f"7={expected}|16=0")


def test_drop_copy_logged_out_gets_what_it_missed_on_logon(fresh_stack):
    """SURV logs out, an order is acked and filled meanwhile; SURV logs on again with its next sequence
    numbers and asks for the gap: both copies come again with PossDupFlag (43=Y)."""
    s = fresh_stack(extra=DROP_COPIES)
    oms = s.connect("oms1")
    surv = DropCopyClient(s)
    surv.logon(reset=False)
    oms.send_line(order("SEEN1"))
    surv.report("SEEN1", "2")
    surv.logout()
    expected, client_seq = surv.last_seq + 1, surv.fix.seq

    oms.send_line(order("MISSED1"))
    oms.wait_for(messages(oms)(**{"35": "8", "11": "MISSED1", "39": "2"}))
    again = DropCopyClient(s, seq=client_seq)
    again.logon(reset=False)
    _resend_missed(again, expected)
    ack = again.report("MISSED1", "0", **{"43": "Y"})
    fill = again.report("MISSED1", "2", **{"43": "Y"})
    assert (ack[115], fill[115], fill[32]) == ("OMS1", "OMS1", "100") and 122 in fill
    oms.send_line(order("AFTER1"))
    assert 43 not in again.report("AFTER1", "2")
    again.logout()


def test_kill9_before_the_core_saw_a_fill_loses_no_copy(fresh_stack):
    """The proxy dies right after journaling a venue fill, before relaying it: after the restart the OMS
    gets the fill and so does the drop copy (PossResend 97=Y: recovery sent it), by resend on its Logon."""
    s = fresh_stack(
        extra=DROP_COPIES,
        proxy_env={"FIXPROXY_FAILPOINT_JOURNALED": r"(?=.*\x0111=oms1\.CRASH1\x01)(?=.*\x01150=F\x01)"},
    )
    oms = s.connect("oms1")
    surv = DropCopyClient(s)
    surv.logon(reset=False)
    oms.send_line(order("CRASH1"))
    assert s.proxy.popen.wait(20) == -signal.SIGKILL
    surv.fix.close()
    expected, client_seq = surv.last_seq + 1, surv.fix.seq
    mark = oms.mark()
    s.start_proxy()
    oms.wait_for(lambda r: r.get("event") == "logon", start=mark)
    oms.wait_for(messages(oms)(**{"35": "8", "11": "CRASH1", "39": "2"}), start=mark)
    again = DropCopyClient(s, seq=client_seq)
    again.logon(reset=False)
    _resend_missed(again, expected)
    fill = again.report("CRASH1", "2", **{"43": "Y"})
    assert (fill[115], fill[32], fill[97]) == ("OMS1", "100", "Y")
    again.logout()
    # Every copy in the drop copy's store has its record in the audit trail (the FIX stores check).
    done = subprocess.run(
        [sys.executable, "-m", "fixproxy", "audit", "verify", "--config", str(s.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (s.root / "var" / "store" / "oms" / "FIX.4.4-FIXPROXY-SURV.body").stat().st_size > 0


def test_sessions_view_lists_the_drop_copies(dc_stack, surv):
    """GET /sessions lists each drop copy, whether it is logged on and whether it takes refusals."""
    status, sessions = api(dc_stack, "GET", "/sessions", role="viewer")
    assert status == 200
    listed = {d["name"]: d for d in sessions["drop_copies"]}
    assert listed["surv"] == {"name": "surv", "up": True, "copy_refusals": True}
    assert listed["back"]["copy_refusals"] is False and list(listed) == ["surv", "back", "fixt"]
