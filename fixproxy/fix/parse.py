"""Reading FIX text: cutting a byte stream into messages, and a message into its fields.

The one parser of the proxy: every engine, the desk session, the journal's recovery, the audit and
replay read FIX here. Bytes are held as latin-1 text (one byte, one character), so a message's
BodyLength and CheckSum are the same counted on either side.
"""

from __future__ import annotations

SOH = "\x01"
_BEGIN = b"8=FIX"
MAX_MESSAGE = 1 << 20  # a BodyLength above this is garbage, not a message

#: Session-level message types (everything else is an application message).
ADMIN_TYPES = frozenset("012345A")
#: Header fields rebuilt on every send (a resend keeps only the body).
HEADER_TAGS = frozenset((8, 9, 10, 34, 35, 43, 49, 52, 56, 97, 122))

#: Tag number by its text, for the tags a message usually carries: a lookup instead of a parse.
TAG_NUMBERS = {str(n): n for n in range(1, 10_000)}


def parse(raw: str, sep: str = SOH) -> dict[int, str]:
    """Tag -> value for one message. Repeated tags (groups) keep their last value."""
    # Every engine message and replayed line is read here: the usual case in one pass of lookups,
    # anything else (a tag over 9999, a leading zero, a part that is not tag=value) part by part.
    out: dict[int, str] = {}
    try:
        for part in (raw[:-1] if raw[-1:] == sep else raw).split(sep):
            tag, eq, value = part.partition("=")
            if not eq:
                raise KeyError(tag)
            out[TAG_NUMBERS[tag]] = value
        return out
    except KeyError:
        return _parse_checked(raw, sep)


def _parse_checked(raw: str, sep: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in raw.split(sep):
        tag, eq, value = part.partition("=")
        if eq and 0 < len(tag) < 10 and tag.isascii() and tag.isdigit():
            out[int(tag)] = value
    return out


def first_value(raw: str, tag: int) -> str:
    """The value of the first ``tag`` field after a message's first field (BeginString), or "": a
    header field read without parsing the message."""
    key = f"{SOH}{tag}="
    return _value_at(raw, raw.find(key), len(key))


def last_value(raw: str, tag: int) -> str:
    """The value of the last ``tag`` field after a message's first field, or "": the value ``parse``
    gives it, read without parsing the message."""
    key = f"{SOH}{tag}="
    return _value_at(raw, raw.rfind(key), len(key))


def _value_at(raw: str, at: int, key_len: int) -> str:
    """The value of the field whose ``<SOH>tag=`` starts at ``at`` (-1: not found, "")."""
    if at < 0:
        return ""
    at += key_len
    end = raw.find(SOH, at)
    return raw[at:] if end < 0 else raw[at:end]


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
                        del buf[: len(buf) - keep]
                    break
                self.garbled.append(f"{start} bytes that are not a FIX message")
                del buf[:start]
            end = _message_end(buf, 0)
            if end is None:
                break
            if isinstance(end, str):
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
    if data[end8 + 1 : end8 + 3] != b"9=":
        return None if len(data) < end8 + 3 else "BodyLength (9) is not the second field"
    end9 = data.find(b"\x01", end8 + 3, end8 + 16)
    if end9 < 0:
        return "BodyLength (9) is not a number" if len(data) >= end8 + 16 else None
    digits = data[end8 + 3 : end9]
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
    if data[end9 + 1 : end9 + 4] != b"35=":
        return "MsgType (35) is not the third field"
    return total


class Problem(str):
    """Why a message is malformed (the text), with the session Reject's reason (373) and tag (371).
    ``reason`` IGNORE: not readable as a message at all; dropped unanswered, its number unused (as
    quickfix drops a message whose tag is not a number)."""

    reason: int
    tag: int


IGNORE = -1


def problem(text: str, reason: int, tag: int = 0) -> Problem:
    out = Problem(text)
    out.reason, out.tag = reason, tag
    return out


#: Header fields of FIX 4.2, 4.4 and FIXT.1.1 (ApplVerID 1128, CstmApplVerID 1129, ApplExtID 1156):
#: one after the first body field is out of order (373=14).
HEADER = frozenset(
    (
        8,
        9,
        34,
        35,
        43,
        49,
        50,
        52,
        56,
        57,
        90,
        91,
        97,
        115,
        116,
        122,
        128,
        129,
        142,
        143,
        144,
        145,
        212,
        213,
        347,
        369,
        370,
        627,
        628,
        629,
        630,
        1128,
        1129,
        1156,
    )
)
#: Tags that may appear more than once: members of the repeating groups of the order messages
#: (D, G, F in the FIX 4.2 and 4.4 dictionaries) and of the header's NoHops group. Any other tag
#: repeated is refused (373=13); groups are not forwarded, so their counts are not checked.
GROUP_MEMBERS = frozenset(
    (
        79,
        80,
        233,
        234,
        241,
        242,
        243,
        244,
        245,
        246,
        247,
        256,
        305,
        306,
        307,
        308,
        309,
        310,
        311,
        312,
        313,
        315,
        316,
        317,
        318,
        336,
        362,
        363,
        364,
        365,
        435,
        436,
        447,
        448,
        452,
        455,
        456,
        457,
        458,
        459,
        462,
        463,
        467,
        523,
        524,
        525,
        538,
        539,
        542,
        545,
        592,
        593,
        594,
        595,
        625,
        661,
        736,
        763,
        802,
        803,
        804,
        805,
        810,
        865,
        866,
        867,
        868,
        877,
        878,
        879,
        882,
        883,
        884,
        885,
        886,
        887,
        888,
        889,
        941,
        628,
        629,
        630,
    )
)


def fields(raw: str) -> tuple[dict[int, str], str]:
    """(tag -> value, "") for a framed message, or (what was parsed, the Problem with it)."""
    # Every message is read here: the well-formed case in one pass (a well-formed tag is a key of
    # TAG_NUMBERS, "012" or "x1" is not), anything else checked field by field. A repeated tag
    # leaves fewer keys than fields, and a header field after the body shows in the keys' order
    # (the header is a handful of keys at the front): both only cost a comparison when absent.
    if raw[-1:] == SOH:
        out: dict[int, str] = {}
        parts = raw[:-1].split(SOH)
        try:
            for part in parts:
                tag, _, value = part.partition("=")
                if not value:
                    return _checked_fields(raw)
                out[TAG_NUMBERS[tag]] = value
        except KeyError:
            return _checked_fields(raw)
        if len(out) != len(parts):
            return _checked_fields(raw)
        keys = iter(out)
        for number in keys:
            if number not in HEADER:
                break
        if not HEADER.isdisjoint(keys):
            return _checked_fields(raw)
        return out, ""
    return _checked_fields(raw)


def _checked_fields(raw: str) -> tuple[dict[int, str], str]:
    out: dict[int, str] = {}
    found: Problem | None = None
    in_body = False
    for part in raw.split(SOH):
        if not part:
            continue
        tag, eq, value = part.partition("=")
        if not (eq and tag.isdigit() and tag.isascii() and len(tag) < 10 and tag[0] != "0"):
            if (tag[:1] == "-" and tag[1:].isdigit()) or (tag[:1] == "0" and tag.isdigit() and eq):
                found = found or problem(f"invalid tag number {tag[:16]!r}", 0, 0)
            else:
                found = found or problem(f"invalid tag number {tag[:16]!r}", IGNORE)
            continue
        number = int(tag)
        if not value:
            found = found or problem(f"tag {tag} has no value", 4, number)
            continue
        if number in HEADER:
            if in_body:
                found = found or problem(f"Tag specified out of required order: {number}", 14, number)
        elif number != 10:
            in_body = True
        if number in out and number not in GROUP_MEMBERS:
            found = found or problem(f"Tag appears more than once: {number}", 13, number)
            continue  # the first value stays (the message is refused anyway)
        out[number] = value
    return out, found or ""


def body_of(raw: str) -> list[tuple[int, str]]:
    """The body fields of a stored message, in order (for a resend with a new header)."""
    out = []
    for part in raw.split(SOH):
        tag, eq, value = part.partition("=")
        if eq and tag.isdigit() and int(tag) not in HEADER_TAGS:
            out.append((int(tag), value))
    return out
