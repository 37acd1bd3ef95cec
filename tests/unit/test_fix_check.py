"""fix/check.py: what the FIX 4.2 and 4.4 dictionaries accept; the number grammar the codec shares."""

from __future__ import annotations

import pytest

from fixproxy.core import events as ev
from fixproxy.fix import check, codec


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 44: "190"}, None),
        ({11: "A", 54: "1", 40: "2"}, (1, 60)),
        ({11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 44: "1e5"}, (6, 44)),
        (
            {11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 38: "-100"},
            None,
        ),  # a number: the core refuses its value
    ],
)
def test_order_form_check(fields: dict[int, str], expected: tuple[int, int] | None) -> None:
    """Required fields and number formats of a NewOrderSingle, as a data dictionary checks them."""
    got = check.check_order("D", fields)
    assert (got[:2] if got else None) == expected


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({11: "A", 54: "Z", 60: "20261125-12:00:00", 40: "2"}, (5, 54)),
        ({11: "A", 54: "1", 60: "now", 40: "2"}, (6, 60)),
        ({11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 453: "two"}, (6, 453)),
        ({11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2", 59: "X"}, (5, 59)),
    ],
)
def test_order_values_outside_the_dictionary(fields: dict[int, str], expected: tuple[int, int]) -> None:
    """Values outside a field's list (373=5) and times or counts that are not one (373=6)."""
    assert check.check("FIX.4.4", "D", fields)[:2] == expected


def test_fix42_order_needs_handlinst_and_symbol() -> None:
    fields = {11: "A", 54: "1", 60: "20261125-12:00:00", 40: "2"}
    assert check.check("FIX.4.4", "D", fields) is None
    assert check.check("FIX.4.2", "D", fields)[:2] == (1, 21)


@pytest.mark.parametrize(
    "text, number",
    [
        ("100", True),
        ("12.", True),
        ("12.5", True),
        (".5", True),
        ("-100", True),
        ("-.5", True),
        ("0", True),
        ("", False),
        ("-", False),
        (".", False),
        ("+5", False),
        ("1e5", False),
        (" 1", False),
        ("1 ", False),
        ("1,000", False),
        ("1.5.5", False),
        ("NaN", False),
        ("\u0663", False),
        ("0x10", False),
    ],
)
def test_number_grammar_is_a_fix_float(text: str, number: bool) -> None:
    """One grammar of a FIX float: ASCII digits, at most one point, an optional leading minus."""
    assert check.is_number(text) is number


@pytest.mark.parametrize(
    "text, form, reason",
    [
        ("100", None, ""),
        ("-100", None, "OrderQty (38) is not a positive decimal number: '-100'"),  # a number; its value refused
        ("0", None, "OrderQty (38) must be a positive number below"),
        ("1e5", (6, 38), "OrderQty (38) is not a decimal number: '1e5'"),
        ("+5", (6, 38), "OrderQty (38) is not a decimal number: '+5'"),
    ],
)
def test_quantity_form_is_the_dictionarys_and_its_value_the_codecs(
    text: str, form: tuple[int, int] | None, reason: str
) -> None:
    """The same grammar for both: a form the dictionary refuses (373=6) the codec refuses too; a sign
    or zero passes the form and is refused as a value, with its own sentence."""
    fields = {35: "D", 34: "2", 11: "A", 55: "MSFT", 54: "1", 60: "20261125-12:00:00", 40: "1", 38: text}
    got = check.check("FIX.4.4", "D", fields)
    assert (got[:2] if got else None) == form
    event = codec.oms_to_event(fields, "oms1", 0)
    if reason:
        assert isinstance(event, ev.InvalidMessage) and event.reason.startswith(reason)
    else:
        assert isinstance(event, ev.NewOrder)
