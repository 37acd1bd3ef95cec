"""ProxyCore.handle(event) -> list[Action]: the one place that orchestrates the core.

The order flows live here: new orders, replaces and cancels from an OMS; reports, cancel rejects
and send failures from a venue; sessions going up and down. Each part they use has a module of its
own: the refusals before the rules (refusals.py), the trading-state gate (gate.py), the risk rules
(risk/rules.py), alerts (alerts.py), the answers to a refusal (answers.py), the book's side of orders
and fills (booking.py), the proxy's own cancels (own_cancels.py), what leaves memory and when
(retention.py), orders rebuilt from a venue's report after a crash (rebuild.py). The desk's commands
are handled in commands.py (its live edits checked in limit_edits.py), and the state is saved and
restored by snapshot.py. A refusal is named by its reject code; the FIX numbers for it (380, 103,
102) are the codec's (fix/codec.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any, Literal

import msgspec

from . import answers, booking, cluster, commands, events as ev, gate, limit_edits, monitor, refusals
from .alerts import Alerts
from .anomaly import Anomaly, AnomalySettings
from .book import Book
from .drop_copy import DropCopies
from .exec_ids import ExecIds
from .killswitch import KillSwitch
from .model import ExecType, Instrument, OrderRequest, OrdStatus, OrdType, Side
from .orders import IllegalTransition, Order, OrderTable, check_transition
from .own_cancels import OwnCancels
from .rebuild import order_from_report
from .retention import Retention
from .risk.limits import LimitResolver, LimitSet
from .risk.rules import RULES, CheckContext, Reject, RiskSettings, Rule, run_pipeline, venue_unavailable
from .tally import Tally

_SECOND_NS = 1_000_000_000
_ZERO = Decimal(0)
_ANY_SIDE = Side.BUY
_ANY_TYPE = OrdType.LIMIT
_NOTHING: tuple[ev.Action, ...] = ()


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
        drop_copies: DropCopies | None = None,
        monitored: Iterable[str] = (),
        anomaly: AnomalySettings | None = None,
    ) -> None:
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
        #: Rules in monitor mode (``monitored``; ``rules`` is then the enforced ones): monitor.configure.
        self.monitored: frozenset[str] = frozenset()
        self.watched_rules: tuple[tuple[str, Rule], ...] = ()
        self.all_rules: tuple[tuple[str, Rule], ...] = ()
        #: Live mode changes in the order made (rule, layer, field, mode), for the snapshot.
        self.mode_changes: list[tuple[str, str, str, str]] = []
        monitor.configure(self, monitored)
        self.next_id = next_id
        self.settings = settings or RiskSettings()
        self.locates = dict(locates or {})
        self.orders = OrderTable()
        #: Running counts for the desk (open orders, statuses, decisions): reads never walk the orders.
        self.tally = Tally()
        self.book = Book(self.instruments)
        self.up: set[str] = set()
        self.recent: dict[str, deque[int]] = {}  # session -> times of its last order messages
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
        #: This instance's shares of the limits a cluster of proxies shares (``enabled`` by the
        #: composition root when ``[cluster]`` is configured).
        self.shares = cluster.ClusterShares()
        #: symbol -> the reference the instrument file or the desk last set: fills may move a reference
        #: only within the collar around it (``reference_from_fills``), so they cannot walk it away.
        self.anchors: dict[str, Decimal] = {
            s: i.reference_price for s, i in self.instruments.items() if i.reference_price is not None
        }
        self.own_cancels = OwnCancels()  # halt and cancel, cancel on disconnect
        self.exec_ids = ExecIds()  # a resent fill is not booked twice, nor a recent report relayed twice
        #: The trading day (its date, as the edge names it; "" until the first DayRoll) and its number
        #: (the duplicate-ClOrdID check is per trading day and session).
        self.day = ""
        self.day_no = 0
        self.retention = Retention(finished_grace_s)
        #: The drop-copy sessions (None: none configured, and no copy work per report).
        self.drop_copies = drop_copies
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
            ev.AdminKill: partial(commands.kill, self),
            ev.AdminSetLimit: partial(commands.set_limit, self),
            ev.AdminSetReference: partial(commands.set_reference, self),
            ev.RecordingFailed: partial(commands.recording_failed, self),
            ev.RecordingResumed: partial(commands.recording_resumed, self),
            ev.DayRoll: partial(commands.day_roll, self),
            ev.AdminSetMode: partial(monitor.set_mode, self),
            ev.ClusterShare: partial(cluster.share, self),
            ev.ClusterFence: partial(cluster.fence, self),
        }
        #: The anomaly detectors (core/anomaly.py): around the order handlers when one is on.
        self.anomaly = Anomaly(anomaly)
        self.anomaly.attach(self, self._dispatch)

    def handle(self, event: ev.Event) -> list[ev.Action]:
        """The actions that answer ``event``, in the order they are to be carried out."""
        due = self.retention.due_ns
        if due is not None and event.now_ns >= due:
            self.retention.forget(event.now_ns, self.orders, self.book, self.exec_ids)
        return self._dispatch[type(event)](event)

    def _finished(self, order: Order, now_ns: int) -> None:
        """``order`` reached a final state: forgotten after the grace period (or at the day roll)."""
        self.orders.finished(order, now_ns)
        self.retention.finished(now_ns)

    def kill_cancels_pending(self) -> int:
        """Cancels the proxy sent (halt and cancel, cancel on disconnect) still awaiting the venue."""
        return len(self.own_cancels)

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
            msg_rate=len(self.recent.get(session, ())),
            locates=self.locates,
            shares=self.shares if self.shares.enabled else None,
        )

    def _use_id(self, session: str, cl_ord_id: str) -> None:
        self.orders.seen(session, self.day_no).add(cl_ord_id)

    def _count_message(self, session: str, now_ns: int) -> None:
        """Slide the session's one-second window of order messages (the throttle reads it)."""
        window = self.recent.get(session)
        if window is None:
            window = self.recent[session] = deque()
        window.append(now_ns)
        while window and window[0] <= now_ns - _SECOND_NS:
            window.popleft()

    def _already_handled(self, session: str, cl_ord_id: str, now_ns: int, msg_type: str) -> list[ev.Action] | None:
        """A possible duplicate (43/97=Y) whose ClOrdID was already handled is ignored: the first one
        was answered, and the order must not reach the venue twice."""
        if cl_ord_id in self.orders.seen(session, self.day_no) or self.orders.by_oms(session, cl_ord_id):
            return [ev.Notice("possdup_ignored", now_ns, f"{session}: {msg_type} {cl_ord_id} resent; already handled")]
        return None

    def _new_order(self, e: ev.NewOrder) -> list[ev.Action]:
        order, session = e.order, e.session
        if session not in self.sessions:
            return [self._decision(e.session, "D", order, e.now_ns, refusals.unknown_session(session))]
        if e.poss_dup and (done := self._already_handled(session, order.cl_ord_id, e.now_ns, "D")) is not None:
            return done
        self._count_message(session, e.now_ns)
        venue = order.ex_destination or self.sessions[session].default_venue
        watched: Sequence[ev.Action] = _NOTHING
        # An open order's ClOrdID is refused whatever else holds: the order table maps it to that order.
        rej = refusals.cl_ord_id_taken(self.orders, self.day_no, session, order.cl_ord_id, today=False)
        if rej is None:
            # The trading state before the venue: a halted scope's order is refused HALTED even while
            # its venue is down or unknown (the desk's decision, which a reconnect does not change).
            rej = gate.refusal(self.kill, self.recording_failure, self.book, session, order, None)
        if rej is None:
            rej = refusals.destination(venue, self.venues, self.up)
        if rej is None:
            ctx = self._context(session, order, e.now_ns)
            rej = run_pipeline(self.rules, order, ctx)
            if rej is None and (self.watched_rules or self.limits.watching):
                watched = monitor.would_refuse(self, session, "D", order, ctx, venue)
        self._use_id(session, order.cl_ord_id)
        if rej is not None:
            if self.shares.enabled:
                # Refused by a shared limit, perhaps only for want of a share: the edge tops it up.
                self.shares.refused(rej.code, rej.scope, rej.observed, order.side.is_buy)
            return [self._decision(session, "D", order, e.now_ns, rej), *self._reject_order(e, rej)]
        tracked = Order(session, venue, order, OrderTable.venue_id(session, order.cl_ord_id))
        self.orders.add(tracked)
        self.tally.opened(tracked)
        booking.sync_working(self.book, tracked)
        if self.shares.low:
            self.shares.watch(self.book, order.account)
        return [
            self._decision(session, "D", order, e.now_ns, None, venue),
            *watched,
            *self.alerts.check(self.limits.limits, self.book, session, order.account, e.now_ns),
            ev.VenueNewOrder(venue, tracked.venue_cl_ord_id, order),
        ]

    def _replace(self, e: ev.ReplaceOrder) -> list[ev.Action]:
        new, session = e.order, e.session
        if e.poss_dup and (done := self._already_handled(session, new.cl_ord_id, e.now_ns, "G")) is not None:
            return done
        self._count_message(session, e.now_ns)
        known = self.orders.by_oms(session, e.orig_cl_ord_id)
        order = self._replaceable(e, known)
        watched: Sequence[ev.Action] = _NOTHING
        if (self.watched_rules or self.limits.watching) and not isinstance(order, Reject):
            ctx = self._context(session, new, e.now_ns, replacing=order)
            watched = monitor.would_refuse(self, session, "G", new, ctx, order.venue)
        self._use_id(session, new.cl_ord_id)
        if isinstance(order, Reject):
            return [
                self._decision(session, "G", new, e.now_ns, order),
                answers.cancel_reject(session, new.cl_ord_id, e.orig_cl_ord_id, known, "2", order),
            ]
        venue_id = OrderTable.venue_id(session, new.cl_ord_id)
        order.pending = (
            new.cl_ord_id,
            venue_id,
            msgspec.structs.replace(new, ex_destination=order.request.ex_destination),
        )
        self.orders.alias(order, new.cl_ord_id, venue_id)
        booking.sync_working(self.book, order)
        if self.shares.low:
            self.shares.watch(self.book, new.account)
        return [
            self._decision(session, "G", new, e.now_ns, None, order.venue),
            *watched,
            ev.VenueReplace(order.venue, venue_id, order.venue_cl_ord_id, order.order_id, order.pending[2]),
        ]

    def _replaceable(self, e: ev.ReplaceOrder, known: Order | None) -> Order | Reject:
        """The order a replace amends, or the refusal of the replace."""
        new, session = e.order, e.session
        order = self._amendable(session, e.orig_cl_ord_id, new.cl_ord_id, known, "replace")
        if isinstance(order, Reject):
            return order
        rej = refusals.replace_changes_key(order.request, new)
        if rej is None:
            rej = gate.refusal(self.kill, self.recording_failure, self.book, session, new, order)
        if rej is None:
            rej = run_pipeline(self.rules, new, self._context(session, new, e.now_ns, replacing=order))
        return order if rej is None else rej

    def _cancel(self, e: ev.CancelOrder) -> list[ev.Action]:
        session = e.session
        if e.poss_dup and (done := self._already_handled(session, e.cl_ord_id, e.now_ns, "F")) is not None:
            return done
        self._count_message(session, e.now_ns)  # cancels count toward the throttle but are never refused by it
        known = self.orders.by_oms(session, e.orig_cl_ord_id)
        order = self._amendable(session, e.orig_cl_ord_id, e.cl_ord_id, known, "cancel")
        self._use_id(session, e.cl_ord_id)
        symbol = known.request.symbol if known else e.symbol
        account = known.request.account if known else e.account
        if isinstance(order, Reject):
            return [
                self._decision(
                    session, "F", None, e.now_ns, order, cl_ord_id=e.cl_ord_id, symbol=symbol, account=account
                ),
                answers.cancel_reject(session, e.cl_ord_id, e.orig_cl_ord_id, known, "1", order),
            ]
        venue_id = OrderTable.venue_id(session, e.cl_ord_id)
        return [
            self._decision(
                session, "F", None, e.now_ns, None, order.venue, cl_ord_id=e.cl_ord_id, symbol=symbol, account=account
            ),
            self.orders.cancel_at_venue(order, e.cl_ord_id, venue_id),
        ]

    def _amendable(self, session: str, orig: str, new_id: str, order: Order | None, what: str) -> Order | Reject:
        """The order a cancel or replace amends, or why it cannot go to the venue."""
        if session not in self.sessions:
            return refusals.unknown_session(session)
        return refusals.amend(self.orders, self.day_no, self.up, session, orig, new_id, order, what)

    def _invalid(self, e: ev.InvalidMessage) -> list[ev.Action]:
        rej = Reject("INVALID_ORDER", e.reason)
        if e.cl_ord_id:
            self._use_id(e.session, e.cl_ord_id)
        if e.msg_type == "D":
            stub = OrderRequest(e.cl_ord_id, "", _ANY_SIDE, _ZERO, _ANY_TYPE)
            return [
                self._decision(e.session, "D", None, e.now_ns, rej, cl_ord_id=e.cl_ord_id),
                *self._reject_order(ev.NewOrder(e.session, e.seq_num, e.now_ns, stub), rej, bare=True),
            ]
        order = self.orders.by_oms(e.session, e.orig_cl_ord_id)
        return [
            self._decision(e.session, e.msg_type, None, e.now_ns, rej, cl_ord_id=e.cl_ord_id),
            answers.cancel_reject(
                e.session, e.cl_ord_id, e.orig_cl_ord_id, order, "2" if e.msg_type == "G" else "1", rej
            ),
        ]

    def _unsupported(self, e: ev.UnsupportedMessage) -> list[ev.Action]:
        rej = refusals.unsupported(e.msg_type)
        return [
            self._decision(e.session, e.msg_type, None, e.now_ns, rej),
            ev.OmsBusinessReject(e.session, e.seq_num, e.msg_type, "", rej.code, rej.text),
        ]

    # ------------------------------------------------------------ messages from a venue

    def _venue_report(self, e: ev.VenueReport) -> list[ev.Action]:
        r = e.report
        known = False  # the ExecID came before (a fill's: today or the day before, booked already)
        if r.exec_id:
            known = self.exec_ids.seen(r.exec_id, r.exec_type is ExecType.TRADE)
            if e.poss_dup and known:
                return [ev.Notice("possdup_report_ignored", e.now_ns, f"venue {e.venue} resent ExecID {r.exec_id}")]
        found = self.orders.by_venue(r.cl_ord_id) or (
            self.orders.by_venue(r.orig_cl_ord_id) if r.orig_cl_ord_id else None
        )
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
                return [
                    ev.Notice(
                        "unknown_order_report", e.now_ns, f"venue {e.venue} reported on unknown ClOrdID {r.cl_ord_id}"
                    )
                ]
            out.append(
                ev.Notice("order_recovered", e.now_ns, f"{found[0].session}/{found[1]} rebuilt from a venue report")
            )
        order, oms_id = found
        try:
            check_transition(order.status, r.ord_status)
        except IllegalTransition as exc:
            # The venue said something impossible: keep our state, still tell the OMS what the venue said.
            out.append(ev.Notice("illegal_transition", e.now_ns, f"{order.session}/{order.cl_ord_id}: {exc}"))
        else:
            before = order.follow(r)
            if not before.is_terminal and not order.is_open:
                self._finished(order, e.now_ns)
            self.tally.moved(order, before)
            # The order's working quantity, the position and the reference price all move on a fill:
            # each line of the book is recomputed once, after all three.
            self.book.hold()
            try:
                booking.sync_working(self.book, order)
                moved = booking.apply_report(self.book, self.exec_ids, order, r, e.now_ns, out, known)
                if moved and r.exec_type is ExecType.TRADE:
                    self.retention.finished(e.now_ns)  # the fill leaves memory after the grace period
                    if r.last_px > 0 and self.settings.reference_from_fills:
                        self._follow_fill(order.request.symbol, r.last_px, e.now_ns)
            finally:
                self.book.settle()
            if moved:
                out += self.alerts.check(self.limits.limits, self.book, order.session, order.request.account, e.now_ns)
        orig = self.orders.by_venue(r.orig_cl_ord_id) if r.orig_cl_ord_id else None
        if self.own_cancels.reported(r.cl_ord_id, order):
            orig = None  # the proxy's own cancel: the OMS sees an unsolicited cancel of its order
        req = order.request
        sent = ev.OmsReport(
            order.session,
            msgspec.structs.replace(
                r,
                cl_ord_id=oms_id,
                orig_cl_ord_id=orig[1] if orig else "",
                symbol=r.symbol or req.symbol,
                side=r.side or req.side,
            ),
            e.poss_dup,
        )
        out.append(sent)
        if self.drop_copies is not None:
            out += self.drop_copies.of_report(sent)
        return out

    def _follow_fill(self, symbol: str, price: Decimal, now_ns: int) -> None:
        """Move the reference price to a fill's, within the collar around the anchor (no collar, no move)."""
        anchor = self.anchors.get(symbol)
        collar = self.limits("", "", symbol).price_collar_pct
        if anchor is not None and collar is not None:
            self.book.set_reference(symbol, limit_edits.collared(price, anchor, collar.value), now_ns)

    def _venue_cancel_reject(self, e: ev.VenueCancelReject) -> list[ev.Action]:
        r = e.reject
        found = self.orders.by_venue(r.cl_ord_id) or self.orders.by_venue(r.orig_cl_ord_id)
        if found is None:
            return [
                ev.Notice(
                    "unknown_order_report", e.now_ns, f"venue {e.venue} cancel-rejected unknown ClOrdID {r.cl_ord_id}"
                )
            ]
        order, oms_id = found
        if self.own_cancels.refused(r.cl_ord_id):
            # The OMS did not ask for this cancel: tell the desk (the log and audit), not the OMS.
            return [
                ev.Notice(
                    "kill_cancel_rejected",
                    e.now_ns,
                    f"venue {e.venue} refused to cancel {order.session}/{order.cl_ord_id}: {r.text}",
                )
            ]
        if order.pending is not None and order.pending[1] == r.cl_ord_id:
            order.pending = None
            booking.sync_working(self.book, order)
        orig = self.orders.by_venue(r.orig_cl_ord_id)
        return [
            ev.OmsCancelReject(
                order.session,
                msgspec.structs.replace(
                    r,
                    cl_ord_id=oms_id,
                    orig_cl_ord_id=orig[1] if orig else r.orig_cl_ord_id,
                    order_id=r.order_id or order.order_id,
                ),
            )
        ]

    def _send_failed(self, e: ev.VenueSendFailed) -> list[ev.Action]:
        found = self.orders.by_venue(e.cl_ord_id)
        if found is None:
            return [ev.Notice("send_failed", e.now_ns, f"{e.venue}: {e.cl_ord_id}")]
        order, oms_id = found
        if oms_id == order.cl_ord_id and order.status is not OrdStatus.PENDING_NEW:
            # Answered already (refused as too late to send, or acknowledged by the venue): not twice.
            return [
                ev.Notice(
                    "send_failed",
                    e.now_ns,
                    f"{e.venue}: {e.cl_ord_id} ({e.why}); order already {order.status.name.lower()}",
                )
            ]
        if e.why == "down":
            self.up.discard(e.venue)
        sentence = answers.not_sent(e.venue, e.why)
        if self.own_cancels.refused(e.cl_ord_id):
            return [
                ev.Notice(
                    "kill_cancel_failed", e.now_ns, f"could not cancel {order.session}/{order.cl_ord_id}: {sentence}"
                )
            ]
        rej = venue_unavailable(e.venue, sentence)
        decision = self._decision(
            order.session,
            "D",
            None,
            e.now_ns,
            rej,
            e.venue,
            cl_ord_id=oms_id,
            symbol=order.request.symbol,
            account=order.request.account,
        )
        if oms_id == order.cl_ord_id and order.status is OrdStatus.PENDING_NEW:
            order.status = OrdStatus.REJECTED
            self.tally.moved(order, OrdStatus.PENDING_NEW)
            order.leaves_qty = _ZERO
            booking.sync_working(self.book, order)
            self._finished(order, e.now_ns)
            return [decision, *self._reject_order(ev.NewOrder(order.session, 0, e.now_ns, order.request), rej)]
        is_replace = order.pending is not None and order.pending[0] == oms_id
        if is_replace:
            order.pending = None
            booking.sync_working(self.book, order)
        decision = msgspec.structs.replace(decision, msg_type="G" if is_replace else "F")
        return [
            decision,
            answers.cancel_reject(order.session, oms_id, order.cl_ord_id, order, "2" if is_replace else "1", rej),
        ]

    # ------------------------------------------------------------ sessions

    def _session_up(self, e: ev.SessionUp) -> list[ev.Action]:
        self.up.add(e.name)
        return [ev.Notice("session_up", e.now_ns, e.name)]

    def _session_down(self, e: ev.SessionDown) -> list[ev.Action]:
        self.up.discard(e.name)
        out: list[ev.Action] = [ev.Notice("session_down", e.now_ns, e.name)]
        policy = self.sessions.get(e.name)
        if policy is not None and policy.cancel_on_disconnect:
            cancels = self.own_cancels.cancel(f"session:{e.name}", self.orders, self.kill, self.next_id)
            out.append(
                ev.AdminResult(
                    "cancel_on_disconnect",
                    True,
                    f"session:{e.name}",
                    "fixproxy",
                    "OMS session disconnected",
                    e.now_ns,
                    orders_cancelled=len(cancels),
                    detail=f"{len(cancels)} working order(s) cancelled at the venues",
                )
            )
            out += cancels
        return out

    # ------------------------------------------------------------ answers

    def _decision(
        self,
        session: str,
        msg_type: str,
        order: OrderRequest | None,
        now_ns: int,
        rej: Reject | None,
        venue: str = "",
        *,
        cl_ord_id: str = "",
        symbol: str = "",
        account: str = "",
    ) -> ev.Decision:
        if order is not None:
            cl_ord_id, symbol, account = order.cl_ord_id, order.symbol, order.account
        self.tally.decided(session, rej is None, rej.code if rej is not None else "")
        if rej is None:
            return ev.Decision(session, msg_type, cl_ord_id, True, now_ns, account=account, symbol=symbol, venue=venue)
        return ev.Decision(
            session,
            msg_type,
            cl_ord_id,
            False,
            now_ns,
            rej.code,
            rej.text,
            rej.observed,
            rej.limit,
            rej.scope,
            account,
            symbol,
            venue,
        )

    def _reject_order(self, e: ev.NewOrder, rej: Reject, bare: bool = False) -> list[ev.Action]:
        """The refusal of ``e`` for its OMS, as its session asks (``bare``: a BusinessMessageReject
        whatever it asks), and its drop copies."""
        policy = self.sessions.get(e.session)
        by_report = policy is not None and policy.reject_with == "execution_report" and not bare
        answer = answers.order_refusal(e.session, e.seq_num, e.order, rej, self.next_id() if by_report else None)
        if self.drop_copies is None:
            return [answer]
        return [answer, *self.drop_copies.of_refusal(answer, e.session, e.seq_num, e.now_ns, e.order, rej)]
