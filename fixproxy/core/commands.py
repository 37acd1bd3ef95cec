"""The risk desk's commands to the core, and the alarm they answer: the kill switch (halt, reduce,
halt and cancel, resume), live limit and reference-price edits, the day roll, and recording failed /
resumed. Each is checked, applied to the core's state and answered with an AdminResult (an Alert for
a recording failure); ProxyCore.handle dispatches them here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as ev, limit_edits
from .book import FIRM
from .killswitch import KillAction, parse_scope

if TYPE_CHECKING:
    from .proxy import ProxyCore


def kill(core: ProxyCore, e: ev.AdminKill) -> list[ev.Action]:
    """Move a scope's trading state; with halt and cancel, cancel its working orders at the venues."""
    try:
        scope = parse_scope(e.scope)
        action = KillAction(e.action)
        kind, _, name = scope.partition(":")
        if kind == "session" and name not in core.sessions:
            raise ValueError(f"no OMS session named {name!r} (sessions: {', '.join(sorted(core.sessions))})")
    except ValueError as exc:
        return [
            ev.AdminResult(
                "kill", False, e.scope, e.operator, e.reason, e.now_ns, detail=str(exc), request_id=e.request_id
            )
        ]
    before, after = core.kill.apply(scope, action, e.reason, e.operator, e.now_ns)
    cancels = (
        core.own_cancels.cancel(scope, core.orders, core.kill, core.next_id)
        if action is KillAction.HALT_AND_CANCEL
        else []
    )
    result = ev.AdminResult(
        "kill",
        True,
        scope,
        e.operator,
        e.reason,
        e.now_ns,
        before.state.value,
        after.state.value,
        f"{action.value}: {len(cancels)} working order(s) cancelled",
        len(cancels),
        e.request_id,
    )
    return [result, *cancels]


def day_roll(core: ProxyCore, e: ev.DayRoll) -> list[ev.Action]:
    """A new trading day: what the closed day finished leaves memory, what works carries over."""
    if e.day == core.day:
        return [
            ev.AdminResult(
                "day_roll",
                False,
                FIRM,
                e.operator,
                e.reason,
                e.now_ns,
                core.day,
                e.day,
                f"the trading day is {e.day} already",
            )
        ]
    before = core.day
    orders, fills = core.retention.new_day(e.now_ns, core.orders, core.book, core.exec_ids)
    core.day, core.day_no = e.day, core.day_no + 1
    core.orders.seen("", core.day_no)  # drops the closed day's ClOrdIDs
    core.tally.new_day()
    core.own_cancels.drop_settled(core.orders)
    return [
        ev.AdminResult(
            "day_roll",
            True,
            FIRM,
            e.operator,
            e.reason,
            e.now_ns,
            before,
            e.day,
            f"{orders} finished order(s) and {fills} fill(s) left memory; "
            f"{len(core.orders.open_orders())} working order(s) and "
            f"{sum(1 for p in core.book.positions.values() if p.qty)} position(s) carried over",
        )
    ]


def recording_failed(core: ProxyCore, e: ev.RecordingFailed) -> list[ev.Action]:
    """The journal cannot take records: new risk is refused (gate.py) until the desk resumes; alerted once."""
    first = not core.recording_failure
    core.recording_failure = e.reason
    if not first:
        return []
    return [
        ev.Alert(
            "recording",
            FIRM,
            "100",
            e.reason,
            "",
            e.now_ns,
            f"RECORDING_FAILED: {e.reason}; new orders are refused, cancels pass",
        )
    ]


def recording_resumed(core: ProxyCore, e: ev.RecordingResumed) -> list[ev.Action]:
    before, core.recording_failure = core.recording_failure, ""
    return [
        ev.AdminResult(
            "recording",
            True,
            FIRM,
            e.operator,
            e.reason,
            e.now_ns,
            before or "recording",
            "recording",
            "the journal takes records again; new orders are accepted",
        )
    ]


def set_limit(core: ProxyCore, e: ev.AdminSetLimit) -> list[ev.Action]:
    """Change one limit of one layer; kept in ``limit_changes`` for the snapshot."""
    limits, result = limit_edits.edit_limit(core.limits.limits, e)
    if limits is not None:
        core.limits.replace(limits)
        core.limit_changes.append((e.layer, e.field, e.value))
    return [result]


def set_reference(core: ProxyCore, e: ev.AdminSetReference) -> list[ev.Action]:
    """Set a symbol's reference price, which is also the anchor fills may move it around."""
    inst = core.instruments.get(e.symbol)
    before = inst.reference_price if inst is not None else None
    price, result = limit_edits.edit_reference(e, before, core.settings.reference_change_max_pct)
    if price is not None:
        core.book.set_reference(e.symbol, price, e.now_ns)
        core.anchors[e.symbol] = price
    return [result]
