"""fix/build.py: whole messages with their header, and frames for an engine that adds the header."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from fixproxy.fix import build, parse

from .fixtext import message


def test_built_message_has_header_in_tag_order_and_a_checksum_the_framer_accepts() -> None:
    """Header 8, 9, 35, 34, 49, 52, 56 in that order; the framer takes it back whole."""
    data = message(7)
    text = data.decode()
    tags = [int(p.split("=", 1)[0]) for p in text.split("\x01") if p]
    assert tags[:7] == [8, 9, 35, 34, 49, 52, 56] and tags[-1] == 10
    framer = parse.Framer()
    assert framer.feed(data) == [data] and not framer.garbled


def test_resend_header_carries_possdup_and_orig_sending_time_in_tag_order() -> None:
    data = build.build(
        "FIX.4.4",
        "8",
        3,
        "FIXPROXY",
        "OMS1",
        "20261125-12:00:01.000",
        [(11, "A")],
        [(43, "Y"), (122, "20261125-12:00:00.000")],
    ).decode()
    assert (
        "\x0134=3\x0143=Y\x0149=FIXPROXY\x0152=20261125-12:00:01.000\x0156=OMS1\x01122=20261125-12:00:00.000\x01"
        in data
    )


def test_frame_has_begin_string_body_length_and_checksum_around_the_body() -> None:
    """A frame: 8, 9, 35, the body, 10; its BodyLength and CheckSum are those of the bytes."""
    data = build.frame("FIX.4.2", "1", [(112, "TEST1")])
    assert data == b"8=FIX.4.2\x019=15\x0135=1\x01112=TEST1\x0110=%03d\x01" % (sum(data[:-7]) % 256)
    fields = {8: "FIX.4.2", 9: "15", 35: "1", 112: "TEST1", 10: data[-4:-1].decode()}
    assert parse.fields(data.decode("latin-1")) == (fields, "")


def test_frame_counts_the_bytes_its_encoder_gives() -> None:
    """BodyLength and CheckSum count the bytes ``encode`` makes of the text (two for an e-acute in UTF-8)."""
    latin = build.frame("FIX.4.4", "j", [(58, "caf\xe9")])
    utf8 = build.frame("FIX.4.4", "j", [(58, "caf\xe9")], lambda text: text.encode("utf-8"))
    assert b"\x019=13\x01" in latin and b"\x019=14\x01" in utf8
    assert parse.Framer().feed(latin) == [latin] and parse.Framer().feed(utf8) == [utf8]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 9999), st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=8)),
        max_size=6,
    )
)
def test_property_built_and_framed_messages_pass_the_framer(body: list[tuple[int, str]]) -> None:
    """Whatever the body, ``build`` and ``frame`` give a message whose length and sum the framer accepts."""
    built = build.build("FIX.4.4", "8", 9, "FIXPROXY", "OMS1", "20261125-12:00:00.000", body)
    framed = build.frame("FIX.4.4", "8", body)
    framer = parse.Framer()
    assert framer.feed(built + framed) == [built, framed] and not framer.garbled
