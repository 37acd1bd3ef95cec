"""FIX versions the proxy speaks, and what each puts on the wire: BeginString (8), and for FIX 5.0SP2
the transport FIXT.1.1 with its DefaultApplVerID (1137) on Logon and ApplVerID (1128) on messages.

The application layer of FIX 5.0SP2 is read and written as FIX 4.4's (the same core types, the same
codec: ``fix42`` False); the differences are data in check.py (required fields, values, MsgTypes).
"""

from __future__ import annotations

#: The transport BeginString of FIX 5.0 and later.
FIXT = "FIXT.1.1"
#: fix_version of the config -> BeginString (8).
BEGIN_STRING = {"FIX.4.2": "FIX.4.2", "FIX.4.4": "FIX.4.4", "FIX.5.0SP2": FIXT}
#: ApplVerID (1128) and DefaultApplVerID (1137) values, by the version they name.
APPL_VER_IDS = {
    "0": "FIX.2.7",
    "1": "FIX.3.0",
    "2": "FIX.4.0",
    "3": "FIX.4.1",
    "4": "FIX.4.2",
    "5": "FIX.4.3",
    "6": "FIX.4.4",
    "7": "FIX.5.0",
    "8": "FIX.5.0SP1",
    "9": "FIX.5.0SP2",
    "10": "FIX.5.0SP2 EP",
}
#: The one application version the proxy speaks over FIXT.1.1 (FIX.5.0SP2).
APPL_VER_ID = "9"


def begin_string(fix_version: str) -> str:
    """BeginString (8) of a configured ``fix_version`` ("FIX.5.0SP2" travels over "FIXT.1.1")."""
    return BEGIN_STRING.get(fix_version, fix_version)


def appl_ver_problem(tag: int, value: str | None) -> str:
    """Why a DefaultApplVerID (1137) or ApplVerID (1128) of a FIXT.1.1 message is refused ("" when
    it names FIX.5.0SP2, or for a 1128 left out: the session's default then applies)."""
    if value == APPL_VER_ID or (value is None and tag == 1128):
        return ""
    name = "DefaultApplVerID" if tag == 1137 else "ApplVerID"
    if value is None:
        return f"{name} ({tag}) is missing: a FIXT.1.1 Logon names its application version (9 = FIX.5.0SP2)"
    known = APPL_VER_IDS.get(value)
    shown = f"{value[:16]!a} ({known})" if known else f"{value[:16]!a}"
    return f"{name} ({tag}) {shown} is not supported: this session speaks FIX.5.0SP2 (9) only"
