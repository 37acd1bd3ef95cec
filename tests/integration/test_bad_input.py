"""Bad input over a real session: each gets its FIX answer (or a clean disconnect), nothing is
forwarded, and the proxy keeps serving."""

from __future__ import annotations

import signal

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
    client.send("D", order(cl, **({"21": "1"} if client.begin == "FIX.4.2" else {})))
    client.expect(lambda m: m.get(35) == "8" and m.get(11) == cl and m.get(39) == "0")
    assert stack.proxy.popen.poll() is None


@pytest.mark.parametrize(
    "name, override, tag",
    [
        ("missing_side", {"54": None}, "54"),
        ("missing_ord_type", {"40": None, "44": None}, "40"),
        ("missing_transact_time", {"60": None}, "60"),
        ("price_not_a_number", {"44": "NaN"}, "44"),
        ("price_with_exponent", {"44": "1e20"}, "44"),
        ("qty_not_a_number", {"38": "abc"}, "38"),
    ],
)
def test_field_failing_the_dictionary_gets_session_reject(stack, client, name, override, tag):
    """The session layer's check (quickfix's dictionary; the native engine's order-field check)
    answers 35=3 naming the tag (371); the order goes nowhere."""
    cl = f"DD-{name}"
    seq = client.send("D", order(cl, **override))
    rej = client.expect(lambda m: m.get(35) == "3")
    assert (rej[45], rej[371]) == (str(seq), tag)
    assert not venue_saw(stack, cl)
    still_serves(stack, client, f"{cl}-after")


@pytest.mark.parametrize(
    "name, override, text",
    [
        ("missing_qty", {"38": None}, "INVALID_ORDER: OrderQty (38) is missing"),
        ("zero_qty", {"38": "0"}, "OrderQty (38) must be a positive number"),
        ("negative_qty", {"38": "-100"}, "OrderQty (38) is not a positive decimal number"),
        ("absurd_price", {"44": "99999999999999"}, "Price (44) must be a positive price below"),
        ("negative_price", {"44": "-5"}, "Price (44) is not a positive decimal number"),
        ("unknown_symbol", {"55": "NOSUCH"}, "UNKNOWN_SYMBOL: symbol NOSUCH is not in the instrument list"),
    ],
)
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


# ---------------------------------------------------------------- bytes and identifiers (issue 17, items 2 and 3)


def venue_orders_since(stack, mark: int) -> list[str]:
    """ClOrdIDs of the orders, replaces and cancels the venue received since ``mark`` (its line count)."""
    return [
        r["fields"].get("11", "")
        for r in list(stack.venue.lines)[mark:]
        if r.get("dir") == "in" and r.get("fields", {}).get("35") in ("D", "G", "F")
    ]


def venue_got(stack, cl: str, mark: int) -> None:
    """Wait until the venue has logged the order ``cl`` (of oms1, or of the session its name says)."""
    stack.venue.wait_for(
        lambda r: r.get("dir") == "in" and r.get("fields", {}).get("11", "").endswith(f".{cl}"), start=mark
    )


def healthz(stack) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.http_port}/healthz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_non_utf8_clordid_is_refused_and_every_session_still_trades(stack, client):
    """``11=X\\xe91`` (a byte that is not UTF-8) is refused naming the tag and never reaches the venue;
    afterwards the same session, a second OMS session and a new Logon all work, and /healthz is ok."""
    mark = len(stack.venue.lines)
    seq = client.send("D", order("X\xe91"))
    bmr = client.expect(lambda m: m.get(35) == "j")
    assert bmr[45] == str(seq) and bmr[372] == "D" and 379 not in bmr  # the bad ClOrdID is never echoed
    assert bmr[58].startswith("INVALID_ORDER: ClOrdID (11) has a character outside ASCII (0xE9) at position 2")
    still_serves(stack, client, "NU-after")
    # The same bytes on the second OMS session (FIX 4.2, refusing with execution reports), then an order.
    second = RawFix(stack.acceptor_port, "OMS2", begin="FIX.4.2")
    second.logon()
    second.send("D", order("Y\xff\x00", **{"21": "1"}))
    refused = second.expect(lambda m: m.get(35) in ("j", "8", "3"))
    assert refused[35] == "j" and refused[58].startswith(
        "INVALID_ORDER: ClOrdID (11) has a character outside ASCII (0xFF) at position 2"
    )
    still_serves(stack, second, "NU-second")
    second.close()
    venue_got(stack, "NU-second", mark)
    assert venue_orders_since(stack, mark) == ["oms1.NU-after", "oms2.NU-second"]
    # A new connection logs on and trades (the acceptor's threads are alive).
    client.close()
    fresh = RawFix(stack.acceptor_port, "OMS1")
    fresh.logon()
    still_serves(stack, fresh, "NU-fresh")
    fresh.close()
    status, health = healthz(stack)
    assert status == 200 and health["status"] == "ok" and health["engine"]["state"] == "ok"


#: (name, value, what the reason says) for each kind of bad identifier.
BAD_IDS = [
    ("nul", "A\x00B", "has a control character (0x00) at position 2"),
    ("bel", "A\x07", "has a control character (0x07) at position 2"),
    ("del", "AB\x7f", "has a control character (0x7F) at position 3"),
    ("non_ascii", "Z\xe9", "has a character outside ASCII (0xE9) at position 2"),
    ("blank", "   ", "is blank"),
    ("leading_space", " ID1", "starts with a space"),
    ("one_over_the_limit", "", ""),  # the field's default limit plus one (_LIMITS)
    ("too_long_10005", "A" * 10_005, "is 10,005 characters long"),
]
_NAMES = {11: "ClOrdID", 41: "OrigClOrdID", 1: "Account", 55: "Symbol", 100: "ExDestination"}
_LIMITS = {11: 64, 41: 64, 1: 32, 55: 32, 100: 32}  # the [identifiers] defaults
_ID_CASES = [
    (msg_type, tag, *bad)
    for msg_type, tags in (("D", (11, 1, 55, 100)), ("G", (41,)), ("F", (11, 41)))
    for tag in tags
    for bad in BAD_IDS
]


@pytest.mark.parametrize("msg_type, tag, name, value, why", _ID_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in _ID_CASES])
def test_bad_identifier_is_refused_naming_the_tag_and_never_reaches_the_venue(
    stack, client, msg_type, tag, name, value, why
):
    """Control characters, non-ASCII, blank, padded or over-long identifiers: a NewOrderSingle gets 35=j
    INVALID_ORDER, a replace or cancel 35=9 INVALID_ORDER, naming the field and tag; nothing goes out."""
    mark = len(stack.venue.lines)
    cl = f"ID-{msg_type}-{tag}-{name}"
    if name == "one_over_the_limit":
        limit = _LIMITS[tag]
        value, why = "A" * (limit + 1), f"is {limit + 1} characters long; at most {limit} are allowed"
    override = {"100": "sim"} if msg_type == "D" else {"41": "ORIG-1", "1": "ACC1"}
    if msg_type == "F":
        override.update({"44": None, "40": None})  # a cancel carries no price or type
    override[str(tag)] = value
    seq = client.send(msg_type, order(cl, **override))
    answer = client.expect(
        lambda m: (
            (m.get(35) in ("j", "3") and m.get(45) == str(seq))
            or (m.get(35) in ("9", "8") and m.get(11) in (cl, "NONE"))
        ),
        timeout=20,
    )
    text = f"INVALID_ORDER: {_NAMES[tag]} ({tag}) {why}"
    if msg_type == "D":
        assert answer[35] == "j" and answer[45] == str(seq) and answer[58].startswith(text), answer
        assert answer.get(379) == (None if tag == 11 else cl)
    else:
        assert answer[35] == "9" and answer[58].startswith(text), answer
        assert answer[11] == ("NONE" if tag == 11 else cl) and answer[41] == ("NONE" if tag == 41 else "ORIG-1")
    after = f"{cl}-after"
    still_serves(stack, client, after)
    venue_got(stack, after, mark)
    assert venue_orders_since(stack, mark) == [f"oms1.{after}"]


def test_exception_while_handling_a_message_is_answered_recorded_and_the_session_serves_on(fresh_stack):
    """A bug while a message is handled (injected after it is journaled): the OMS gets a session Reject
    (373=99, PROXY_ERROR), an engine_error alert is recorded, and the session, a second session and a
    new Logon all still work; /healthz stays ok (nothing died)."""
    stack = fresh_stack(proxy_env={"FIXPROXY_FAILPOINT_RAISE": "\x0111=BOOM-[0-9]"})
    client = RawFix(stack.acceptor_port, "OMS1")
    client.logon()
    mark = len(stack.venue.lines)
    for i in range(3):  # more than once: the thread that failed goes on serving
        seq = client.send("D", order(f"BOOM-{i}"))
        rej = client.expect(lambda m: m.get(35) == "3")
        assert (rej[45], rej[372], rej[373]) == (str(seq), "D", "99")
        assert rej[58].startswith("PROXY_ERROR: the message could not be handled (RuntimeError)")
        still_serves(stack, client, f"BOOM-after-{i}")
    alert = stack.proxy.wait_for(lambda r: r.get("event") == "alert" and r.get("limit_name") == "engine_error")
    assert alert["scope"] == "session:oms1" and "failpoint" in alert["text"]
    second = RawFix(stack.acceptor_port, "OMS2", begin="FIX.4.2")
    second.logon()
    still_serves(stack, second, "BOOM-second")
    venue_got(stack, "BOOM-second", mark)
    assert venue_orders_since(stack, mark) == [
        "oms1.BOOM-after-0",
        "oms1.BOOM-after-1",
        "oms1.BOOM-after-2",
        "oms2.BOOM-second",
    ]
    status, health = healthz(stack)
    assert status == 200 and health["engine"]["state"] == "ok"
    second.close()
    client.close()


@pytest.mark.parametrize(
    "path, body, why",
    [
        ("/kill-switch", {"scope": "account:A\x00B", "action": "halt", "reason": "test"}, "control characters"),
        ("/kill-switch", {"scope": "symbol:AA\x07PL", "action": "halt", "reason": "test"}, "control characters"),
        (
            "/limits",
            {"layer": "account:A\x00", "field": "max_order_qty", "value": 5, "reason": "test"},
            "layer must be",
        ),
        ("/reference-prices", {"symbol": "AA\x00PL", "price": "190", "reason": "test"}, "printable ASCII"),
    ],
)
def test_http_scope_or_symbol_with_control_character_is_refused(stack, path, body, why):
    """The HTTP API refuses a scope, layer or symbol carrying NUL or BEL (400, saying why); nothing changes."""
    import json
    import urllib.error
    import urllib.request

    from .harness import TOKENS

    request = urllib.request.Request(
        stack.api_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKENS['risk']}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400 and why in json.loads(info.value.read())["error"]
    states = urllib.request.Request(
        stack.api_url + "/trading-states", headers={"Authorization": f"Bearer {TOKENS['viewer']}"}
    )
    assert "\\u0000" not in urllib.request.urlopen(states, timeout=10).read().decode()


def test_oms_simulator_still_trades_after_bad_input(stack):
    """After all of the above (the module's last test), a well-behaved session on the same proxy trades normally."""
    oms = stack.connect("oms2")
    oms.send_line("35=D|11=AFTER-1|55=AAPL|54=1|38=10|40=2|44=190")
    oms.wait_for(messages(oms)(**{"35": "8", "11": "AFTER-1", "39": "2"}))


def test_configured_identifier_limits_apply_on_the_engine_and_in_recovery(fresh_stack):
    """``[identifiers] max_clordid = 8``: a 9-character ClOrdID is refused naming the limit, an
    8-character one is forwarded; after kill -9 the restarted proxy, which decodes the journal again
    with the same limits, still holds only the forwarded order and refuses and forwards alike."""
    from .test_admin_http import api

    stack = fresh_stack(behaviours={"AAPL": "ack"}, extra="[identifiers]\nmax_clordid = 8\n")

    def open_orders() -> set[str]:
        body = api(stack, "GET", "/orders", role="viewer")[1]
        return {o["cl_ord_id"] for o in (body["orders"] if isinstance(body, dict) else body)}

    for attempt in ("A", "B"):
        client = RawFix(stack.acceptor_port, "OMS1")
        client.logon()
        mark = len(stack.venue.lines)
        seq = client.send("D", order(f"LONG-{attempt}123"))  # 9 characters
        rej = client.expect(lambda m, seq=seq: m.get(35) == "j" and m.get(45) == str(seq))
        assert rej[58].startswith("INVALID_ORDER: ClOrdID (11) is 9 characters long; at most 8 are allowed"), rej
        still_serves(stack, client, f"OK-{attempt}1234")  # 8 characters
        venue_got(stack, f"OK-{attempt}1234", mark)
        assert venue_orders_since(stack, mark) == [f"oms1.OK-{attempt}1234"]
        if attempt == "A":
            assert open_orders() == {"OK-A1234"}
            client.close()
            assert stack.proxy.stop(signal.SIGKILL) == -signal.SIGKILL
            stack.start_proxy()
            assert open_orders() == {"OK-A1234"}
    assert open_orders() == {"OK-A1234", "OK-B1234"}
