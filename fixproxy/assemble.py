"""The core as the config describes it: one recipe for the proxy, its recovery and replays.

Imports no FIX engine and no event loop, so replay and the tools load only what they use.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import LoadedConfig
from .core.drop_copy import DropCopies, DropCopyTarget
from .core.proxy import ProxyCore


class exec_id_generator:
    """ExecIDs for the proxy's own execution reports: unique across restarts of the process.
    ``drawn`` (how many were made) goes into a snapshot taken mid-segment (the day roll's), so a
    recovery from it goes on where the process was."""

    __slots__ = ("prefix", "drawn")

    def __init__(self, start_ns: int, drawn: int = 0) -> None:
        self.prefix = f"FP{start_ns // 1_000_000:x}-"
        self.drawn = drawn

    def __call__(self) -> str:
        self.drawn += 1
        return f"{self.prefix}{self.drawn}"


def build_core(loaded: LoadedConfig, start_ns: int, next_id: Callable[[], str] | None = None) -> ProxyCore:
    """A core from the config, with start-of-day positions loaded (callers restore saved state on top)."""
    cfg = loaded.config
    core = ProxyCore(
        sessions=cfg.session_policies(),
        venues=[v.name for v in cfg.venues],
        instruments=loaded.instruments,
        limits=cfg.limits,
        rules=cfg.rule_names(),
        monitored=cfg.monitored_rules(),
        next_id=next_id or exec_id_generator(start_ns),
        settings=cfg.risk_settings(),
        locates=cfg.locate_table(),
        finished_grace_s=None if cfg.proxy.finished_grace_s < 0 else cfg.proxy.finished_grace_s,
        drop_copies=DropCopies(
            [DropCopyTarget(d.name, d.copy_refusals) for d in cfg.drop_copy], {s.name: s.comp_id for s in cfg.oms}
        )
        if cfg.drop_copy
        else None,
        anomaly=cfg.anomaly,
    )
    for p in loaded.positions:
        core.book.load_position(p.account, p.symbol, p.qty, p.avg_cost)
    return core
