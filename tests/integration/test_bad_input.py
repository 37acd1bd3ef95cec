"""Bad input over a real session: each gets its FIX answer (or a clean disconnect), nothing is
forwarded, and the proxy keeps serving."""

from __future__ import annotations

import pytest

from .harness import Stack, messages
from .rawfix import SOH, RawFix, frame


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine):
    s = Stack(tmp_path_factory.mktemp("bad-input"))
    try:
        yield s
    finally:
        s.close()


def venue_saw(stack, cl: str) -> bool:
    return any(r.get("dir") == "in" and r["fields"].get("11") == f"oms1.{cl}" for r in list(stack.venue.lines))


def order(cl: str, **override) -> str:
    fields = {"11": cl, "55": "AAPL", "54": "1", "38": "100", "40": "2", "44": "190", "60": "20261125-12:00:00"}
    fields.update(override)
    return "|".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def still_serves(stack, client: RawFix, cl: str) -> None:
    """A good order after the bad one is acked: the session and the proxy are fine."""
    client.send("D", order(cl))
    client.expect(lambda m: m.get(35) == "8" and m.get(11) == cl and m.get(39) == "0")
    assert stack.proxy.popen.poll() is None


@pytest.mark.parametrize("name, override, tag", [
    ("missing_side", {"54": None}, "54"),
    ("missing_ord_type", {"40": None, "44": None}, "40"),
    ("missing_transact_time", {"60": None}, "60"),
    ("price_not_a_number", {"44": "NaN"}, "44"),
    ("price_with_exponent", {"44": "1e20"}, "44"),
    ("qty_not_a_number", {"38": "abc"}, "38"),
])
def test_field_failing_the_dictionary_gets_session_reject(stack, client, name, override, tag):
    """The session layer's check (quickfix's dictionary; the native engine's order-field check)
    answers 35=3 naming the tag (371); the order goes nowhere."""
    cl = f"DD-{name}"
    seq = client.send("D", order(cl, **override))
    rej = client.expect(lambda m: m.get(35) == "3")
    assert (rej[45], rej[371]) == (str(seq), tag)
    assert not venue_saw(stack, cl)
    still_serves(stack, client, f"{cl}-after")


@pytest.mark.parametrize("name, override, text", [
    ("missing_qty", {"38": None}, "INVALID_ORDER: OrderQty (38) is missing"),
    ("zero_qty", {"38": "0"}, "OrderQty (38) must be a positive number"),
    ("negative_qty", {"38": "-100"}, "OrderQty (38) is not a positive decimal number"),
    ("absurd_price", {"44": "99999999999999"}, "Price (44) must be a positive price below"),
    ("negative_price", {"44": "-5"}, "Price (44) is not a positive decimal number"),
    ("unknown_symbol", {"55": "NOSUCH"}, "UNKNOWN_SYMBOL: symbol NOSUCH is not in the instrument list"),
])
def test_value_the_proxy_cannot_accept_gets_business_reject(stack, client, name, override, text):
    """Values that pass the dictionary but make no sense are refused 35=j with the reason; never forwarded."""
    cl = f"BV-{name}"
    client.send("D", order(cl, **override))
    bmr = client.expect(lambda m: m.get(35) == "j")
    assert bmr[379] == cl and text in bmr[58]
    assert not venue_saw(stack, cl)
    still_serves(stack, client, f"{cl}-after")


@pytest.mark.parametrize("name", ["bad_checksum", "long_body_length", "short_body_length", "garbage"])
def test_garbled_frame_is_dropped_never_forwarded_and_proxy_serves_on(stack, client, name):
    """A frame with a wrong checksum or body length is garbled: never forwarded. Either the session
    goes on (the frame is dropped) or the proxy closes the connection, and a new logon trades."""
    cl = f"GF-{name}"
    good = frame("FIX.4.4", client.body("D", order(cl)))
    if name == "bad_checksum":
        bad = good[:-4] + ("000" if not good.endswith("000\x01") else "001") + SOH
    elif name == "long_body_length":
        bad = good.replace(f"{SOH}9=", f"{SOH}9=1", 1)
    elif name == "short_body_length":
        length = good.split(f"{SOH}9=", 1)[1].split(SOH, 1)[0]
        bad = good.replace(f"{SOH}9={length}{SOH}", f"{SOH}9={int(length) - 7}{SOH}", 1)
    else:
        bad = "8=FIX.4.4" + SOH + "9=5" + SOH + "xx" + SOH + "10=000" + SOH
    client.send_raw(bad)  # same sequence number as the next good message: a dropped frame uses none
    after = f"{cl}-after"
    client.send("D", order(after))
    try:
        client.expect(lambda m: m.get(35) == "8" and m.get(11) == after, timeout=5)
    except AssertionError:
        # The stream could not be resynchronised: a fresh connection must work.
        client.close()
        fresh = RawFix(stack.acceptor_port, "OMS1")
        fresh.logon()
        still_serves(stack, fresh, f"{cl}-reconnected")
        fresh.close()
    assert not venue_saw(stack, cl)
    assert stack.proxy.popen.poll() is None


def test_unknown_message_type_is_rejected(stack, client):
    """A MsgType no FIX 4.4 dictionary knows gets a session Reject (373=11)."""
    client.send("ZZ", "58=hello")
    rej = client.expect(lambda m: m.get(35) in ("3", "j"))
    assert rej.get(373) == "11" or rej.get(380) == "3"
    still_serves(stack, client, "UM-after")


def test_oversized_message_does_not_crash_or_forward(stack, client):
    """An order carrying a 200 kB Text field is answered and never crashes the proxy."""
    cl = "BIG-1"
    client.send("D", order(cl, **{"55": "NOSUCH", "58": "x" * 200_000}))
    bmr = client.expect(lambda m: m.get(35) in ("j", "3"), timeout=20)
    assert bmr.get(379, cl) == cl
    assert not venue_saw(stack, cl)
    still_serves(stack, client, "BIG-after")


def test_logon_from_unknown_compid_is_refused(stack):
    """A CompID missing from the config gets no session: the connection is closed."""
    stranger = RawFix(stack.acceptor_port, "STRANGER")
    stranger.send("A", "98=0|108=30|141=Y")
    assert stranger.closed(10)
    stranger.close()
    assert stack.proxy.popen.poll() is None
    assert not any(r.get("event") == "session_up" and r.get("detail") == "STRANGER" for r in stack.proxy.lines)


def test_oms_simulator_still_trades_after_bad_input(stack):
    """After all of the above, a well-behaved session on the same proxy trades normally."""
    oms = stack.connect("oms2")
    oms.send_line("35=D|11=AFTER-1|55=AAPL|54=1|38=10|40=2|44=190")
    oms.wait_for(messages(oms)(**{"35": "8", "11": "AFTER-1", "39": "2"}))
