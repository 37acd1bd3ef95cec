"""Fuzz the decode -> check path: malformed order messages never raise and are never forwarded."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixproxy import codec
from fixproxy.core import events as ev

from .conftest import Harness

SOH = "\x01"
# Values that have broken parsers before: empty, huge, signs, exponents, NaN, unicode digits, separators.
NASTY = st.sampled_from(["", "0", "-1", "-0", "1e309", "NaN", "sNaN", "inf", "-Infinity", "1e-400", "9" * 40,
                         "1.5.5", " 100", "100 ", "١٠٠", "²", "=", "\x00", "1,000", "0x10", "1_000", "+5"])
VALUE = st.one_of(NASTY, st.text(string.printable, max_size=12), st.text(max_size=6))
TAGS = st.sampled_from([1, 11, 21, 34, 38, 40, 41, 44, 54, 55, 59, 99, 100, 9999])


@st.composite
def order_message(draw) -> str:
    """A D, G or F body with a random subset of its fields, each possibly garbage, in random order."""
    msg_type = draw(st.sampled_from(["D", "G", "F", "D", "D"]))
    fields = {35: msg_type, 34: draw(st.sampled_from(["7", "x", "", "-3"]))}
    for tag in draw(st.lists(TAGS, max_size=12)):
        fields[tag] = draw(VALUE)
    if draw(st.booleans()):  # often a nearly valid order with one bad field
        fields.update({11: draw(st.text(string.ascii_letters, min_size=1, max_size=8)), 55: "AAPL", 54: "1",
                       38: "100", 40: "2", 44: "100"})
        fields[draw(TAGS)] = draw(VALUE)
    parts = [f"{t}={v}" for t, v in fields.items()]
    if draw(st.booleans()):
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(["=x", "abc", "", "12", "=", "9" * 12 + "=1"])))
    return SOH.join(parts)


_harness = Harness()


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order_message())
def test_malformed_order_messages_never_raise_and_never_reach_a_venue_invalid(raw):
    """10,000 generated messages: decode and ProxyCore.handle never raise; whatever is forwarded is well formed."""
    event = codec.decode_oms(codec.parse(raw), "oms1", _harness.now)
    actions = _harness.handle(event)
    for action in actions:
        if isinstance(action, ev.VenueNewOrder | ev.VenueReplace):
            o = action.order
            assert o.order_qty.is_finite() and o.order_qty > 0
            assert o.price is None or (o.price.is_finite() and o.price > 0)
            assert o.symbol and o.cl_ord_id
        if isinstance(action, ev.Decision) and not action.accepted:
            assert action.code and action.text.startswith(action.code + ": ")
    if isinstance(event, ev.InvalidMessage):
        assert not any(isinstance(a, ev.VenueNewOrder | ev.VenueReplace | ev.VenueCancel) for a in actions)
