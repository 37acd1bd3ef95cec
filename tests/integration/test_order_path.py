"""OMS simulator -> proxy -> venue simulator over real quickfix sessions on loopback."""

from __future__ import annotations

import pytest

from .harness import messages

SESSIONS = ["oms1", "oms2"]  # FIX 4.4 and FIX 4.2


def order(
    cl: str,
    symbol: str = "AAPL",
    qty: str = "100",
    price: str | None = "190",
    side: str = "1",
    account: str = "",
    extra: str = "",
) -> str:
    line = f"35=D|11={cl}|55={symbol}|54={side}|38={qty}"
    line += f"|40=2|44={price}" if price is not None else "|40=1"
    if account:
        line += f"|1={account}"
    return line + extra


def sent_seq(oms, cl: str) -> str:
    """MsgSeqNum (34) the OMS simulator used for the message with ClOrdID ``cl``."""
    return oms.wait_for(messages(oms, "out")(**{"11": cl}))["fields"]["34"]


def venue_saw(stack, venue_cl: str) -> bool:
    return any(r.get("dir") == "in" and r["fields"].get("11") == venue_cl for r in list(stack.venue.lines))


@pytest.mark.parametrize("session", SESSIONS)
def test_accepted_order_is_acked_and_filled_end_to_end(stack, session, cl_ord_id):
    """A clean order reaches the venue under the proxy's ClOrdID; ack and fill come back under the OMS's."""
    oms = stack.oms[session]
    m = messages(oms)
    start = oms.mark()
    oms.send_line(order(cl_ord_id))
    ack = oms.wait_for(m(**{"35": "8", "11": cl_ord_id, "39": "0"}), start=start)["fields"]
    fill = oms.wait_for(m(**{"35": "8", "11": cl_ord_id, "39": "2"}), start=start)["fields"]
    assert ack["151"] == "100"
    assert (fill["14"], fill["151"], fill["32"], fill["31"], fill["6"]) == ("100", "0", "100", "190", "190")
    if session == "oms2":
        assert (fill["20"], fill["150"]) == ("0", "2")  # FIX 4.2 fill
    else:
        assert fill["150"] == "F" and "20" not in fill
    seen = stack.venue.wait_for(messages(stack.venue)(**{"35": "D", "11": f"{session}.{cl_ord_id}"}))["fields"]
    assert (seen["55"], seen["38"], seen["44"], seen["8"]) == ("AAPL", "100", "190", "FIX.4.4")


REJECTS = [
    # (id, order kwargs, code, BusinessRejectReason)
    ("max_qty", dict(qty="20000"), "MAX_ORDER_QTY", "0"),
    ("account_max_qty", dict(qty="60", account="SMALL"), "MAX_ORDER_QTY", "0"),
    ("max_notional", dict(symbol="BRKA", qty="2", price="620000"), "MAX_ORDER_NOTIONAL", "0"),
    ("market_notional", dict(symbol="BRKA", qty="2", price=None), "MAX_ORDER_NOTIONAL", "0"),
    ("collar", dict(price="250"), "PRICE_COLLAR", "0"),
    ("restricted", dict(symbol="RSTR", price="40"), "RESTRICTED_SYMBOL", "0"),
    ("unknown_symbol", dict(symbol="ZZZZ"), "UNKNOWN_SYMBOL", "2"),
    ("lot_size", dict(symbol="SPYL", qty="150", price="50"), "LOT_SIZE", "0"),
    ("no_reference", dict(symbol="NOREF", price="10"), "NO_REFERENCE_PRICE", "0"),
    ("unknown_destination", dict(extra="|100=NOWHERE"), "UNKNOWN_DESTINATION", "0"),
]


@pytest.mark.parametrize("kw, code, reason", [r[1:] for r in REJECTS], ids=[r[0] for r in REJECTS])
def test_rule_breach_gets_business_reject_with_code(stack, kw, code, reason, cl_ord_id):
    """Each rule's breach is answered 35=j with 45/372/379/380 and 58 = '<CODE>: sentence'; nothing reaches the venue."""
    oms = stack.oms["oms1"]
    start = oms.mark()
    oms.send_line(order(cl_ord_id, **kw))
    bmr = oms.wait_for(messages(oms)(**{"35": "j", "379": cl_ord_id}), start=start)["fields"]
    assert bmr["45"] == sent_seq(oms, cl_ord_id)
    assert (bmr["372"], bmr["380"]) == ("D", reason)
    assert bmr["58"].startswith(f"{code}: ") and len(bmr["58"]) > len(code) + 10
    assert not venue_saw(stack, f"oms1.{cl_ord_id}")


def test_breach_text_names_value_limit_and_scope(stack, cl_ord_id):
    """The reject sentence carries the observed value, the limit and the scope it came from."""
    oms = stack.oms["oms1"]
    start = oms.mark()
    oms.send_line(order(cl_ord_id, qty="60", account="SMALL"))
    text = oms.wait_for(messages(oms)(**{"35": "j", "379": cl_ord_id}), start=start)["fields"]["58"]
    assert text == "MAX_ORDER_QTY: order quantity 60 exceeds the limit 50 (account:SMALL)"


def test_duplicate_clordid_is_rejected_second_time(stack, cl_ord_id):
    """The same ClOrdID twice on one session: the first trades, the second is refused."""
    oms = stack.oms["oms1"]
    m = messages(oms)
    start = oms.mark()
    oms.send_line(order(cl_ord_id))
    oms.wait_for(m(**{"35": "8", "11": cl_ord_id, "39": "2"}), start=start)
    oms.send_line(order(cl_ord_id, qty="5"))
    bmr = oms.wait_for(m(**{"35": "j", "379": cl_ord_id}), start=start)["fields"]
    assert bmr["58"].startswith("DUPLICATE_CLORDID: ")


def test_execution_report_reject_option_on_fix42_session(stack, cl_ord_id):
    """A session configured reject_with=execution_report gets 35=8 with 39=8/150=8 and the same text."""
    oms = stack.oms["oms2"]
    start = oms.mark()
    oms.send_line(order(cl_ord_id, qty="20000"))
    er = oms.wait_for(messages(oms)(**{"35": "8", "11": cl_ord_id}), start=start)["fields"]
    assert (er["39"], er["150"], er["20"]) == ("8", "8", "0")
    assert er["58"].startswith("MAX_ORDER_QTY: order quantity 20000 exceeds the limit 10000 (firm)")
    assert (er["55"], er["54"], er["38"], er["151"], er["14"]) == ("AAPL", "1", "20000", "0", "0")
    assert not venue_saw(stack, f"oms2.{cl_ord_id}")


@pytest.mark.parametrize("session", SESSIONS)
def test_cancel_round_trip_reports_cancel_with_oms_ids(stack, session, cl_ord_id):
    """A resting order cancelled: the venue sees the proxy's ids, the OMS gets its own ClOrdID and OrigClOrdID back."""
    oms = stack.oms[session]
    m = messages(oms)
    start = oms.mark()
    oms.send_line(order(cl_ord_id, symbol="MSFT", price="410"))
    oms.wait_for(m(**{"35": "8", "11": cl_ord_id, "39": "0"}), start=start)
    oms.send_line(f"35=F|11={cl_ord_id}-C|41={cl_ord_id}|55=MSFT|54=1|38=100")
    done = oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-C"}), start=start)["fields"]
    assert (done["39"], done["150"], done["41"], done["151"]) == ("4", "4", cl_ord_id, "0")
    venue = stack.venue.wait_for(messages(stack.venue)(**{"35": "F", "11": f"{session}.{cl_ord_id}-C"}))["fields"]
    assert venue["41"] == f"{session}.{cl_ord_id}"


def test_replace_round_trip_then_replace_over_limit_is_refused(stack, cl_ord_id):
    """A replace is checked on its new values: within limits it goes through, above them 35=9 says why."""
    oms = stack.oms["oms1"]
    m = messages(oms)
    start = oms.mark()
    oms.send_line(order(cl_ord_id, symbol="MSFT", price="410"))
    oms.wait_for(m(**{"35": "8", "11": cl_ord_id, "39": "0"}), start=start)
    oms.send_line(f"35=G|11={cl_ord_id}-R1|41={cl_ord_id}|55=MSFT|54=1|38=200|40=2|44=411")
    rep = oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-R1"}), start=start)["fields"]
    assert (rep["150"], rep["39"], rep["41"], rep["38"], rep["44"]) == ("5", "0", cl_ord_id, "200", "411")
    oms.send_line(f"35=G|11={cl_ord_id}-R2|41={cl_ord_id}-R1|55=MSFT|54=1|38=20000|40=2|44=411")
    rej = oms.wait_for(m(**{"35": "9", "11": f"{cl_ord_id}-R2"}), start=start)["fields"]
    assert (rej["41"], rej["434"], rej["39"]) == (f"{cl_ord_id}-R1", "2", "0")
    assert rej["58"].startswith("MAX_ORDER_QTY: order quantity 20000")
    assert not venue_saw(stack, f"oms1.{cl_ord_id}-R2")
    # The order still stands at its replaced size: cancelling it reports the 200 lot.
    oms.send_line(f"35=F|11={cl_ord_id}-C|41={cl_ord_id}-R1|55=MSFT|54=1|38=200")
    done = oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-C"}), start=start)["fields"]
    assert (done["39"], done["38"]) == ("4", "200")


def test_cancel_of_unknown_order_is_refused(stack, cl_ord_id):
    """A cancel for an order the proxy never forwarded gets OrderCancelReject 102=1."""
    oms = stack.oms["oms1"]
    start = oms.mark()
    oms.send_line(f"35=F|11={cl_ord_id}|41=NEVER-SENT|55=AAPL|54=1|38=100")
    rej = oms.wait_for(messages(oms)(**{"35": "9", "11": cl_ord_id}), start=start)["fields"]
    assert (rej["102"], rej["434"], rej["41"]) == ("1", "1", "NEVER-SENT")
    assert rej["58"].startswith("UNKNOWN_ORDER: ")


def test_partial_fill_and_venue_reject_are_relayed(stack, cl_ord_id):
    """Order state follows the venue: a partial fill leaves quantity working; a venue reject arrives as 39=8."""
    oms = stack.oms["oms1"]
    m = messages(oms)
    start = oms.mark()
    oms.send_line(order(f"{cl_ord_id}-P", symbol="NVDA", price="120"))
    part = oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-P", "39": "1"}), start=start)["fields"]
    assert (part["32"], part["14"], part["151"]) == ("50", "50", "50")
    oms.send_line(order(f"{cl_ord_id}-X", symbol="XOM", price="110"))
    rej = oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-X", "39": "8"}), start=start)["fields"]
    assert rej["58"] == "venue simulator rejects this symbol"


def test_two_sessions_same_clordid_each_get_their_own_reports(stack, cl_ord_id):
    """OMS sessions share no ClOrdID space: the same id on two sessions is two orders, reported apart."""
    one, two = stack.oms["oms1"], stack.oms["oms2"]
    s1, s2 = one.mark(), two.mark()
    one.send_line(order(cl_ord_id, qty="100"))
    two.send_line(order(cl_ord_id, qty="300"))
    f1 = one.wait_for(messages(one)(**{"35": "8", "11": cl_ord_id, "39": "2"}), start=s1)["fields"]
    f2 = two.wait_for(messages(two)(**{"35": "8", "11": cl_ord_id, "39": "2"}), start=s2)["fields"]
    assert (f1["14"], f2["14"]) == ("100", "300")
    for oms, qty in ((one, "300"), (two, "100")):
        assert not any(
            r.get("dir") == "in" and r["fields"].get("11") == cl_ord_id and r["fields"].get("38") == qty
            for r in list(oms.lines)
        )


def test_unsupported_message_type_gets_business_reject(stack):
    """An application message the proxy does not handle (OrderStatusRequest) is answered 35=j, 380=3."""
    oms = stack.oms["oms1"]
    start = oms.mark()
    oms.send_line("35=H|11=STATUS-1|55=AAPL|54=1")
    bmr = oms.wait_for(messages(oms)(**{"35": "j", "372": "H"}), start=start)["fields"]
    assert bmr["380"] == "3" and bmr["58"].startswith("UNSUPPORTED_MESSAGE: ")


def test_venue_down_rejects_at_once_and_flow_resumes_when_back(fresh_stack):
    """No venue session: VENUE_UNAVAILABLE straight away (never queued); once the venue logs on, orders pass."""
    s = fresh_stack(venue=False)
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("DOWN-1"))
    bmr = oms.wait_for(m(**{"35": "j", "379": "DOWN-1"}))["fields"]
    assert bmr["380"] == "4" and bmr["58"].startswith("VENUE_UNAVAILABLE: venue sim is not connected")
    mark = s.proxy.mark()
    s.start_venue()
    s.wait_venue_up(start=mark)
    # quickfix spends a sequence number on a Logon to a connection that fails while the venue is
    # away, so the venue may ask for it again (ResendRequest from 1) just after its Logon. An order
    # sent before that request is answered falls in the gap: gap-filled, never sent twice, and the
    # OMS told so. Then the next order passes.
    cl = "DOWN-2"
    oms.send_line(order(cl))
    first = oms.wait_for(lambda r: r.get("dir") == "in" and cl in (r["fields"].get("11"), r["fields"].get("379")))
    if first["fields"]["35"] == "j":
        assert "asked for it again after a gap" in first["fields"]["58"], first["fields"]["58"]
        cl = "DOWN-2B"
        oms.send_line(order(cl))
    oms.wait_for(m(**{"35": "8", "11": cl, "39": "2"}))
    assert not any(r.get("dir") == "in" and r["fields"].get("11") == "oms1.DOWN-1" for r in s.venue.lines)
    # The venue goes away again: the proxy notices and refuses at once.
    mark = s.proxy.mark()
    s.venue.stop()
    s.proxy.wait_for(lambda r: r.get("event") == "session_down" and r.get("detail") == "sim", start=mark)
    oms.send_line(order("DOWN-3"))
    assert oms.wait_for(m(**{"35": "j", "379": "DOWN-3"}))["fields"]["58"].startswith("VENUE_UNAVAILABLE: ")


def test_fix42_venue_reports_reach_fix44_oms_in_its_own_terms(fresh_stack):
    """Venue on FIX 4.2, OMS on FIX 4.4: the order goes out with 21=1; the 4.2 fill comes back as 150=F."""
    s = fresh_stack(venue_version="FIX.4.2", behaviours={"MSFT": "partial"})
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("V42-1", symbol="MSFT", price="410"))
    part = oms.wait_for(m(**{"35": "8", "11": "V42-1", "39": "1"}))["fields"]
    assert (part["8"], part["150"], part["32"], part["151"]) == ("FIX.4.4", "F", "50", "50")
    assert "20" not in part
    seen = s.venue.wait_for(messages(s.venue)(**{"35": "D", "11": "oms1.V42-1"}))["fields"]
    assert (seen["8"], seen["21"]) == ("FIX.4.2", "1")
    oms.send_line("35=F|11=V42-1C|41=V42-1|55=MSFT|54=1|38=100")
    done = oms.wait_for(m(**{"35": "8", "11": "V42-1C"}))["fields"]
    assert (done["150"], done["39"], done["41"], done["14"]) == ("4", "4", "V42-1", "50")


@pytest.mark.quickfix_only
def test_threaded_socket_classes_carry_the_same_flow(fresh_stack):
    """With [proxy] threaded_sockets, an order is filled end to end and a reject still says why; after
    the OMS logs out (its connection's thread ends, and the Python state the edge kept for that
    thread is let go) and back on (a new thread), orders still flow."""
    s = fresh_stack(proxy_extra="threaded_sockets = true")
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("THR-1"))
    oms.wait_for(m(**{"35": "8", "11": "THR-1", "39": "2"}))
    oms.send_line(order("THR-2", symbol="RSTR", price="40"))
    assert oms.wait_for(m(**{"35": "j", "379": "THR-2"}))["fields"]["58"].startswith("RESTRICTED_SYMBOL: ")
    for round_ in (3, 4):
        mark = s.proxy.mark()
        oms.stop()
        s.proxy.wait_for(lambda r: r.get("event") == "session_down" and r.get("detail") == "oms1", start=mark)
        oms = s.connect("oms1")
        m = messages(oms)
        oms.send_line(order(f"THR-{round_}"))
        oms.wait_for(m(**{"35": "8", "11": f"THR-{round_}", "39": "2"}))


@pytest.mark.quickfix_only
def test_measurement_settings_still_carry_the_flow(fresh_stack):
    """With dictionary validation off and a memory store for OMS sessions (benchmark settings), an order
    is filled and a rule's reject still reaches the OMS."""
    s = fresh_stack(proxy_extra='validate_messages = false\noms_store = "memory"')
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("MEAS-1"))
    oms.wait_for(m(**{"35": "8", "11": "MEAS-1", "39": "2"}))
    oms.send_line(order("MEAS-2", qty="20000"))
    assert oms.wait_for(m(**{"35": "j", "379": "MEAS-2"}))["fields"]["58"].startswith("MAX_ORDER_QTY: ")
