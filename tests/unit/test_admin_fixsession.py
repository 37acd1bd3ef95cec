"""Risk-desk FIX messages: dictionary extension, request decoding, report encoding."""

from __future__ import annotations

import quickfix as fix

from fixproxy.admin.fixsession import build_dictionary, decode_request, encode_report
from fixproxy.core import events as ev
from fixproxy.engines.quickfix.settings import dictionary


def test_extended_dictionary_validates_kill_switch_request(tmp_path):
    """quickfix loads the merged FIX 4.4 dictionary and validates a U1 with its required fields."""
    dd = fix.DataDictionary(str(build_dictionary(dictionary("FIX.4.4"), tmp_path / "FIX44-admin.xml")))
    good = fix.Message("8=FIX.4.4\x019=0\x0135=U1\x0149=RISK\x0156=FIXPROXY\x0134=2\x0152=20261125-12:00:00\x01"
                       "2328=R1\x012329=100\x0120101=account:A1\x0158=why\x0110=000\x01", dd, False)
    dd.validate(good)
    missing = fix.Message("8=FIX.4.4\x019=0\x0135=U1\x0149=RISK\x0156=FIXPROXY\x0134=2\x0152=20261125-12:00:00\x01"
                          "2328=R1\x012329=1\x0158=why\x0110=000\x01", dd, False)
    try:
        dd.validate(missing)
    except fix.RequiredTagMissing:
        pass
    else:
        raise AssertionError("a U1 without KillScope (20101) passed validation")


def test_request_is_recorded_as_the_authenticated_user_never_a_claimed_one():
    """2329=100 is halt and cancel, made by the user the session logged on as; an Operator (20102)
    naming that user is fine, one naming anybody else is refused."""
    event = decode_request({2328: "R1", 2329: "100", 20101: "account:A1", 58: "fat finger"}, "desk", 5)
    assert event == ev.AdminKill("account:A1", "halt_and_cancel", "fat finger", "desk", 5, "R1")
    same = decode_request({2328: "R2", 2329: "2", 20101: "firm", 58: "ok", 20102: "desk"}, "desk", 5)
    assert (same.action, same.operator) == ("resume", "desk")
    claimed = decode_request({2328: "R3", 2329: "2", 20101: "firm", 58: "ok", 20102: "alice"}, "desk", 5)
    assert claimed == "Operator (20102) 'alice' is not the user this session logged on as ('desk')"


def test_request_without_reason_or_with_unknown_action_is_refused():
    """No reason, or an action type the proxy does not know: a sentence, not an event."""
    assert "Text (58)" in decode_request({2329: "1", 20101: "firm"}, "X", 0)
    assert "PartyActionType (2329)" in decode_request({2329: "0", 20101: "firm", 58: "x"}, "X", 0)


def test_report_carries_state_before_after_and_cancels():
    """An accepted halt and cancel reports 2332=0, the new and old state and the cancels sent."""
    result = ev.AdminResult("kill", True, "account:A1", "alice", "why", 0, "ACTIVE", "HALTED", "done", 3, "R1")
    fields = dict(encode_report(result, {2328: "R1", 2329: "100"}, "K7"))
    assert fields == {35: "U2", 2331: "K7", 2328: "R1", 2329: "100", 2332: "0", 20101: "account:A1",
                      20103: "HALTED", 20104: "ACTIVE", 20105: "3", 58: "done"}
    refused = dict(encode_report(ev.AdminResult("kill", False, "bad", "", "", 0, detail="scope must be"), {}, "K8"))
    assert (refused[2332], refused[2333], refused[58]) == ("2", "99", "scope must be")
