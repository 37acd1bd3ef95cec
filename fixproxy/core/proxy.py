"""ProxyCore.handle(event) -> list[Action]: the one place that orchestrates the core.

The order flows live here (new orders, replaces and cancels from an OMS; reports, cancel rejects
and send failures from a venue; the desk's commands); each part they use has a module of its own:
the trading-state gate (gate.py), the risk rules (risk/rules.py), alerts (alerts.py), the desk's
live limit and reference-price edits (limit_edits.py), orders rebuilt from a venue's report after a
crash (rebuild.py). A refusal is named by its reject code; the FIX numbers for it (380, 103, 102)
are the codec's (fix/codec.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import msgspec

from . import events as ev
from . import gate, limit_edits
from .alerts import Alerts
from .book import FIRM, Book, Fill, Working
from .exec_ids import ExecIds
from .killswitch import KillAction, KillSwitch, parse_scope
from .model import CancelReject, ExecReport, ExecType, Instrument, OrderRequest, OrdStatus, OrdType, Side
from .orders import IllegalTransition, Order, OrderTable, check_transition
from .rebuild import order_from_report
from .risk.limits import LimitResolver, LimitSet
from .risk.rules import RULES, CheckContext, Reject, RiskSettings, reused_cl_ord_id, run_pipeline, venue_unavailable
from .tally import Tally

_SECOND_NS = 1_000_000_000
_ZERO = Decimal(0)
_ANY_SIDE = Side.BUY
_ANY_TYPE = OrdType.LIMIT


class SessionPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the proxy treats one OMS session."""

    default_venue: str = ""
    #: How a refused order is answered: BusinessMessageReject (35=j) or ExecutionReport (35=8, 150=8).
    reject_with: Literal["business_reject", "execution_report"] = "business_reject"
    #: Cancel the session's working orders at the venues when it logs out or drops.
    cancel_on_disconnect: bool = False


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
        finished_grace_s: float | None = None,
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
        #: Running counts for the desk (open orders, statuses, decisions): reads never walk the orders.
        self.tally = Tally()
        self.book = Book(self.instruments)
        self.up: set[str] = set()
        self._recent: dict[str, deque[int]] = {}  # session -> times of its last order messages
        self.alerts = Alerts(self.settings.alert_levels)
        #: Why the proxy cannot record its inputs ("" while it can): new risk is refused meanwhile.
        self.recording_failure = ""
        #: Live limit changes in the order made (layer, field, value): a snapshot carries them, to be
        #: applied again on top of the configured limits.
        self.limit_changes: list[tuple[str, str, object]] = []
        #: Rebuild an order from a venue report when the state lost it (the live proxy after a crash);
        #: off in replay, where an order the replay refused must stay refused.
        self.recover_orders = False
        self.kill = KillSwitch()
        #: symbol -> the reference the instrument file or the desk last set: fills may move a reference
        #: only within the collar around it (``reference_from_fills``), so they cannot walk it away.
        self._anchors: dict[str, Decimal] = {s: i.reference_price for s, i in self.instruments.items()
                                             if i.reference_price is not None}
        self._kill_cancels: dict[str, str] = {}  # venue ClOrdID of a cancel the proxy sent -> order key
        self._exec_ids = ExecIds()  # a resent fill is not booked twice, nor a recent report relayed twice
        #: The trading day (its date, as the edge names it; "" until the first DayRoll) and its number
        #: (the duplicate-ClOrdID check is per trading day and session).
        self.day = ""
        self.day_no = 0
        #: Finished orders and applied fills leave memory this long after they finish (None: at the
        #: day roll only); they stay in the journal and the audit store.
        self.finished_grace_ns = None if finished_grace_s is None else int(finished_grace_s * _SECOND_NS)
        self._forget_at: int | None = None  # the next time something finished may be forgotten
        self._dispatch: dict[type, Callable[[Any], list[ev.Action]]] = {
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
            ev.AdminKill: self._admin_kill,
            ev.AdminSetLimit: self._admin_set_limit,
            ev.AdminSetReference: self._admin_set_reference,
            ev.RecordingFailed: self._recording_failed,
            ev.RecordingResumed: self._recording_resumed,
            ev.DayRoll: self._day_roll,
        }

    def handle(self, event: ev.Event) -> list[ev.Action]:
        """The actions that answer ``event``, in the order they are to be carried out."""
        if self._forget_at is not None and event.now_ns >= self._forget_at:
            self._forget(event.now_ns)
        return self._dispatch[type(event)](event)

    def _forget(self, now_ns: int) -> None:
        """Finished orders and applied fills older than the grace period leave memory; deterministic
        (the events' clock decides), so a replay forgets the same things at the same point."""
        assert self.finished_grace_ns is not None  # _forget_at is set only with a grace period
        cutoff = now_ns - self.finished_grace_ns
        self._exec_ids.expire(cutoff, now_ns)
        self.orders.forget_finished(cutoff)
        self.book.fold(cutoff)
        nxt = [t for t in (self.orders.next_forget_ns(), self.book.next_fold_ns()) if t is not None]
        self._forget_at = min(nxt) + self.finished_grace_ns if nxt else None

    def _finished(self, order: Order, now_ns: int) -> None:
        """``order`` reached a final state: forgotten after the grace period (or at the day roll)."""
        self.orders.finished(order, now_ns)
        self._schedule_forget(now_ns)

    def _schedule_forget(self, now_ns: int) -> None:
        if self.finished_grace_ns is not None:
            due = now_ns + self.finished_grace_ns
            if self._forget_at is None or due < self._forget_at:
                self._forget_at = due

    # ------------------------------------------------------------ snapshots

    def export_state(self) -> dict:
        """Everything the core learnt from its events, for a snapshot (pickled by the journal).

        What the config gives (sessions, venues, rules, limits as configured, instruments) is not in
        it: a snapshot is applied to a core made from the config of the day (``import_state``), the
        live limit changes and reference prices on top, as they were made.
        """
        refs = [(s, i.reference_price, i.reference_time_ns) for s, i in self.instruments.items()
                if i.reference_price is not None and i.reference_time_ns]
        return {"orders": self.orders, "book": self.book, "kill": self.kill, "kill_cancels": self._kill_cancels,
                **self._exec_ids.export(), "day": self.day, "day_no": self.day_no, "ids_drawn": getattr(self.next_id, "drawn", None),
                "alerted": self.alerts.alerted, "recent": self._recent,
                "limit_changes": self.limit_changes, "references": refs, "anchors": dict(self._anchors),
                "up": set(self.up),
                "recording_failure": self.recording_failure, "tally": self.tally.export()}

    def import_state(self, state: dict) -> None:
        """Take over a snapshot's state (``export_state``) on a core made from the config."""
        self.orders, self.kill = state["orders"], state["kill"]
        self.tally = Tally.rebuild(self.orders.open_orders(), state.get("tally"))
        self._kill_cancels = state["kill_cancels"]
        self._exec_ids.load(state)
        self.day, self.day_no = state.get("day", ""), state.get("day_no", 0)
        for when in (self.orders.next_forget_ns(), self.book.next_fold_ns()):
            if when is not None:
                self._schedule_forget(when)
        self.alerts.alerted, self._recent = state["alerted"], state["recent"]
        self.recording_failure = state["recording_failure"]
        self.up = set(state["up"])
        self.limit_changes = []
        for layer, name, value in state["limit_changes"]:
            self.limits.replace(limit_edits.set_limit(self.limits.limits, layer, name, value))
            self.limit_changes.append((layer, name, value))
        book = state["book"]
        book.instruments = self.instruments  # the config's instruments, with the references as they were
        self.book = book
        for symbol, price, time_ns in state["references"]:
            inst = self.instruments.get(symbol)
            if inst is None or (inst.reference_time_ns or 0) <= time_ns:
                self.instruments[symbol] = msgspec.structs.replace(inst or Instrument(symbol),
                                                                   reference_price=price, reference_time_ns=time_ns)
                anchor = state.get("anchors", {}).get(symbol)
                if anchor is not None:
                    self._anchors[symbol] = anchor

    def sessions_gone(self) -> None:
        """The process that ran the sessions ended: none is logged on (a new process starts with none)."""
        self.up.clear()

    # ------------------------------------------------------------ orders from an OMS

    def _context(self, session: str, order: OrderRequest, now_ns: int, replacing: Order | None = None) -> CheckContext:
        return CheckContext(
            session,
            self.instruments.get(order.symbol),
            self.limits(session, order.account, order.symbol),
            now_ns,
            self.orders.seen(session, self.day_no),
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

    def _use_id(self, session: str, cl_ord_id: str, now_ns: int) -> None:
        self.orders.seen(session, self.day_no).add(cl_ord_id)

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

        Called on every change of an order.
        """
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
        return venue, self._venue_down(venue, "order")

    def _venue_down(self, venue: str, what: str) -> Reject | None:
        """Is the venue up: decided here, from the sessions the edge reported up and down."""
        if venue in self.up:
            return None
        return venue_unavailable(venue, f"venue {venue} is not connected; the {what} was not sent")

    def _cl_ord_id_taken(self, session: str, cl_ord_id: str, today: bool) -> Reject | None:
        """DUPLICATE_CLORDID for an open order's ClOrdID, and with ``today`` for any ClOrdID used today
        (for a new order that is the ``duplicate_cl_ord_id`` rule's to say, in the pipeline's order)."""
        used = today and cl_ord_id in self.orders.seen(session, self.day_no)
        return reused_cl_ord_id(session, cl_ord_id, used, self.orders.in_use(session, cl_ord_id))

    def _already_handled(self, session: str, cl_ord_id: str, now_ns: int, msg_type: str) -> list[ev.Action] | None:
        """A possible duplicate (43/97=Y) whose ClOrdID was already handled is ignored: the first one
        was answered, and the order must not reach the venue twice."""
        if cl_ord_id in self.orders.seen(session, self.day_no) or self.orders.by_oms(session, cl_ord_id):
            return [ev.Notice("possdup_ignored", now_ns, f"{session}: {msg_type} {cl_ord_id} resent; already handled")]
        return None

    def _new_order(self, e: ev.NewOrder) -> list[ev.Action]:
        order, session = e.order, e.session
        if session not in self.sessions:
            return [self._decision(e.session, "D", order, e.now_ns, Reject("UNKNOWN_SESSION", f"session {session} is not configured"))]
        if e.poss_dup and (done := self._already_handled(session, order.cl_ord_id, e.now_ns, "D")) is not None:
            return done
        self._count_message(session, e.now_ns)
        venue, rej = self._route(session, order)
        if rej is None:
            # An open order's ClOrdID is refused whatever the rules: the order table maps it to that order.
            rej = self._cl_ord_id_taken(session, order.cl_ord_id, today=False)
        if rej is None:
            rej = gate.refusal(self.kill, self.recording_failure, self.book, session, order, None)
        if rej is None:
            ctx = self._context(session, order, e.now_ns)
            rej = run_pipeline(self.rules, order, ctx)
        self._use_id(session, order.cl_ord_id, e.now_ns)
        if rej is not None:
            return [self._decision(session, "D", order, e.now_ns, rej), self._reject_order(e, rej)]
        tracked = Order(session, venue, order, OrderTable.venue_id(session, order.cl_ord_id))
        self.orders.add(tracked)
        self.tally.opened(tracked)
        self._sync_working(tracked)
        return [
            self._decision(session, "D", order, e.now_ns, None, venue),
            *self.alerts.check(self.limits.limits, self.book, session, order.account, e.now_ns),
            ev.VenueNewOrder(venue, tracked.venue_cl_ord_id, order),
        ]

    def _replace(self, e: ev.ReplaceOrder) -> list[ev.Action]:
        new, session = e.order, e.session
        if e.poss_dup and (done := self._already_handled(session, new.cl_ord_id, e.now_ns, "G")) is not None:
            return done
        self._count_message(session, e.now_ns)
        order = self.orders.by_oms(session, e.orig_cl_ord_id)
        rej = self._amend_refusal(session, e.orig_cl_ord_id, new.cl_ord_id, order, "replace")
        if rej is None and (new.symbol, new.side, new.account) != (order.request.symbol, order.request.side,
                                                                    order.request.account):
            rej = Reject("INVALID_ORDER", "a replace may not change the symbol, side or account; cancel and send a new order")
        if rej is None:
            rej = gate.refusal(self.kill, self.recording_failure, self.book, session, new, order)
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
        if e.poss_dup and (done := self._already_handled(session, e.cl_ord_id, e.now_ns, "F")) is not None:
            return done
        self._count_message(session, e.now_ns)  # cancels count toward the throttle but are never refused by it
        order = self.orders.by_oms(session, e.orig_cl_ord_id)
        rej = self._amend_refusal(session, e.orig_cl_ord_id, e.cl_ord_id, order, "cancel")
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

    def _amend_refusal(self, session: str, orig: str, new_id: str, order: Order | None, what: str) -> Reject | None:
        """Why a cancel or replace cannot go to the venue, if it cannot."""
        if session not in self.sessions:
            return Reject("UNKNOWN_SESSION", f"session {session} is not configured")
        if order is None:
            if orig in self.orders.seen(session, self.day_no):  # refused, or finished and gone from memory (finished_grace_s): not open either way
                return Reject("UNKNOWN_ORDER", f"no open order with ClOrdID {orig} on session {session} (it was "
                              "refused, or finished earlier today)", observed=orig)
            return Reject("UNKNOWN_ORDER", f"no order with ClOrdID {orig} on session {session}", observed=orig)
        taken = self._cl_ord_id_taken(session, new_id, today=True)
        if taken is not None:
            return taken
        if not order.is_open:
            return Reject("ORDER_NOT_OPEN", f"order {orig} is {order.status.name.lower()}; too late to {what}",
                          observed=order.status.name)
        if order.pending is not None and what == "replace":
            return Reject("ORDER_PENDING", f"order {orig} already has a replace in flight ({order.pending[0]})")
        return self._venue_down(order.venue, what)

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
                     observed=e.msg_type)
        return [
            self._decision(e.session, e.msg_type, None, e.now_ns, rej),
            ev.OmsBusinessReject(e.session, e.seq_num, e.msg_type, "", rej.code, rej.text),
        ]

    # ------------------------------------------------------------ messages from a venue

    def _venue_report(self, e: ev.VenueReport) -> list[ev.Action]:
        r = e.report
        known = False  # the ExecID came before (a fill's: today or the day before, booked already)
        if r.exec_id:
            known = self._exec_ids.seen(r.exec_id, r.exec_type is ExecType.TRADE)
            if e.poss_dup and known:
                return [ev.Notice("possdup_report_ignored", e.now_ns, f"venue {e.venue} resent ExecID {r.exec_id}")]
        found = self.orders.by_venue(r.cl_ord_id) or (self.orders.by_venue(r.orig_cl_ord_id) if r.orig_cl_ord_id else None)
        out: list[ev.Action] = []
        if found is None:
            # Not from a PossDup repeat of an order report: the order may be one that finished and left
            # memory, and an old acknowledgement must not bring it back as working.
            rebuild = self.recover_orders and (not e.poss_dup or r.exec_type is ExecType.TRADE)
            lost = order_from_report(e.venue, r, self.sessions) if rebuild else None
            if lost is not None:
                self.orders.add(lost)
                self.tally.opened(lost)
                found = lost, lost.cl_ord_id
            if found is None:
                return [ev.Notice("unknown_order_report", e.now_ns, f"venue {e.venue} reported on unknown ClOrdID {r.cl_ord_id}")]
            out.append(ev.Notice("order_recovered", e.now_ns, f"{found[0].session}/{found[1]} rebuilt from a venue report"))
        order, oms_id = found
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
            before, order.status = order.status, r.ord_status
            if not before.is_terminal and not order.is_open:
                self._finished(order, e.now_ns)
            self.tally.moved(order, before)
            if r.order_id:
                order.order_id = r.order_id
            order.leaves_qty, order.cum_qty, order.avg_px = r.leaves_qty, r.cum_qty, r.avg_px
            # The order's working quantity, the position and the reference price all move on a fill:
            # each line of the book is recomputed once, after all three.
            self.book.hold()
            try:
                self._sync_working(order)
                moved = self._book_fill(order, r, e.now_ns, out, known)
            finally:
                self.book.settle()
            if moved:
                out += self.alerts.check(self.limits.limits, self.book, order.session, order.request.account, e.now_ns)
        orig = self.orders.by_venue(r.orig_cl_ord_id) if r.orig_cl_ord_id else None
        if r.cl_ord_id in self._kill_cancels:
            orig = None  # the proxy's own cancel: the OMS sees an unsolicited cancel of its order
            if not order.is_open:
                del self._kill_cancels[r.cl_ord_id]
        req = order.request
        out.append(ev.OmsReport(order.session, msgspec.structs.replace(
            r, cl_ord_id=oms_id, orig_cl_ord_id=orig[1] if orig else "",
            symbol=r.symbol or req.symbol, side=r.side or req.side), e.poss_dup))
        return out

    def _book_fill(self, order: Order, r: ExecReport, now_ns: int, out: list[ev.Action], known: bool = False) -> bool:
        """Move the book by a fill, a bust (ExecType H) or a correction (G); True if it moved.

        Notices go to ``out``; the caller checks the alert levels once the book is settled.
        """
        req = order.request
        if r.exec_type is ExecType.TRADE and r.last_qty > 0:
            fill = Fill(r.exec_id, order.session, req.account, req.symbol, r.last_qty * Book.sign(req.side),
                        r.last_px, now_ns)
            if not self.book.fill(fill, known):
                out.append(ev.Notice("duplicate_fill", now_ns, f"ExecID {r.exec_id} already applied; ignored"))
                return False
            self._schedule_forget(now_ns)
            if r.last_px > 0 and self.settings.reference_from_fills:
                anchor = self._anchors.get(req.symbol)
                collar = self.limits("", "", req.symbol).price_collar_pct
                if anchor is not None and collar is not None:  # no collar, no move
                    self.book.set_reference(req.symbol, limit_edits.collared(r.last_px, anchor, collar.value), now_ns)
            if r.cum_qty > req.order_qty:
                out.append(ev.Notice("overfill", now_ns, f"{order.session}/{order.cl_ord_id}: cum {r.cum_qty} > "
                                                          f"order quantity {req.order_qty}"))
            return True
        if r.exec_type in (ExecType.TRADE_CANCEL, ExecType.TRADE_CORRECT):
            ref = r.exec_ref_id
            done = (self.book.bust(ref) if r.exec_type is ExecType.TRADE_CANCEL
                    else self.book.correct(ref, r.last_qty, r.last_px))
            if done is None:
                if self._exec_ids.had_fill(ref):
                    # The fill was folded into its position (finished_grace_s, a day roll): the desk must adjust.
                    out.append(ev.Alert("fill_adjustment", f"account:{req.account}" if req.account else FIRM, "100",
                                        ref, "", now_ns, f"FILL_ADJUSTMENT_NEEDED: {r.exec_type.name} of ExecID {ref} "
                                        f"({order.session}/{order.cl_ord_id} {req.symbol}) refers to a fill already "
                                        "folded into its position; the position was not changed"))
                    return False
                out.append(ev.Notice("unknown_fill", now_ns, f"{r.exec_type.name} refers to unknown ExecID {ref!r}"))
                return False
            return True
        return False

    def _venue_cancel_reject(self, e: ev.VenueCancelReject) -> list[ev.Action]:
        r = e.reject
        found = self.orders.by_venue(r.cl_ord_id) or self.orders.by_venue(r.orig_cl_ord_id)
        if found is None:
            return [ev.Notice("unknown_order_report", e.now_ns, f"venue {e.venue} cancel-rejected unknown ClOrdID {r.cl_ord_id}")]
        order, oms_id = found
        if self._kill_cancels.pop(r.cl_ord_id, None) is not None:
            # The OMS did not ask for this cancel: tell the desk (the log and audit), not the OMS.
            return [ev.Notice("kill_cancel_rejected", e.now_ns,
                              f"venue {e.venue} refused to cancel {order.session}/{order.cl_ord_id}: {r.text}")]
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
        if oms_id == order.cl_ord_id and order.status is not OrdStatus.PENDING_NEW:
            # Answered already (refused as too late to send, or acknowledged by the venue): not twice.
            return [ev.Notice("send_failed", e.now_ns, f"{e.venue}: {e.cl_ord_id} ({e.why}); "
                                                       f"order already {order.status.name.lower()}")]
        if e.why == "down":
            self.up.discard(e.venue)
            sentence = f"venue {e.venue} went down before the message could be sent"
        elif e.why == "late":
            sentence = (f"venue {e.venue} was not taking messages: the message would have reached it too late "
                        "after the proxy accepted it, so it was not sent")
        else:
            sentence = (f"venue {e.venue} did not receive the message (it asked for it again after a gap) and the "
                        "proxy does not resend orders, which could be stale; send it again if still wanted")
        if self._kill_cancels.pop(e.cl_ord_id, None) is not None:
            return [ev.Notice("kill_cancel_failed", e.now_ns, f"could not cancel {order.session}/{order.cl_ord_id}: "
                                                               f"{sentence}")]
        rej = venue_unavailable(e.venue, sentence)
        decision = self._decision(order.session, "D", None, e.now_ns, rej, e.venue, cl_ord_id=oms_id,
                                  symbol=order.request.symbol, account=order.request.account)
        if oms_id == order.cl_ord_id and order.status is OrdStatus.PENDING_NEW:
            order.status = OrdStatus.REJECTED
            self.tally.moved(order, OrdStatus.PENDING_NEW)
            order.leaves_qty = _ZERO
            self._sync_working(order)
            self._finished(order, e.now_ns)
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
        out: list[ev.Action] = [ev.Notice("session_down", e.now_ns, e.name)]
        policy = self.sessions.get(e.name)
        if policy is not None and policy.cancel_on_disconnect:
            cancels = self._mass_cancel(f"session:{e.name}")
            out.append(ev.AdminResult("cancel_on_disconnect", True, f"session:{e.name}", "fixproxy",
                                      "OMS session disconnected", e.now_ns, orders_cancelled=len(cancels),
                                      detail=f"{len(cancels)} working order(s) cancelled at the venues"))
            out += cancels
        return out

    # ------------------------------------------------------------ the risk desk

    def _mass_cancel(self, scope: str) -> list[ev.Action]:
        """Cancel at the venues every working order in ``scope`` (orders already being cancelled by us are skipped)."""
        pending = set(self._kill_cancels.values())
        out: list[ev.Action] = []
        for order in self.orders.open_orders():
            req = order.request
            if order.key in pending or not self.kill.covers(scope, order.session, req.account, req.symbol):
                continue
            venue_id = f"{order.session}!K{self.next_id()}"
            self._alias(order, order.cl_ord_id, venue_id)
            self._kill_cancels[venue_id] = order.key
            out.append(ev.VenueCancel(order.venue, venue_id, order.venue_cl_ord_id, order.order_id, req.symbol,
                                      req.side, req.order_qty, req.account))
        return out

    def kill_cancels_pending(self) -> int:
        """Cancels the proxy sent (halt and cancel, cancel on disconnect) still awaiting the venue."""
        return len(self._kill_cancels)

    def _admin_kill(self, e: ev.AdminKill) -> list[ev.Action]:
        try:
            scope = parse_scope(e.scope)
            action = KillAction(e.action)
            kind, _, name = scope.partition(":")
            if kind == "session" and name not in self.sessions:
                raise ValueError(f"no OMS session named {name!r} (sessions: {', '.join(sorted(self.sessions))})")
        except ValueError as exc:
            return [ev.AdminResult("kill", False, e.scope, e.operator, e.reason, e.now_ns, detail=str(exc),
                                   request_id=e.request_id)]
        before, after = self.kill.apply(scope, action, e.reason, e.operator, e.now_ns)
        cancels = self._mass_cancel(scope) if action is KillAction.HALT_AND_CANCEL else []
        result = ev.AdminResult("kill", True, scope, e.operator, e.reason, e.now_ns, before.state.value,
                                after.state.value, f"{action.value}: {len(cancels)} working order(s) cancelled",
                                len(cancels), e.request_id)
        return [result, *cancels]

    def _day_roll(self, e: ev.DayRoll) -> list[ev.Action]:
        """A new trading day: what the closed day finished leaves memory, what works carries over."""
        if e.day == self.day:
            return [ev.AdminResult("day_roll", False, FIRM, e.operator, e.reason, e.now_ns, self.day, e.day,
                                   f"the trading day is {e.day} already")]
        before = self.day
        orders = len(self.orders.forget_finished())
        fills = self.book.new_day()
        self.day, self.day_no = e.day, self.day_no + 1
        self.orders.seen("", self.day_no)  # drops the closed day's ClOrdIDs
        self._exec_ids.new_day(e.now_ns)
        self.tally.new_day()
        for venue_id, key in list(self._kill_cancels.items()):
            found = self.orders.by_venue(venue_id)
            if found is None or not found[0].is_open:
                del self._kill_cancels[venue_id]
        self._forget_at = None
        return [ev.AdminResult("day_roll", True, FIRM, e.operator, e.reason, e.now_ns, before, e.day,
                               f"{orders} finished order(s) and {fills} fill(s) left memory; "
                               f"{len(self.orders.open_orders())} working order(s) and "
                               f"{sum(1 for p in self.book.positions.values() if p.qty)} position(s) carried over")]

    def _recording_failed(self, e: ev.RecordingFailed) -> list[ev.Action]:
        first = not self.recording_failure
        self.recording_failure = e.reason
        if not first:
            return []
        return [ev.Alert("recording", FIRM, "100", e.reason, "", e.now_ns,
                         f"RECORDING_FAILED: {e.reason}; new orders are refused, cancels pass")]

    def _recording_resumed(self, e: ev.RecordingResumed) -> list[ev.Action]:
        before, self.recording_failure = self.recording_failure, ""
        return [ev.AdminResult("recording", True, FIRM, e.operator, e.reason, e.now_ns, before or "recording",
                               "recording", "the journal takes records again; new orders are accepted")]

    def _admin_set_limit(self, e: ev.AdminSetLimit) -> list[ev.Action]:
        limits, result = limit_edits.edit_limit(self.limits.limits, e)
        if limits is not None:
            self.limits.replace(limits)
            self.limit_changes.append((e.layer, e.field, e.value))
        return [result]

    def _admin_set_reference(self, e: ev.AdminSetReference) -> list[ev.Action]:
        inst = self.instruments.get(e.symbol)
        before = inst.reference_price if inst is not None else None
        price, result = limit_edits.edit_reference(e, before, self.settings.reference_change_max_pct)
        if price is not None:
            self.book.set_reference(e.symbol, price, e.now_ns)
            self._anchors[e.symbol] = price
        return [result]

    # ------------------------------------------------------------ answers

    def _decision(self, session: str, msg_type: str, order: OrderRequest | None, now_ns: int, rej: Reject | None,
                  venue: str = "", *, cl_ord_id: str = "", symbol: str = "", account: str = "") -> ev.Decision:
        if order is not None:
            cl_ord_id, symbol, account = order.cl_ord_id, order.symbol, order.account
        self.tally.decided(session, rej is None, rej.code if rej is not None else "")
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
                account=o.account,
            ), code=rej.code)
        return ev.OmsBusinessReject(e.session, e.seq_num, "D", o.cl_ord_id, rej.code, rej.text)

    def _cancel_reject(self, session: str, cl_ord_id: str, orig: str, order: Order | None, response_to: str,
                       rej: Reject) -> ev.OmsCancelReject:
        return ev.OmsCancelReject(session, CancelReject(
            cl_ord_id, orig, order.order_id or "NONE" if order else "NONE",
            order.status if order else OrdStatus.REJECTED, response_to, text=rej.text,
        ), rej.code)
