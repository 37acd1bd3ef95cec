"""The core's running counts for the desk (core/tally.py): they equal a count from scratch after any order
flow, survive a snapshot, and the desk's summary reads them without touching the orders."""

from __future__ import annotations

import pickle
from collections import Counter

from hypothesis import given, settings, strategies as st

from fixproxy.core import events as ev, snapshot, views
from fixproxy.core.model import ExecType as E, OrdStatus as S

from .conftest import Harness, order

SESSIONS = ("oms1", "oms2")
SYMBOLS = ("AAPL", "TSLA", "RSTR", "NOPE")  # RSTR is restricted, NOPE unknown: both refused

step = st.one_of(
    st.tuples(
        st.just("new"),
        st.sampled_from(SESSIONS),
        st.integers(0, 12),
        st.sampled_from(SYMBOLS),
        st.sampled_from([10, 100, 20_000]),
    ),  # 20,000 is over max_order_qty
    *(
        st.tuples(st.just(kind), st.integers(0, 30))
        for kind in (
            "ack",
            "partial",
            "fill",
            "cancel",
            "canceled",
            "reject",
            "bust",
            "replace",
            "replaced",
            "send_failed",
            "expire",
        )
    ),
    st.tuples(st.just("venue"), st.booleans()),
)


class Flow:
    """Drives a Harness with the steps and keeps its own record of what happened, to count from scratch."""

    def __init__(self) -> None:
        self.h = Harness()
        self.sent: list[tuple[str, str]] = []  # (session, ClOrdID) of each order the proxy accepted
        self.orders: dict[int, object] = {}  # every order the core ever tracked, by identity
        self.decisions: list[ev.Decision] = []
        self.n = 0

    def run(self, steps) -> None:
        for s in steps:
            actions = self.step(s)
            self.decisions += [a for a in actions if isinstance(a, ev.Decision)]
            for session, cl in self.sent:
                o = self.h.core.orders.by_oms(session, cl)
                if o is not None:
                    self.orders[id(o)] = o

    def step(self, s) -> list:
        h, kind = self.h, s[0]
        if kind == "new":
            _, session, i, symbol, qty = s
            cl = f"C{i}"
            actions = h.new(order(cl, symbol, qty, 100), session)
            if isinstance(actions[-1], ev.VenueNewOrder):
                self.sent.append((session, cl))
            return actions
        if kind == "venue":
            return h.handle((ev.SessionUp if s[1] else ev.SessionDown)("sim", h.now))
        if not self.sent:
            return []
        session, cl = self.sent[s[1] % len(self.sent)]
        o = h.core.orders.by_oms(session, cl)
        if o is None:
            return []
        vid, qty = o.venue_cl_ord_id, o.request.order_qty
        self.n += 1
        x = f"X{self.n}"
        if kind == "ack":
            return h.report(vid, E.NEW, S.NEW, leaves=qty, exec_id=x)
        if kind == "partial":
            return h.report(
                vid,
                E.TRADE,
                S.PARTIALLY_FILLED,
                exec_id=x,
                last_qty=1,
                last_px=100,
                cum=o.cum_qty + 1,
                leaves=max(qty - o.cum_qty - 1, 0),
            )
        if kind == "fill":
            return h.report(vid, E.TRADE, S.FILLED, exec_id=x, last_qty=qty - o.cum_qty or 1, last_px=100, cum=qty)
        if kind == "bust":
            return h.report(
                vid,
                E.TRADE_CANCEL,
                S.PARTIALLY_FILLED if o.cum_qty > 1 else S.NEW,
                exec_id=x,
                exec_ref_id=f"X{self.n - 1}",
                leaves=qty,
                cum=0,
            )
        if kind == "cancel":
            self.n += 1
            return h.cancel(o.cl_ord_id, f"K{self.n}", session)
        if kind == "canceled":
            return h.report(vid, E.CANCELED, S.CANCELED, exec_id=x, cum=o.cum_qty)
        if kind == "expire":
            return h.report(vid, E.EXPIRED, S.EXPIRED, exec_id=x, cum=o.cum_qty)
        if kind == "reject":
            return h.report(vid, E.REJECTED, S.REJECTED, exec_id=x)
        if kind == "replace":
            self.n += 1
            return h.replace(o.cl_ord_id, order(f"R{self.n}", o.request.symbol, qty + 1, 100), session)
        if kind == "replaced" and o.pending is not None:
            return h.report(o.pending[1], E.REPLACED, S.NEW, exec_id=x, orig=vid, leaves=qty + 1)
        if kind == "send_failed":
            return h.handle(ev.VenueSendFailed("sim", vid, h.now))
        return []


def from_scratch(flow: Flow) -> dict:
    """The counts, computed from the flow's own record and the orders themselves."""
    every = list(flow.orders.values())
    open_ = sorted((o for o in every if o.is_open), key=lambda o: o.key)
    decisions: dict[str, list[int]] = {}
    for d in flow.decisions:
        decisions.setdefault(d.session, [0, 0])[0 if d.accepted else 1] += 1
    return {
        "open": len(open_),
        "statuses": dict(Counter(o.status for o in every)),
        "open_by_session": dict(Counter(o.session for o in open_)),
        "decisions": {s: tuple(c) for s, c in decisions.items()},
        "codes": dict(Counter(d.code for d in flow.decisions if not d.accepted)),
    }, [o.key for o in open_]


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=60))
def test_running_counts_equal_a_count_from_scratch(steps):
    """After any flow of orders, acks, fills, busts, cancels, replaces, rejects and venue drops, the
    running counts equal the same counts made from scratch, and the open-order index holds exactly the
    open orders in key order."""
    flow = Flow()
    flow.run(steps)
    tally = flow.h.core.tally
    expected, keys = from_scratch(flow)
    assert tally.counts() == expected
    assert list(tally.open) == keys
    # Paged in twos, the pages join up into the same list.
    paged, after = [], ""
    while page := tally.page(2, after):
        paged += [o.key for o in page]
        after = page[-1].key
    assert paged == keys


@settings(max_examples=50, deadline=None)
@given(st.lists(step, max_size=40))
def test_running_counts_survive_a_snapshot(steps):
    """A core made from a snapshot (pickled, as the journal writes it) has the same counts and index."""
    flow = Flow()
    flow.run(steps)
    core = flow.h.core
    other = Harness().core
    snapshot.import_state(other, pickle.loads(pickle.dumps(snapshot.export_state(core))))
    assert other.tally.counts() == core.tally.counts()
    assert list(other.tally.open) == list(core.tally.open)


class _NoOrders:
    def __getattr__(self, name):
        raise AssertionError(f"the desk's read touched the order table ({name})")


def test_summary_after_many_orders_reads_counts_not_orders():
    """With 2,000 orders of the day (1,500 finished), the summary and a page of open orders never touch
    the order table: they read the running counts and the open-order index."""
    h = Harness(rules=[])
    for i in range(2000):
        h.new(order(f"C{i:04d}", "AAPL", 10, 100, account="A1"))
        h.ack(f"oms1.C{i:04d}", 10)
        if i % 4:
            h.report(f"oms1.C{i:04d}", E.TRADE, S.FILLED, exec_id=f"X{i}", last_qty=10, last_px=100, cum=10)
    h.core.orders = _NoOrders()
    summary = views.summary(h.core)
    assert "open_orders" not in summary
    assert summary["orders"]["open"] == 500 and summary["orders"]["by_status"] == {"filled": 1500, "new": 500}
    assert summary["orders"]["decisions"]["accepted"] == 2000
    page = views.open_orders(h.core, 3, "oms1.C0000")
    assert [o["cl_ord_id"] for o in page] == ["C0004", "C0008", "C0012"]
    assert page[0]["key"] == "oms1.C0004" and page[0]["status"] == "new"
