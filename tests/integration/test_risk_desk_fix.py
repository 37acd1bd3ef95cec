"""The risk desk's FIX session: KillSwitchRequest (U1) halts and cancels, KillSwitchReport (U2) says what happened."""

from __future__ import annotations

import pytest

from .harness import Stack, messages
from .rawfix import RawFix
from .test_order_path import order

DESK = """
[risk_desk]
comp_id = "RISKDESK"
name = "riskdesk"
username = "desk"
password_env = "FIXPROXY_TEST_DESK_PASSWORD"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine):
    mp = pytest.MonkeyPatch()
    mp.setenv("FIXPROXY_TEST_DESK_PASSWORD", "correct-horse")
    s = Stack(tmp_path_factory.mktemp("desk"), behaviours={"MSFT": "ack"}, extra=DESK)
    try:
        s.connect("oms1")
        desk = s._proc(
            "desk",
            [
                "sim",
                "desk",
                "--config",
                str(s.config),
                "--username",
                "desk",
                "--password-env",
                "FIXPROXY_TEST_DESK_PASSWORD",
                "--state-dir",
                str(s.root / "desk-sim"),
            ],
            stdin=True,
        )
        desk.wait_for(lambda r: r.get("event") == "logon")
        s.desk = desk
        yield s
    finally:
        s.close()
        mp.undo()


def resting(oms, cl: str, account: str) -> None:
    start = oms.mark()
    oms.send_line(order(cl, symbol="MSFT", price="410", account=account))
    oms.wait_for(messages(oms)(**{"35": "8", "11": cl, "39": "0"}), start=start)


def desk_request(stack, line: str, req_id: str) -> dict:
    start = stack.desk.mark()
    stack.desk.send_line(line)
    return stack.desk.wait_for(messages(stack.desk)(**{"35": "U2", "2328": req_id}), start=start)["fields"]


def test_halt_and_cancel_over_fix_cancels_account_orders_and_blocks_it(stack):
    """2329=100 on account:K1: both its resting orders are cancelled at the venue, the OMS gets the cancels,
    K1's next order is HALTED while K2 trades; 2329=2 resumes it."""
    oms = stack.oms["oms1"]
    m = messages(oms)
    resting(oms, "K1-A", "K1")
    resting(oms, "K1-B", "K1")
    resting(oms, "K2-A", "K2")
    start = oms.mark()
    report = desk_request(stack, "35=U1|2328=REQ1|2329=100|20101=account:K1|58=fat finger", "REQ1")
    assert (report["2332"], report["20103"], report["20104"], report["20105"]) == ("0", "HALTED", "ACTIVE", "2")
    for cl in ("K1-A", "K1-B"):
        stack.venue.wait_for(messages(stack.venue)(**{"35": "F", "41": f"oms1.{cl}"}))
        done = oms.wait_for(m(**{"35": "8", "11": cl, "39": "4"}), start=start)["fields"]
        assert done["150"] == "4" and "41" not in done
    assert not any(
        r.get("dir") == "in" and r["fields"].get("35") == "F" and r["fields"].get("41") == "oms1.K2-A"
        for r in list(stack.venue.lines)
    )
    oms.send_line(order("K1-C", account="K1"))
    text = oms.wait_for(m(**{"35": "j", "379": "K1-C"}), start=start)["fields"]["58"]
    assert text == "HALTED: trading is halted for account:K1 by desk: fat finger"  # the logged-on user
    oms.send_line(order("K2-B", account="K2"))
    oms.wait_for(m(**{"35": "8", "11": "K2-B", "39": "2"}), start=start)

    resumed = desk_request(stack, "35=U1|2328=REQ2|2329=2|20101=account:K1|58=all clear", "REQ2")
    assert (resumed["2332"], resumed["20103"], resumed["20104"]) == ("0", "ACTIVE", "HALTED")
    oms.send_line(order("K1-D", account="K1"))
    oms.wait_for(m(**{"35": "8", "11": "K1-D", "39": "2"}), start=start)


def test_request_with_bad_scope_is_rejected_in_the_report(stack):
    """A scope the proxy does not understand: 2332=2 with the reason, nothing changes."""
    report = desk_request(stack, "35=U1|2328=REQ3|2329=1|20101=desk:everything|58=oops", "REQ3")
    assert (report["2332"], report["2333"]) == ("2", "99")
    assert "scope must be" in report["58"]


@pytest.mark.parametrize(
    "line, why",
    [
        (
            "35=U1|2328=R-OP|2329=2|20101=firm|58=let me in|20102=alice",
            "Operator (20102) 'alice' is not the user this session logged on as ('desk')",
        ),
        ("35=U1|2328=R-SES|2329=1|20101=session:nope|58=typo", "no OMS session named 'nope'"),
        ("35=U1|2328=R-LONG|2329=1|20101=account:" + "K" * 65 + "|58=long", "at most 64 characters"),
    ],
    ids=["claimed-operator", "unknown-session", "scope-over-64"],
)
def test_request_claiming_another_operator_or_naming_no_such_scope_is_refused(stack, line, why):
    """The desk cannot act as someone else, nor halt a session that is not configured or a scope
    name over 64 characters: 2332=2 with the reason, and the trading states do not change."""
    req_id = line.split("2328=")[1].split("|")[0]
    halt = desk_request(stack, "35=U1|2328=R-FIRM|2329=1|20101=firm|58=before", "R-FIRM")
    assert halt["2332"] == "0"
    try:
        report = desk_request(stack, line, req_id)
        assert (report["2332"], report["2333"]) == ("2", "99") and why in report["58"], report
    finally:
        resumed = desk_request(stack, "35=U1|2328=R-BACK|2329=2|20101=firm|58=after", "R-BACK")
    assert (resumed["2332"], resumed["20104"]) == ("0", "HALTED")  # still halted: the refused resume did nothing


def test_order_on_the_desk_session_is_refused(stack):
    """The desk session takes no orders: 35=j with 380=6, and nothing reaches the venue."""
    start = stack.desk.mark()
    stack.desk.send_line("35=D|11=DESK-ORDER|55=AAPL|54=1|38=1|40=2|44=190")
    bmr = stack.desk.wait_for(messages(stack.desk)(**{"35": "j"}), start=start)["fields"]
    assert (bmr["380"], bmr["372"]) == ("6", "D")
    assert not any(
        r.get("dir") == "in" and r["fields"].get("11", "").endswith("DESK-ORDER") for r in list(stack.venue.lines)
    )


def test_desk_logon_with_wrong_password_is_refused(stack):
    """The right CompID with the wrong Password (554) gets no session; the right one does."""
    mark = stack.proxy.mark()
    stack.desk.stop()
    stack.proxy.wait_for(lambda r: r.get("event") == "session_down" and r.get("detail") == "riskdesk", start=mark)
    for credentials in ("553=desk|554=wrong", "", "553=alice|554=correct-horse", "554=correct-horse"):
        intruder = RawFix(stack.acceptor_port, "RISKDESK")
        intruder.send("A", "98=0|108=30|141=Y" + (f"|{credentials}" if credentials else ""))
        reply = intruder.read(10)
        assert reply is None or reply.get(35) == "5", (credentials, reply)
        assert intruder.closed(10)
        intruder.close()
        stack.proxy.wait_for(lambda r: r.get("event") == "desk_logon_refused", start=mark)
        mark = stack.proxy.mark()
    desk = RawFix(stack.acceptor_port, "RISKDESK")
    assert desk.logon("553=desk|554=correct-horse")[35] == "A"
    desk.close()
