"""Fuzz the decode -> check path: malformed order messages never raise and are never forwarded."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings, strategies as st

from fixproxy.core import events as ev
from fixproxy.fix import codec
from fixproxy.fix.parse import parse as parse_fields

from .conftest import Harness

SOH = "\x01"
# Values that have broken parsers before: empty, huge, signs, exponents, NaN, unicode digits, separators.
NASTY = st.sampled_from(
    [
        "",
        "0",
        "-1",
        "-0",
        "1e309",
        "NaN",
        "sNaN",
        "inf",
        "-Infinity",
        "1e-400",
        "9" * 40,
        "1.5.5",
        " 100",
        "100 ",
        "\u0661\u0660\u0660",
        "²",
        "=",
        "\x00",
        "1,000",
        "0x10",
        "1_000",
        "+5",
    ]
)
# Identifiers that reached a venue before they were checked: control characters, bytes that are not
# UTF-8 (as latin-1 characters, or as the surrogates quickfix's binding makes of them), blank, padded, huge.
NASTY_IDS = st.sampled_from(
    [
        "\x00",
        "A\x00B",
        "\x07",
        "X\xe91",
        "X\udce91",
        "\x7f",
        " ",
        "  A",
        "A ",
        "\t",
        "A" * 65,
        "A" * 10_005,
        "\u200b",
        "\ufeff",
        "caf\u00c3\u00a9",
    ]
)
VALUE = st.one_of(NASTY, NASTY_IDS, st.text(string.printable, max_size=12), st.text(max_size=6))
TAGS = st.sampled_from([1, 11, 21, 34, 38, 40, 41, 44, 48, 54, 55, 59, 99, 100, 9999])


@st.composite
def order_message(draw) -> str:
    """A D, G or F body with a random subset of its fields, each possibly garbage, in random order."""
    msg_type = draw(st.sampled_from(["D", "G", "F", "D", "D"]))
    fields = {35: msg_type, 34: draw(st.sampled_from(["7", "x", "", "-3"]))}
    for tag in draw(st.lists(TAGS, max_size=12)):
        fields[tag] = draw(VALUE)
    if draw(st.booleans()):  # often a nearly valid order with one bad field
        fields.update(
            {
                11: draw(st.text(string.ascii_letters, min_size=1, max_size=8)),
                55: "AAPL",
                54: "1",
                38: "100",
                40: "2",
                44: "100",
            }
        )
        fields[draw(TAGS)] = draw(VALUE)
    parts = [f"{t}={v}" for t, v in fields.items()]
    if draw(st.booleans()):
        parts.insert(
            draw(st.integers(0, len(parts))), draw(st.sampled_from(["=x", "abc", "", "12", "=", "9" * 12 + "=1"]))
        )
    return SOH.join(parts)


_harness = Harness()


def assert_identifiers_clean(*values: str) -> None:
    """What goes to a venue is printable ASCII, unpadded, of bounded length (or absent)."""
    for v in values:
        assert v == "" or (v.isascii() and v.isprintable() and v.strip(" ") == v and len(v) <= 100), ascii(v)[:80]


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order_message())
def test_malformed_order_messages_never_raise_and_never_reach_a_venue_invalid(raw):
    """10,000 generated messages: decode and ProxyCore.handle never raise; whatever is forwarded is well formed."""
    event = codec.oms_to_event(parse_fields(raw), "oms1", _harness.now)
    actions = _harness.handle(event)
    for action in actions:
        if isinstance(action, ev.VenueNewOrder | ev.VenueReplace):
            o = action.order
            assert o.order_qty.is_finite() and o.order_qty > 0
            assert o.price is None or (o.price.is_finite() and o.price > 0)
            assert o.symbol and o.cl_ord_id
            assert_identifiers_clean(o.cl_ord_id, o.symbol, o.account, o.ex_destination)
            assert o.time_in_force in ("", *"0123456789")
        if isinstance(action, ev.VenueCancel):
            assert_identifiers_clean(action.cl_ord_id, action.orig_cl_ord_id, action.symbol, action.account)
        if isinstance(action, ev.Decision) and not action.accepted:
            assert action.code and action.text.startswith(action.code + ": ")
    if isinstance(event, ev.InvalidMessage):
        assert not any(isinstance(a, ev.VenueNewOrder | ev.VenueReplace | ev.VenueCancel) for a in actions)


@settings(max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(max_size=300)
    | st.binary(max_size=300).map(lambda b: b.decode("latin-1"))
    | st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape"))
)
def test_any_text_decodes_to_an_event_never_an_exception(raw):
    """Any text at all (every code point, lone surrogates, every byte as latin-1 or surrogate-escaped
    as quickfix hands them over), behind a D, G or F header: decode returns an event, never raises."""
    for msg_type in ("D", "G", "F"):
        fields = parse_fields(f"35={msg_type}{SOH}34=3{SOH}{raw}")
        event = codec.oms_to_event(fields, "oms1", _harness.now)
        if fields.get(35) != msg_type:  # the text repeats 35 (the session layer refuses that first: 373=13)
            assert isinstance(event, ev.UnsupportedMessage | ev.InvalidMessage)
            continue
        assert isinstance(event, ev.NewOrder | ev.ReplaceOrder | ev.CancelOrder | ev.InvalidMessage)
        if isinstance(event, ev.InvalidMessage):
            assert event.reason.isascii() and event.reason.isprintable()
            assert_identifiers_clean(event.cl_ord_id, event.orig_cl_ord_id)
