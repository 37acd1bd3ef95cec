"""Limit layers: which one applies, field by field, and what a bad layer is refused with."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from fixproxy.core.risk.limits import LIMIT_FIELDS, LimitResolver, Limits, LimitSet, resolve

from .conftest import limits

SESSION, ACCOUNT, SYMBOL = "oms1", "ACC", "AAPL"

_LAYER_SCOPES = {
    "symbol": f"symbol:{SYMBOL}",
    "account": f"account:{ACCOUNT}",
    "session": f"session:{SESSION}",
    "firm": "firm",
}
_QTY_BY_LAYER = {"symbol": 1, "account": 2, "session": 3, "firm": 4}


def _layered(field_by_layer: dict[str, dict]) -> LimitSet:
    """A LimitSet with the given fields set on the symbol/account/session/firm layers for our key."""
    out = LimitSet()
    for layer, fields in field_by_layer.items():
        out = out.with_layer(
            layer, {"symbol": SYMBOL, "account": ACCOUNT, "session": SESSION}.get(layer, ""), limits(**fields)
        )
    return out


@pytest.mark.parametrize(
    "layers, winner",
    [
        (("symbol", "account", "session", "firm"), "symbol"),
        (("account", "session", "firm"), "account"),
        (("session", "firm"), "session"),
        (("firm",), "firm"),
        (("symbol", "firm"), "symbol"),
        (("account", "firm"), "account"),
        (("symbol", "session"), "symbol"),
    ],
)
def test_most_specific_layer_setting_a_field_wins(layers, winner):
    """Symbol beats account beats session beats firm, and the scope names the winner."""
    resolved = resolve(
        _layered({name: {"max_order_qty": _QTY_BY_LAYER[name]} for name in layers}), SESSION, ACCOUNT, SYMBOL
    )
    assert resolved.max_order_qty.value == Decimal(_QTY_BY_LAYER[winner])
    assert resolved.max_order_qty.scope == _LAYER_SCOPES[winner]


def test_field_unset_on_specific_layer_falls_through_field_by_field():
    """Each field comes from the most specific layer that sets it, independently of the others."""
    limit_set = _layered(
        {
            "symbol": {"price_collar_pct": 2},
            "account": {"max_order_notional": 50_000},
            "session": {"max_order_qty": 5000},
            "firm": {
                "max_order_qty": 10_000,
                "max_order_notional": 1_000_000,
                "price_collar_pct": 5,
                "reference_max_age_s": 86_400,
            },
        }
    )
    r = resolve(limit_set, SESSION, ACCOUNT, SYMBOL)
    assert (r.price_collar_pct.value, r.price_collar_pct.scope) == (Decimal(2), "symbol:AAPL")
    assert (r.max_order_notional.value, r.max_order_notional.scope) == (Decimal(50_000), "account:ACC")
    assert (r.max_order_qty.value, r.max_order_qty.scope) == (Decimal(5000), "session:oms1")
    assert (r.reference_max_age_s.value, r.reference_max_age_s.scope) == (86_400, "firm")
    assert r.restricted_symbols is None


def test_field_set_nowhere_resolves_to_none():
    """A limit no layer sets does not apply at all."""
    r = resolve(LimitSet(), SESSION, ACCOUNT, SYMBOL)
    for name in LIMIT_FIELDS:
        assert getattr(r, name) is None, name


def test_layers_for_other_keys_do_not_apply():
    """Another session's, account's or symbol's layer never leaks into this resolution."""
    limit_set = LimitSet(
        firm=limits(max_order_qty=10_000),
        sessions={"oms2": limits(max_order_qty=1)},
        accounts={"OTHER": limits(max_order_qty=2)},
        symbols={"MSFT": limits(max_order_qty=3)},
    )
    r = resolve(limit_set, SESSION, ACCOUNT, SYMBOL)
    assert (r.max_order_qty.value, r.max_order_qty.scope) == (Decimal(10_000), "firm")


def test_order_without_account_skips_account_layers():
    """An empty Account (1) matches no account layer."""
    limit_set = LimitSet(firm=limits(max_order_qty=10_000), accounts={"": limits(max_order_qty=1)})
    r = resolve(limit_set, SESSION, "", SYMBOL)
    assert r.max_order_qty.scope == "firm"


@pytest.mark.parametrize(
    "listed_on, scope",
    [
        (("firm",), "firm"),
        (("session",), "session:oms1"),
        (("account",), "account:ACC"),
        (("symbol", "firm"), "symbol:AAPL"),
        (("account", "firm"), "account:ACC"),
    ],
)
def test_restriction_listed_on_any_layer_applies_with_most_specific_scope(listed_on, scope):
    """A symbol restricted on any layer is restricted; the scope names the most specific listing."""
    r = resolve(_layered({layer: {"restricted_symbols": {SYMBOL}} for layer in listed_on}), SESSION, ACCOUNT, SYMBOL)
    assert r.restricted_symbols is not None
    assert (r.restricted_symbols.value, r.restricted_symbols.scope) == (True, scope)


def test_account_restriction_list_cannot_lift_firm_restriction():
    """Restriction lists add up: an account layer listing other symbols (or none) leaves the firm's in force."""
    for account_list in (frozenset(), frozenset({"MSFT"})):
        limit_set = _layered(
            {"account": {"restricted_symbols": account_list}, "firm": {"restricted_symbols": {SYMBOL}}}
        )
        r = resolve(limit_set, SESSION, ACCOUNT, SYMBOL)
        assert r.restricted_symbols is not None and r.restricted_symbols.scope == "firm"


def test_unlisted_symbol_is_not_restricted():
    """A symbol no layer lists resolves to no restriction."""
    r = resolve(_layered({"firm": {"restricted_symbols": {"TSLA"}}}), SESSION, ACCOUNT, SYMBOL)
    assert r.restricted_symbols is None


# ---------------------------------------------------------------- LimitResolver


def test_resolver_returns_cached_resolution_for_same_key():
    """Repeated lookups of one (session, account, symbol) reuse one resolution."""
    resolver = LimitResolver(LimitSet(firm=limits(max_order_qty=100)))
    assert resolver(SESSION, ACCOUNT, SYMBOL) is resolver(SESSION, ACCOUNT, SYMBOL)
    assert resolver(SESSION, ACCOUNT, SYMBOL) is not resolver(SESSION, ACCOUNT, "MSFT")


def test_resolver_replace_clears_cache_so_live_change_takes_effect():
    """After replace(), a key resolved before sees the new limits."""
    before = LimitSet(firm=limits(max_order_qty=100))
    resolver = LimitResolver(before)
    assert resolver(SESSION, ACCOUNT, SYMBOL).max_order_qty.value == Decimal(100)
    resolver.replace(before.with_layer("account", ACCOUNT, limits(max_order_qty=7)))
    found = resolver(SESSION, ACCOUNT, SYMBOL).max_order_qty
    assert (found.value, found.scope) == (Decimal(7), "account:ACC")


def test_with_layer_returns_copy_and_leaves_original_unchanged():
    """with_layer() builds a new LimitSet; the one in use is not mutated."""
    original = LimitSet(firm=limits(max_order_qty=100), accounts={"A": limits(max_order_qty=1)})
    changed = original.with_layer("account", "B", limits(max_order_qty=2)).with_layer(
        "firm", "", limits(max_order_qty=5)
    )
    assert set(original.accounts) == {"A"} and original.firm.max_order_qty == Decimal(100)
    assert set(changed.accounts) == {"A", "B"} and changed.firm.max_order_qty == Decimal(5)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("name", ["max_order_qty", "max_order_notional"])
@pytest.mark.parametrize("value", [0, -1, "-0.5", "0.0", "NaN", "Infinity"])
def test_non_positive_or_non_finite_size_limit_is_refused(name, value):
    """A size limit must be a positive finite number; decoding anything else is a ValidationError."""
    with pytest.raises(msgspec.ValidationError, match=name):
        msgspec.convert({name: value}, Limits)


@pytest.mark.parametrize("value", [-1, "-0.01", "NaN"])
def test_negative_price_collar_is_refused(value):
    """A price collar may be zero but not negative or NaN."""
    with pytest.raises(msgspec.ValidationError, match="price_collar_pct"):
        msgspec.convert({"price_collar_pct": value}, Limits)


def test_negative_reference_max_age_is_refused():
    """reference_max_age_s must be zero or more."""
    with pytest.raises(msgspec.ValidationError, match="reference_max_age_s"):
        msgspec.convert({"reference_max_age_s": -1}, Limits)


def test_unknown_limit_field_is_refused_with_its_path():
    """A misspelt limit stops decoding and names where it was."""
    with pytest.raises(msgspec.ValidationError, match=r"max_qty.*\$\.firm"):
        msgspec.convert({"firm": {"max_qty": 10}}, LimitSet)


def test_bad_layer_in_toml_is_refused_with_validation_error():
    """A bad value deep in a TOML limits table surfaces as a ValidationError naming the field."""
    with pytest.raises(msgspec.ValidationError, match="max_order_qty must be a positive number"):
        msgspec.toml.decode(b"[accounts.ACC]\nmax_order_qty = 0\n", type=LimitSet)


def test_direct_construction_with_zero_quantity_is_refused():
    """Building Limits in code checks the same rule (as a ValueError, msgspec's source of the ValidationError)."""
    with pytest.raises(ValueError, match="max_order_qty"):
        Limits(max_order_qty=Decimal(0))


def test_valid_limits_decode_from_toml_numbers_to_decimals():
    """Integers and decimals in TOML decode to exact Decimals; a zero collar and a zero max age are allowed."""
    decoded = msgspec.toml.decode(
        b"[firm]\nmax_order_qty = 10000\nmax_order_notional = 1000000.50\nprice_collar_pct = 0\nreference_max_age_s = 0\n"
        b"restricted_symbols = ['TSLA']\n",
        type=LimitSet,
    )
    assert decoded.firm == Limits(Decimal(10_000), Decimal("1000000.50"), Decimal(0), 0, frozenset({"TSLA"}))
