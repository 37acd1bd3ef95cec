"""The native engine's FIX session (engines/native/session.py), in process: exact bytes in and out.

A fixed clock and an in-memory store: no socket, no time read. Every expected message is written
whole and compared byte for byte (the clock is fixed, so SendingTime, BodyLength and CheckSum are
known too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fixproxy.engines.native import session as session_module
from fixproxy.engines.native.session import Close, LoggedOn, LoggedOut, NotResent, Received, Session
from fixproxy.engines.native.store import MemoryStore
from fixproxy.fix import build, parse

from .fixtext import HDR, ORDER, T, framed

S = 1_000_000_000
STAMP = build.stamp(T)


class ListLog:
    """The session's message and event logs, kept in lists."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.events: list[str] = []

    def message(self, data: bytes, now_ns: int) -> None:
        self.messages.append(data)

    def event(self, text: str, now_ns: int) -> None:
        self.events.append(text)


def make(*, role: str = "oms", initiator: bool = False, allow: bool = True, heartbeat_s: int = 30) -> Session:
    return Session(
        name="oms1",
        role=role,
        begin_string="FIX.4.4",
        sender="FIXPROXY",
        target="OMS1",
        heartbeat_s=heartbeat_s,
        store=MemoryStore(T),
        log=ListLog(),
        initiator=initiator,
        resend_app=role != "venue",
        check_logon=lambda fields: allow,
    )


def peer(msg_type: str, seq: int, body: str = "", at: int = T) -> bytes:
    """A message from OMS1 (to FIXPROXY) numbered ``seq``, sent at ``at``."""
    return framed(f"35={msg_type}|34={seq}|49=OMS1|52={build.stamp(at)}|56=FIXPROXY" + (f"|{body}" if body else ""))


def ours(msg_type: str, seq: int, body: str = "", at: int = T, head: str = "") -> bytes:
    """A message of the proxy's to OMS1; ``head`` holds 43=Y before 49 and 122 after 56 (a resend)."""
    possdup, _, orig = head.partition(";")
    text = (
        f"35={msg_type}|34={seq}|{possdup + '|' if possdup else ''}49=FIXPROXY|52={build.stamp(at)}|56=OMS1"
        f"{'|' + orig if orig else ''}{'|' + body if body else ''}"
    )
    return framed(text)


def logged_on(role: str = "oms") -> Session:
    """A session whose peer logged on with 34=1 and 141=Y (so 2 is expected, our next is 2)."""
    session = make(role=role)
    session.connect(T)
    events, _ = session.receive(peer("A", 1, "98=0|108=30|141=Y"), T)
    assert events == [LoggedOn()]
    return session


# ---------------------------------------------------------------------- Logon


def test_logon_with_reset_is_answered_with_a_logon_and_logged_on() -> None:
    """The acceptor's answer carries the peer's HeartBtInt and 141=Y; the session reports it is up."""
    session = make()
    assert session.connect(T) == ([], b"")
    events, out = session.receive(peer("A", 1, "98=0|108=20|141=Y"), T)
    assert out == ours("A", 1, "98=0|108=20|141=Y")
    assert events == [LoggedOn()] and session.logged_on and session.heartbeat_s == 20
    assert (session.store.next_sender, session.store.next_target) == (2, 2)


def test_logon_refused_by_the_owner_gets_a_logout_and_the_connection_closes() -> None:
    """Username/Password refused (the injected decision): Logout naming 553/554, then Close."""
    session = make(allow=False)
    session.connect(T)
    events, out = session.receive(peer("A", 1, "98=0|108=30|141=Y|553=u|554=bad"), T)
    assert out == ours("5", 1, "58=bad Username (553) or Password (554)")
    assert events == [Close("logon refused")] and not session.logged_on


@pytest.mark.parametrize(
    "message, why",
    [
        (peer("A", 1, "98=0|108=30", at=T - 600 * S), "SendingTime accuracy problem"),
        (peer("0", 1), "first message is not a Logon"),
    ],
)
def test_logon_that_cannot_be_taken_is_not_answered_and_the_connection_closes(message: bytes, why: str) -> None:
    """A Logon ten minutes old, or a Heartbeat first: no answer (no Reject before a Logon), Close."""
    session = make()
    session.connect(T)
    events, out = session.receive(message, T)
    assert out == b"" and len(events) == 1 and why in events[0].why and not session.logged_on


def test_initiator_sends_its_logon_when_connected_and_is_up_on_the_answer() -> None:
    session = make(role="venue", initiator=True)
    assert session.connect(T) == ([], ours("A", 1, "98=0|108=30"))
    events, out = session.receive(peer("A", 1, "98=0|108=30"), T)
    assert (events, out) == ([LoggedOn()], b"")


def test_logon_above_the_expected_number_is_answered_then_a_resend_is_asked() -> None:
    session = logged_on()
    session.disconnected(T)
    session.connect(T)
    events, out = session.receive(peer("A", 7, "98=0|108=30"), T)
    assert out == ours("A", 2, "98=0|108=30") + ours("2", 3, "7=2|16=0")
    assert events == [LoggedOn()] and session.store.next_target == 2  # 7 counts when the gap is filled


# ---------------------------------------------------------------------- timers


def test_heartbeat_after_the_interval_with_nothing_sent() -> None:
    session = logged_on()
    assert session.tick(T + 29 * S) == ([], b"")
    assert session.receive(peer("0", 2, at=T + 29 * S), T + 29 * S) == ([], b"")
    assert session.tick(T + 30 * S) == ([], ours("0", 2, at=T + 30 * S))


def test_silent_peer_gets_a_test_request_then_is_disconnected() -> None:
    """Nothing for 1.2 heartbeat intervals: TestRequest; 2.4 intervals: Close."""
    session = logged_on()
    now = T + 37 * S
    assert session.tick(now) == ([], ours("1", 2, f"112=TEST{now}", at=now))
    assert session.tick(T + 60 * S) == ([], b"")
    assert session.tick(T + 73 * S) == ([Close("nothing received for 73 s")], b"")


def test_logon_not_completed_within_the_timeout_closes() -> None:
    session = make()
    session.connect(T)
    assert session.tick(T + 10 * S) == ([], b"")
    assert session.tick(T + 11 * S) == ([Close("no Logon within 10 s")], b"")


def test_disconnected_session_reports_logged_out_once() -> None:
    session = logged_on()
    assert session.disconnected(T) == [LoggedOut()]
    assert session.disconnected(T) == [] and not session.connected


# ---------------------------------------------------------------------- resends


def test_resend_request_is_answered_with_possdup_resends_and_a_gap_fill_for_session_messages() -> None:
    """Our Logon (1) is gap-filled; the ExecutionReport (2) goes again with 43=Y and its first
    SendingTime as OrigSendingTime (122)."""
    session = logged_on()
    assert session.send("8", [(37, "O1"), (150, "0")], T + S) == (ours("8", 2, "37=O1|150=0", at=T + S), True)
    now = T + 2 * S
    events, out = session.receive(peer("2", 2, "7=1|16=0", at=now), now)
    assert events == []
    assert out == (
        ours("4", 1, "36=2|123=Y", at=now, head=f"43=Y;122={build.stamp(now)}")
        + ours("8", 2, "37=O1|150=0", at=now, head=f"43=Y;122={build.stamp(T + S)}")
    )


def test_venue_session_gap_fills_orders_and_reports_them_not_resent() -> None:
    session = logged_on(role="venue")
    session.send("D", [(11, "C1"), (55, "MSFT")], T + S)
    now = T + 2 * S
    events, out = session.receive(peer("2", 2, "7=2|16=0", at=now), now)
    assert events == [NotResent(("C1",))]
    assert out == ours("4", 2, "36=3|123=Y", at=now, head=f"43=Y;122={build.stamp(now)}")


def test_message_for_a_session_that_is_down() -> None:
    """An OMS session keeps an application message for a resend; a venue session takes none."""
    oms, venue = logged_on(), logged_on(role="venue")
    oms.disconnected(T)
    venue.disconnected(T)
    assert oms.send("8", [(37, "O1")], T) == (ours("8", 2, "37=O1"), False) and oms.store.next_sender == 3
    assert venue.send("D", [(11, "C1")], T) is None and venue.store.next_sender == 2
    assert oms.send("0", [], T) is None


# ---------------------------------------------------------------------- sequence numbers


def test_sequence_reset_gap_fill_moves_the_expected_number() -> None:
    session = logged_on()
    assert session.receive(peer("4", 2, "123=Y|36=5"), T) == ([], b"")
    assert session.store.next_target == 5


def test_sequence_reset_reset_moves_the_expected_number_and_never_back() -> None:
    session = logged_on()
    assert session.receive(peer("4", 9, "36=10"), T) == ([], b"")
    assert session.store.next_target == 10
    text = "NewSeqNo 4 is below the expected 10"
    assert session.receive(peer("4", 3, "36=4"), T) == ([], ours("3", 2, f"45=3|371=36|372=4|373=5|58={text}"))


def test_too_low_number_without_possdup_logs_out_and_closes() -> None:
    session = logged_on()
    session.receive(peer("0", 2), T)
    text = "MsgSeqNum too low, expecting 3 but received 2"
    assert session.receive(peer("0", 2), T) == ([Close(text)], ours("5", 2, f"58={text}"))


def test_possdup_copy_of_a_message_already_received_is_ignored() -> None:
    session = logged_on()
    session.receive(peer("1", 2, "112=A"), T)
    copy = framed(f"35=1|34=2|43=Y|49=OMS1|52={STAMP}|56=FIXPROXY|122={STAMP}|112=A")
    assert session.receive(copy, T) == ([], b"") and session.store.next_target == 3


def test_gap_asks_for_a_resend_and_the_queued_messages_follow_in_order() -> None:
    """4 where 2 is expected: ResendRequest 7=2; 2 and 3 arrive, each handed over (and counted on
    resume); then the queued TestRequest 4 is answered."""
    session = logged_on()
    assert session.receive(peer("1", 4, "112=Q"), T) == ([], ours("2", 2, "7=2|16=0"))
    order2 = peer("D", 2, ORDER)
    events, out = session.receive(order2, T)
    assert out == b"" and events == [Received(order2.decode("latin-1"), parse.fields(order2.decode("latin-1"))[0])]
    assert session.paused and session.store.next_target == 2
    assert session.resume(T) == ([], b"") and session.store.next_target == 3
    order3 = peer("D", 3, ORDER.replace("11=A1", "11=A2"))
    events, out = session.receive(order3, T)
    assert [e.fields[11] for e in events] == ["A2"] and out == b""
    assert session.resume(T) == ([], ours("0", 3, "112=Q"))
    assert session.store.next_target == 5 and not session.paused and session.resend_until == 0


def test_received_never_resumed_is_not_counted() -> None:
    """Fail closed: a message the owner did not confirm keeps its number expected."""
    session = logged_on()
    session.receive(peer("D", 2, ORDER), T)
    session.receive(peer("0", 3), T)  # 2 is still expected: 3 is queued, a resend asked
    assert session.store.next_target == 2 and 3 in session.queued


# ---------------------------------------------------------------------- garbled and refused input


def test_garbled_bytes_are_skipped_and_the_message_after_them_read() -> None:
    framer = parse.Framer()
    session = logged_on()
    frames = framer.feed(b"garbage\x01" + peer("1", 2, "112=X"))
    assert framer.garbled and len(frames) == 1
    assert session.receive(frames[0], T) == ([], ours("0", 2, "112=X"))


def test_message_with_an_unreadable_tag_is_ignored_and_its_number_unused() -> None:
    session = logged_on()
    assert session.receive(peer("1", 2, "ab=1|112=X"), T) == ([], b"")
    assert session.store.next_target == 2


def test_sending_time_out_of_the_window_is_refused_and_logged_out() -> None:
    session = logged_on()
    now = T + 600 * S
    assert session.receive(peer("1", 2, "112=X"), now) == (
        [],
        ours("3", 2, "45=2|372=1|373=10|58=SendingTime accuracy problem", at=now)
        + ours("5", 3, "58=SendingTime accuracy problem", at=now),
    )


@pytest.mark.parametrize(
    "body, ref_tag, reason",
    [
        (f"35=D|{HDR}|{ORDER}|35=0", "35", "14"),
        (f"35=D|{HDR}|{ORDER}|38=900", "38", "13"),
        (f"35=D|34=2|49=OMS1|56=FIXPROXY|{ORDER}|52={build.stamp(T)}", "52", "14"),
    ],
)
def test_session_rejects_a_malformed_order_and_uses_its_number(body: str, ref_tag: str, reason: str) -> None:
    """The order is refused with 35=3 naming the tag, never handed to the core; its number is used
    (a message ending in 35=0 is not taken for a Heartbeat)."""
    session = logged_on()
    events, out = session.receive(framed(body), T)
    msgs = [parse.fields(m.decode("latin-1") + "10=")[0] for m in out.split(b"10=")[:-1]]
    assert [(m[35], m[45], m[371], m[372], m[373]) for m in msgs] == [("3", "2", ref_tag, "D", reason)]
    assert events == [] and session.store.next_target == 3


def test_session_logs_out_a_message_with_another_begin_string() -> None:
    """FIX.4.2 on the FIX.4.4 session: Logout naming the BeginString, and the connection closes."""
    session = logged_on()
    data = framed(f"35=D|{HDR}|{ORDER}").replace(b"8=FIX.4.4", b"8=FIX.4.2")
    data = data[:-4] + b"%03d\x01" % (sum(data[: data.rindex(b"10=")]) % 256)
    events, out = session.receive(data, T)
    assert out == ours("5", 2, "58=Incorrect BeginString FIX.4.2")
    assert events == [Close("Incorrect BeginString FIX.4.2")]


def test_session_hands_a_sound_order_with_a_group_to_the_core() -> None:
    session = logged_on()
    events, out = session.receive(
        framed(
            f"35=D|{HDR}|11=A1|453=2|448=T1|447=D|452=11|448=T2|447=D|452=12|"
            f"55=MSFT|54=1|38=100|40=2|44=410|60={build.stamp(T)}"
        ),
        T,
    )
    assert out == b"" and [type(e) for e in events] == [Received] and events[0].fields[453] == "2"


def test_session_module_does_no_io_and_reads_no_clock() -> None:
    """session.py imports no event loop, socket, thread, clock or file module: it is sans-IO."""
    tree = ast.parse(Path(session_module.__file__).read_text(encoding="utf-8"))
    names = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    names |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    assert names.isdisjoint({"asyncio", "socket", "time", "threading", "os", "io", "selectors", "mmap"}), names
