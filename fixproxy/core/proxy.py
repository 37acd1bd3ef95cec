"""ProxyCore.handle(event) -> list[Action]: the one place that orchestrates the core."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Literal

import msgspec

from . import events as ev
from .model import CancelReject, ExecReport, ExecType, Instrument, OrderRequest, OrdStatus, OrdType, Side
from .book import FIRM, Book, Fill, Working
from .orders import IllegalTransition, Order, OrderTable, check_transition
from .risk.limits import LimitResolver, Limits, LimitSet
from .risk.rules import (
    REASON_APPLICATION_NOT_AVAILABLE,
    REASON_OTHER,
    REASON_UNSUPPORTED_MESSAGE,
    RULES,
    CheckContext,
    Reject,
    RiskSettings,
    run_pipeline,
)

_DAY_NS = 86_400 * 1_000_000_000
_SECOND_NS = 1_000_000_000
_ZERO = Decimal(0)
_ANY_SIDE = Side.BUY
_ANY_TYPE = OrdType.LIMIT

# OrdRejReason (103) for an ExecutionReport reject, by code.
_ORD_REJ_REASON = {"UNKNOWN_SYMBOL": "1", "DUPLICATE_CLORDID": "6", "MAX_ORDER_QTY": "3", "MAX_ORDER_NOTIONAL": "3"}

# CxlRejReason (102)
CXL_TOO_LATE = "0"
CXL_UNKNOWN_ORDER = "1"
CXL_BROKER_OPTION = "2"
CXL_ALREADY_PENDING = "3"


class SessionPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the proxy treats one OMS session."""

    default_venue: str = ""
    #: How a refused order is answered: BusinessMessageReject (35=j) or ExecutionReport (35=8, 150=8).
    reject_with: Literal["business_reject", "execution_report"] = "business_reject"


class Changes:
    """What changed since the state store last saved: orders, fills, reference prices, ClOrdIDs used."""

    __slots__ = ("orders", "aliases", "fills", "references", "used_ids")

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.aliases: list[tuple[str, str, str]] = []  # (order key, OMS ClOrdID, venue ClOrdID)
        self.fills: list[Fill] = []
        self.references: set[str] = set()
        self.used_ids: list[tuple[int, str, str]] = []

    def __bool__(self) -> bool:
        return bool(self.orders or self.aliases or self.fills or self.references or self.used_ids)


class ProxyCore:
    """The transport-free proxy: orders in, decisions and messages out.

    Not thread-safe: the engine edge must serialise calls to :meth:`handle`.
    """

    def __init__(
        self,
        *,
        sessions: dict[str, SessionPolicy],
        venues: Iterable[str],
        instruments: dict[str, Instrument],
        limits: LimitSet,
        rules: Sequence[str] | None = None,
        next_id: Callable[[], str],
        settings: RiskSettings | None = None,
        locates: Mapping[tuple[str, str], Decimal] | None = None,
    ):
        self.sessions = dict(sessions)
        self.venues = frozenset(venues)
        self.instruments = dict(instruments)
        self.limits = LimitResolver(limits)
        names = list(RULES) if rules is None else list(rules)
        unknown = [n for n in names if n not in RULES]
        if unknown:
            raise ValueError(f"unknown rule(s): {', '.join(unknown)}")
        self.rules = tuple(RULES[n] for n in names)
        self.rule_names = tuple(names)
        self.next_id = next_id
        self.settings = settings or RiskSettings()
        self.locates = dict(locates or {})
        self.orders = OrderTable()
        self.book = Book(self.instruments)
        self.up: set[str] = set()
        self._recent: dict[str, deque[int]] = {}  # session -> times of its last order messages
        self._alert_levels = sorted(self.settings.alert_levels)
        self._alerted: dict[tuple[str, str], Decimal] = {}  # (limit, scope) -> level last crossed
        self.changes = Changes()
        self._dispatch: dict[type, Callable[[object], list[ev.Action]]] = {
            ev.NewOrder: self._new_order,
            ev.ReplaceOrder: self._replace,
            ev.CancelOrder: self._cancel,
            ev.VenueReport: self._venue_report,
            ev.VenueCancelReject: self._venue_cancel_reject,
            ev.VenueSendFailed: self._send_failed,
            ev.InvalidMessage: self._invalid,
            ev.UnsupportedMessage: self._unsupported,
            ev.SessionUp: self._session_up,
            ev.SessionDown: self._session_down,
        }

    def handle(self, event: ev.Event) -> list[ev.Action]:
        return self._dispatch[type(event)](event)

    def take_changes(self) -> Changes:
        """Hand over what changed since the last call (the caller saves it) and start afresh."""
        changes, self.changes = self.changes, Changes()
        return changes

    def restore(self, orders: Iterable[Order], aliases: Iterable[tuple[str, str, str]], fills: Iterable[Fill],
                references: Iterable[tuple[str, Decimal, int]], used_ids: Iterable[tuple[int, str, str]]) -> None:
        """Load saved state on top of start-of-day positions: orders (with their ClOrdID aliases as
        (order key, OMS ClOrdID, venue ClOrdID)), fills, reference prices and ClOrdIDs used."""
        by_key = {}
        for order in orders:
            by_key[order.key] = order
            self.orders.add(order)
        for key, cl_ord_id, venue_id in aliases:
            if key in by_key:
                self.orders.alias(by_key[key], cl_ord_id, venue_id)
        for order in by_key.values():
            # The current ids win over older aliases of the same order.
            self.orders.alias(order, order.cl_ord_id, order.venue_cl_ord_id)
            self._sync_working(order)
        for fill in fills:
            active = fill.active
            fill.active = True
            self.book.fill(fill)
            if not active:
                self.book.bust(fill.exec_id)
        for symbol, price, time_ns in references:
            self.book.set_reference(symbol, price, time_ns)
        for day, session, cl_ord_id in used_ids:
            self.orders.seen(session, day).add(cl_ord_id)
        self.changes = Changes()

    # ------------------------------------------------------------ orders from an OMS

    def _context(self, session: str, order: OrderRequest, now_ns: int, replacing: Order | None = None) -> CheckContext:
        return CheckContext(
            session,
            self.instruments.get(order.symbol),
            self.limits(session, order.account, order.symbol),
            now_ns,
            self.orders.seen(session, now_ns // _DAY_NS),
            replacing is not None,
            book=self.book,
            replacing=self.book.working(replacing.key) if replacing is not None else None,
            replacing_key=replacing.key if replacing is not None else "",
            settings=self.settings,
            msg_rate=len(self._recent.get(session, ())),
            locates=self.locates,
        )

    def _alias(self, order: Order, cl_ord_id: str, venue_id: str) -> None:
        self.orders.alias(order, cl_ord_id, venue_id)
        self.changes.aliases.append((order.key, cl_ord_id, venue_id))

    def _use_id(self, session: str, cl_ord_id: str, now_ns: int) -> None:
        day = now_ns // _DAY_NS
        self.orders.seen(session, day).add(cl_ord_id)
        self.changes.used_ids.append((day, session, cl_ord_id))

    def _count_message(self, session: str, now_ns: int) -> None:
        """Slide the session's one-second window of order messages (the throttle reads it)."""
        window = self._recent.get(session)
        if window is None:
            window = self._recent[session] = deque()
        window.append(now_ns)
        while window and window[0] <= now_ns - _SECOND_NS:
            window.popleft()

    def _sync_working(self, order: Order) -> None:
        """Make the book's working exposure of ``order`` match its state (a pending replace counts at the larger size).

        Called on every change of an order, so it is also where the order is marked for saving.
        """
        self.changes.orders[order.key] = order
        if not order.is_open:
            self.book.set_working(order.key, None)
            return
        req, leaves = order.request, order.leaves_qty
        if order.pending is not None:
            req = order.pending[2]
            leaves = max(leaves, req.order_qty - order.cum_qty)
        self.book.set_working(order.key, Working(order.session, req.account, req.symbol, Book.sign(req.side),
                                                 leaves, req.price))

    def _route(self, session: str, order: OrderRequest) -> tuple[str, Reject | None]:
        venue = order.ex_destination or self.sessions[session].default_venue
        if venue not in self.venues:
            return venue, Reject(
                "UNKNOWN_DESTINATION",
                f"no venue named {venue!r} (ExDestination 100)" if venue else "no ExDestination and no default venue",
                observed=venue,
            )
        if venue not in self.up:
            return venue, Reject(
                "VENUE_UNAVAILABLE",
                f"venue {venue} is not connected; the order was not sent",
                observed=venue,
                reason=REASON_APPLICATION_NOT_AVAILABLE,
            )
        return venue, None

    def _new_order(self, e: ev.NewOrder) -> list[ev.Action]:
        order, session = e.order, e.session
        if session not in self.sessions:
            return [self._decision(e.session, "D", order, e.now_ns, Reject("UNKNOWN_SESSION", f"session {session} is not configured"))]
        self._count_message(session, e.now_ns)
        venue, rej = self._route(session, order)
        if rej is None and self.orders.in_use(session, order.cl_ord_id):
            rej = _in_use(session, order.cl_ord_id)
        if rej is None:
            ctx = self._context(session, order, e.now_ns)
            rej = run_pipeline(self.rules, order, ctx)
        self._use_id(session, order.cl_ord_id, e.now_ns)
        if rej is not None:
            return [self._decision(session, "D", order, e.now_ns, rej), self._reject_order(e, rej)]
        tracked = Order(session, venue, order, OrderTable.venue_id(session, order.cl_ord_id))
        self.orders.add(tracked)
        self._sync_working(tracked)
        return [
            self._decision(session, "D", order, e.now_ns, None, venue),
            *self._alerts(session, order.account, e.now_ns),
            ev.VenueNewOrder(venue, tracked.venue_cl_ord_id, order),
        ]

    def _replace(self, e: ev.ReplaceOrder) -> list[ev.Action]:
        new, session = e.order, e.session
        self._count_message(session, e.now_ns)
        order = self.orders.by_oms(session, e.orig_cl_ord_id)
        seen = self.orders.seen(session, e.now_ns // _DAY_NS)
        rej = self._amend_refusal(session, e.orig_cl_ord_id, new.cl_ord_id, order, seen, "replace")
        if rej is None and (new.symbol, new.side, new.account) != (order.request.symbol, order.request.side,
                                                                    order.request.account):
            rej = Reject("INVALID_ORDER", "a replace may not change the symbol, side or account; cancel and send a new order")
        if rej is None:
            rej = run_pipeline(self.rules, new, self._context(session, new, e.now_ns, replacing=order))
        self._use_id(session, new.cl_ord_id, e.now_ns)
        if rej is not None:
            return [
                self._decision(session, "G", new, e.now_ns, rej),
                self._cancel_reject(session, new.cl_ord_id, e.orig_cl_ord_id, order, "2", rej),
            ]
        venue_id = OrderTable.venue_id(session, new.cl_ord_id)
        order.pending = (new.cl_ord_id, venue_id, msgspec.structs.replace(new, ex_destination=order.request.ex_destination))
        self._alias(order, new.cl_ord_id, venue_id)
        self._sync_working(order)
        return [
            self._decision(session, "G", new, e.now_ns, None, order.venue),
            ev.VenueReplace(order.venue, venue_id, order.venue_cl_ord_id, order.order_id, order.pending[2]),
        ]

    def _cancel(self, e: ev.CancelOrder) -> list[ev.Action]:
        session = e.session
        self._count_message(session, e.now_ns)  # cancels count toward the throttle but are never refused by it
        order = self.orders.by_oms(session, e.orig_cl_ord_id)
        seen = self.orders.seen(session, e.now_ns // _DAY_NS)
        rej = self._amend_refusal(session, e.orig_cl_ord_id, e.cl_ord_id, order, seen, "cancel")
        self._use_id(session, e.cl_ord_id, e.now_ns)
        symbol = order.request.symbol if order else e.symbol
        account = order.request.account if order else e.account
        if rej is not None:
            return [
                self._decision(session, "F", None, e.now_ns, rej, cl_ord_id=e.cl_ord_id, symbol=symbol, account=account),
                self._cancel_reject(session, e.cl_ord_id, e.orig_cl_ord_id, order, "1", rej),
            ]
        venue_id = OrderTable.venue_id(session, e.cl_ord_id)
        self._alias(order, e.cl_ord_id, venue_id)
        req = order.request
        return [
            self._decision(session, "F", None, e.now_ns, None, order.venue, cl_ord_id=e.cl_ord_id, symbol=symbol, account=account),
            ev.VenueCancel(order.venue, venue_id, order.venue_cl_ord_id, order.order_id, req.symbol, req.side,
                           req.order_qty, req.account),
        ]

    def _amend_refusal(self, session: str, orig: str, new_id: str, order: Order | None, seen: set[str], what: str) -> Reject | None:
        """Why a cancel or replace cannot go to the venue, if it cannot."""
        if session not in self.sessions:
            return Reject("UNKNOWN_SESSION", f"session {session} is not configured")
        if order is None:
            return Reject("UNKNOWN_ORDER", f"no order with ClOrdID {orig} on session {session}", observed=orig)
        if new_id in seen:
            return Reject("DUPLICATE_CLORDID", f"ClOrdID {new_id} was already used on session {session} today",
                          observed=new_id, scope=f"session:{session}")
        if self.orders.in_use(session, new_id):
            return _in_use(session, new_id)
        if not order.is_open:
            return Reject("ORDER_NOT_OPEN", f"order {orig} is {order.status.name.lower()}; too late to {what}",
                          observed=order.status.name)
        if order.pending is not None and what == "replace":
            return Reject("ORDER_PENDING", f"order {orig} already has a replace in flight ({order.pending[0]})")
        if order.venue not in self.up:
            return Reject("VENUE_UNAVAILABLE", f"venue {order.venue} is not connected; the {what} was not sent",
                          observed=order.venue, reason=REASON_APPLICATION_NOT_AVAILABLE)
        return None

    def _invalid(self, e: ev.InvalidMessage) -> list[ev.Action]:
        rej = Reject("INVALID_ORDER", e.reason)
        if e.cl_ord_id:
            self._use_id(e.session, e.cl_ord_id, e.now_ns)
        if e.msg_type == "D":
            stub = OrderRequest(e.cl_ord_id, "", _ANY_SIDE, _ZERO, _ANY_TYPE)
            return [
                self._decision(e.session, "D", None, e.now_ns, rej, cl_ord_id=e.cl_ord_id),
                self._reject_order(ev.NewOrder(e.session, e.seq_num, e.now_ns, stub), rej, bare=True),
            ]
        order = self.orders.by_oms(e.session, e.orig_cl_ord_id)
        return [
            self._decision(e.session, e.msg_type, None, e.now_ns, rej, cl_ord_id=e.cl_ord_id),
            self._cancel_reject(e.session, e.cl_ord_id, e.orig_cl_ord_id, order, "2" if e.msg_type == "G" else "1", rej),
        ]

    def _unsupported(self, e: ev.UnsupportedMessage) -> list[ev.Action]:
        rej = Reject("UNSUPPORTED_MESSAGE", f"message type {e.msg_type} is not accepted by the proxy",
                     observed=e.msg_type, reason=REASON_UNSUPPORTED_MESSAGE)
        return [
            self._decision(e.session, e.msg_type, None, e.now_ns, rej),
            ev.OmsBusinessReject(e.session, e.seq_num, e.msg_type, "", rej.reason, rej.text),
        ]

    # ------------------------------------------------------------ messages from a venue

    def _venue_report(self, e: ev.VenueReport) -> list[ev.Action]:
        r = e.report
        found = self.orders.by_venue(r.cl_ord_id) or (self.orders.by_venue(r.orig_cl_ord_id) if r.orig_cl_ord_id else None)
        if found is None:
            return [ev.Notice("unknown_order_report", e.now_ns, f"venue {e.venue} reported on unknown ClOrdID {r.cl_ord_id}")]
        order, oms_id = found
        out: list[ev.Action] = []
        try:
            check_transition(order.status, r.ord_status)
        except IllegalTransition as exc:
            # The venue said something impossible: keep our state, still tell the OMS what the venue said.
            out.append(ev.Notice("illegal_transition", e.now_ns, f"{order.session}/{order.cl_ord_id}: {exc}"))
        else:
            if order.pending is not None and r.cl_ord_id == order.pending[1]:
                if r.exec_type is ExecType.REPLACED:
                    order.cl_ord_id, order.venue_cl_ord_id, order.request = order.pending
                    order.pending = None
                elif r.exec_type is ExecType.REJECTED:
                    order.pending = None
            order.status = r.ord_status
            if r.order_id:
                order.order_id = r.order_id
            order.leaves_qty, order.cum_qty, order.avg_px = r.leaves_qty, r.cum_qty, r.avg_px
            self._sync_working(order)
            out += self._book_fill(order, r, e.now_ns)
        orig = self.orders.by_venue(r.orig_cl_ord_id) if r.orig_cl_ord_id else None
        req = order.request
        out.append(ev.OmsReport(order.session, msgspec.structs.replace(
            r, cl_ord_id=oms_id, orig_cl_ord_id=orig[1] if orig else "",
            symbol=r.symbol or req.symbol, side=r.side or req.side)))
        return out

    def _book_fill(self, order: Order, r: ExecReport, now_ns: int) -> list[ev.Action]:
        """Move the book by a fill, a bust (ExecType H) or a correction (G)."""
        req = order.request
        out: list[ev.Action] = []
        if r.exec_type is ExecType.TRADE and r.last_qty > 0:
            fill = Fill(r.exec_id, order.session, req.account, req.symbol, r.last_qty * Book.sign(req.side),
                        r.last_px, now_ns)
            if not self.book.fill(fill):
                return [ev.Notice("duplicate_fill", now_ns, f"ExecID {r.exec_id} already applied; ignored")]
            self.changes.fills.append(fill)
            if r.last_px > 0:
                self.book.set_reference(req.symbol, r.last_px, now_ns)
                self.changes.references.add(req.symbol)
            if r.cum_qty > req.order_qty:
                out.append(ev.Notice("overfill", now_ns, f"{order.session}/{order.cl_ord_id}: cum {r.cum_qty} > "
                                                          f"order quantity {req.order_qty}"))
        elif r.exec_type in (ExecType.TRADE_CANCEL, ExecType.TRADE_CORRECT):
            ref = r.exec_ref_id
            done = (self.book.bust(ref) if r.exec_type is ExecType.TRADE_CANCEL
                    else self.book.correct(ref, r.last_qty, r.last_px))
            if done is None:
                return [ev.Notice("unknown_fill", now_ns, f"{r.exec_type.name} refers to unknown ExecID {ref!r}")]
            self.changes.fills.append(done)
        else:
            return out
        return out + self._alerts(order.session, req.account, now_ns)

    # ------------------------------------------------------------ alerts

    def _layer(self, scope: str) -> Limits | None:
        if scope == FIRM:
            return self.limits.limits.firm
        kind, _, key = scope.partition(":")
        return (self.limits.limits.sessions if kind == "session" else self.limits.limits.accounts).get(key)

    def _alerts(self, session: str, account: str, now_ns: int) -> list[ev.Action]:
        """Alert once each time the utilization of an aggregate limit crosses a level upward."""
        if not self._alert_levels:
            return []
        out: list[ev.Action] = []
        for scope in Book.scopes_of(session, account):
            layer = self._layer(scope)
            if layer is None:
                continue
            for name in ("max_gross_exposure", "max_net_exposure", "max_open_orders"):
                limit = getattr(layer, name)
                if not limit:
                    continue
                observed = self._observed(name, scope)
                pct = Decimal(observed) * 100 / Decimal(limit)
                level = next((lv for lv in reversed(self._alert_levels) if pct >= lv), _ZERO)
                key = (name, scope)
                if level > self._alerted.get(key, _ZERO):
                    out.append(ev.Alert(name, scope, _plain(level), _plain(observed), _plain(limit), now_ns,
                                        f"{name} of {scope} at {pct:.1f}% of its limit ({_plain(observed)} of {_plain(limit)})"))
                self._alerted[key] = level
        return out

    def _observed(self, name: str, scope: str) -> Decimal | int:
        if name == "max_open_orders":
            return self.book.open_orders(scope)
        if name == "max_gross_exposure":
            return self.book.gross(scope)
        t = self.book.totals(scope)
        return max(t.long, -t.short)

    def _venue_cancel_reject(self, e: ev.VenueCancelReject) -> list[ev.Action]:
        r = e.reject
        found = self.orders.by_venue(r.cl_ord_id) or self.orders.by_venue(r.orig_cl_ord_id)
        if found is None:
            return [ev.Notice("unknown_order_report", e.now_ns, f"venue {e.venue} cancel-rejected unknown ClOrdID {r.cl_ord_id}")]
        order, oms_id = found
        if order.pending is not None and order.pending[1] == r.cl_ord_id:
            order.pending = None
            self._sync_working(order)
        orig = self.orders.by_venue(r.orig_cl_ord_id)
        return [ev.OmsCancelReject(order.session, msgspec.structs.replace(
            r, cl_ord_id=oms_id, orig_cl_ord_id=orig[1] if orig else r.orig_cl_ord_id,
            order_id=r.order_id or order.order_id))]

    def _send_failed(self, e: ev.VenueSendFailed) -> list[ev.Action]:
        found = self.orders.by_venue(e.cl_ord_id)
        if found is None:
            return [ev.Notice("send_failed", e.now_ns, f"{e.venue}: {e.cl_ord_id}")]
        order, oms_id = found
        self.up.discard(e.venue)
        rej = Reject("VENUE_UNAVAILABLE", f"venue {e.venue} went down before the message could be sent",
                     observed=e.venue, reason=REASON_APPLICATION_NOT_AVAILABLE)
        decision = self._decision(order.session, "D", None, e.now_ns, rej, e.venue, cl_ord_id=oms_id,
                                  symbol=order.request.symbol, account=order.request.account)
        if oms_id == order.cl_ord_id and order.status is OrdStatus.PENDING_NEW:
            order.status = OrdStatus.REJECTED
            order.leaves_qty = _ZERO
            self._sync_working(order)
            return [decision, self._reject_order(ev.NewOrder(order.session, 0, e.now_ns, order.request), rej)]
        is_replace = order.pending is not None and order.pending[0] == oms_id
        if is_replace:
            order.pending = None
            self._sync_working(order)
        decision = msgspec.structs.replace(decision, msg_type="G" if is_replace else "F")
        return [decision, self._cancel_reject(order.session, oms_id, order.cl_ord_id, order, "2" if is_replace else "1", rej)]

    # ------------------------------------------------------------ sessions

    def _session_up(self, e: ev.SessionUp) -> list[ev.Action]:
        self.up.add(e.name)
        return [ev.Notice("session_up", e.now_ns, e.name)]

    def _session_down(self, e: ev.SessionDown) -> list[ev.Action]:
        self.up.discard(e.name)
        return [ev.Notice("session_down", e.now_ns, e.name)]

    # ------------------------------------------------------------ answers

    def _decision(self, session: str, msg_type: str, order: OrderRequest | None, now_ns: int, rej: Reject | None,
                  venue: str = "", *, cl_ord_id: str = "", symbol: str = "", account: str = "") -> ev.Decision:
        if order is not None:
            cl_ord_id, symbol, account = order.cl_ord_id, order.symbol, order.account
        if rej is None:
            return ev.Decision(session, msg_type, cl_ord_id, True, now_ns, account=account, symbol=symbol, venue=venue)
        return ev.Decision(session, msg_type, cl_ord_id, False, now_ns, rej.code, rej.text, rej.observed,
                           rej.limit, rej.scope, account, symbol, venue)

    def _reject_order(self, e: ev.NewOrder, rej: Reject, bare: bool = False) -> ev.Action:
        policy = self.sessions.get(e.session)
        o = e.order
        if policy is not None and policy.reject_with == "execution_report" and not bare:
            return ev.OmsReport(e.session, ExecReport(
                ExecType.REJECTED, OrdStatus.REJECTED, o.cl_ord_id, "NONE", self.next_id(),
                symbol=o.symbol, side=o.side, order_qty=o.order_qty, price=o.price, text=rej.text,
                account=o.account, ord_rej_reason=_ORD_REJ_REASON.get(rej.code, "0"),
            ))
        return ev.OmsBusinessReject(e.session, e.seq_num, "D", o.cl_ord_id, rej.reason or REASON_OTHER, rej.text)

    def _cancel_reject(self, session: str, cl_ord_id: str, orig: str, order: Order | None, response_to: str,
                       rej: Reject) -> ev.OmsCancelReject:
        reason = {"UNKNOWN_ORDER": CXL_UNKNOWN_ORDER, "ORDER_NOT_OPEN": CXL_TOO_LATE,
                  "ORDER_PENDING": CXL_ALREADY_PENDING}.get(rej.code, CXL_BROKER_OPTION)
        return ev.OmsCancelReject(session, CancelReject(
            cl_ord_id, orig, order.order_id or "NONE" if order else "NONE",
            order.status if order else OrdStatus.REJECTED, response_to, reason, rej.text,
        ))



def _plain(value: Decimal | int) -> str:
    if isinstance(value, int):
        return str(value)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _in_use(session: str, cl_ord_id: str) -> Reject:
    return Reject("DUPLICATE_CLORDID", f"ClOrdID {cl_ord_id} belongs to an order still open on session {session}",
                  observed=cl_ord_id, scope=f"session:{session}")
