"""After a restart: the core as it was, from the latest snapshot and the journal after it.

1. The newest readable snapshot gives the state at that point: a segment's start, or (a day roll's
   snapshot, ``<segment>.<offset>.snapshot``) just after the ``DayRoll`` record of a segment.
2. Every record after it is replayed through the core, with its outputs suppressed: inbound
   messages (I) are decoded as the live edge decodes them, other inputs (E) handled as they are.
   Each segment's start record restores the ExecID generator the writing process used, so the
   core's own ids come out the same.
3. Only the last input can have been cut short by the crash (the engine sends every output of an
   input before it takes the next one). Its outputs are checked against the session stores, which
   quickfix and the native engine write before a message goes on the wire: an order, replace or
   cancel that never reached the venue store comes back as ``VenueSendFailed`` (the OMS hears it was
   not sent); a report or reject missing from the OMS store (a drop copy from the drop-copy
   session's) is sent again.
4. An inbound message that was journaled but whose sequence number the session store had not yet
   counted is counted (``inbound_seq``): the peer is not asked for it again.
"""

from __future__ import annotations

import os
import pickle
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from ..config import Config
from ..core import events as ev, snapshot
from ..core.proxy import ProxyCore
from ..fix import codec
from ..fix.codec import DEFAULT_LIMITS, IdentifierLimits
from ..fix.parse import parse as parse_fields
from . import format as fmt
from .reader import read_segment, segments
from .writer import snapshot_path

_VENUE_ACTIONS = (ev.VenueNewOrder, ev.VenueReplace, ev.VenueCancel)
_OMS_ACTIONS = (ev.OmsReport, ev.OmsCancelReject, ev.OmsBusinessReject, ev.DropCopy)


class Recovered:
    """What recovery found: the core's state and what to do before the sessions start."""

    def __init__(self) -> None:
        self.state: dict | None = None  # the snapshot of the recovered core (core/snapshot.py)
        self.snapshot: bytes = b""
        self.segment = 0  # the segment the new process writes
        self.replayed = 0  # input records replayed
        self.segments_read: list[int] = []
        self.send_failed: list[tuple[str, str]] = []  # (venue, venue ClOrdID) never sent
        self.resend: list[ev.Action] = []  # OMS messages to send again
        #: (session, raw) of messages the stores say went out after the last input but the journal
        #: lacks (killed between the store write and the journal append): journaled on start.
        self.journal_out: list[tuple[str, str]] = []
        #: Session name -> the sequence number of the last inbound application message journaled
        #: since the session last logged on (in the last segment).
        self.inbound_seq: dict[str, int] = {}
        self.seconds = 0.0


def roles(config: Config) -> dict[str, str]:
    """Session name -> "oms", "venue", "admin" or "drop_copy", as the edges name them."""
    out = {s.name: "oms" for s in config.oms}
    out.update({d.name: "drop_copy" for d in config.drop_copy})
    out.update({v.name: "venue" for v in config.venues})
    if config.risk_desk.comp_id:
        out[config.risk_desk.name] = "admin"
    return out


def decode_inbound(
    role: str, session: str, now_ns: int, fields: dict[int, str], identifiers: IdentifierLimits = DEFAULT_LIMITS
) -> ev.Event | None:
    """The core event of an inbound message (parsed), as ``CoreBridge.receive_locked`` decodes it."""
    if role == "oms":
        return codec.oms_to_event(fields, session, now_ns, identifiers)
    if role == "venue":
        try:
            return codec.venue_to_event(fields, session, now_ns)
        except codec.Invalid:
            return None
    return None  # the risk desk's messages reach the core as the E records of their commands


_SNAPSHOT = re.compile(r"^(\d{8})(?:\.(\d{12}))?\.snapshot$")


def snapshots(directory: Path) -> list[tuple[int, int]]:
    """(segment, offset) of the snapshots in ``directory``, oldest first (offset 0: a segment's start)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        (int(m.group(1)), int(m.group(2) or 0)) for name in os.listdir(directory) if (m := _SNAPSHOT.match(name))
    )


def load_snapshot(directory: Path, segment: int, offset: int = 0) -> dict | None:
    try:
        return pickle.loads(snapshot_path(directory, segment, offset).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError):
        return None


def write_snapshot(directory: Path, segment: int, data: bytes, offset: int = 0) -> None:
    """Write a snapshot atomically (a temporary file renamed over), synced: it replaces segments' replays.
    ``offset``: the state after the segment's record ending there (0: at the segment's start)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = snapshot_path(directory, segment, offset)
    tmp = path.with_suffix(".snapshot.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def recover(
    directory: Path,
    config: Config,
    make_core: Callable[[], ProxyCore],
    make_ids: Callable[[int], Callable[[], str]],
    venue_sent: Callable[[str], dict[str, str]],
    oms_sent: Callable[[str], dict[tuple, str] | None],
) -> Recovered:
    """Rebuild the core's state from ``directory``.

    ``make_core()``: a core from the config (start-of-day positions loaded); ``make_ids(start_ns)``:
    the ExecID generator of a process started at ``start_ns``. ``venue_sent(venue)``: {ClOrdID: raw}
    of the D/G/F messages in that venue session's store; ``oms_sent(session)``: {``oms_key``: raw} of
    the messages in an OMS session's store (None: the store keeps nothing across a restart).
    """
    log = structlog.get_logger("fixproxy.journal")
    started = time.monotonic()
    out = Recovered()
    directory = Path(directory)
    found = segments(directory)
    base, base_offset = 0, 0
    state: dict[str, Any] | None = None
    for seg, offset in reversed(snapshots(directory)):
        if offset and seg not in found:
            continue  # a mid-segment snapshot needs its segment (the start record, the records after it)
        state = load_snapshot(directory, seg, offset)
        if state is not None:
            base, base_offset = seg, offset
            break
    core: ProxyCore | None = None
    if state is not None:
        core = make_core()
        snapshot.import_state(core, state)
        if base_offset:
            # Mid-segment (a day roll's): the process that wrote the segment goes on making ExecIDs
            # where it was; the sessions it had up stay up (the snapshot says which).
            start = fmt.decode_start(next(read_segment(directory / f"{base:08d}.journal"))[2])
            core.next_id = make_ids(start.start_ns)
            if state.get("ids_drawn") is not None and hasattr(core.next_id, "drawn"):
                core.next_id.drawn = state["ids_drawn"]
    role_of = roles(config)
    identifiers = config.identifiers.limits()
    last: tuple[object, list[ev.Action]] | None = None  # the last input and what the core made of it
    sent_after: list[tuple[str, str]] = []  # (session, raw) of the O records after the last input
    inbound: dict[str, int] = {}
    to_replay = [s for s in found if s >= base] if found else []
    for seg in to_replay:
        out.segments_read.append(seg)
        for _, kind, payload in read_segment(directory / f"{seg:08d}.journal", base_offset if seg == base else 0):
            if kind == fmt.START:
                start = fmt.decode_start(payload)
                if core is None:
                    core = make_core()
                core.next_id = make_ids(start.start_ns)
                core.sessions_gone()
                inbound = {}
                continue
            if kind == fmt.INBOUND:
                session, now_ns, raw = fmt.decode_message(payload)
                role = role_of.get(session)
                fields = parse_fields(raw)
                event = decode_inbound(role, session, now_ns, fields, identifiers) if role else None
                seq = fields.get(34, "")
                if seq.isdigit():
                    inbound[session] = int(seq)
                if event is None:
                    continue
            elif kind == fmt.EVENT:
                event = fmt.decode_event(payload)
                if isinstance(event, ev.SessionUp):
                    inbound.pop(event.name, None)
            else:
                if kind == fmt.OUTBOUND:
                    session, _, raw = fmt.decode_message(payload)
                    sent_after.append((session, raw))  # parsed only if it follows the last input
                continue
            sent_after = []
            if core is None:
                core = make_core()
            out.replayed += 1
            try:
                last = (event, core.handle(event))
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the recovery
                log.error("journal_replay_error", segment=seg, error=repr(exc))
                last = None
    if core is None:
        core = make_core()
    core.sessions_gone()
    out.inbound_seq = inbound
    if last is not None:
        _reconcile(
            last[1],
            out,
            venue_sent,
            oms_sent,
            {(session, parse_fields(raw).get(34, "")) for session, raw in sent_after},
        )
    out.state = snapshot.export_state(core)
    out.snapshot = pickle.dumps(out.state, protocol=pickle.HIGHEST_PROTOCOL)
    out.segment = (found[-1] + 1) if found else 1
    out.seconds = time.monotonic() - started
    return out


def oms_key(fields: dict[int, str]) -> tuple:
    """What identifies a message the proxy sends an OMS: its type and ids."""
    t = fields.get(35, "")
    if t == "8":
        if 115 in fields:  # a drop copy: the same report can be copied for two OMS sessions
            return ("8", fields.get(17, ""), fields.get(11, ""), fields[115])
        return ("8", fields.get(17, ""), fields.get(11, ""))
    if t == "9":
        return ("9", fields.get(11, ""), fields.get(41, ""))
    if t == "j":
        return ("j", fields.get(379, ""), fields.get(45, ""))
    return (t,)


def _action_key(a: ev.OmsReport | ev.OmsCancelReject | ev.OmsBusinessReject | ev.DropCopy) -> tuple:
    if isinstance(a, ev.DropCopy):
        return ("8", a.copy.report.exec_id, a.copy.report.cl_ord_id, a.on_behalf_of)
    if isinstance(a, ev.OmsReport):
        return ("8", a.report.exec_id, a.report.cl_ord_id)
    if isinstance(a, ev.OmsCancelReject):
        return ("9", a.reject.cl_ord_id, a.reject.orig_cl_ord_id)
    return ("j", a.ref_id, str(a.ref_seq_num))


def _reconcile(
    actions: list[ev.Action],
    out: Recovered,
    venue_sent: Callable[[str], dict[str, str]],
    oms_sent: Callable[[str], dict[tuple, str] | None],
    journaled: set[tuple[str, str]],
) -> None:
    venue_cache: dict[str, dict[str, str]] = {}
    oms_cache: dict[str, dict[tuple, str] | None] = {}
    for a in actions:
        if isinstance(a, _VENUE_ACTIONS):
            session = a.venue
            if session not in venue_cache:
                venue_cache[session] = venue_sent(session)
            raw = venue_cache[session].get(a.cl_ord_id)
            if raw is None:
                out.send_failed.append((a.venue, a.cl_ord_id))
                continue
        elif isinstance(a, _OMS_ACTIONS):
            session = a.session
            if session not in oms_cache:
                oms_cache[session] = oms_sent(session)
            sent = oms_cache[session]
            if sent is None:
                continue
            raw = sent.get(_action_key(a))
            if raw is None:
                out.resend.append(a)
                continue
        else:
            continue
        if (session, parse_fields(raw).get(34, "")) not in journaled:
            out.journal_out.append((session, raw))
