"""The risk desk's live edits: one limit of one layer, and a symbol's reference price.

Each edit is checked as the config file would be and answered with an AdminResult (before, after);
the core applies what an accepted edit returns.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from . import events as ev
from .model import plain
from .risk.limits import LIMIT_FIELDS, Limits, LimitSet


def edit_limit(limits: LimitSet, e: ev.AdminSetLimit) -> tuple[LimitSet | None, ev.AdminResult]:
    """``limits`` with the edit applied (None when refused) and the result for the desk."""
    try:
        before = limit_value(limits, e.layer, e.field)
        changed = set_limit(limits, e.layer, e.field, e.value)
    except (ValueError, TypeError, msgspec.ValidationError) as exc:
        return None, ev.AdminResult("limit", False, e.layer, e.operator, e.reason, e.now_ns, detail=f"{e.field}: {exc}")
    after = limit_value(changed, e.layer, e.field)
    return changed, ev.AdminResult(
        "limit", True, e.layer, e.operator, e.reason, e.now_ns, show(before), show(after), detail=e.field
    )


def layer_of(limits: LimitSet, layer: str) -> Limits:
    """The limits of ``layer`` (firm, session:<name>, account:<Account>, symbol:<Symbol>); empty if unset."""
    if layer == "firm":
        return limits.firm
    kind, _, key = layer.partition(":")
    table = {"session": limits.sessions, "account": limits.accounts, "symbol": limits.symbols}.get(kind)
    if table is None or not key:
        raise ValueError(f"layer must be firm, session:<name>, account:<Account> or symbol:<Symbol>, got {layer!r}")
    return table.get(key, Limits())


def limit_value(limits: LimitSet, layer: str, name: str) -> object:
    if name not in LIMIT_FIELDS:  # not ``monitor``: a mode, set with AdminSetMode
        raise ValueError(f"no limit named {name!r}")
    return getattr(layer_of(limits, layer), name)


def set_limit(limits: LimitSet, layer: str, name: str, value: object) -> LimitSet:
    """``limits`` with one field of one layer set, or cleared with None (validated as in the config file)."""
    current = layer_of(limits, layer)
    if name not in Limits.__struct_fields__:
        raise ValueError(f"no limit named {name!r}")
    fields = {k: v for k, v in msgspec.structs.asdict(current).items() if v is not None}
    if value is None:
        fields.pop(name, None)
    else:
        fields[name] = value
    new = msgspec.convert(msgspec.to_builtins(fields), Limits, strict=False)
    kind, _, key = layer.partition(":")
    return limits.with_layer(kind, key, new)


def edit_reference(
    e: ev.AdminSetReference, before: Decimal | None, max_change_pct: Decimal
) -> tuple[Decimal | None, ev.AdminResult]:
    """The new reference price (None when refused) and the result for the desk. A move of more than
    ``max_change_pct`` from ``before`` needs ``force``, and the result says it was forced."""

    def refused(detail: str) -> tuple[None, ev.AdminResult]:
        return None, ev.AdminResult(
            "reference", False, f"symbol:{e.symbol}", e.operator, e.reason, e.now_ns, detail=detail
        )

    try:
        price = Decimal(e.price)
        if not price.is_finite() or price <= 0:
            raise ValueError
    except (ArithmeticError, ValueError):
        return refused(f"price must be a positive number, got {e.price!r}")
    detail = ""
    if before:
        move = abs(price - before) / before * 100
        if move > max_change_pct:
            if not e.force:
                return refused(
                    f"{plain(price)} is {move:.2f}% from the reference {plain(before)}, more than "
                    f"the {plain(max_change_pct)}% a change may move it; set it with force if it is right"
                )
            detail = f"forced: {move:.2f}% from the reference, more than {plain(max_change_pct)}%"
    return price, ev.AdminResult(
        "reference", True, f"symbol:{e.symbol}", e.operator, e.reason, e.now_ns, show(before), plain(price), detail
    )


def collared(price: Decimal, anchor: Decimal, collar_pct: Decimal) -> Decimal:
    """A fill's price as a reference: clamped to the collar around ``anchor`` (the price the
    instrument file or the desk last set), so fills cannot walk the reference away."""
    band = anchor * collar_pct / 100
    return min(max(price, anchor - band), anchor + band)


def show(value: object) -> str:
    """A limit's or price's value as the desk reads it ("" for unset)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    return str(value)
