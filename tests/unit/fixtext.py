"""FIX text for the unit tests of the text layer and the native engine: whole messages, exact bytes."""

from __future__ import annotations

from fixproxy.fix import build

T = 1_795_600_000_000_000_000  # 2026-11-25
#: Header fields of an OMS message after MsgType, and the body of a sound order ("|" for SOH).
HDR = f"34=2|49=OMS1|52={build.stamp(T)}|56=FIXPROXY"
ORDER = f"11=A1|55=MSFT|54=1|38=100|40=2|44=410|60={build.stamp(T)}"


def message(seq: int = 1, cl: str = "A1", msg_type: str = "D") -> bytes:
    """A whole order from OMS1, as the builder writes it."""
    return build.build(
        "FIX.4.4",
        msg_type,
        seq,
        "OMS1",
        "FIXPROXY",
        build.stamp(T),
        [(11, cl), (55, "AAPL"), (54, "1"), (38, "100"), (40, "2"), (44, "190")],
    )


def framed(body: str) -> bytes:
    """``8=FIX.4.4|9=<len>|<body>|10=<sum>|`` with | as SOH: exact bytes with a right length and sum."""
    text = body.replace("|", "\x01") + "\x01"
    head = f"8=FIX.4.4\x019={len(text)}\x01"
    return f"{head}{text}10={sum((head + text).encode('latin-1')) % 256:03d}\x01".encode("latin-1")


def shorter_body_length(data: bytes) -> bytes:
    """``data`` with a BodyLength (9) seven bytes short of the message."""
    length = data.split(b"\x019=", 1)[1].split(b"\x01", 1)[0]
    return data.replace(b"\x019=%s\x01" % length, b"\x019=%d\x01" % (int(length) - 7), 1)
