"""Log lines: the format every fixproxy process writes, and the lines of the core's actions."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import msgspec
import structlog

from .core import events as ev

if TYPE_CHECKING:
    from .admin.control import Feed


def configure_logging(level: str = "info") -> None:
    """structlog: JSON lines when not on a terminal (files, pipes, tests), readable on a terminal."""
    renderer = structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),  # one write per line: processes share stderr
        cache_logger_on_first_use=True,
    )


class Recorder:
    """Where decisions, alerts, admin results and notices go once journaled: the admin API's live
    feed (if any), then structured log lines. (The audit store follows the journal.)"""

    def __init__(self, feed: Feed | None = None, log_accepted: bool = False) -> None:
        self.log = structlog.get_logger("fixproxy")
        self.feed = feed
        # Accepted decisions are in the journal, the audit store and the feed; a log line each
        # (log_level "debug") costs the order path more than the risk checks do.
        self.log_accepted = log_accepted

    def __call__(self, action: ev.Action) -> None:
        if self.feed is not None:
            self.feed.add(action)  # recent items and server-sent events; never blocks
        if isinstance(action, ev.Decision):
            if action.accepted and not self.log_accepted:
                return
            fields = msgspec.structs.asdict(action)
            fields.pop("now_ns")
            log = self.log.debug if action.accepted else self.log.warning
            log("decision", **{k: v for k, v in fields.items() if v not in ("", None)})
        elif isinstance(action, ev.Alert):
            self.log.warning(
                "alert",
                limit_name=action.limit_name,
                scope=action.scope,
                level_pct=action.level_pct,
                observed=action.observed,
                limit=action.limit,
                text=action.text,
            )
        elif isinstance(action, ev.AnomalyAlert):
            fields = {k: v for k, v in msgspec.structs.asdict(action).items() if v not in ("", None)}
            fields.pop("now_ns")
            self.log.warning("anomaly", **fields)
        elif isinstance(action, ev.WouldRefuse):
            fields = {k: v for k, v in msgspec.structs.asdict(action).items() if v not in ("", None)}
            fields.pop("now_ns")
            self.log.warning("would_refuse", **fields)  # monitor mode: the order went on
        elif isinstance(action, ev.AdminResult):
            # Who, what, scope, why, before/after.
            fields = {k: v for k, v in msgspec.structs.asdict(action).items() if v not in ("", None)}
            fields.pop("now_ns")
            (self.log.info if action.ok else self.log.warning)("admin_action", **fields)
        elif isinstance(action, ev.Notice):
            self.log.info(action.kind, detail=action.detail)
