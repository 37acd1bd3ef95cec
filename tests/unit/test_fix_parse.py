"""fix/parse.py: framing a byte stream, reading a message's fields strictly and leniently, single fields."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings, strategies as st

from fixproxy.fix import build, parse

from .fixtext import HDR, ORDER, T, framed, message, shorter_body_length


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_framer_cuts_any_chunking_into_the_same_messages(cuts: list[int]) -> None:
    """However the bytes arrive (split anywhere), the same messages come out, in order."""
    stream = b"".join(message(i, f"C{i}") for i in range(1, 6))
    framer = parse.Framer()
    out, pos = [], 0
    for size in cuts:
        out += framer.feed(stream[pos : pos + size])
        pos += size
    out += framer.feed(stream[pos:])
    assert out == [message(i, f"C{i}") for i in range(1, 6)]
    assert not framer.garbled


def test_too_long_body_length_resynchronises_once_enough_bytes_arrive() -> None:
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


@pytest.mark.parametrize(
    "corrupt, why",
    [
        (lambda d: d[:-4] + b"999\x01", "CheckSum"),
        (lambda d: shorter_body_length(d), "BodyLength"),
        (lambda d: b"garbage" + d[8:], "not a FIX message"),
    ],
)
def test_garbled_message_is_skipped_and_the_next_one_read(corrupt: Callable[[bytes], bytes], why: str) -> None:
    """A message with a wrong checksum or length, or noise, is dropped with a reason; the stream goes on."""
    framer = parse.Framer()
    good = message(2, "OK")
    out = framer.feed(corrupt(message(1, "BAD")) + good)
    assert out == [good]
    assert any(why in g for g in framer.garbled)


def test_fields_report_a_tag_without_value_and_a_bad_tag() -> None:
    assert parse.fields("8=FIX.4.4\x0135=D\x0111=\x01")[1] == "tag 11 has no value"
    assert parse.fields("8=FIX.4.4\x0135=D\x01x1=2\x01")[1].startswith("invalid tag number")
    assert parse.fields("8=FIX.4.4\x0135=D\x0111=A\x01") == ({8: "FIX.4.4", 35: "D", 11: "A"}, "")


_tag_texts = st.one_of(st.integers(1, 20_000).map(str), st.sampled_from(["", "0", "035", "x1", "1x", "٣", " 35", "+5"]))
_pieces = st.lists(st.tuples(_tag_texts, st.sampled_from(["=", ""]), st.text("AB=1 .", max_size=4)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(_pieces, st.booleans())
def test_property_fast_field_reading_agrees_with_the_checked_one(
    pieces: list[tuple[str, str, str]], trailing_soh: bool
) -> None:
    """The one-pass reading of a message gives what the field-by-field check gives, for any input:
    the same fields and the same problem named."""
    raw = "\x01".join(f"{t}{eq}{v}" for t, eq, v in pieces) + ("\x01" if trailing_soh else "")
    assert parse.fields(raw) == parse._checked_fields(raw)


_noise = st.sampled_from(
    [
        b"",
        b"garbage",
        b"8=FIX",
        b"8=FIX.4.4\x019=x\x01",
        b"\x01\x01",
        b"10=000\x01",
        message(99, "BAD")[:-4] + b"999\x01",
        shorter_body_length(message(98, "BAD")),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_noise, st.booleans()), min_size=1, max_size=8),
    st.lists(st.integers(min_value=1, max_value=400), max_size=10),
)
def test_property_framer_gives_the_same_messages_whatever_the_reads(
    parts: list[tuple[bytes, bool]], cuts: list[int]
) -> None:
    """Good and garbled pieces in any order, read in any chunks: the same good messages come out as
    when the stream is read one byte at a time (whole reads take the framer's quick path, a
    trickle its careful one)."""
    stream = b"".join(noise + (message(i, f"C{i}") if good else b"") for i, (noise, good) in enumerate(parts))
    chunked, trickled = parse.Framer(), parse.Framer()
    got, pos = [], 0
    for size in cuts:
        got += chunked.feed(stream[pos : pos + size])
        pos += size
    got += chunked.feed(stream[pos:])
    expected = [m for i in range(len(stream)) for m in trickled.feed(stream[i : i + 1])]
    assert got == expected


@pytest.mark.parametrize(
    "body, reason, tag",
    [
        (f"35=D|{HDR}|{ORDER}|35=0", 14, 35),  # ends in a second MsgType: not a Heartbeat
        (f"35=D|{HDR}|{ORDER}|38=900", 13, 38),
        (f"35=D|{HDR}|{ORDER}|11=A2", 13, 11),
        (f"35=D|34=2|49=OMS1|56=FIXPROXY|{ORDER}|52={build.stamp(T)}", 14, 52),
        (f"35=D|{HDR}|{ORDER}|58=", 4, 58),
        (f"35=D|{HDR}|{ORDER}|0=x", 0, 0),
        (f"35=D|{HDR}|{ORDER}|ab=x", parse.IGNORE, 0),
    ],
)
def test_fields_name_the_problem_of_a_malformed_message(body: str, reason: int, tag: int) -> None:
    """Repeated tags, header fields after the body, empty values and bad tag numbers come back as a
    Problem with the session Reject's reason (373) and tag (371); the fast reading agrees."""
    raw = framed(body).decode("latin-1")
    _, problem = parse.fields(raw)
    assert (problem.reason, problem.tag) == (reason, tag)
    assert parse.fields(raw) == parse._checked_fields(raw)


def test_fields_let_repeating_group_members_repeat() -> None:
    """PartyID (448) twice inside NoPartyIDs is a group, not a repeated tag."""
    raw = framed(
        f"35=D|{HDR}|11=A1|453=2|448=T1|447=D|452=11|448=T2|447=D|452=12|55=MSFT|54=1|38=100|40=2|"
        f"44=410|60={build.stamp(T)}"
    ).decode("latin-1")
    fields, problem = parse.fields(raw)
    assert problem == "" and fields[453] == "2"


def test_framer_drops_a_message_whose_msgtype_is_not_the_third_field() -> None:
    framer = parse.Framer()
    bad = framed(f"34=2|35=0|49=OMS1|52={build.stamp(T)}|56=FIXPROXY")
    good = framed(f"35=0|{HDR}")
    assert framer.feed(bad + good) == [good]
    assert any("MsgType (35)" in why for why in framer.garbled)


@pytest.mark.parametrize(
    "tag, first, last",
    [
        (11, "A1", "A2"),  # repeated: the first and the last occurrence
        (35, "D", "D"),
        (55, "MSFT", "MSFT"),
        (1, "", ""),  # absent (a prefix of 11 is not tag 1)
        (8, "", ""),  # the first field is never read: no SOH before it
        (10, "000", "000"),  # the last field, up to its SOH
    ],
)
def test_first_and_last_value_read_one_field_without_parsing(tag: int, first: str, last: str) -> None:
    """A field's first and last value after the message's first field, or "" when it has none."""
    raw = "8=FIX.4.4\x019=5\x0135=D\x0111=A1\x0155=MSFT\x0111=A2\x0110=000\x01"
    assert (parse.first_value(raw, tag), parse.last_value(raw, tag)) == (first, last)


def test_last_value_of_a_message_without_trailing_soh_runs_to_the_end() -> None:
    """A value at the very end (no SOH after it) is read whole, and 111= is not 11=."""
    raw = "8=FIX.4.4\x01111=X\x0111=A1"
    assert (parse.last_value(raw, 11), parse.first_value(raw, 111)) == ("A1", "X")


_field_values = st.text(st.characters(blacklist_characters="\x01"), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 11, 35, 55, 379, 111, 9999]), _field_values), max_size=10))
def test_property_last_value_agrees_with_parse(pairs: list[tuple[int, str]]) -> None:
    """After a BeginString, ``last_value`` gives what ``parse`` gives for the tag ("" when absent)."""
    raw = "8=FIX.4.4\x01" + "".join(f"{tag}={value}\x01" for tag, value in pairs)
    fields = parse.parse(raw)
    for tag in (1, 11, 35, 55, 379, 111, 9999):
        assert parse.last_value(raw, tag) == fields.get(tag, "")
