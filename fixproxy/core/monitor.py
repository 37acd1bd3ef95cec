"""Monitor (shadow) mode: a rule, or one limit of one layer, that records what it would have refused
instead of refusing.

The pipeline runs the enforced rules against the limits in force (a layer's monitored limits left
out, so a less specific layer's apply). Only when that accepts an order, and only while something is
monitored, does ``would_refuse`` run the checks again as if everything were enforced: each refusal it
finds is one a monitored rule or limit would have made, and becomes a WouldRefuse action. With
nothing monitored the order path pays two attribute reads.

A rule's mode comes from ``[risk] modes``, a layer's from its ``monitor`` list, and either changes
live with AdminSetMode (kept in ``mode_changes`` for the snapshot, applied on top of the config).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from . import events as ev, limit_edits
from .model import OrderRequest
from .risk.limits import MONITORABLE
from .risk.rules import RULES, CheckContext, run_pipeline

if TYPE_CHECKING:
    from .proxy import ProxyCore

MODES = ("enforce", "monitor")


def configure(core: ProxyCore, monitored: Iterable[str]) -> None:
    """Put the rules named in ``monitored`` in monitor mode and every other rule of the core in enforce."""
    names = frozenset(monitored)
    unknown = sorted(names - RULES.keys())
    if unknown:
        raise ValueError(f"unknown rule(s): {', '.join(unknown)}")
    pairs = tuple((name, RULES[name]) for name in core.rule_names)
    core.monitored = names
    core.rules = tuple(rule for name, rule in pairs if name not in names)
    core.watched_rules = tuple(pair for pair in pairs if pair[0] in names)
    core.all_rules = pairs


def would_refuse(
    core: ProxyCore, session: str, msg_type: str, order: OrderRequest, ctx: CheckContext, venue: str
) -> list[ev.Action]:
    """What monitor mode let through: one WouldRefuse per rule that would have refused ``order``
    (accepted by the enforced checks with ``ctx``, which this may change)."""
    full = core.limits.shadow(session, order.account, order.symbol)
    if full is None:
        rules = core.watched_rules
    else:
        # Every limit counted: with the enforced checks passed, any refusal is a monitored rule's or limit's.
        ctx.limits = full
        rules = core.all_rules
    out: list[ev.Action] = []
    for name, rule in rules:
        rej = run_pipeline((rule,), order, ctx)  # a rule that raises is a CHECK_FAILED, as enforced
        if rej is not None:
            out.append(
                ev.WouldRefuse(
                    session,
                    msg_type,
                    order.cl_ord_id,
                    ctx.now_ns,
                    rej.code,
                    rej.text,
                    rej.observed,
                    rej.limit,
                    rej.scope,
                    order.account,
                    order.symbol,
                    venue,
                    name,
                )
            )
    return out


def apply_mode(core: ProxyCore, rule: str, layer: str, field: str, mode: str) -> tuple[str, str]:
    """Set one mode in ``core``: (the scope it applies to, the mode before). ValueError names what is wrong."""
    if mode not in MODES:
        raise ValueError(f"mode must be enforce or monitor, got {mode!r}")
    if rule:
        if layer or field:
            raise ValueError("give a rule, or a layer and a field, not both")
        if rule not in core.rule_names:
            known = ", ".join(core.rule_names) or "none"
            raise ValueError(f"{rule!r} is not a rule this proxy runs (rules: {known})")
        before = "monitor" if rule in core.monitored else "enforce"
        configure(core, core.monitored | {rule} if mode == "monitor" else core.monitored - {rule})
        return "firm", before
    if field not in MONITORABLE:
        raise ValueError(f"no limit named {field!r} to monitor (limits: {', '.join(MONITORABLE)})")
    limits = core.limits.limits
    current = limit_edits.layer_of(limits, layer)  # ValueError for a malformed layer
    watched = set(current.monitor or ())
    before = "monitor" if field in watched else "enforce"
    if mode == "monitor":
        watched.add(field)
    else:
        watched.discard(field)
    kind, _, key = layer.partition(":")
    changed = msgspec.structs.replace(current, monitor=frozenset(watched) or None)
    core.limits.replace(limits.with_layer(kind, key, changed))
    return layer, before


def set_mode(core: ProxyCore, e: ev.AdminSetMode) -> list[ev.Action]:
    """The desk's AdminSetMode: applied and kept in ``mode_changes``, answered with before and after."""
    what = f"rule {e.rule}" if e.rule else e.field
    try:
        scope, before = apply_mode(core, e.rule, e.layer, e.field, e.mode)
    except ValueError as exc:
        return [
            ev.AdminResult("mode", False, e.layer or "firm", e.operator, e.reason, e.now_ns, detail=f"{what}: {exc}")
        ]
    core.mode_changes.append((e.rule, e.layer, e.field, e.mode))
    return [ev.AdminResult("mode", True, scope, e.operator, e.reason, e.now_ns, before, e.mode, detail=what)]


def modes(core: ProxyCore) -> dict:
    """Every rule's mode (in the order they run) and the limits in monitor mode, per layer."""
    limits = core.limits.limits
    layers = [("firm", limits.firm)] + [
        (f"{kind}:{key}", layer)
        for kind, table in (("session", limits.sessions), ("account", limits.accounts), ("symbol", limits.symbols))
        for key, layer in sorted(table.items())
    ]
    return {
        "rules": {name: "monitor" if name in core.monitored else "enforce" for name in core.rule_names},
        "limits": [
            {"layer": scope, "field": field, "mode": "monitor"}
            for scope, layer in layers
            for field in sorted(layer.monitor or ())
        ],
    }
