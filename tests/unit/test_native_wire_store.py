"""The native engine's wire format and files: framing, building, the quickfix-format store and log."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixproxy.fix import build, check, parse
from fixproxy.engines.native.store import FileLog, FileStore
from fixproxy.engines.quickfix.recovery import stored_messages
from fixproxy.replay.readers import parse_line

T = 1_795_600_000_000_000_000  # 2026-11-25
DAY = 86_400 * 1_000_000_000


def message(seq: int = 1, cl: str = "A1", msg_type: str = "D") -> bytes:
    return build.build("FIX.4.4", msg_type, seq, "OMS1", "FIXPROXY", build.stamp(T),
                      [(11, cl), (55, "AAPL"), (54, "1"), (38, "100"), (40, "2"), (44, "190")])


def test_built_message_has_header_in_tag_order_and_a_checksum_the_framer_accepts():
    """Header 8, 9, 35, 34, 49, 52, 56 in that order; the framer takes it back whole."""
    data = message(7)
    text = data.decode()
    tags = [int(p.split("=", 1)[0]) for p in text.split("\x01") if p]
    assert tags[:7] == [8, 9, 35, 34, 49, 52, 56] and tags[-1] == 10
    framer = parse.Framer()
    assert framer.feed(data) == [data] and not framer.garbled


def test_resend_header_carries_possdup_and_orig_sending_time_in_tag_order():
    data = build.build("FIX.4.4", "8", 3, "FIXPROXY", "OMS1", "20261125-12:00:01.000", [(11, "A")],
                      [(43, "Y"), (122, "20261125-12:00:00.000")]).decode()
    assert "\x0134=3\x0143=Y\x0149=FIXPROXY\x0152=20261125-12:00:01.000\x0156=OMS1\x01122=20261125-12:00:00.000\x01" in data


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_framer_cuts_any_chunking_into_the_same_messages(cuts):
    """However the bytes arrive (split anywhere), the same messages come out, in order."""
    stream = b"".join(message(i, f"C{i}") for i in range(1, 6))
    framer = parse.Framer()
    out, pos = [], 0
    for size in cuts:
        out += framer.feed(stream[pos:pos + size])
        pos += size
    out += framer.feed(stream[pos:])
    assert out == [message(i, f"C{i}") for i in range(1, 6)]
    assert not framer.garbled


def _shorter_body_length(data: bytes) -> bytes:
    length = data.split(b"\x019=", 1)[1].split(b"\x01", 1)[0]
    return data.replace(b"\x019=%s\x01" % length, b"\x019=%d\x01" % (int(length) - 7), 1)


def test_too_long_body_length_resynchronises_once_enough_bytes_arrive():
    """A BodyLength pointing past the message makes the framer wait; once the bytes it claims have
    arrived and no CheckSum stands there, the bad message is dropped and the following ones read."""
    framer = parse.Framer()
    bad = message(1, "BAD").replace(b"\x019=", b"\x019=1", 1)  # 9=93 -> 9=193
    goods = [message(i, f"OK{i}") for i in range(2, 6)]
    out = framer.feed(bad)
    assert out == [] and not framer.garbled  # waiting for the bytes the length claims
    for good in goods:
        out += framer.feed(good)
    assert out == goods  # the bad one dropped, none of the good ones with it
    assert any("BodyLength" in g for g in framer.garbled)


@pytest.mark.parametrize("corrupt, why", [
    (lambda d: d[:-4] + b"999\x01", "CheckSum"),
    (lambda d: _shorter_body_length(d), "BodyLength"),
    (lambda d: b"garbage" + d[8:], "not a FIX message"),
])
def test_garbled_message_is_skipped_and_the_next_one_read(corrupt, why):
    """A message with a wrong checksum or length, or noise, is dropped with a reason; the stream goes on."""
    framer = parse.Framer()
    good = message(2, "OK")
    out = framer.feed(corrupt(message(1, "BAD")) + good)
    assert out == [good]
    assert any(why in g for g in framer.garbled)


def test_fields_report_a_tag_without_value_and_a_bad_tag():
    assert parse.fields("8=FIX.4.4\x0135=D\x0111=\x01")[1] == "tag 11 has no value"
    assert parse.fields("8=FIX.4.4\x0135=D\x01x1=2\x01")[1].startswith("invalid tag number")
    assert parse.fields("8=FIX.4.4\x0135=D\x0111=A\x01") == ({8: "FIX.4.4", 35: "D", 11: "A"}, "")


@pytest.mark.parametrize("fields, expected", [
    ({11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 44: "190"}, None),
    ({11: "A", 54: "1", 40: "2"}, (1, 60)),
    ({11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 44: "1e5"}, (6, 44)),
    ({11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 38: "-100"}, None),  # a number: the core refuses its value
])
def test_order_form_check(fields, expected):
    """Required fields and number formats of a NewOrderSingle, as a data dictionary checks them."""
    got = check.check_order("D", fields)
    assert (got[:2] if got else None) == expected


def test_store_is_read_back_after_a_clean_close_and_in_quickfix_layout(tmp_path: Path):
    """Sequence numbers and sent messages survive a restart; the files are quickfix's FileStore
    (the proxy's recovery reads them as it reads quickfix's)."""
    store = FileStore(tmp_path, "FIX.4.4-FIXPROXY-VENUE", T)
    for seq in (1, 2, 3):
        store.sent(seq, message(seq, f"C{seq}"))
    store.next_target = 9
    store.save_seqnums()
    store.close()
    assert (tmp_path / "FIX.4.4-FIXPROXY-VENUE.seqnums").read_text() == f"{4:020d} : {9:020d}"
    assert (tmp_path / "FIX.4.4-FIXPROXY-VENUE.body").stat().st_size == sum(len(message(s, f"C{s}")) for s in (1, 2, 3))
    again = FileStore(tmp_path, "FIX.4.4-FIXPROXY-VENUE", T + 1000)
    assert (again.next_sender, again.next_target) == (4, 9)
    assert [seq for seq, _ in again.get(1, 10)] == [1, 2, 3]
    again.close()
    assert [m.encode() for m in stored_messages(tmp_path, "FIX.4.4-FIXPROXY-VENUE")] == \
        [message(s, f"C{s}") for s in (1, 2, 3)]


def test_store_written_but_never_closed_reads_back_everything_sent(tmp_path: Path):
    """As after kill -9: the mapped files were never cut to size; nothing sent is lost or invented."""
    store = FileStore(tmp_path, "P", T)
    for seq in (1, 2):
        store.sent(seq, message(seq))
    # no close(): the files still have their zero-filled tail
    assert len(list(stored_messages(tmp_path, "P"))) == 2
    again = FileStore(tmp_path, "P", T)
    assert again.next_sender == 3 and [s for s, _ in again.get(1, 5)] == [1, 2]
    again.sent(3, message(3))
    assert [s for s, _ in again.get(1, 5)] == [1, 2, 3]
    again.close()
    store.close()


def test_store_of_an_earlier_day_starts_again_at_one(tmp_path: Path):
    store = FileStore(tmp_path, "P", T)
    store.sent(1, message(1))
    store.close()
    next_day = FileStore(tmp_path, "P", T + DAY)
    assert (next_day.next_sender, next_day.next_target, next_day.get(1, 5)) == (1, 1, [])
    next_day.close()


def test_message_log_lines_are_read_by_the_replay_reader(tmp_path: Path):
    log = FileLog(tmp_path, "P", deferred=True)
    log.message(message(1, "LOG-1"), T)
    assert not (tmp_path / "P.messages.current.log").read_text()  # deferred until flushed
    log.flush()
    log.close()
    line = (tmp_path / "P.messages.current.log").read_text().rstrip("\n")
    stamp_ns, fields, fmt = parse_line(line)
    assert (stamp_ns, fields[11], fmt) == (T, "LOG-1", "filelog")


_tag_texts = st.one_of(st.integers(1, 20_000).map(str), st.sampled_from(["", "0", "035", "x1", "1x", "٣", " 35", "+5"]))
_pieces = st.lists(st.tuples(_tag_texts, st.sampled_from(["=", ""]), st.text("AB=1 .", max_size=4)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(_pieces, st.booleans())
def test_property_fast_field_reading_agrees_with_the_checked_one(pieces, trailing_soh):
    """The one-pass reading of a message gives what the field-by-field check gives, for any input:
    the same fields and the same problem named."""
    raw = "\x01".join(f"{t}{eq}{v}" for t, eq, v in pieces) + ("\x01" if trailing_soh else "")
    assert parse.fields(raw) == parse._checked_fields(raw)


_noise = st.sampled_from([b"", b"garbage", b"8=FIX", b"8=FIX.4.4\x019=x\x01", b"\x01\x01", b"10=000\x01",
                          message(99, "BAD")[:-4] + b"999\x01", _shorter_body_length(message(98, "BAD"))])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_noise, st.booleans()), min_size=1, max_size=8),
       st.lists(st.integers(min_value=1, max_value=400), max_size=10))
def test_property_framer_gives_the_same_messages_whatever_the_reads(parts, cuts):
    """Good and garbled pieces in any order, read in any chunks: the same good messages come out as
    when the stream is read one byte at a time (whole reads take the framer's quick path, a
    trickle its careful one)."""
    stream = b"".join(noise + (message(i, f"C{i}") if good else b"") for i, (noise, good) in enumerate(parts))
    chunked, trickled = parse.Framer(), parse.Framer()
    got, pos = [], 0
    for size in cuts:
        got += chunked.feed(stream[pos:pos + size])
        pos += size
    got += chunked.feed(stream[pos:])
    expected = [m for i in range(len(stream)) for m in trickled.feed(stream[i:i + 1])]
    assert got == expected


def test_store_keeps_a_window_of_offsets_and_reads_older_ones_from_the_header(tmp_path, monkeypatch):
    """Only the last messages' offsets stay in memory; a resend of older ones (and a restart) still finds
    every message, from the header file."""
    from fixproxy.engines.native import store as native_store

    monkeypatch.setattr(native_store._Index, "WINDOW", 16)
    now = 1_700_000_000 * 1_000_000_000
    st = native_store.FileStore(tmp_path, "S", now)
    for seq in range(1, 101):
        st.sent(seq, f"8=FIX.4.4\x0134={seq}\x01".encode())
    assert st.index.first > 1 and len(st.index.offsets) < 32
    assert [seq for seq, _ in st.get(1, 100)] == list(range(1, 101))
    assert st.get(3, 3) == [(3, "8=FIX.4.4\x0134=3\x01")]
    st.close()
    again = native_store.FileStore(tmp_path, "S", now)
    assert [seq for seq, _ in again.get(10, 12)] == [10, 11, 12] and again.next_sender == 101


# ---------------------------------------------------------------- strict reading (issue 17 item 4)

def _framed(body: str) -> bytes:
    """``8=FIX.4.4|9=<len>|<body>|10=<sum>|`` with | as SOH: exact bytes with a right length and sum."""
    text = body.replace("|", "\x01") + "\x01"
    head = f"8=FIX.4.4\x019={len(text)}\x01"
    return f"{head}{text}10={sum((head + text).encode('latin-1')) % 256:03d}\x01".encode("latin-1")


_HDR = f"34=2|49=OMS1|52={build.stamp(T)}|56=FIXPROXY"
_ORDER = f"11=A1|55=MSFT|54=1|38=100|40=2|44=410|60={build.stamp(T)}"


@pytest.mark.parametrize("body, reason, tag", [
    (f"35=D|{_HDR}|{_ORDER}|35=0", 14, 35),  # ends in a second MsgType: not a Heartbeat
    (f"35=D|{_HDR}|{_ORDER}|38=900", 13, 38),
    (f"35=D|{_HDR}|{_ORDER}|11=A2", 13, 11),
    (f"35=D|34=2|49=OMS1|56=FIXPROXY|{_ORDER}|52={build.stamp(T)}", 14, 52),
    (f"35=D|{_HDR}|{_ORDER}|58=", 4, 58),
    (f"35=D|{_HDR}|{_ORDER}|0=x", 0, 0),
    (f"35=D|{_HDR}|{_ORDER}|ab=x", parse.IGNORE, 0),
])
def test_fields_name_the_problem_of_a_malformed_message(body, reason, tag):
    """Repeated tags, header fields after the body, empty values and bad tag numbers come back as a
    Problem with the session Reject's reason (373) and tag (371); the fast reading agrees."""
    raw = _framed(body).decode("latin-1")
    fields, problem = parse.fields(raw)
    assert (problem.reason, problem.tag) == (reason, tag)
    assert parse.fields(raw) == parse._checked_fields(raw)


def test_fields_let_repeating_group_members_repeat():
    """PartyID (448) twice inside NoPartyIDs is a group, not a repeated tag."""
    raw = _framed(f"35=D|{_HDR}|11=A1|453=2|448=T1|447=D|452=11|448=T2|447=D|452=12|55=MSFT|54=1|38=100|40=2|"
                  f"44=410|60={build.stamp(T)}").decode("latin-1")
    fields, problem = parse.fields(raw)
    assert problem == "" and fields[453] == "2"


def test_framer_drops_a_message_whose_msgtype_is_not_the_third_field():
    framer = parse.Framer()
    bad = _framed(f"34=2|35=0|49=OMS1|52={build.stamp(T)}|56=FIXPROXY")
    good = _framed(f"35=0|{_HDR}")
    assert framer.feed(bad + good) == [good]
    assert any("MsgType (35)" in why for why in framer.garbled)


@pytest.mark.parametrize("fields, expected", [
    ({11: "A", 54: "Z", 60: "20261125-12:00:00", 40: "2"}, (5, 54)),
    ({11: "A", 54: "1", 60: "now", 40: "2"}, (6, 60)),
    ({11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 453: "two"}, (6, 453)),
    ({11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 59: "X"}, (5, 59)),
])
def test_order_values_outside_the_dictionary(fields, expected):
    """Values outside a field's list (373=5) and times or counts that are not one (373=6)."""
    assert check.check("FIX.4.4", "D", fields)[:2] == expected


def test_fix42_order_needs_handlinst_and_symbol():
    fields = {11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2"}
    assert check.check("FIX.4.4", "D", fields) is None
    assert check.check("FIX.4.2", "D", fields)[:2] == (1, 21)


class _Owner:
    def __init__(self):
        self.delivered: list[dict[int, str]] = []

    def deliver(self, session, raw, fields, now):
        self.delivered.append(fields)

    def session_up(self, session): pass
    def session_down(self, session): pass
    def not_resent(self, session, ids): pass
    def logon_allowed(self, session, fields): return True
    def garbled(self, session, why): pass


class _Conn:
    def __init__(self):
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


def _logged_on_session(tmp_path):
    from fixproxy.engines.native.session import Session

    owner, conn = _Owner(), _Conn()
    session = Session(name="oms1", role="oms", begin_string="FIX.4.4", sender="FIXPROXY", target="OMS1",
                      heartbeat_s=30, store=FileStore(tmp_path, "S", T), log=None, owner=owner, initiator=False,
                      resend_app=True, clock=lambda: T)
    session.attach(conn)
    session.logged_on = True
    session.store.next_target = 2
    return session, owner, conn


def _receive(session, data: bytes, now: int = T) -> list[dict[int, str]]:
    """Hand one message to the session; what it wrote back, each as tag -> value."""
    raw = data.decode("latin-1")
    fields, problem = parse.fields(raw)
    before = len(session.connection.sent)
    session.on_message(raw, fields, problem, data, now)
    return [parse.fields(m.decode("latin-1"))[0] for m in session.connection.sent[before:]]


@pytest.mark.parametrize("body, ref_tag, reason", [
    (f"35=D|{_HDR}|{_ORDER}|35=0", "35", "14"),
    (f"35=D|{_HDR}|{_ORDER}|38=900", "38", "13"),
    (f"35=D|34=2|49=OMS1|56=FIXPROXY|{_ORDER}|52={build.stamp(T)}", "52", "14"),
])
def test_session_rejects_a_malformed_order_and_uses_its_number(tmp_path, body, ref_tag, reason):
    """The order is refused with 35=3 naming the tag, never handed to the core; its number is used
    (a message ending in 35=0 is not taken for a Heartbeat)."""
    session, owner, _ = _logged_on_session(tmp_path)
    out = _receive(session, _framed(body))
    assert [(m[35], m[45], m[371], m[372], m[373]) for m in out] == [("3", "2", ref_tag, "D", reason)]
    assert owner.delivered == [] and session.store.next_target == 3


def test_session_logs_out_a_message_with_another_begin_string(tmp_path):
    """FIX.4.2 on the FIX.4.4 session: Logout naming the BeginString, and the connection closes."""
    session, owner, conn = _logged_on_session(tmp_path)
    data = _framed(f"35=D|{_HDR}|{_ORDER}").replace(b"8=FIX.4.4", b"8=FIX.4.2")
    data = data[:-4] + b"%03d\x01" % (sum(data[:data.rindex(b"10=")]) % 256)
    out = _receive(session, data)
    assert [m[35] for m in out] == ["5"] and "BeginString" in out[0][58]
    assert conn.closed and owner.delivered == []


def test_session_refuses_a_stale_sending_time_and_logs_out(tmp_path):
    """SendingTime ten minutes from the clock: Reject 373=10, then Logout."""
    session, owner, _ = _logged_on_session(tmp_path)
    out = _receive(session, _framed(f"35=D|{_HDR}|{_ORDER}"), now=T + 600 * 1_000_000_000)
    assert [(m[35], m.get(373)) for m in out] == [("3", "10"), ("5", None)]
    assert owner.delivered == []


def test_session_hands_a_sound_order_with_a_group_to_the_core(tmp_path):
    session, owner, _ = _logged_on_session(tmp_path)
    out = _receive(session, _framed(f"35=D|{_HDR}|11=A1|453=2|448=T1|447=D|452=11|448=T2|447=D|452=12|55=MSFT|"
                                    f"54=1|38=100|40=2|44=410|60={build.stamp(T)}"))
    assert out == [] and len(owner.delivered) == 1
