"""What the FIX 4.2, 4.4 and 5.0SP2 (over FIXT.1.1) dictionaries accept: message types, required fields, value forms.

A message refused here gets a session Reject (35=3) naming the reason (373) and the tag (371), as a
data dictionary would; the values themselves are the codec's and the core's to judge.
"""

from __future__ import annotations

import re
import string

#: Fields a message must carry, by BeginString and MsgType (the FIX 4.2 and 4.4 dictionaries'
#: required body fields of the messages the proxy reads): refused with a session Reject naming the
#: tag (373=1), as a data dictionary would.
_REQUIRED_44 = {
    "D": (11, 40, 54, 60),
    "G": (11, 40, 41, 54, 60),
    "F": (11, 41, 54, 60),
    "1": (112,),
    "2": (7, 16),
    "3": (45,),
    "4": (36,),
    "A": (98, 108),
}
REQUIRED = {
    "FIX.4.4": _REQUIRED_44,
    "FIX.4.2": {
        **_REQUIRED_44,
        "D": (11, 21, 40, 54, 55, 60),
        "G": (11, 21, 40, 41, 54, 55, 60),
        "F": (11, 41, 54, 55, 60),
    },
    # FIXT.1.1 (FIXT11.xml) carrying FIX 5.0SP2 (FIX50SP2.xml): OrigClOrdID (41) is optional in the
    # dictionary (the codec refuses a cancel or replace without it), and a Logon names its
    # application version (DefaultApplVerID 1137).
    "FIXT.1.1": {
        **_REQUIRED_44,
        "G": (11, 40, 54, 60),
        "F": (11, 54, 60),
        "A": (98, 108, 1137),
    },
}
_REQUIRED_SETS = {version: {t: frozenset(tags) for t, tags in table.items()} for version, table in REQUIRED.items()}
NAMES = {
    7: "BeginSeqNo",
    11: "ClOrdID",
    16: "EndSeqNo",
    21: "HandlInst",
    36: "NewSeqNo",
    38: "OrderQty",
    40: "OrdType",
    41: "OrigClOrdID",
    43: "PossDupFlag",
    44: "Price",
    45: "RefSeqNum",
    52: "SendingTime",
    54: "Side",
    55: "Symbol",
    59: "TimeInForce",
    60: "TransactTime",
    97: "PossResend",
    98: "EncryptMethod",
    99: "StopPx",
    108: "HeartBtInt",
    110: "MinQty",
    111: "MaxFloor",
    112: "TestReqID",
    122: "OrigSendingTime",
    123: "GapFillFlag",
    141: "ResetSeqNumFlag",
    453: "NoPartyIDs",
    1128: "ApplVerID",
    1137: "DefaultApplVerID",
}
#: Quantity and price fields: their form is a FIX float (``is_number``).
NUMERIC = (38, 44, 99, 110, 111)
#: A FIX float (Qty, Price ...): ASCII digits with at most one point and an optional leading minus;
#: no plus, exponent, space or separator. The one grammar of a number on the wire: the dictionaries'
#: form (373=6) here, and the codec's reading of a quantity or price (which adds "positive").
_FLOAT = re.compile(r"-?(\d+\.?\d*|\.\d+)", re.ASCII)
#: Integer fields, and the NumInGroup fields of order messages.
INTEGER = (7, 16, 36, 45, 98, 108)
GROUP_COUNTS = (78, 232, 386, 453, 454, 457, 539, 711, 802, 804, 864, 887)
TIMESTAMP = (52, 60, 122)
_TIMESTAMP = re.compile(
    r"\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])-([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?", re.ASCII
)
#: Values the dictionaries allow (373=5 for any other), by BeginString.
_ENUMS_44 = {
    54: frozenset("123456789ABCDEFG"),
    40: frozenset("12346789DEGIJKLMP"),
    59: frozenset("01234567"),
    21: frozenset("123"),
    43: frozenset("YN"),
    97: frozenset("YN"),
    123: frozenset("YN"),
    141: frozenset("YN"),
}
ENUMS = {
    "FIX.4.4": _ENUMS_44,
    "FIX.4.2": {
        **_ENUMS_44,
        54: frozenset("123456789"),
        40: frozenset("123456789ABCDEFGHIP"),
        59: frozenset("0123456"),
    },
    "FIXT.1.1": {
        **_ENUMS_44,
        54: frozenset("123456789ABCDEFGH"),
        40: frozenset("123456789ABCDEFGHIJKLMPQRS"),
        59: frozenset("0123456789ABC"),
    },
}
#: MsgTypes of the dictionaries (any other is refused 373=11).
MSG_TYPES = {"FIX.4.2": frozenset("0123456789ABCDEFGHJKLMNPQRSTVWXYZabcdefghijklm")}
MSG_TYPES["FIX.4.4"] = (
    MSG_TYPES["FIX.4.2"]
    | frozenset("nopqrstuvwxyz")
    | {"A" + c for c in string.ascii_uppercase}
    | {"B" + c for c in "ABCDEFGH"}
)
#: FIXT11.xml's session messages (and XMLnonFIX) with FIX50SP2.xml's application messages.
MSG_TYPES["FIXT.1.1"] = (
    frozenset("012345Anabcdefghijklmopqrstuvwxyz6789BCDEFGHJKLMNPQRSTVWXYZ")
    | {"A" + c for c in string.ascii_uppercase}
    | {"B" + c for c in string.ascii_uppercase}
    | {"C" + c for c in "ABCDEFGHIJKLMNOQRSTUVWXYZ"}
    | {"D" + c for c in string.ascii_uppercase}
    | {"E" + c for c in "AB"}
)
#: Fields checked on every message they appear in (most messages carry none of them).
_EVERYWHERE = (43, 97, 122, 123, 141)
#: Checked on an order message: the usual fields one by one, the rarer ones as present.
_ORDER_TAGS = frozenset((99, 110, 111, *_EVERYWHERE, *GROUP_COUNTS))
_OTHER_TAGS = frozenset(INTEGER + _EVERYWHERE)
_ENUM, _TIME, _FLOAT_KIND, _INT = range(4)
_KIND = {
    **{t: _ENUM for t in _ENUMS_44},
    **{t: _TIME for t in TIMESTAMP},
    **{t: _FLOAT_KIND for t in NUMERIC},
    **{t: _INT for t in INTEGER + GROUP_COUNTS},
}


def is_number(value: str) -> bool:
    """A FIX float: ``12``, ``12.``, ``12.5``, ``.5``, each with an optional leading ``-``."""
    return _FLOAT.fullmatch(value) is not None


def good_timestamp(value: str) -> bool:
    """A FIX UTCTimestamp: YYYYMMDD-HH:MM:SS with up to nine decimals."""
    return _TIMESTAMP.fullmatch(value) is not None


def tag_name(tag: int) -> str:
    return f"{NAMES[tag]} ({tag})" if tag in NAMES else f"tag {tag}"


def check(
    begin_string: str, msg_type: str, fields: dict[int, str], more_types: frozenset[str] = frozenset()
) -> tuple[int, int, str] | None:
    """(SessionRejectReason, tag, text) for a message its dictionary refuses: an unknown MsgType
    (``more_types`` extend the dictionary's), a required field missing, a number or time that is
    not one, a value outside the field's list; None when its form is right (values are the core's)."""
    if msg_type not in MSG_TYPES.get(begin_string, MSG_TYPES["FIX.4.4"]) and msg_type not in more_types:
        return 11, 35, f"Invalid MsgType ({msg_type[:16]})"
    required = _REQUIRED_SETS.get(begin_string, _REQUIRED_SETS["FIX.4.4"]).get(msg_type)
    if required is not None and not fields.keys() >= required:
        tag = min(required.difference(fields))
        return 1, tag, f"Required tag missing: {tag_name(tag)}"
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
        return 5, bad, f"Value is incorrect (out of range) for this tag: {tag_name(bad)}"
    what = {_TIME: "a UTC timestamp", _FLOAT_KIND: "a number", _INT: "an integer"}[kind]
    return 6, bad, f"Incorrect data format for value: {tag_name(bad)} is not {what}"


def check_order(msg_type: str, fields: dict[int, str], begin_string: str = "FIX.4.4") -> tuple[int, int, str] | None:
    """``check`` of an order message (D, G, F)."""
    return check(begin_string, msg_type, fields)
