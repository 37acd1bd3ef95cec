"""Re-run a day's OMS -> venue order flow through the same core, and set each decision beside the original.

The core is built from the config exactly as the proxy builds it (``fixproxy.assemble.build_core``)
with a deterministic id generator; its clock is the log's timestamps. Orders from the OMS
sessions go through ``codec.oms_to_event`` and the core decides again; the venue's execution
reports go in as VenueReport events, so fills move the position book as they did live.

The original outcome of each order message is the first answer the log shows for it:
forwarded to the venue (the proxy's message to the venue, or any relayed execution report),
or refused by the proxy (35=j, a 35=8 reject with OrderID NONE, or 35=9, whose Text (58)
starts ``<CODE>: ``). An audit store gives it first hand: the recorded decision.

The risk desk's commands (kill switch, limit and reference-price changes) come only from an
audit store; each goes to the core at its time, as it did live, so the decisions it caused
(HALTED, a reject under a tightened limit ...) are reproduced. Their cancels (halt_and_cancel)
are not order messages: the venue's answers to them are matched to the replay's own cancels.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import re
from collections import Counter
from decimal import Decimal
from operator import itemgetter

import msgspec

from ..assemble import build_core
from ..config import LoadedConfig
from ..core import events as ev
from ..core.book import FIRM
from ..core.limit_edits import layer_of, set_limit
from ..core.model import OrderRequest
from ..core.proxy import ProxyCore
from ..core.risk.limits import LimitResolver, LimitSet
from ..core.risk.rules import CheckContext, Reject, Rule, run_pipeline
from ..fix import codec
from ..timefmt import iso
from .readers import AdminCommand, ClusterInput, Malformed, Message, RecordedDecision, SessionChange, Source

FORWARDED = "forwarded"
REJECTED = "rejected"
UNANSWERED = "unanswered"

#: Why a decision differs under other limits (``replay --limits``): the changed limits decided it ...
DIRECT = "direct"
#: ... or the recorded ones would have decided the same in the replayed state, which earlier direct
#: differences had moved (positions, open orders, exposure, orders that no longer exist) ...
KNOCK_ON = "knock-on"
#: ... or neither: no direct difference came before (an input without the desk's actions, say).
OTHER = "other"
CAUSES = (DIRECT, KNOCK_ON, OTHER)

_ADMIN = frozenset("012345A")
_ORDER_MESSAGES = frozenset("DGF")
_CODE = re.compile(r"^([A-Z][A-Z0-9_]*): ")
_SESSION_REJECT_WINDOW_NS = 5_000_000_000


class Row(msgspec.Struct):
    """One order message from an OMS: what it asked, what happened then, what happens now."""

    ts_ns: int
    source: str
    session: str
    msg_type: str
    seq: int
    cl_ord_id: str
    orig_cl_ord_id: str
    account: str
    symbol: str
    side: str
    qty: str
    price: str
    original: str = ""
    original_code: str = ""
    replayed: str = ""
    replayed_code: str = ""
    replayed_text: str = ""
    #: With other limits: whether the recorded limits would have decided otherwise in the same state.
    direct: bool = False
    #: With other limits, for a difference: DIRECT, KNOCK_ON or OTHER.
    cause: str = ""

    @property
    def differs(self) -> bool:
        """Known original outcome and a different replayed one."""
        return self.original in (FORWARDED, REJECTED) and (
            self.original != self.replayed or self.original_code != self.replayed_code
        )


class Result(msgspec.Struct):
    """Everything a replay found; the report module renders it."""

    rows: list[Row]
    malformed: list[Malformed]
    inputs: list[dict]
    skipped: dict[str, int]
    venues_assumed_up: list[str]
    #: Per second of the log: (orders, original rejects, replayed rejects, firm gross exposure at its end).
    per_second: dict[int, list]
    final_positions: list[dict]
    alerts: dict[str, int]
    #: The risk desk's commands applied again, in order, with what they did in the replay.
    admin_actions: list[dict] = msgspec.field(default_factory=list)


def _outcome(decision: ev.Decision) -> tuple[str, str]:
    return (FORWARDED, "") if decision.accepted else (REJECTED, decision.code)


def _business_reject_code(fields: dict[int, str]) -> str:
    """The reject code of a BusinessMessageReject (35=j) to an OMS: always the proxy's own."""
    m = _CODE.match(fields.get(58, ""))
    return m.group(1) if m else "UNKNOWN"


def _proxy_reject_code(msg_type: str, fields: dict[int, str]) -> str | None:
    """The reject code if this ExecutionReport or OrderCancelReject to an OMS is the proxy's own
    refusal, else None."""
    m = _CODE.match(fields.get(58, ""))
    if m is None:
        return None
    if msg_type == "8":
        return m.group(1) if fields.get(150) == "8" and fields.get(37) == "NONE" else None
    return m.group(1) if msg_type == "9" else None


def _own_cancel(venue_cl_ord_id: str) -> bool:
    """Whether a venue-side ClOrdID is one of the proxy's own cancels (``<session>!K<id>``), not an OMS's."""
    head, sep, tail = venue_cl_ord_id.partition("!")
    return bool(sep) and tail.startswith("K") and "." not in head


class Replayer:
    """One replay: feed it sources, get a Result. Two replays of the same input give the same Result."""

    def __init__(self, loaded: LoadedConfig, recorded: LimitSet | None = None):
        """``recorded``: the limits the day ran under, when ``loaded`` holds others (``replay --limits``):
        each order is also checked under them, in the same state, to tell direct differences from
        knock-on ones."""
        self.loaded = loaded
        self.recorded = LimitResolver(recorded) if recorded is not None else None
        #: The answer of the recorded limits to the order being decided, once its rules ran.
        self._baseline: tuple[str, str] | None = None
        self._wrapped: tuple[Rule, ...] = ()
        self._journal_input = False  # a journal among the inputs (it carries a cluster's shares)
        cfg = loaded.config
        self.oms_names = {s.name for s in cfg.oms}
        #: Drop-copy sessions: what they got is a copy of what the OMS sessions got (not replayed).
        self.drop_copy_names = {d.name for d in cfg.drop_copy}
        self.venue_names = [v.name for v in cfg.venues]
        # (SenderCompID, TargetCompID) -> (session name, "in"/"out" as seen from the proxy)
        self.routes: dict[tuple[str, str], tuple[str, str]] = {}
        for s in cfg.oms:
            self.routes.setdefault((s.comp_id, cfg.acceptor.comp_id), (s.name, "in"))
            self.routes.setdefault((cfg.acceptor.comp_id, s.comp_id), (s.name, "out"))
        for v in cfg.venues:
            self.routes.setdefault((v.comp_id, v.our_comp_id), (v.name, "in"))
            self.routes.setdefault((v.our_comp_id, v.comp_id), (v.name, "out"))
        for d in cfg.drop_copy:
            self.routes.setdefault((d.comp_id, cfg.acceptor.comp_id), (d.name, "in"))
            self.routes.setdefault((cfg.acceptor.comp_id, d.comp_id), (d.name, "out"))
        desk = cfg.risk_desk
        self.desk_name = desk.name if desk.comp_id else None
        if desk.comp_id:
            self.routes.setdefault((desk.comp_id, cfg.acceptor.comp_id), (desk.name, "in"))
            self.routes.setdefault((cfg.acceptor.comp_id, desk.comp_id), (desk.name, "out"))
        self.core: ProxyCore | None = None
        self.rows: list[Row] = []
        self.skipped: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.per_second: dict[int, list] = {}
        self._last: dict[tuple[str, str], Row] = {}  # (session, ClOrdID) -> latest order message
        self._by_seq: dict[tuple[str, int], Row] = {}
        self._seq_in: dict[str, int] = {}
        self._session_rejects: dict[tuple[str, int], list[int]] = {}
        self._logged_venues: set[str] = set()
        self._assumed_up: list[str] = []
        self._labels: list[str] = []
        self._second = -1
        self.admin_actions: list[dict] = []
        # The venue-side ClOrdID of each cancel the replay sent on its own (halt_and_cancel, cancel on
        # disconnect), by the ClOrdID of the order cancelled: the venue's answers name the live one.
        self._own_cancels: dict[str, str] = {}

    # ------------------------------------------------------------ driving

    def run(self, sources: list[Source]) -> Result:
        """Scan the sources, then replay their items merged by time; call once per Replayer."""
        self._labels = [s.label for s in sources]
        senders: set[str] = set()
        for source in sources:
            scan = source.scan()
            senders |= scan.senders
            for sender, target, ref, ts in scan.session_rejects:
                route = self.routes.get((target, sender))
                if route is not None:
                    self._session_rejects.setdefault((route[0], ref), []).append(ts)
        audit = any(s.format in ("audit", "journal") for s in sources)  # sources with the venues' logons
        self._journal_input = any("journal" in s.formats for s in sources)
        cfg = self.loaded.config
        # A venue whose own messages are in the input follows its logons; any other is taken as up.
        self._logged_venues = {v.name for v in cfg.venues if audit or v.comp_id in senders}
        self._assumed_up = [n for n in self.venue_names if n not in self._logged_venues]
        for item in heapq.merge(*sources, key=itemgetter(0)):
            if self.core is None:
                self._start(item.ts_ns)
            if type(item) is Message:
                self._message(item)
            elif type(item) is RecordedDecision:
                self._settle(
                    self._last.get((item.session, item.cl_ord_id)),
                    *((FORWARDED, "") if item.accepted else (REJECTED, item.code)),
                )
            elif type(item) is SessionChange:
                self._handle(ev.SessionUp(item.name, item.ts_ns) if item.up else ev.SessionDown(item.name, item.ts_ns))
            elif type(item) is AdminCommand:
                self._command(item)
            elif type(item) is ClusterInput:
                self._handle(item.event)
        uncommanded = sum(getattr(s, "uncommanded", 0) for s in sources)
        if uncommanded:
            self.skipped["risk-desk action recorded without its command (an older store): not applied"] += uncommanded
        for row in self.rows:
            if not row.original:
                row.original = UNANSWERED
        if self.recorded is not None:
            self._classify()
        self._sample(-1)
        return Result(
            rows=self.rows,
            malformed=[m for s in sources for m in s.malformed],
            inputs=[
                {
                    "path": s.label,
                    "format": "+".join(sorted(s.formats)) or "empty",
                    "lines": s.lines,
                    "messages": s.messages,
                    "malformed": len(s.malformed),
                }
                for s in sources
            ],
            skipped=dict(sorted(self.skipped.items())),
            venues_assumed_up=self._assumed_up,
            per_second=self.per_second,
            final_positions=self._positions(),
            alerts=dict(sorted(self.alerts.items())),
            admin_actions=self.admin_actions,
        )

    def _start(self, ts_ns: int) -> None:
        """The core as the proxy built it; reference prices stamped at the log's first message."""
        loaded = self.loaded
        instruments = {
            k: msgspec.structs.replace(i, reference_time_ns=ts_ns) if i.reference_price is not None else i
            for k, i in loaded.instruments.items()
        }
        counter = itertools.count(1)
        self.core = build_core(
            msgspec.structs.replace(loaded, instruments=instruments), ts_ns, next_id=lambda: f"RP-{next(counter)}"
        )
        # A journal of a cluster's instance holds its shares of the shared limits: checked against
        # them as live. Other inputs have none: the firm's limits alone decide, as for one proxy.
        self.core.shares.enabled = loaded.config.cluster is not None and self._journal_input
        for name in self._assumed_up:
            self.core.handle(ev.SessionUp(name, ts_ns))
        self._wrap_rules()

    def _wrap_rules(self) -> None:
        """With other limits: the core's rules (again, once a mode change replaced them) wrapped in ``_probe``."""
        if self.recorded is not None and self.core is not None and self.core.rules is not self._wrapped:
            self._wrapped = (self._probe(self.core.rules, self.recorded),)
            self.core.rules = self._wrapped

    def _probe(self, rules: tuple[Rule, ...], recorded: LimitResolver) -> Rule:
        """The core's rules as one rule that also runs them under the recorded limits, on the same
        state, and keeps that answer for the order being decided."""

        def both(order: OrderRequest, ctx: CheckContext) -> Reject | None:
            base = copy.copy(ctx)
            base.limits = recorded(ctx.session, order.account, order.symbol)
            rej = run_pipeline(rules, order, base)
            self._baseline = (FORWARDED, "") if rej is None else (REJECTED, rej.code)
            return run_pipeline(rules, order, ctx)

        return both

    def _classify(self) -> None:
        """Each difference's cause, in the order the messages came (docs/reference.md, Audit and replay)."""
        seen_direct = False
        for row in self.rows:
            if not row.differs:
                continue
            if row.direct:
                row.cause, seen_direct = DIRECT, True
            else:
                row.cause = KNOCK_ON if seen_direct else OTHER

    def _handle(self, event: ev.Event) -> list[ev.Action]:
        assert self.core is not None, "made by run() at the first item"
        actions = self.core.handle(event)
        for action in actions:
            if type(action) is ev.Alert:
                self.alerts[f"{action.limit_name} {action.scope} {action.level_pct}%"] += 1
            elif type(action) is ev.AnomalyAlert:
                self.alerts[f"anomaly {action.detector} {action.scope}"] += 1
            elif type(action) is ev.VenueCancel and _own_cancel(action.cl_ord_id):
                self._own_cancels[action.orig_cl_ord_id] = action.cl_ord_id
        second = event.now_ns // 1_000_000_000
        if second != self._second:
            self._sample(second)
        return actions

    def _sample(self, second: int) -> None:
        """Close the current second with the firm's gross exposure, and open ``second``."""
        if self._second in self.per_second and self.core is not None:
            self.per_second[self._second][3] = self.core.book.gross(FIRM)
        self._second = second
        if second >= 0 and second not in self.per_second:
            self.per_second[second] = [0, 0, 0, Decimal(0)]

    # ------------------------------------------------------------ the risk desk

    def _command(self, item: AdminCommand) -> None:
        """Apply a risk-desk command as the live core did; keep what it did for the report."""
        command = item.event
        result = next((a for a in self._handle(command) if type(a) is ev.AdminResult), None)
        if self.recorded is not None and result is not None and result.ok:
            # A desk change applies over the recorded limits as over the replayed ones.
            try:
                if isinstance(command, ev.AdminSetLimit):
                    self.recorded.replace(set_limit(self.recorded.limits, command.layer, command.field, command.value))
                elif isinstance(command, ev.AdminSetMode) and command.field:
                    self.recorded.replace(_set_mode(self.recorded.limits, command.layer, command.field, command.mode))
            except (ValueError, TypeError, msgspec.ValidationError):
                pass
        self._wrap_rules()
        if isinstance(command, ev.DayRoll):
            return  # the proxy's own timer, not a risk-desk action: applied, not listed
        if isinstance(command, ev.AdminKill):
            what = command.action
        elif isinstance(command, ev.AdminSetLimit):
            value = command.value
            shown = "(cleared)" if value is None else ",".join(map(str, value)) if isinstance(value, list) else value
            what = f"{command.field} = {shown}"
        elif isinstance(command, ev.AdminSetMode):
            what = f"{f'rule {command.rule}' if command.rule else command.field}: {command.mode}"
        else:
            what = f"reference price {command.price}"
        self.admin_actions.append(
            {
                "time": iso(item.ts_ns, 6),
                "source": f"{self._labels[item.source]}:{item.line}",
                "operator": command.operator,
                "command": result.kind if result else "",
                "what": what,
                "scope": result.scope if result else "",
                "reason": command.reason,
                "ok": bool(result and result.ok),
                "before": result.before if result else "",
                "after": result.after if result else "",
                "detail": result.detail if result else "",
            }
        )

    # ------------------------------------------------------------ one message

    def _message(self, m: Message) -> None:
        fields = m.fields
        if m.route is not None:
            session, direction = m.route
        else:
            found = self.routes.get((fields[49], fields[56]))
            if found is None:
                self.skipped["message of an unconfigured session"] += 1
                return
            session, direction = found
        if session == self.desk_name:
            if direction == "in":
                self.skipped["risk-desk session message (its commands come from the audit store)"] += 1
            return
        if session in self.drop_copy_names:
            if direction == "in":
                self.skipped["drop-copy session message (a drop copy sends no orders)"] += 1
            return
        msg_type = fields[35]
        if session in self.oms_names:
            if direction == "in":
                self._from_oms(m, session, msg_type)
            else:
                self._to_oms(m, session, msg_type)
        elif direction == "in":
            self._from_venue(m, session, msg_type)
        else:
            self._to_venue(m, session, msg_type)

    def _from_oms(self, m: Message, session: str, msg_type: str) -> None:
        fields = m.fields
        seq_text = fields.get(34, "")
        seq = int(seq_text) if seq_text.isdigit() else 0
        if msg_type in _ADMIN:
            if msg_type == "A" and (seq == 1 or fields.get(141) == "Y"):
                self._seq_in[session] = 0  # a new sequence
            return
        if seq and seq <= self._seq_in.get(session, 0):
            self.skipped["resent message (sequence number already seen)"] += 1
            return
        self._seq_in[session] = seq
        rejected_at = self._session_rejects.get((session, seq), ())
        if any(0 <= t - m.ts_ns <= _SESSION_REJECT_WINDOW_NS for t in rejected_at):
            self.skipped["refused by quickfix (35=3), never reached the risk checks"] += 1
            return
        cl = fields.get(11, "")
        row = Row(
            m.ts_ns,
            f"{self._labels[m.source]}:{m.line}",
            session,
            msg_type,
            seq,
            cl,
            fields.get(41, ""),
            fields.get(1, ""),
            fields.get(55, ""),
            fields.get(54, ""),
            fields.get(38, ""),
            fields.get(44, ""),
        )
        self.rows.append(row)
        self._last[(session, cl)] = row
        self._by_seq[(session, seq)] = row
        self._baseline = None
        for action in self._handle(
            codec.oms_to_event(fields, session, m.ts_ns, self.loaded.config.identifiers.limits())
        ):
            if type(action) is ev.Decision:
                row.replayed, row.replayed_code = _outcome(action)
                row.replayed_text = action.text
                break
        if self._baseline is not None:
            row.direct = self._baseline != (row.replayed, row.replayed_code)
        bucket = self.per_second[self._second]
        bucket[0] += 1
        if row.replayed == REJECTED:
            bucket[2] += 1

    def _settle(self, row: Row | None, outcome: str, code: str = "") -> None:
        """Record the first answer seen for an order message as its original outcome."""
        if row is not None and not row.original:
            row.original, row.original_code = outcome, code
            if outcome == REJECTED:
                second = row.ts_ns // 1_000_000_000
                if second in self.per_second:
                    self.per_second[second][1] += 1

    def _to_oms(self, m: Message, session: str, msg_type: str) -> None:
        fields = m.fields
        if msg_type not in ("8", "9", "j"):
            return
        if msg_type == "j":
            ref = fields.get(45, "")
            row = self._by_seq.get((session, int(ref))) if ref.isdigit() else None
            self._settle(row or self._last.get((session, fields.get(379, ""))), REJECTED, _business_reject_code(fields))
            return
        code = _proxy_reject_code(msg_type, fields)
        cl = fields.get(11, "")
        if code:
            self._settle(self._last.get((session, cl)), REJECTED, code)
        else:
            self._settle(self._last.get((session, cl)), FORWARDED)
        if code is None:
            self._relay_as_venue_report(m, session, msg_type, cl)

    def _relay_as_venue_report(self, m: Message, session: str, msg_type: str, cl: str) -> None:
        """Without the venue's own log, the reports relayed to the OMS stand in for the venue's."""
        assert self.core is not None, "made by run() at the first item"
        order = self.core.orders.by_oms(session, cl)
        if order is None or order.venue in self._logged_venues:
            return
        fields = dict(m.fields)
        fields[11] = f"{session}.{cl}"
        if fields.get(41):
            fields[41] = f"{session}.{fields[41]}"
        self._venue_event(fields, order.venue, m.ts_ns)

    def _from_venue(self, m: Message, venue: str, msg_type: str) -> None:
        if msg_type in _ADMIN:
            if venue in self._logged_venues and msg_type in "A5":
                self._handle(ev.SessionUp(venue, m.ts_ns) if msg_type == "A" else ev.SessionDown(venue, m.ts_ns))
            return
        self._venue_event(m.fields, venue, m.ts_ns)

    def _venue_event(self, fields: dict[int, str], venue: str, ts_ns: int) -> None:
        if _own_cancel(fields.get(11, "")):
            # The answer to a cancel the proxy sent on its own: name the replay's cancel instead of the live one.
            own = self._own_cancels.get(fields.get(41, ""))
            if own is not None:
                fields = {**fields, 11: own}
        try:
            event = codec.venue_to_event(fields, venue, ts_ns)
        except codec.Invalid:
            self.skipped["venue message the proxy could not read"] += 1
            return
        if event is not None:
            self._handle(event)

    def _to_venue(self, m: Message, venue: str, msg_type: str) -> None:
        if msg_type == "5" and venue in self._logged_venues:
            self._handle(ev.SessionDown(venue, m.ts_ns))  # the proxy logged out of the venue
        elif msg_type in _ORDER_MESSAGES:
            session, _, cl = m.fields.get(11, "").partition(".")
            self._settle(self._last.get((session, cl)), FORWARDED)

    # ------------------------------------------------------------ results

    def _positions(self) -> list[dict]:
        if self.core is None:
            return []
        out = []
        for (account, symbol), p in sorted(self.core.book.positions.items()):
            if p.qty or p.bought_qty or p.sold_qty:
                out.append(
                    {
                        "account": account,
                        "symbol": symbol,
                        "qty": str(p.qty),
                        "avg_cost": str(p.avg_cost),
                        "bought": str(p.bought_qty),
                        "sold": str(p.sold_qty),
                        "traded_notional": str(p.traded_notional),
                    }
                )
        return out


def _set_mode(limits: LimitSet, layer: str, field: str, mode: str) -> LimitSet:
    """``limits`` with one limit of one layer put in ``mode`` (a desk's AdminSetMode on a limit)."""
    current = layer_of(limits, layer)
    watched = set(current.monitor or ())
    if mode == "monitor":
        watched.add(field)
    else:
        watched.discard(field)
    kind, _, key = layer.partition(":")
    return limits.with_layer(kind, key, msgspec.structs.replace(current, monitor=frozenset(watched) or None))


def replay(loaded: LoadedConfig, sources: list[Source], recorded: LimitSet | None = None) -> Result:
    """Replay ``sources`` (see :mod:`fixproxy.replay.readers`) under ``loaded``'s rules and limits;
    ``recorded``: the limits the day ran under, when ``loaded``'s are others (``Replayer``)."""
    return Replayer(loaded, recorded).run(sources)
