"""The quickfix edge without a network: text across the binding is total, and a thread of the
engine that ends shows on /healthz (``engine_problem``)."""

from __future__ import annotations

import threading

import quickfix as fix
from hypothesis import HealthCheck, given, settings, strategies as st

from fixproxy.core import events as ev
from fixproxy.engines.quickfix.bridge import QuickfixBridge, binding_frame, binding_text, session_info, wire_text
from fixproxy.fix import codec
from fixproxy.fix.parse import parse as parse_fields

from .conftest import Harness

SOH = "\x01"
PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    value=st.text(st.characters(blacklist_characters=SOH), max_size=40)
    | st.binary(max_size=40).filter(lambda b: b"\x01" not in b).map(lambda b: b.decode("utf-8", "surrogateescape"))
)
def test_binding_frame_of_any_value_is_accepted_by_the_binding(value):
    """Whatever a value holds (any code point, lone surrogates as the binding makes of bytes that are
    not UTF-8), binding_frame() returns a message quickfix takes: never UnicodeEncodeError."""
    text = binding_frame("FIX.4.4", "j", [(45, "3"), (372, "D"), (379, value), (58, "INVALID_ORDER: x")])
    message = fix.Message(text, False)
    assert message.getField(372) == "D" and message.getField(58) == "INVALID_ORDER: x"


@PROPERTY
@given(data=st.binary(max_size=60).filter(lambda b: b"\x01" not in b))
def test_wire_text_reads_bytes_as_the_native_engine_does(data):
    """quickfix hands bytes over as UTF-8 with surrogateescape; wire_text gives one character per byte
    (latin-1), as the native engine reads them; binding_text gives valid UTF-8 back unchanged."""
    from_binding = data.decode("utf-8", "surrogateescape")
    assert wire_text(from_binding) == data.decode("latin-1")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        binding_text(wire_text(from_binding)).encode("utf-8")  # representable, with U+FFFD for the bad bytes
    else:
        assert binding_text(wire_text(from_binding)) == data.decode("utf-8")


def test_non_utf8_clordid_through_the_binding_decodes_to_invalid_message():
    """``11=X\\xe91`` as quickfix's toString() gives it: decoded into a refusal naming the tag."""
    raw = wire_text("35=D\x0134=2\x0111=X\udce91\x0155=AAPL\x0154=1\x0138=100\x0140=2\x0144=190\x01")
    event = codec.oms_to_event(parse_fields(raw), "oms1", 0)
    assert isinstance(event, ev.InvalidMessage) and event.cl_ord_id == ""
    assert event.reason.startswith("ClOrdID (11) has a character outside ASCII (0xE9) at position 2")


class _Engine:
    """Stands in for a SocketAcceptor: ``block`` runs until ``stop`` is set (or returns at once)."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def block(self) -> None:
        self.stop.wait(30)


def _application() -> QuickfixBridge:
    h = Harness()
    sid = fix.SessionID("FIX.4.4", "FIXPROXY", "OMS1")
    return QuickfixBridge(h.core, [session_info("oms1", "oms", sid)], lambda action: None)


def test_engine_thread_that_ends_makes_engine_problem_and_health_fail():
    """While the acceptor's thread runs there is no problem; once it ends, engine_problem names it
    (the proxy's /healthz answers 503 "failed" on it); after close() (shutdown) it is expected."""
    app = _application()
    engine = _Engine()
    app.run(engine, "acceptor")
    assert app.engine_problem() == ""
    engine.stop.set()
    app._engine_threads[0].join(5)
    assert app.engine_problem() == "thread quickfix-acceptor ended"
    app.close()
    assert app.engine_problem() == ""


def test_callback_exception_is_recorded_and_never_leaves_the_callback():
    """An exception inside a callback (here onLogon's hand-off to the core) is caught, recorded as a
    notice and an engine_error alert, and the callback returns normally (quickfix's thread goes on)."""
    records: list[ev.Action] = []
    h = Harness()
    sid = fix.SessionID("FIX.4.4", "FIXPROXY", "OMS1")
    app = QuickfixBridge(h.core, [session_info("oms1", "oms", sid)], records.append)

    def broken(event):
        raise RuntimeError("boom")

    app.submit = broken
    app.onLogon(sid)  # returns: nothing reaches the binding's Py_Exit
    kinds = [(type(r).__name__, getattr(r, "kind", getattr(r, "limit_name", ""))) for r in records]
    assert kinds == [("Notice", "engine_error"), ("Alert", "engine_error")]
    assert "onLogon failed: RuntimeError('boom')" in records[0].detail and app.engine_problem() == ""
    app.close()
