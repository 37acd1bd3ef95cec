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
    if data[end9 + 1:end9 + 4] != b"35=":
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


#: Header fields of FIX 4.2 and 4.4: one after the first body field is out of order (373=14).
HEADER = frozenset((8, 9, 34, 35, 43, 49, 50, 52, 56, 57, 90, 91, 97, 115, 116, 122, 128, 129, 142, 143, 144,
                    145, 212, 213, 347, 369, 370, 627, 628, 629, 630))
#: Tags that may appear more than once: members of the repeating groups of the order messages
#: (D, G, F in the FIX 4.2 and 4.4 dictionaries) and of the header's NoHops group. Any other tag
#: repeated is refused (373=13); groups are not forwarded, so their counts are not checked.
GROUP_MEMBERS = frozenset((
    79, 80, 233, 234, 241, 242, 243, 244, 245, 246, 247, 256, 305, 306, 307, 308, 309, 310, 311, 312, 313, 315,
    316, 317, 318, 336, 362, 363, 364, 365, 435, 436, 447, 448, 452, 455, 456, 457, 458, 459, 462, 463, 467, 523,
    524, 525, 538, 539, 542, 545, 592, 593, 594, 595, 625, 661, 736, 763, 802, 803, 804, 805, 810, 865, 866, 867,
    868, 877, 878, 879, 882, 883, 884, 885, 886, 887, 888, 889, 941, 628, 629, 630))


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
        for tag in keys:
            if tag not in HEADER:
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
            if tag[:1] == "-" and tag[1:].isdigit() or tag[:1] == "0" and tag.isdigit() and eq:
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


#: Fields a message must carry, by BeginString and MsgType (the FIX 4.2 and 4.4 dictionaries'
#: required body fields of the messages the proxy reads): refused with a session Reject naming the
#: tag (373=1), as a data dictionary would.
_REQUIRED_44 = {"D": (11, 40, 54, 60), "G": (11, 40, 41, 54, 60), "F": (11, 41, 54, 60),
                "1": (112,), "2": (7, 16), "3": (45,), "4": (36,), "A": (98, 108)}
REQUIRED = {"FIX.4.4": _REQUIRED_44,
            "FIX.4.2": {**_REQUIRED_44, "D": (11, 21, 40, 54, 55, 60), "G": (11, 21, 40, 41, 54, 55, 60),
                        "F": (11, 41, 54, 55, 60)}}
_REQUIRED_SETS = {version: {t: frozenset(tags) for t, tags in table.items()} for version, table in REQUIRED.items()}
NAMES = {7: "BeginSeqNo", 11: "ClOrdID", 16: "EndSeqNo", 21: "HandlInst", 36: "NewSeqNo", 38: "OrderQty",
         40: "OrdType", 41: "OrigClOrdID", 43: "PossDupFlag", 44: "Price", 45: "RefSeqNum", 52: "SendingTime",
         54: "Side", 55: "Symbol", 59: "TimeInForce", 60: "TransactTime", 97: "PossResend", 98: "EncryptMethod",
         99: "StopPx", 108: "HeartBtInt", 110: "MinQty", 111: "MaxFloor", 112: "TestReqID", 122: "OrigSendingTime",
         123: "GapFillFlag", 141: "ResetSeqNumFlag", 453: "NoPartyIDs"}
#: Quantity and price fields: a FIX float (digits, one optional point, an optional leading minus).
NUMERIC = (38, 44, 99, 110, 111)
_FLOAT = re.compile(r"-?(\d+\.?\d*|\.\d+)", re.ASCII)
#: Integer fields, and the NumInGroup fields of order messages.
INTEGER = (7, 16, 36, 45, 98, 108)
GROUP_COUNTS = (78, 232, 386, 453, 454, 457, 539, 711, 802, 804, 864, 887)
TIMESTAMP = (52, 60, 122)
_TIMESTAMP = re.compile(r"\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])-([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?",
                        re.ASCII)
#: Values the dictionaries allow (373=5 for any other), by BeginString.
_ENUMS_44 = {54: frozenset("123456789ABCDEFG"), 40: frozenset("12346789DEGIJKLMP"), 59: frozenset("01234567"),
             21: frozenset("123"), 43: frozenset("YN"), 97: frozenset("YN"), 123: frozenset("YN"),
             141: frozenset("YN")}
ENUMS = {"FIX.4.4": _ENUMS_44,
         "FIX.4.2": {**_ENUMS_44, 54: frozenset("123456789"), 40: frozenset("123456789ABCDEFGHIP"),
                     59: frozenset("0123456")}}
#: MsgTypes of the dictionaries (any other is refused 373=11).
MSG_TYPES = {"FIX.4.2": frozenset("0 1 2 3 4 5 6 7 8 9 A B C D E F G H J K L M N P Q R S T V W X Y Z a b c d e f g h "
                                  "i j k l m".split())}
MSG_TYPES["FIX.4.4"] = MSG_TYPES["FIX.4.2"] | frozenset(
    "n o p q r s t u v w x y z AA AB AC AD AE AF AG AH AI AJ AK AL AM AN AO AP AQ AR AS AT AU AV AW AX AY AZ BA BB "
    "BC BD BE BF BG BH".split())
#: Fields checked on every message they appear in (most messages carry none of them).
_EVERYWHERE = (43, 97, 122, 123, 141)
#: Checked on an order message: the usual fields one by one, the rarer ones as present.
_ORDER_TAGS = frozenset((99, 110, 111) + _EVERYWHERE + GROUP_COUNTS)
_OTHER_TAGS = frozenset(INTEGER + _EVERYWHERE)
_ENUM, _TIME, _FLOAT_KIND, _INT = range(4)
_KIND = {**{t: _ENUM for t in _ENUMS_44}, **{t: _TIME for t in TIMESTAMP}, **{t: _FLOAT_KIND for t in NUMERIC},
         **{t: _INT for t in INTEGER + GROUP_COUNTS}}


def good_timestamp(value: str) -> bool:
    """A FIX UTCTimestamp: YYYYMMDD-HH:MM:SS with up to nine decimals."""
    return _TIMESTAMP.fullmatch(value) is not None


def _name(tag: int) -> str:
    return f"{NAMES[tag]} ({tag})" if tag in NAMES else f"tag {tag}"


def check(begin_string: str, msg_type: str, fields: dict[int, str],
          more_types: frozenset[str] = frozenset()) -> tuple[int, int, str] | None:
    """(SessionRejectReason, tag, text) for a message its dictionary refuses: an unknown MsgType
    (``more_types`` extend the dictionary's), a required field missing, a number or time that is
    not one, a value outside the field's list; None when its form is right (values are the core's)."""
    if msg_type not in MSG_TYPES.get(begin_string, MSG_TYPES["FIX.4.4"]) and msg_type not in more_types:
        return 11, 35, f"Invalid MsgType ({msg_type[:16]})"
    required = _REQUIRED_SETS.get(begin_string, _REQUIRED_SETS["FIX.4.4"]).get(msg_type)
    if required is not None and not fields.keys() >= required:
        tag = min(required.difference(fields))
        return 1, tag, f"Required tag missing: {_name(tag)}"
    enums = ENUMS.get(begin_string, _ENUMS_44)
    bad = 0
    if msg_type in ("D", "G", "F"):
        # Every order passes here: its usual fields checked in line (a loop costs more).
        get = fields.get
        v = get(38)
        if v is not None and not (v.isdigit() and v.isascii()) and _FLOAT.fullmatch(v) is None:
            bad = 38
        v = get(44)
        if v is not None and not bad and _FLOAT.fullmatch(v) is None:
            bad = 44
        if not bad:
            v = get(21)
            if v is not None and v not in enums[21]:
                bad = 21
            elif get(40, "1") not in enums[40]:
                bad = 40
            elif get(54, "1") not in enums[54]:
                bad = 54
            elif get(59, "0") not in enums[59]:
                bad = 59
            elif _TIMESTAMP.fullmatch(get(60, "20000101-00:00:00")) is None:
                bad = 60
        present = _ORDER_TAGS.intersection(fields)
    else:
        present = _OTHER_TAGS.intersection(fields)
    for tag in present:
        value = fields[tag]
        kind = _KIND[tag]
        if kind == _ENUM:
            ok = value in enums[tag]
        elif kind == _TIME:
            ok = _TIMESTAMP.fullmatch(value) is not None
        elif value.isdigit() and value.isascii():  # the usual quantity, and every integer
            continue
        else:
            ok = kind == _FLOAT_KIND and _FLOAT.fullmatch(value) is not None
        if not ok and (not bad or tag < bad):
            bad = tag  # the lowest tag first, as quickfix's dictionary reads a message in tag order
    if not bad:
        return None
    kind = _KIND[bad]
    if kind == _ENUM:
        return 5, bad, f"Value is incorrect (out of range) for this tag: {_name(bad)}"
    what = {_TIME: "a UTC timestamp", _FLOAT_KIND: "a number", _INT: "an integer"}[kind]
    return 6, bad, f"Incorrect data format for value: {_name(bad)} is not {what}"


def check_order(msg_type: str, fields: dict[int, str], begin_string: str = "FIX.4.4") -> tuple[int, int, str] | None:
    """``check`` of an order message (D, G, F)."""
    return check(begin_string, msg_type, fields)


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
