"""An instance's shares of the limits a cluster shares, in the core (core/cluster.py): checked like the
limits themselves, journaled as events, carried by the snapshot."""

from __future__ import annotations

import pickle
from decimal import Decimal

import msgspec

from fixproxy.core import cluster, events as ev, snapshot
from fixproxy.core.model import Side
from fixproxy.core.risk.limits import Limits, LimitSet

from .conftest import LIMITS, T0, Harness, order

GROSS_FIRM = cluster.key(cluster.GROSS, "firm")


def _harness(rules: list[str] | None = None, **firm: object) -> Harness:
    limits = msgspec.structs.replace(
        LIMITS,
        firm=msgspec.structs.replace(LIMITS.firm, **firm),
        accounts={"ACC": Limits(max_gross_exposure=Decimal(30_000), max_open_orders=2)},
        sessions={"oms1": Limits(max_gross_exposure=Decimal(5_000_000))},
    )
    h = Harness(limits=limits, rules=rules)
    h.core.shares.enabled = True
    return h


def _share(h: Harness, k: str, allowance: int, low: int = 0) -> None:
    h.handle(ev.ClusterShare(k, Decimal(allowance), Decimal(low), T0))


def _decision(actions: list[ev.Action]) -> ev.Decision:
    return next(a for a in actions if isinstance(a, ev.Decision))


def test_shared_limits_are_the_firms_and_accounts_aggregate_limits_in_force():
    """Firm and account aggregate limits are shared (net exposure once a side); sessions' are not, nor monitored ones."""
    limits = LimitSet(
        firm=Limits(max_gross_exposure=Decimal(100), max_net_exposure=Decimal(50), max_order_qty=Decimal(5)),
        sessions={"oms1": Limits(max_gross_exposure=Decimal(10))},
        accounts={
            "A": Limits(max_open_orders=3),
            "B": Limits(max_gross_exposure=Decimal(7), monitor=frozenset({"max_gross_exposure"})),
        },
    )
    assert cluster.shared_limits(limits) == {
        "max_gross_exposure|firm": Decimal(100),
        "max_net_exposure:long|firm": Decimal(50),
        "max_net_exposure:short|firm": Decimal(50),
        "max_open_orders|account:A": Decimal(3),
    }


def test_order_within_the_share_is_accepted_and_beyond_it_refused_with_the_limits_code():
    """The firm's gross limit is 1M, this instance holds 25,000 of it: the order that would pass it is refused."""
    h = _harness(max_gross_exposure=Decimal(1_000_000))
    _share(h, GROSS_FIRM, 25_000)
    assert _decision(h.new(order("C1", qty=200, price=100))).accepted  # 20,000
    refused = _decision(h.new(order("C2", qty=100, price=100)))
    assert (refused.accepted, refused.code, refused.scope, refused.limit) == (False, "GROSS_EXPOSURE", "firm", "25000")
    assert "this instance's share 25000 of the limit 1000000 the cluster shares" in refused.text


def test_no_share_held_refuses_what_needs_one():
    """In a cluster, an instance that holds no share yet (the database never answered) refuses new exposure."""
    h = _harness(max_gross_exposure=Decimal(1_000_000))
    d = _decision(h.new(order("C1", qty=1, price=100)))
    assert (d.accepted, d.code) == (False, "GROSS_EXPOSURE")


def test_alone_the_proxy_checks_the_limit_itself():
    """Without [cluster] (shares not enabled) the same order is checked against the firm's limit only."""
    h = _harness(max_gross_exposure=Decimal(1_000_000))
    h.core.shares.enabled = False
    assert _decision(h.new(order("C1", qty=1000, price=100))).accepted


def test_session_limits_are_not_shared():
    """A session is on one instance: its gross limit is checked against the limit, not a share."""
    h = _harness()
    assert _decision(h.new(order("C1", qty=1000, price=100))).accepted


def test_account_open_orders_share_refuses_with_max_open_orders():
    """An account's max_open_orders is shared: with a share of 1 the second open order is refused."""
    h = _harness()
    _share(h, cluster.key(cluster.GROSS, "account:ACC"), 30_000)
    _share(h, cluster.key(cluster.OPEN_ORDERS, "account:ACC"), 1)
    assert _decision(h.new(order("C1", qty=10, price=100, account="ACC"))).accepted
    d = _decision(h.new(order("C2", qty=10, price=100, account="ACC")))
    assert (d.code, d.scope, d.limit) == ("MAX_OPEN_ORDERS", "account:ACC", "1")


def test_net_exposure_has_a_share_per_side():
    """A buy needs the long side's share, a sell the short side's."""
    h = _harness(["net_exposure"], max_net_exposure=Decimal(1_000_000))
    _share(h, cluster.key(cluster.NET_LONG, "firm"), 50_000)
    assert _decision(h.new(order("B1", qty=100, price=100))).accepted
    sell = _decision(h.new(order("S1", symbol="TSLA", qty=10, price=100, side=Side.SELL_SHORT)))
    assert (sell.code, sell.limit) == ("NET_EXPOSURE", "0")


def test_fenced_instance_refuses_new_exposure_but_not_a_reducing_order():
    """Leases expired with the database away: orders needing headroom are refused, naming why; a sell of a long passes."""
    h = _harness(max_gross_exposure=Decimal(1_000_000))
    _share(h, GROSS_FIRM, 100_000)
    h.core.book.load_position("Z", "AAPL", Decimal(100), Decimal(100))  # account Z is long 100
    alerts = h.handle(ev.ClusterFence("the cluster database is unreachable", T0))
    assert [a.text for a in alerts if isinstance(a, ev.Alert)] == [
        "CLUSTER_FENCED: the cluster database is unreachable; orders that need new headroom of a shared limit are refused"
    ]
    d = _decision(h.new(order("C1", qty=10, price=100)))
    assert d.code == "GROSS_EXPOSURE" and "the cluster database is unreachable" in d.text
    assert _decision(h.new(order("S1", qty=50, price=100, side=Side.SELL, account="Z"))).accepted
    lifted = h.handle(ev.ClusterFence("", T0))
    assert [a.kind for a in lifted if isinstance(a, ev.Notice)] == ["cluster_unfenced"]
    assert _decision(h.new(order("C2", qty=10, price=100))).accepted


def test_refusal_for_want_of_a_share_asks_the_edge_for_one_that_fits():
    """The hint the lease manager reads: which share an order lacked and the usage it would have reached."""
    h = _harness(max_gross_exposure=Decimal(1_000_000))
    _share(h, GROSS_FIRM, 5_000)
    h.new(order("C1", qty=100, price=100))
    assert h.core.shares.hungry and h.core.shares.wanted == {GROSS_FIRM: Decimal(10_000)}


def test_usage_reaching_the_low_mark_asks_for_a_top_up():
    """An accepted order that takes usage to the share's low mark sets the hint; a new share clears it."""
    h = _harness(max_gross_exposure=Decimal(1_000_000))
    _share(h, GROSS_FIRM, 20_000, low=15_000)
    h.new(order("C1", qty=100, price=100))
    assert not h.core.shares.hungry
    h.new(order("C2", qty=60, price=100))
    assert h.core.shares.hungry
    _share(h, GROSS_FIRM, 40_000, low=35_000)
    assert not h.core.shares.hungry


def test_snapshot_carries_the_shares_and_the_fence():
    """A recovery from a snapshot checks against the shares the crashed core held."""
    h = _harness(max_gross_exposure=Decimal(1_000_000))
    _share(h, GROSS_FIRM, 25_000, low=20_000)
    h.handle(ev.ClusterFence("gone", T0))
    fresh = _harness(max_gross_exposure=Decimal(1_000_000))
    snapshot.import_state(fresh.core, pickle.loads(pickle.dumps(snapshot.export_state(h.core))))
    assert fresh.core.shares.allowance == {GROSS_FIRM: Decimal(25_000)}
    assert fresh.core.shares.low == {GROSS_FIRM: Decimal(20_000)}
    assert fresh.core.shares.fence == "gone"


def test_share_events_round_trip_through_the_journal_encoding():
    """ClusterShare and ClusterFence are core events: the journal's tagged encoding gives them back."""
    for e in (ev.ClusterShare(GROSS_FIRM, Decimal("12.5"), Decimal(10), T0), ev.ClusterFence("why", T0)):
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(e), type=ev.Event) == e
