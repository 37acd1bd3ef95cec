"""Inbound events and outbound actions of the core, as tagged unions.

Every event carries ``now_ns``, the edge's clock reading (or the log timestamp in replay):
the core never reads a clock itself, so a replay reproduces its decisions exactly.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from .model import CancelReject, ExecReport, OrderRequest, Side

# ---------------------------------------------------------------- events in


class NewOrder(msgspec.Struct, frozen=True, tag=True, gc=False):
    session: str
    seq_num: int
    now_ns: int
    order: OrderRequest
    #: PossDupFlag (43) or PossResend (97): the OMS may have sent this before.
    poss_dup: bool = False


class ReplaceOrder(msgspec.Struct, frozen=True, tag=True, gc=False):
    session: str
    seq_num: int
    now_ns: int
    orig_cl_ord_id: str
    order: OrderRequest
    poss_dup: bool = False


class CancelOrder(msgspec.Struct, frozen=True, tag=True, gc=False):
    session: str
    seq_num: int
    now_ns: int
    cl_ord_id: str
    orig_cl_ord_id: str
    symbol: str = ""
    side: Side | None = None
    account: str = ""
    poss_dup: bool = False


class InvalidMessage(msgspec.Struct, frozen=True, tag=True, gc=False):
    """An order-type message that decoded but carries a value the proxy cannot accept."""

    session: str
    seq_num: int
    now_ns: int
    msg_type: str
    cl_ord_id: str
    reason: str
    orig_cl_ord_id: str = ""


class UnsupportedMessage(msgspec.Struct, frozen=True, tag=True, gc=False):
    session: str
    seq_num: int
    now_ns: int
    msg_type: str


class VenueReport(msgspec.Struct, frozen=True, tag=True, gc=False):
    venue: str
    now_ns: int
    report: ExecReport
    #: PossDupFlag (43) or PossResend (97) on the venue's message.
    poss_dup: bool = False


class VenueCancelReject(msgspec.Struct, frozen=True, tag=True, gc=False):
    venue: str
    now_ns: int
    reject: CancelReject


class VenueSendFailed(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A message did not reach the venue: the session went down before it could be sent ("down"),
    or the venue asked for it again after a gap and the proxy does not resend orders ("not_resent"),
    or the venue was not taking messages and it would have left older than the venue's
    ``max_order_age_ms`` ("late")."""

    venue: str
    cl_ord_id: str  # the proxy's venue-side ClOrdID of the message that failed
    now_ns: int
    why: str = "down"


class SessionUp(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A session logged on; ``name`` is an OMS session or a venue name from the config."""

    name: str
    now_ns: int


class SessionDown(msgspec.Struct, frozen=True, tag=True, gc=False):
    name: str
    now_ns: int


class AdminKill(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Risk desk: halt, halt and cancel, reducing or resume for a scope (firm, session:X, account:A, symbol:S)."""

    scope: str
    action: str  # a KillAction value
    reason: str
    operator: str
    now_ns: int
    request_id: str = ""


class AdminSetLimit(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Risk desk: set (or with value None, clear) one limit of one layer, effective from the next order."""

    layer: str  # "firm", "session:<name>", "account:<Account>" or "symbol:<Symbol>"
    field: str
    value: object
    reason: str
    operator: str
    now_ns: int


class AdminSetReference(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Risk desk: set a symbol's reference price."""

    symbol: str
    price: str
    reason: str
    operator: str
    now_ns: int
    #: Set a price further than ``reference_change_max_pct`` from the current one (recorded in the result).
    force: bool = False


class RecordingFailed(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The edge cannot record the core's inputs (the journal's disk is full, an I/O error): the core
    refuses new risk until ``RecordingResumed``. Journaled (into the journal's reserve) like any input."""

    reason: str
    now_ns: int


class RecordingResumed(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A risk user resumed trading after the edge found the journal writable again."""

    operator: str
    reason: str
    now_ns: int


class DayRoll(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A new trading day begins (the edge's timer at ``[proxy] day_roll``; at start-up after a roll
    time passed while the proxy was down).

    Working orders and positions carry over (the positions are the new day's start); finished
    orders, fills and the ClOrdIDs and ExecIDs of closed days leave memory (the journal and the
    audit store keep them); the day's bought, sold, traded and realized figures start at zero.
    """

    day: str  # the new trading day, as the edge names it (its date in the configured time zone)
    now_ns: int
    operator: str = "fixproxy"
    reason: str = ""


class AdminSetMode(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Risk desk: put a rule, or one limit of one layer, in ``enforce`` or ``monitor`` mode (monitor:
    an order it would refuse goes on, with a WouldRefuse record), effective from the next order."""

    rule: str  # a rule name (risk/rules.py RULES), or "" for one limit of one layer
    mode: str  # "enforce" or "monitor"
    reason: str
    operator: str
    now_ns: int
    layer: str = ""  # with ``field``: "firm", "session:<name>", "account:<Account>" or "symbol:<Symbol>"
    field: str = ""


class ClusterShare(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The edge holds ``allowance`` of a limit the cluster shares (``key``: ``<field>|<scope>``,
    core/cluster.py), committed in PostgreSQL before this event; ``low``: the usage at which it wants
    to top it up."""

    key: str
    allowance: Decimal
    low: Decimal
    now_ns: int


class ClusterFence(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The edge lost the cluster's database and its leases ran out (``reason``): orders that need new
    headroom of a shared limit are refused until a ClusterFence with reason "" (the database is back)."""

    reason: str
    now_ns: int


#: The risk desk's commands (the audit store records them as given; replay applies them again).
AdminCommand = AdminKill | AdminSetLimit | AdminSetReference | DayRoll | AdminSetMode
ADMIN_COMMANDS = (AdminKill, AdminSetLimit, AdminSetReference, DayRoll, AdminSetMode)

Event = (
    NewOrder
    | ReplaceOrder
    | CancelOrder
    | InvalidMessage
    | UnsupportedMessage
    | VenueReport
    | VenueCancelReject
    | VenueSendFailed
    | SessionUp
    | SessionDown
    | AdminKill
    | AdminSetLimit
    | AdminSetReference
    | RecordingFailed
    | RecordingResumed
    | DayRoll
    | AdminSetMode
    | ClusterShare
    | ClusterFence
)

# ---------------------------------------------------------------- actions out


class VenueNewOrder(msgspec.Struct, frozen=True, tag=True, gc=False):
    venue: str
    cl_ord_id: str  # the proxy's venue-side ClOrdID
    order: OrderRequest


class VenueReplace(msgspec.Struct, frozen=True, tag=True, gc=False):
    venue: str
    cl_ord_id: str
    orig_cl_ord_id: str
    order_id: str
    order: OrderRequest


class VenueCancel(msgspec.Struct, frozen=True, tag=True, gc=False):
    venue: str
    cl_ord_id: str
    orig_cl_ord_id: str
    order_id: str
    symbol: str
    side: Side
    order_qty: Decimal
    account: str = ""


class OmsReport(msgspec.Struct, frozen=True, tag=True, gc=False):
    """An ExecutionReport for the OMS, with the OMS's own ClOrdIDs."""

    session: str
    report: ExecReport
    #: Sent with PossResend (97=Y): the venue resent it and the proxy cannot rule out having relayed
    #: it before (a crash can lose the last ExecIDs it saved); the OMS checks the ExecID.
    poss_resend: bool = False
    #: The proxy's own refusal of the order: its reject code (the codec gives OrdRejReason (103) for it).
    code: str = ""


class DropCopy(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A copy of an ExecutionReport for a drop-copy session (spec/drop-copy.md): ``copy`` as the OMS
    session ``copy.session`` got it (or, for a refusal it got as 35=j, as an ExecutionReport 150=8),
    sent with OnBehalfOfCompID (115) = ``on_behalf_of``, that OMS's SenderCompID."""

    session: str  # the drop-copy session
    on_behalf_of: str
    copy: OmsReport


class OmsCancelReject(msgspec.Struct, frozen=True, tag=True, gc=False):
    session: str
    reject: CancelReject
    #: The proxy's own refusal: its reject code (the codec gives CxlRejReason (102) for it).
    code: str = ""


class OmsBusinessReject(msgspec.Struct, frozen=True, tag=True, gc=False):
    session: str
    ref_seq_num: int
    ref_msg_type: str
    ref_id: str
    code: str  # the reject code (the codec gives BusinessRejectReason (380) for it)
    text: str


class Decision(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A risk decision, for the log and the audit trail; it sends nothing."""

    session: str
    msg_type: str
    cl_ord_id: str
    accepted: bool
    now_ns: int
    code: str = ""
    text: str = ""
    observed: str = ""
    limit: str = ""
    scope: str = ""
    account: str = ""
    symbol: str = ""
    venue: str = ""


class WouldRefuse(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A refusal monitor mode let pass: the order went on (its Decision accepted it), and ``rule``
    (in monitor mode, or checking a monitored limit) would have refused it with this code, observed
    value, limit and scope. For the log, the audit trail, the dashboard and the report; sends nothing."""

    session: str
    msg_type: str
    cl_ord_id: str
    now_ns: int
    code: str
    text: str
    observed: str = ""
    limit: str = ""
    scope: str = ""
    account: str = ""
    symbol: str = ""
    venue: str = ""
    rule: str = ""


class AdminResult(msgspec.Struct, frozen=True, tag=True, gc=False):
    """What an admin action did: for the audit trail (who, what, scope, why, before/after) and the caller."""

    kind: str  # "kill", "limit", "reference", "mode", "cancel_on_disconnect"
    ok: bool
    scope: str
    operator: str
    reason: str
    now_ns: int
    before: str = ""
    after: str = ""
    detail: str = ""
    orders_cancelled: int = 0
    request_id: str = ""


class Alert(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Utilization of a limit crossed an alert level (raised once per upward crossing)."""

    limit_name: str
    scope: str
    level_pct: str
    observed: str
    limit: str
    now_ns: int
    text: str = ""


class AnomalyAlert(msgspec.Struct, frozen=True, tag=True, gc=False):
    """An anomaly detector (core/anomaly.py) found a session's or account's flow unusual (raised once
    per episode). ``action``: what the detector was set to do besides alerting ("alert", "reducing" or
    "halt"); when it moved the scope, an AdminResult by operator ``anomaly:<detector>`` follows."""

    detector: str
    scope: str
    observed: str
    threshold: str
    now_ns: int
    text: str = ""
    action: str = "alert"
    session: str = ""
    account: str = ""
    symbol: str = ""


class Notice(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Something worth a log line that is not a decision (an anomaly, a state change)."""

    kind: str
    now_ns: int
    detail: str = ""


Action = (
    VenueNewOrder
    | VenueReplace
    | VenueCancel
    | OmsReport
    | DropCopy
    | OmsCancelReject
    | OmsBusinessReject
    | Decision
    | WouldRefuse
    | AdminResult
    | Alert
    | AnomalyAlert
    | Notice
)


#: Actions that are FIX messages to a venue or an OMS (the edges send them; the audit records each
#: as the message sent).
MESSAGE_ACTIONS = (VenueNewOrder, VenueReplace, VenueCancel, OmsReport, OmsCancelReject, OmsBusinessReject, DropCopy)
