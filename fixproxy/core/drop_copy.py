"""Drop copies (spec/drop-copy.md): what each drop-copy session receives.

A copy of every ExecutionReport the core sends an OMS, and, for the sessions that ask for them, of
the proxy's own refusals of new orders as ExecutionReports (150=8) whatever the OMS session's
``reject_with``. The core emits the copies next to the OMS's message (``DropCopy`` actions), so they
are sent, journaled and reconciled after a crash as the OMS's messages are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from . import answers, events as ev
from .model import OrderRequest
from .risk.rules import Reject


class DropCopyTarget(msgspec.Struct, frozen=True):
    """One drop-copy session as the core sees it."""

    name: str
    #: Also copy the proxy's own refusals of new orders.
    copy_refusals: bool = True


class DropCopies:
    """The drop-copy sessions and the OMS sessions' SenderCompIDs (what 115 carries)."""

    __slots__ = ("every", "refusals", "comp_ids")

    def __init__(self, targets: Sequence[DropCopyTarget], comp_ids: Mapping[str, str]) -> None:
        self.every = tuple(t.name for t in targets)
        self.refusals = tuple(t.name for t in targets if t.copy_refusals)
        self.comp_ids = dict(comp_ids)

    def of_report(self, sent: ev.OmsReport) -> list[ev.DropCopy]:
        """The copies of an ExecutionReport sent to an OMS (the proxy's own refusal, which has a
        ``code``, only to the sessions that copy refusals)."""
        who = self.comp_ids.get(sent.session, sent.session)
        return [ev.DropCopy(name, who, sent) for name in (self.refusals if sent.code else self.every)]

    def of_refusal(
        self, answer: ev.Action, session: str, seq_num: int, now_ns: int, order: OrderRequest, rej: Reject
    ) -> list[ev.DropCopy]:
        """The copies of a refused new order, answered to its OMS with ``answer`` (35=8 or 35=j)."""
        if not self.refusals:
            return []
        if isinstance(answer, ev.OmsReport):
            return self.of_report(answer)
        # Answered with a BusinessMessageReject: the copy is an ExecutionReport of its own. Its ExecID
        # is made from the refused message (not drawn from the core's id generator, so configuring a
        # drop copy changes none of the ids the OMS sessions get).
        exec_id = f"R{now_ns:x}.{session}.{seq_num}"
        report = answers.order_refusal(session, seq_num, order, rej, exec_id)
        return self.of_report(report) if isinstance(report, ev.OmsReport) else []
