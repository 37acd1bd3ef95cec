"""Shared builders for the unit tests of the transport-free core and the codec.

Everything here is plain data and a fixed clock: no network, no quickfix, no sleeping.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from decimal import Decimal
from typing import TypeVar

import pytest

from fixproxy.core import events as ev
from fixproxy.core.model import ExecReport, ExecType, Instrument, OrderRequest, OrdStatus, OrdType, Side
from fixproxy.core.proxy import ProxyCore, SessionPolicy
from fixproxy.core.risk.limits import Limits, LimitSet, resolve
from fixproxy.core.risk.rules import CheckContext

NS = 1_000_000_000
#: The fixed clock reading of every event unless a test moves it (2023-11-14, mid-day UTC).
T0 = 1_700_000_000 * NS

A = TypeVar("A")


def D(value: str | int) -> Decimal:
    """Decimal from text, so test values read like the wire."""
    return Decimal(str(value))


# ---------------------------------------------------------------- values


def order(
    cl_ord_id: str = "C1",
    symbol: str = "AAPL",
    qty: str | int = 100,
    price: str | int | None = 100,
    *,
    side: Side = Side.BUY,
    ord_type: OrdType | None = None,
    account: str = "",
    ex_destination: str = "",
    stop_px: str | int | None = None,
    time_in_force: str = "",
) -> OrderRequest:
    """An OrderRequest; a limit order when priced, a market order when ``price`` is None."""
    if ord_type is None:
        ord_type = OrdType.MARKET if price is None else OrdType.LIMIT
    return OrderRequest(
        cl_ord_id=cl_ord_id,
        symbol=symbol,
        side=side,
        order_qty=D(qty),
        ord_type=ord_type,
        price=None if price is None else D(price),
        account=account,
        ex_destination=ex_destination,
        time_in_force=time_in_force,
        stop_px=None if stop_px is None else D(stop_px),
    )


def market(cl_ord_id: str = "C1", symbol: str = "AAPL", qty: str | int = 100, **kw) -> OrderRequest:
    return order(cl_ord_id, symbol, qty, None, **kw)


def instrument(
    symbol: str = "AAPL",
    ref: str | int | None = 100,
    *,
    ref_time_ns: int | None = T0,
    lot: str | int = 1,
    restricted: bool = False,
) -> Instrument:
    return Instrument(
        symbol=symbol,
        reference_price=None if ref is None else D(ref),
        reference_time_ns=ref_time_ns if ref is not None else None,
        lot_size=D(lot),
        restricted=restricted,
    )


def firm(**fields) -> LimitSet:
    """A LimitSet with only a firm layer; Decimal-valued fields may be given as int or str."""
    return LimitSet(firm=limits(**fields))


def limits(**fields) -> Limits:
    """One Limits layer; numbers as int or str, restricted_symbols as any iterable."""
    out = {}
    for name, value in fields.items():
        if name == "restricted_symbols":
            out[name] = frozenset(value)
        elif name == "reference_max_age_s" or value is None:
            out[name] = value
        else:
            out[name] = D(value)
    return Limits(**out)


_FOR_SYMBOL = object()
_NO_LIMITS = LimitSet()


def context(
    req: OrderRequest,
    limit_set: LimitSet = _NO_LIMITS,
    inst: Instrument | object | None = _FOR_SYMBOL,
    *,
    session: str = "oms1",
    now_ns: int = T0,
    seen: Iterable[str] = (),
) -> CheckContext:
    """The CheckContext a rule sees for ``req``; the instrument defaults to one for its symbol."""
    if inst is _FOR_SYMBOL:
        inst = instrument(req.symbol)
    return CheckContext(session, inst, resolve(limit_set, session, req.account, req.symbol), now_ns, frozenset(seen))


def exec_report(
    cl_ord_id: str,
    exec_type: ExecType,
    ord_status: OrdStatus,
    *,
    orig: str = "",
    order_id: str = "V1",
    exec_id: str = "X1",
    leaves: str | int = 0,
    cum: str | int = 0,
    last_qty: str | int = 0,
    last_px: str | int = 0,
    avg_px: str | int = 0,
    **kw,
) -> ExecReport:
    """A venue ExecutionReport, addressed by the proxy's venue-side ClOrdIDs."""
    return ExecReport(
        exec_type,
        ord_status,
        cl_ord_id,
        order_id,
        exec_id,
        orig_cl_ord_id=orig,
        leaves_qty=D(leaves),
        cum_qty=D(cum),
        last_qty=D(last_qty),
        last_px=D(last_px),
        avg_px=D(avg_px),
        **kw,
    )


# ---------------------------------------------------------------- picking actions


def only(actions: list, kind: type[A]) -> A:
    """The single action of ``kind`` among ``actions`` (fails if there is none or several)."""
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, f"expected one {kind.__name__}, got {actions!r}"
    return found[0]


def kinds(actions: list) -> list[type]:
    return [type(a) for a in actions]


# ---------------------------------------------------------------- the core under test

SESSIONS = {
    "oms1": SessionPolicy(default_venue="sim", reject_with="business_reject"),
    "oms2": SessionPolicy(default_venue="sim", reject_with="execution_report"),
}

INSTRUMENTS = {
    i.symbol: i
    for i in (
        instrument("AAPL", 100),
        instrument("TSLA", 100),
        instrument("SPYL", 50, lot=100),
        instrument("RSTR", 40, restricted=True),
        instrument("NOREF", None),
    )
}

LIMITS = firm(max_order_qty=10_000, max_order_notional=1_000_000, price_collar_pct=5, reference_max_age_s=86_400)


class Harness:
    """A ProxyCore with the venue "sim" logged on, and short ways to send it events.

    Every event gets the fixed clock ``now`` and a fresh inbound MsgSeqNum, the last of
    which is kept in ``seq`` so tests can check RefSeqNum (45).
    """

    def __init__(
        self,
        *,
        sessions: dict[str, SessionPolicy] | None = None,
        venues: Iterable[str] = ("sim",),
        instruments: dict[str, Instrument] | None = None,
        limits: LimitSet = LIMITS,
        rules: list[str] | None = None,
        up: Iterable[str] = ("sim",),
    ):
        ids = itertools.count(1)
        self.core = ProxyCore(
            sessions=SESSIONS if sessions is None else sessions,
            venues=venues,
            instruments=INSTRUMENTS if instruments is None else instruments,
            limits=limits,
            rules=rules,
            next_id=lambda: f"E{next(ids)}",
        )
        self.now = T0
        self._seq = itertools.count(1)
        self.seq = 0
        for name in up:
            self.core.handle(ev.SessionUp(name, self.now))

    def _next_seq(self) -> int:
        self.seq = next(self._seq)
        return self.seq

    def handle(self, event: ev.Event) -> list[ev.Action]:
        return self.core.handle(event)

    def new(self, req: OrderRequest | None = None, session: str = "oms1", **order_kw) -> list[ev.Action]:
        """Send a NewOrderSingle; ``order_kw`` builds one with :func:`order` if ``req`` is None."""
        req = order(**order_kw) if req is None else req
        return self.handle(ev.NewOrder(session, self._next_seq(), self.now, req))

    def replace(self, orig: str, req: OrderRequest, session: str = "oms1") -> list[ev.Action]:
        return self.handle(ev.ReplaceOrder(session, self._next_seq(), self.now, orig, req))

    def cancel(self, orig: str, cl_ord_id: str, session: str = "oms1") -> list[ev.Action]:
        return self.handle(ev.CancelOrder(session, self._next_seq(), self.now, cl_ord_id, orig))

    def report(
        self, cl_ord_id: str, exec_type: ExecType, ord_status: OrdStatus, venue: str = "sim", **kw
    ) -> list[ev.Action]:
        """Send a venue ExecutionReport (``cl_ord_id`` is the venue-side ClOrdID)."""
        return self.handle(ev.VenueReport(venue, self.now, exec_report(cl_ord_id, exec_type, ord_status, **kw)))

    def ack(self, venue_cl_ord_id: str, qty: str | int = 100, order_id: str = "V1") -> list[ev.Action]:
        """The venue acknowledges a new order (150=0, 39=0)."""
        return self.report(venue_cl_ord_id, ExecType.NEW, OrdStatus.NEW, leaves=qty, order_id=order_id)

    def live(self, cl_ord_id: str = "C1", session: str = "oms1", order_id: str = "V1", **order_kw) -> None:
        """An order accepted by the proxy and acknowledged by the venue."""
        req = order(cl_ord_id, **order_kw)
        actions = self.new(req, session)
        assert isinstance(actions[-1], ev.VenueNewOrder), actions
        self.ack(f"{session}.{cl_ord_id}", req.order_qty, order_id)

    def tracked(self, cl_ord_id: str, session: str = "oms1"):
        found = self.core.orders.by_oms(session, cl_ord_id)
        assert found is not None, f"no order {session}/{cl_ord_id}"
        return found


@pytest.fixture
def proxy() -> Harness:
    """The default harness: sessions oms1 (BMR rejects) and oms2 (ER rejects), venue sim up."""
    return Harness()
