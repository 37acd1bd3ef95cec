"""Risk-desk FIX messages: request decoding, report encoding (fix/desk.py)."""

from __future__ import annotations

from fixproxy.core import events as ev
from fixproxy.fix.desk import refusal_to_report, request_to_event, result_to_report


def test_request_is_recorded_as_the_authenticated_user_never_a_claimed_one() -> None:
    """2329=100 is halt and cancel, made by the user the session logged on as; an Operator (20102)
    naming that user is fine, one naming anybody else is refused."""
    event = request_to_event({2328: "R1", 2329: "100", 20101: "account:A1", 58: "fat finger"}, "desk", 5)
    assert event == ev.AdminKill("account:A1", "halt_and_cancel", "fat finger", "desk", 5, "R1")
    same = request_to_event({2328: "R2", 2329: "2", 20101: "firm", 58: "ok", 20102: "desk"}, "desk", 5)
    assert (same.action, same.operator) == ("resume", "desk")
    claimed = request_to_event({2328: "R3", 2329: "2", 20101: "firm", 58: "ok", 20102: "alice"}, "desk", 5)
    assert claimed == "Operator (20102) 'alice' is not the user this session logged on as ('desk')"


def test_request_without_reason_or_with_unknown_action_is_refused() -> None:
    """No reason, or an action type the proxy does not know: a sentence, not an event."""
    assert "Text (58)" in request_to_event({2329: "1", 20101: "firm"}, "X", 0)
    assert "PartyActionType (2329)" in request_to_event({2329: "0", 20101: "firm", 58: "x"}, "X", 0)


def test_report_carries_state_before_after_and_cancels() -> None:
    """An accepted halt and cancel reports 2332=0, the new and old state and the cancels sent."""
    result = ev.AdminResult("kill", True, "account:A1", "alice", "why", 0, "ACTIVE", "HALTED", "done", 3, "R1")
    fields = dict(result_to_report(result, {2328: "R1", 2329: "100"}, "K7"))
    assert fields == {
        35: "U2",
        2331: "K7",
        2328: "R1",
        2329: "100",
        2332: "0",
        20101: "account:A1",
        20103: "HALTED",
        20104: "ACTIVE",
        20105: "3",
        58: "done",
    }
    refused = dict(result_to_report(ev.AdminResult("kill", False, "bad", "", "", 0, detail="scope must be"), {}, "K8"))
    assert (refused[2332], refused[2333], refused[58]) == ("2", "99", "scope must be")


def test_unreadable_request_is_answered_with_a_refusing_report() -> None:
    """A request that is not an event is answered 2332=2, 2333=99, with the reason in 58 and its ids echoed."""
    fields = dict(refusal_to_report({2328: "R9", 2329: "0", 20101: "firm"}, "PartyActionType (2329) must be", "K9"))
    assert fields == {
        35: "U2",
        2331: "K9",
        2328: "R9",
        2332: "2",
        2333: "99",
        20101: "firm",
        58: "PartyActionType (2329) must be",
    }
