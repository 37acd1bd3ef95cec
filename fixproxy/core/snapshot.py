"""The core's snapshot: everything it learnt from its events, as a dict the journal pickles.

What the config gives (sessions, venues, rules, limits as configured, instruments) is not in it: a
snapshot is applied to a core made from the config of the day, the live limit changes, mode changes
(monitor.py) and reference prices on top, as they were made. Snapshots written by earlier versions still load: keys added since
are read with a default.
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import limit_edits, monitor
from .model import Instrument
from .proxy import ProxyCore
from .tally import Tally


def export_state(core: ProxyCore) -> dict[str, Any]:
    """The state of ``core`` for a snapshot."""
    refs = [
        (s, i.reference_price, i.reference_time_ns)
        for s, i in core.instruments.items()
        if i.reference_price is not None and i.reference_time_ns
    ]
    return {
        "orders": core.orders,
        "book": core.book,
        "kill": core.kill,
        "kill_cancels": core.own_cancels.pending,
        **core.exec_ids.export(),
        "day": core.day,
        "day_no": core.day_no,
        "ids_drawn": getattr(core.next_id, "drawn", None),
        "alerted": core.alerts.alerted,
        "recent": core.recent,
        "limit_changes": core.limit_changes,
        "mode_changes": core.mode_changes,
        "references": refs,
        "anchors": dict(core.anchors),
        "up": set(core.up),
        "recording_failure": core.recording_failure,
        "tally": core.tally.export(),
        "anomaly": core.anomaly.export(),
        "shares": core.shares.export(),
    }


def import_state(core: ProxyCore, state: dict[str, Any]) -> None:
    """Make ``core`` (made from the config) take over a snapshot's state (``export_state``)."""
    core.orders, core.kill = state["orders"], state["kill"]
    core.tally = Tally.rebuild(core.orders.open_orders(), state.get("tally"))
    core.own_cancels.pending = state["kill_cancels"]
    core.exec_ids.load(state)
    core.day, core.day_no = state.get("day", ""), state.get("day_no", 0)
    for when in (core.orders.next_forget_ns(), core.book.next_fold_ns()):
        if when is not None:
            core.retention.finished(when)
    core.alerts.alerted, core.recent = state["alerted"], state["recent"]
    core.recording_failure = state["recording_failure"]
    core.anomaly.load(state.get("anomaly"))
    core.shares.load(state.get("shares"))
    core.up = set(state["up"])
    core.limit_changes = []
    for layer, name, value in state["limit_changes"]:
        core.limits.replace(limit_edits.set_limit(core.limits.limits, layer, name, value))
        core.limit_changes.append((layer, name, value))
    core.mode_changes = []
    for rule, layer, name, mode in state.get("mode_changes", ()):
        try:
            monitor.apply_mode(core, rule, layer, name, mode)
        except ValueError:
            continue  # a rule today's config no longer runs: nothing to monitor
        core.mode_changes.append((rule, layer, name, mode))
    book = state["book"]
    book.instruments = core.instruments  # the config's instruments, with the references as they were
    core.book = book
    for symbol, price, time_ns in state["references"]:
        inst = core.instruments.get(symbol)
        if inst is None or (inst.reference_time_ns or 0) <= time_ns:
            core.instruments[symbol] = msgspec.structs.replace(
                inst or Instrument(symbol), reference_price=price, reference_time_ns=time_ns
            )
            anchor = state.get("anchors", {}).get(symbol)
            if anchor is not None:
                core.anchors[symbol] = anchor
