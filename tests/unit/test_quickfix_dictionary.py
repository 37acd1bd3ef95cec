"""The risk-desk session's quickfix dictionary: FIX 4.4 with the admin messages merged in."""

from __future__ import annotations

from pathlib import Path

import quickfix as fix

from fixproxy.engines.quickfix.dictionary import build_dictionary
from fixproxy.engines.quickfix.settings import dictionary


def test_extended_dictionary_validates_kill_switch_request(tmp_path: Path) -> None:
    """quickfix loads the merged FIX 4.4 dictionary and validates a U1 with its required fields."""
    dd = fix.DataDictionary(str(build_dictionary(dictionary("FIX.4.4"), tmp_path / "FIX44-admin.xml")))
    good = fix.Message(
        "8=FIX.4.4\x019=0\x0135=U1\x0149=RISK\x0156=FIXPROXY\x0134=2\x0152=20261125-12:00:00\x01"
        "2328=R1\x012329=100\x0120101=account:A1\x0158=why\x0110=000\x01",
        dd,
        False,
    )
    dd.validate(good)
    missing = fix.Message(
        "8=FIX.4.4\x019=0\x0135=U1\x0149=RISK\x0156=FIXPROXY\x0134=2\x0152=20261125-12:00:00\x01"
        "2328=R1\x012329=1\x0158=why\x0110=000\x01",
        dd,
        False,
    )
    try:
        dd.validate(missing)
    except fix.RequiredTagMissing:
        pass
    else:
        raise AssertionError("a U1 without KillScope (20101) passed validation")
