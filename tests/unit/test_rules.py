"""Every pre-trade rule on both sides of its limit, and the pipeline that runs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import pytest

from fixproxy.core.model import Instrument, OrderRequest, OrdType
from fixproxy.core.risk.limits import AGGREGATE_FIELDS, LIMIT_FIELDS, LimitSet, ResolvedLimits
from fixproxy.core.risk.rules import (
    RULES,
    Reject,
    lot_size,
    max_order_qty,
    run_pipeline,
    unknown_symbol,
)
from fixproxy.fix import codec

from .conftest import NS, T0, context, firm, instrument, limits, market, order
from .test_exposure_rules import BOOK_RULES


@dataclass(frozen=True)
class Case:
    """One rule applied to one order in one setting."""

    rule: str
    req: OrderRequest
    limit_set: LimitSet = field(default_factory=LimitSet)
    inst: Instrument | Literal["for_symbol"] | None = "for_symbol"  # default: instrument(req.symbol), reference 100
    now_ns: int = T0
    seen: frozenset[str] = field(default_factory=frozenset)

    def run(self) -> Reject | None:
        inst = instrument(self.req.symbol) if self.inst == "for_symbol" else self.inst
        return RULES[self.rule](self.req, context(self.req, self.limit_set, inst, now_ns=self.now_ns, seen=self.seen))


@dataclass(frozen=True)
class Expect:
    code: str
    observed: str = ""
    limit: str = ""
    scope: str = ""


COLLAR = firm(price_collar_pct=5)
NOTIONAL = firm(max_order_notional=100_000)
STALE_AFTER_60S = firm(max_order_notional=100_000, price_collar_pct=5, reference_max_age_s=60)
NEVER_STALE = firm(max_order_notional=100_000, price_collar_pct=5, reference_max_age_s=0)
TEN_YEARS_NS = 10 * 365 * 86_400 * NS
FIRM_BANS_TSLA = firm(restricted_symbols={"TSLA"})
ACC_BANS_TSLA = LimitSet(accounts={"ACC": limits(restricted_symbols={"TSLA"})})


def _acc(**fields) -> LimitSet:
    return LimitSet(firm=limits(restricted_symbols={"TSLA"}), accounts={"ACC": limits(**fields)})


# Orders a rule lets through: just at the limit, or outside the rule's reach.
PASSING = [
    pytest.param(Case("max_order_qty", order(qty=1000), firm(max_order_qty=1000)), id="qty-at-limit"),
    pytest.param(Case("max_order_qty", order(qty=10**9)), id="qty-no-limit-set"),
    pytest.param(Case("max_order_notional", order(qty=1000, price=100), NOTIONAL), id="notional-limit-order-at-limit"),
    pytest.param(
        Case("max_order_notional", order(qty=2000, price=50), NOTIONAL),
        id="notional-limit-order-valued-at-its-price-not-the-reference",
    ),
    pytest.param(
        Case("max_order_notional", market(qty=1000), NOTIONAL), id="notional-market-order-at-limit-at-reference"
    ),
    pytest.param(
        Case("max_order_notional", order(qty=1000, price=100), NOTIONAL, instrument(ref=None)),
        id="notional-limit-order-needs-no-reference",
    ),
    pytest.param(
        Case("max_order_notional", market(qty=1000), STALE_AFTER_60S, now_ns=T0 + 60 * NS),
        id="notional-reference-exactly-max-age",
    ),
    pytest.param(
        Case("max_order_notional", market(qty=1000), NEVER_STALE, now_ns=T0 + TEN_YEARS_NS),
        id="notional-max-age-zero-never-stale",
    ),
    pytest.param(Case("price_collar", order(price=105), COLLAR), id="collar-at-upper-edge"),
    pytest.param(Case("price_collar", order(price=95), COLLAR), id="collar-at-lower-edge"),
    pytest.param(Case("price_collar", order(price="100.5"), COLLAR), id="collar-inside"),
    pytest.param(Case("price_collar", market(), COLLAR, instrument(ref=None)), id="collar-market-order-not-collared"),
    pytest.param(
        Case("price_collar", order(price=200, ord_type=OrdType.MARKET), COLLAR),
        id="collar-market-order-with-price-not-collared",
    ),
    pytest.param(
        Case("price_collar", order(price=200, ord_type=OrdType.STOP, stop_px=200), COLLAR),
        id="collar-stop-order-not-collared",
    ),
    pytest.param(
        Case("price_collar", order(price=105), STALE_AFTER_60S, now_ns=T0 + 60 * NS),
        id="collar-reference-exactly-at-max-age",
    ),
    pytest.param(
        Case("price_collar", order(price=105), NEVER_STALE, now_ns=T0 + TEN_YEARS_NS),
        id="collar-max-age-zero-never-stale",
    ),
    pytest.param(Case("price_collar", order(price=500)), id="collar-no-limit-set"),
    pytest.param(Case("restricted_symbol", order(symbol="AAPL"), FIRM_BANS_TSLA), id="restricted-other-symbol"),
    pytest.param(
        Case("restricted_symbol", order(symbol="TSLA", account="OTHER"), ACC_BANS_TSLA),
        id="restricted-by-another-account-only",
    ),
    pytest.param(Case("duplicate_cl_ord_id", order("C2"), seen={"C1"}), id="duplicate-fresh-id"),
    pytest.param(Case("unknown_symbol", order(symbol="AAPL")), id="unknown-symbol-listed"),
    pytest.param(Case("lot_size", order(symbol="SPYL", qty=200), inst=instrument("SPYL", lot=100)), id="lot-multiple"),
    pytest.param(Case("lot_size", order(qty="1.5"), inst=instrument(lot="0.5")), id="lot-fractional-multiple"),
    pytest.param(Case("lot_size", order(symbol="ZZZZ", qty=7), inst=None), id="lot-unknown-symbol-not-its-business"),
]

# Orders a rule refuses: just beyond the limit, or a missing/stale reference.
REJECTED = [
    pytest.param(
        Case("max_order_qty", order(qty=1001), firm(max_order_qty=1000)),
        Expect("MAX_ORDER_QTY", "1001", "1000", "firm"),
        id="qty-one-above",
    ),
    pytest.param(
        Case("max_order_qty", order(qty="1000.0001"), firm(max_order_qty=1000)),
        Expect("MAX_ORDER_QTY", "1000.0001", "1000", "firm"),
        id="qty-fraction-above",
    ),
    pytest.param(
        Case(
            "max_order_qty",
            order(qty=501, account="ACC"),
            LimitSet(firm=limits(max_order_qty=1000), accounts={"ACC": limits(max_order_qty=500)}),
        ),
        Expect("MAX_ORDER_QTY", "501", "500", "account:ACC"),
        id="qty-account-scope",
    ),
    pytest.param(
        Case("max_order_notional", order(qty=1000, price="100.01"), NOTIONAL),
        Expect("MAX_ORDER_NOTIONAL", "100010", "100000", "firm"),
        id="notional-limit-order-above",
    ),
    pytest.param(
        Case("max_order_notional", order(qty=600, price=200), NOTIONAL),
        Expect("MAX_ORDER_NOTIONAL", "120000", "100000", "firm"),
        id="notional-limit-order-valued-at-its-price-above",
    ),
    pytest.param(
        Case("max_order_notional", market(qty=1001), NOTIONAL),
        Expect("MAX_ORDER_NOTIONAL", "100100", "100000", "firm"),
        id="notional-market-order-at-reference",
    ),
    pytest.param(
        Case("max_order_notional", order(qty=1001, price=None, ord_type=OrdType.STOP, stop_px=90), NOTIONAL),
        Expect("MAX_ORDER_NOTIONAL", "100100", "100000", "firm"),
        id="notional-stop-order-at-reference",
    ),
    pytest.param(
        Case("max_order_notional", market(), NOTIONAL, instrument(ref=None)),
        Expect("NO_REFERENCE_PRICE", scope="symbol:AAPL"),
        id="notional-market-order-no-reference",
    ),
    pytest.param(
        Case("max_order_notional", market(symbol="ZZZZ"), NOTIONAL, None),
        Expect("NO_REFERENCE_PRICE", scope="symbol:ZZZZ"),
        id="notional-market-order-unknown-symbol",
    ),
    pytest.param(
        Case("max_order_notional", market(), STALE_AFTER_60S, now_ns=T0 + 61 * NS),
        Expect("STALE_REFERENCE_PRICE", "61", "60", "firm"),
        id="notional-market-order-stale-reference",
    ),
    pytest.param(
        Case("price_collar", order(price="105.01"), COLLAR),
        Expect("PRICE_COLLAR", "5.0100", "5", "firm"),
        id="collar-above",
    ),
    pytest.param(
        Case("price_collar", order(price="94.99"), COLLAR),
        Expect("PRICE_COLLAR", "5.0100", "5", "firm"),
        id="collar-below",
    ),
    pytest.param(
        Case(
            "price_collar",
            order(price=50),
            LimitSet(firm=limits(price_collar_pct=5), symbols={"AAPL": limits(price_collar_pct=2)}),
        ),
        Expect("PRICE_COLLAR", "50.0000", "2", "symbol:AAPL"),
        id="collar-symbol-scope",
    ),
    pytest.param(
        Case("price_collar", order(price=100), COLLAR, instrument(ref=None)),
        Expect("NO_REFERENCE_PRICE", scope="symbol:AAPL"),
        id="collar-no-reference",
    ),
    pytest.param(
        Case("price_collar", order(price=100), STALE_AFTER_60S, now_ns=T0 + 61 * NS),
        Expect("STALE_REFERENCE_PRICE", "61", "60", "firm"),
        id="collar-stale-reference",
    ),
    pytest.param(
        Case("price_collar", order(price=100), STALE_AFTER_60S, now_ns=T0 + 60 * NS + 1),
        Expect("STALE_REFERENCE_PRICE", "60", "60", "firm"),
        id="collar-reference-one-ns-past-max-age",
    ),
    pytest.param(
        Case("price_collar", order(price=100), STALE_AFTER_60S, instrument("AAPL", 100, ref_time_ns=None)),
        Expect("STALE_REFERENCE_PRICE", "unknown", "60", "firm"),
        id="collar-reference-without-time-is-stale",
    ),
    pytest.param(
        Case("restricted_symbol", order(symbol="RSTR"), inst=instrument("RSTR", restricted=True)),
        Expect("RESTRICTED_SYMBOL", "RSTR", scope="symbol:RSTR"),
        id="restricted-instrument-flag",
    ),
    pytest.param(
        Case("restricted_symbol", order(symbol="TSLA"), FIRM_BANS_TSLA),
        Expect("RESTRICTED_SYMBOL", "TSLA", scope="firm"),
        id="restricted-firm-list",
    ),
    pytest.param(
        Case("restricted_symbol", order(symbol="TSLA", account="ACC"), ACC_BANS_TSLA),
        Expect("RESTRICTED_SYMBOL", "TSLA", scope="account:ACC"),
        id="restricted-account-list",
    ),
    pytest.param(
        Case("restricted_symbol", order(symbol="TSLA", account="ACC"), _acc(restricted_symbols=())),
        Expect("RESTRICTED_SYMBOL", "TSLA", scope="firm"),
        id="restricted-empty-account-list-cannot-lift-firm",
    ),
    pytest.param(
        Case("restricted_symbol", order(symbol="TSLA", account="ACC"), _acc(restricted_symbols={"GME"})),
        Expect("RESTRICTED_SYMBOL", "TSLA", scope="firm"),
        id="restricted-account-list-adds-to-firm",
    ),
    pytest.param(
        Case("duplicate_cl_ord_id", order("C1"), seen={"C1"}),
        Expect("DUPLICATE_CLORDID", "C1", scope="session:oms1"),
        id="duplicate-id",
    ),
    pytest.param(
        Case("unknown_symbol", order(symbol="ZZZZ"), inst=None), Expect("UNKNOWN_SYMBOL", "ZZZZ"), id="unknown-symbol"
    ),
    pytest.param(
        Case("lot_size", order(symbol="SPYL", qty=250), inst=instrument("SPYL", lot=100)),
        Expect("LOT_SIZE", "250", "100", "symbol:SPYL"),
        id="lot-not-multiple",
    ),
    pytest.param(
        Case("lot_size", order(qty="1.25"), inst=instrument(lot="0.5")),
        Expect("LOT_SIZE", "1.25", "0.5", "symbol:AAPL"),
        id="lot-fractional-not-multiple",
    ),
]


def _rules_in(params) -> set[str]:
    return {p.values[0].rule for p in params}


def test_rule_tables_cover_every_configured_rule_both_ways():
    """Every order-only rule has a passing and a rejecting case below; book rules are in test_exposure_rules."""
    stateless = set(RULES) - set(BOOK_RULES)
    assert _rules_in(PASSING) == stateless
    assert _rules_in(REJECTED) == stateless


@pytest.mark.parametrize("case", PASSING)
def test_order_within_rule_passes(case: Case):
    """An order at the limit, or outside the rule's reach, is let through."""
    assert case.run() is None


@pytest.mark.parametrize("case, expected", REJECTED)
def test_order_beyond_rule_rejects_with_code_observed_limit_scope(case: Case, expected: Expect):
    """An order beyond a limit is refused with a stable code, what was seen, the limit and its scope."""
    rej = case.run()
    assert rej is not None
    assert (rej.code, rej.observed, rej.limit, rej.scope) == (
        expected.code,
        expected.observed,
        expected.limit,
        expected.scope,
    )
    assert rej.text.startswith(f"{expected.code}: ")
    assert rej.text == f"{rej.code}: {rej.sentence}"
    assert rej.sentence


def test_unknown_symbol_reject_carries_unknown_security_reason():
    """UNKNOWN_SYMBOL maps to BusinessRejectReason 2 (unknown security) on the wire."""
    rej = unknown_symbol(order(symbol="ZZZZ"), context(order(symbol="ZZZZ"), inst=None))
    assert rej is not None and codec.BUSINESS_REJECT_REASON[rej.code] == "2"


def test_stale_reference_with_account_max_age_reports_account_scope():
    """The staleness limit is resolved like any other and reports where it was set."""
    limit_set = LimitSet(
        firm=limits(max_order_notional=100_000, reference_max_age_s=3600),
        accounts={"ACC": limits(reference_max_age_s=10)},
    )
    req = market(qty=10, account="ACC")
    rej = RULES["max_order_notional"](req, context(req, limit_set, now_ns=T0 + 11 * NS))
    assert rej is not None
    assert (rej.code, rej.observed, rej.limit, rej.scope) == ("STALE_REFERENCE_PRICE", "11", "10", "account:ACC")


# ---------------------------------------------------------------- run_pipeline


def _refuse(code: str):
    def rule(req, ctx):
        return Reject(code, f"refused by {code}")

    rule.__name__ = f"refuse_{code.lower()}"
    return rule


def _explode(req, ctx):
    raise ZeroDivisionError("boom")


def _never(req, ctx):
    raise AssertionError("a rule after the first reject must not run")


def test_pipeline_rule_that_raises_fails_closed_with_check_failed():
    """A rule that raises refuses the order with CHECK_FAILED, naming the rule."""
    req = order()
    rej = run_pipeline((max_order_qty, _explode), req, context(req))
    assert rej is not None
    assert rej.code == "CHECK_FAILED"
    assert rej.scope == "rule:_explode"
    assert rej.text.startswith("CHECK_FAILED: ")
    assert "ZeroDivisionError" in rej.text


def test_pipeline_real_rule_arithmetic_error_fails_closed():
    """A Decimal error inside a real rule (quotient beyond precision) refuses rather than passes."""
    req = order(qty="1e12")
    rej = run_pipeline((lot_size,), req, context(req, inst=instrument(lot="1e-20")))
    assert rej is not None
    assert (rej.code, rej.scope) == ("CHECK_FAILED", "rule:lot_size")


def test_pipeline_first_reject_wins_and_later_rules_do_not_run():
    """The first rule to refuse decides; rules after it are not called."""
    req = order()
    rej = run_pipeline((_refuse("FIRST"), _refuse("SECOND"), _never), req, context(req))
    assert rej is not None and rej.code == "FIRST"


def test_pipeline_all_rules_pass_returns_none():
    """An order every rule accepts gets no reject."""
    req = order(qty=100, price=100)
    assert run_pipeline(tuple(RULES.values()), req, context(req, firm(max_order_qty=1000, price_collar_pct=5))) is None


def test_pipeline_empty_passes_anything():
    """No rules configured: nothing refuses."""
    req = order(symbol="ZZZZ", qty=10**12)
    assert run_pipeline((), req, context(req, firm(max_order_qty=1), inst=None)) is None


def test_default_pipeline_order_reports_duplicate_before_limit_breach():
    """In the default order a duplicate ClOrdID is reported before a quantity breach."""
    req = order("C1", qty=5000)
    rej = run_pipeline(tuple(RULES.values()), req, context(req, firm(max_order_qty=1000), seen={"C1"}))
    assert rej is not None and rej.code == "DUPLICATE_CLORDID"


def test_reject_text_renders_code_and_sentence():
    """Reject.text is what goes in tag 58: '<CODE>: <sentence>'."""
    assert Reject("MAX_ORDER_QTY", "too big").text == "MAX_ORDER_QTY: too big"


def test_fractional_observed_value_keeps_its_digits():
    """Observed and limit values render as plain decimals, without exponents."""
    req = order(qty="1e4")
    rej = max_order_qty(req, context(req, firm(max_order_qty="9999.5")))
    assert rej is not None
    assert (rej.observed, rej.limit) == ("10000", "9999.5")
    assert Decimal(rej.observed) == Decimal("1e4")


def test_resolved_limits_type_every_limit_field_aggregates_as_tuples():
    """ResolvedLimits declares one attribute per field of Limits: a tuple of Limits for an aggregate field."""
    declared = ResolvedLimits.__annotations__
    assert set(declared) == set(LIMIT_FIELDS)
    assert {name for name, kind in declared.items() if kind.startswith("tuple[")} == AGGREGATE_FIELDS
