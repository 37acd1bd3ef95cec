"""FIX on the wire: cutting a byte stream into messages, checking them, building them.

Bytes are read and written as latin-1 (one byte, one character), so a message's BodyLength
and CheckSum are the same counted on either side.
"""

from __future__ import annotations

import re

from ...codec import TAG_NUMBERS
from ...timefmt import fix_timestamp_ms

SOH = "\x01"
_BEGIN = b"8=FIX"
MAX_MESSAGE = 1 << 20  # a BodyLength above this is garbage, not a message

#: Session-level message types (everything else is an application message).
ADMIN_TYPES = frozenset("0 1 2 3 4 5 A".split())
#: Header fields rebuilt on every send (a resend keeps only the body).
HEADER_TAGS = frozenset((8, 9, 10, 34, 35, 43, 49, 52, 56, 97, 122))


class Framer:
    """Cuts a TCP byte stream into FIX messages; garbled input is skipped up to the next ``8=FIX``."""

    __slots__ = ("buf", "garbled")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.garbled: list[str] = []  # why each skipped piece was skipped, taken by the caller

    def feed(self, data: bytes) -> list[bytes]:
        buf = self.buf
        out: list[bytes] = []
        if not buf:
            # The usual read: whole messages, nothing held from the last one. They are cut from the
            # bytes as read; a partial or doubtful rest goes through the buffer below.
            pos = 0
            while data.startswith(_BEGIN, pos):
                end = _message_end(data, pos)
                if type(end) is not int:
                    break
                out.append(data[pos:end])
                pos = end
            if pos == len(data):
                return out
            data = data[pos:]
        buf += data
        while buf:
            if not buf.startswith(_BEGIN):
                start = buf.find(_BEGIN)
                if start < 0:
                    # keep a tail that may be the start of the next message
                    keep = 4 if len(buf) >= 4 else len(buf)
                    if len(buf) > keep:
                        self.garbled.append(f"{len(buf) - keep} bytes that are not a FIX message")
                        del buf[:len(buf) - keep]
                    break
                self.garbled.append(f"{start} bytes that are not a FIX message")
                del buf[:start]
            end = _message_end(buf, 0)
            if end is None:
                break
            if type(end) is str:
                self._skip(end)
                continue
            out.append(bytes(buf[:end]))
            del buf[:end]
        return out

    def _skip(self, why: str) -> None:
        self.garbled.append(why)
        start = self.buf.find(_BEGIN, 1)
        if start < 0:
            # No next message yet: keep a tail that may be the start of one (its rest still to come).
            start = max(1, len(self.buf) - len(_BEGIN) + 1)
        del self.buf[:start]


def _message_end(data: bytes | bytearray, pos: int) -> int | str | None:
    """For the message that starts (``8=FIX``) at ``pos``: where it ends if it is whole and sound,
    None if more bytes are needed to tell, or why it is garbled."""
    end8 = data.find(b"\x01", pos, pos + 32)
    if end8 < 0:
        return "no BeginString (8) field" if len(data) - pos >= 32 else None
    if data[end8 + 1:end8 + 3] != b"9=":
        return None if len(data) < end8 + 3 else "BodyLength (9) is not the second field"
    end9 = data.find(b"\x01", end8 + 3, end8 + 16)
    if end9 < 0:
        return "BodyLength (9) is not a number" if len(data) >= end8 + 16 else None
    digits = data[end8 + 3:end9]
    if not digits.isdigit() or int(digits) > MAX_MESSAGE:
        return "BodyLength (9) is not a number"
    body_end = end9 + 1 + int(digits)
    total = body_end + 7  # 10=nnn<SOH>
    if len(data) < total:
        return None
    trailer = data[body_end:total]
    if not (trailer.startswith(b"10=") and trailer[6] == 1 and trailer[3:6].isdigit()):
        return "BodyLength (9) does not end the message at CheckSum (10)"
    if sum(data[pos:body_end]) % 256 != int(trailer[3:6]):
        return "CheckSum (10) does not match"
    return total


def fields(raw: str) -> tuple[dict[int, str], str]:
    """(tag -> value, "") for a framed message, or (what was parsed, why it is malformed)."""
    # Every message is read here: the well-formed case in one pass (a well-formed tag is a key of
    # TAG_NUMBERS, "012" or "x1" is not), anything else checked field by field.
    if raw[-1:] == SOH:
        out: dict[int, str] = {}
        try:
            for part in raw[:-1].split(SOH):
                tag, _, value = part.partition("=")
                if not value:
                    return _checked_fields(raw)
                out[TAG_NUMBERS[tag]] = value
        except KeyError:
            return _checked_fields(raw)
        return out, ""
    return _checked_fields(raw)


def _checked_fields(raw: str) -> tuple[dict[int, str], str]:
    out: dict[int, str] = {}
    problem = ""
    for part in raw.split(SOH):
        if not part:
            continue
        tag, eq, value = part.partition("=")
        if not (eq and tag.isdigit() and tag.isascii() and len(tag) < 10 and tag[0] != "0"):
            problem = problem or f"invalid tag number {tag[:16]!r}"
            continue
        if not value:
            problem = problem or f"tag {tag} has no value"
            continue
        out[int(tag)] = value
    return out, problem


#: Fields an order message must carry (FIX 4.2 and 4.4 both), by MsgType: refused by the session
#: layer with a session Reject naming the tag, as a data dictionary would.
REQUIRED = {"D": ((11, "ClOrdID"), (54, "Side"), (60, "TransactTime"), (40, "OrdType")),
            "G": ((11, "ClOrdID"), (41, "OrigClOrdID"), (54, "Side"), (60, "TransactTime"), (40, "OrdType")),
            "F": ((11, "ClOrdID"), (41, "OrigClOrdID"), (54, "Side"), (60, "TransactTime"))}
#: Quantity and price fields: a FIX float (digits, one optional point, an optional leading minus).
NUMERIC = ((38, "OrderQty"), (44, "Price"), (99, "StopPx"), (110, "MinQty"), (111, "MaxFloor"))
_FLOAT = re.compile(r"-?(\d+\.?\d*|\.\d+)")


def check_order(msg_type: str, fields: dict[int, str]) -> tuple[int, int, str] | None:
    """(SessionRejectReason, tag, text) for an order message missing a required field or carrying
    a quantity or price that is not a number; None when its form is right (values are the core's)."""
    for tag, name in REQUIRED.get(msg_type, ()):
        if tag not in fields:
            return 1, tag, f"Required tag missing: {name} ({tag})"
    if msg_type in REQUIRED:
        for tag, name in NUMERIC:
            value = fields.get(tag)
            if value is not None and not _FLOAT.fullmatch(value):
                return 6, tag, f"Incorrect data format for value: {name} ({tag}) is not a number"
    return None


def body_of(raw: str) -> list[tuple[int, str]]:
    """The body fields of a stored message, in order (for a resend with a new header)."""
    out = []
    for part in raw.split(SOH):
        tag, eq, value = part.partition("=")
        if eq and tag.isdigit() and int(tag) not in HEADER_TAGS:
            out.append((int(tag), value))
    return out


def build(begin_string: str, msg_type: str, seq: int, sender: str, target: str, sending_time: str,
          body: list[tuple[int, str]], header: list[tuple[int, str]] | None = None) -> bytes:
    """A complete message; ``header`` holds 43/97/122 when resending. Header fields come in tag order."""
    head = f"35={msg_type}\x0134={seq}\x01"
    if header:
        extra = dict(header)
        if 43 in extra:
            head += f"43={extra[43]}\x01"
        head += f"49={sender}\x0152={sending_time}\x0156={target}\x01"
        for tag in (97, 122):
            if tag in extra:
                head += f"{tag}={extra[tag]}\x01"
    else:
        head += f"49={sender}\x0152={sending_time}\x0156={target}\x01"
    text = (head + "".join([f"{tag}={value}\x01" for tag, value in body])).encode("latin-1", "replace")
    start = f"8={begin_string}\x019={len(text)}\x01".encode()
    checksum = (sum(start) + sum(text)) % 256
    return b"%s%s10=%03d\x01" % (start, text, checksum)


#: SendingTime (52) of every message the engine sends.
stamp = fix_timestamp_ms
