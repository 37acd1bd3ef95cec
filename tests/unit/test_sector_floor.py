"""The sector rule's floor: each layer's max_sector_pct is gated by that layer's sector_min_gross or, without
one, by the nearest less specific layer's; never by a more specific layer's."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from fixproxy.core import events as ev
from fixproxy.core.risk.limits import LimitResolver, Limits, LimitSet, SectorLimit, resolve

from .conftest import INSTRUMENTS, Harness, instrument, order

D = Decimal


def _sectors() -> dict:
    return {
        **INSTRUMENTS,
        "AAPL": msgspec.structs.replace(instrument("AAPL", 100), sector="Tech"),
        "XOM": msgspec.structs.replace(instrument("XOM", 100), sector="Energy"),
    }


def _decision(actions: list[ev.Action]) -> ev.Decision:
    return next(a for a in actions if isinstance(a, ev.Decision))


@pytest.mark.parametrize(
    "limit_set, code, scope, observed",
    [
        pytest.param(  # the account's high floor must not switch the firm's check off
            LimitSet(
                firm=Limits(max_sector_pct=D(60), sector_min_gross=D(10_000)),
                accounts={"A1": Limits(sector_min_gross=D(1_000_000))},
            ),
            "SECTOR_CONCENTRATION",
            "firm",
            "62.5000",
            id="firm-limit-account-floor-high",
        ),
        pytest.param(  # nor its low floor switch the firm's check on below the firm's own floor
            LimitSet(
                firm=Limits(max_sector_pct=D(60), sector_min_gross=D(20_000)),
                accounts={"A1": Limits(sector_min_gross=D(1))},
            ),
            None,
            "",
            "",
            id="firm-limit-account-floor-low",
        ),
        pytest.param(  # an account without a floor of its own takes the firm's (as before the fix)
            LimitSet(
                firm=Limits(sector_min_gross=D(1_000_000)),
                accounts={"A1": Limits(max_sector_pct=D(60))},
            ),
            None,
            "",
            "",
            id="account-limit-firm-floor-high",
        ),
        pytest.param(  # ... and is checked once the firm's floor is passed
            LimitSet(
                firm=Limits(sector_min_gross=D(5_000)),
                accounts={"A1": Limits(max_sector_pct=D(60))},
            ),
            "SECTOR_CONCENTRATION",
            "account:A1",
            "100.0000",
            id="account-limit-firm-floor-low",
        ),
        pytest.param(  # the account's own floor still gates the account's check
            LimitSet(
                firm=Limits(sector_min_gross=D(1)),
                accounts={"A1": Limits(max_sector_pct=D(60), sector_min_gross=D(20_000))},
            ),
            None,
            "",
            "",
            id="account-limit-own-floor",
        ),
    ],
)
def test_sector_check_uses_its_own_or_a_less_specific_layers_floor(limit_set, code, scope, observed):
    """Firm gross 16,000 (Energy 6,000 from A2, then A1's Tech 10,000): a more specific floor never gates a check."""
    h = Harness(limits=limit_set, rules=["sector_concentration"], instruments=_sectors())
    assert _decision(h.new(order("E1", "XOM", 60, account="A2"))).accepted
    decision = _decision(h.new(order("T1", "AAPL", 100, account="A1")))
    assert (decision.code or None, decision.scope, decision.observed) == (code, scope, observed)
    assert decision.accepted == (code is None)


def test_resolve_pairs_each_sector_limit_with_its_layers_floor():
    """resolve() hands the rule one SectorLimit per layer, carrying that layer's floor or the next less specific one's."""
    limit_set = LimitSet(
        firm=Limits(max_sector_pct=D(60), sector_min_gross=D(5_000_000)),
        sessions={"oms1": Limits(max_sector_pct=D(70))},
        accounts={"A1": Limits(max_sector_pct=D(80), sector_min_gross=D(50_000))},
        symbols={"AAPL": Limits(sector_min_gross=D(1))},  # a symbol layer has no gross of its own: ignored
    )
    r = resolve(limit_set, "oms1", "A1", "AAPL")
    assert r.max_sector_pct == (
        SectorLimit(D(80), "account:A1", D(50_000)),
        SectorLimit(D(70), "session:oms1", D(5_000_000)),
        SectorLimit(D(60), "firm", D(5_000_000)),
    )
    assert [(f.scope, f.value) for f in r.sector_min_gross or ()] == [("account:A1", D(50_000)), ("firm", D(5_000_000))]


def test_resolver_caches_the_paired_sector_limits():
    """The pairing is made once per (session, account, symbol); a live limit change makes it again."""
    resolver = LimitResolver(LimitSet(firm=Limits(max_sector_pct=D(60), sector_min_gross=D(10))))
    first = resolver("oms1", "A1", "AAPL")
    assert resolver("oms1", "A1", "AAPL") is first
    resolver.replace(LimitSet(firm=Limits(max_sector_pct=D(60), sector_min_gross=D(20))))
    assert resolver("oms1", "A1", "AAPL").max_sector_pct == (SectorLimit(D(60), "firm", D(20)),)
