"""Log readers for replay: quickfix FileLog message logs, raw FIX files, and the proxy's audit store.

Only the audit store holds the risk desk's commands (kill switch, limit and reference-price
changes): ``AuditLog`` yields them with everything else, ``AuditCommands`` yields only them, to
go beside FileLogs.

Every reader yields items whose first field is a timestamp (ns since the epoch), in file
order, so several inputs merge by time. A line that cannot be read is kept in ``malformed``
with its line number and never stops the reader.

Line formats (one message a line, told apart line by line):

- FileLog: ``20261125-12:28:04.277000000 : 8=FIX.4.4<SOH>9=...<SOH>10=123<SOH>``; the clock is
  the log's own stamp (when quickfix read or wrote the message).
- raw FIX: ``8=FIX.4.4|9=...|10=123|`` with SOH or ``|`` between fields; the clock is SendingTime (52).

A message must carry MsgType (35), SenderCompID (49), TargetCompID (56) and end with CheckSum
(10); BodyLength and CheckSum values are not checked, so hand-edited files replay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from ..audit.records import (
    COMMAND_CODES,
    KIND_ADMIN,
    KIND_COMMAND,
    KIND_DECISION,
    KIND_MESSAGE,
    KIND_NOTICE,
    Record,
    command_event,
)
from ..audit.store import TABLE, AuditError, is_audit_store, iter_records, open_for_reading
from ..core import events as ev
from ..fix.parse import parse as parse_fields
from ..timefmt import fix_time_ns

Progress = Callable[[int], object]  # what it returns is ignored (tqdm.update returns a bool)


class Message(NamedTuple):
    """One FIX message from a log. ``route`` is (session, direction) when the source knows it (audit store)."""

    ts_ns: int
    source: int
    line: int
    fields: dict[int, str]
    route: tuple[str, str] | None = None


class RecordedDecision(NamedTuple):
    """A decision the proxy recorded in its audit store: the original outcome, first hand."""

    ts_ns: int
    source: int
    line: int
    session: str
    cl_ord_id: str
    accepted: bool
    code: str


class SessionChange(NamedTuple):
    """A session went up or down (audit store notices)."""

    ts_ns: int
    source: int
    line: int
    name: str
    up: bool


class AdminCommand(NamedTuple):
    """A risk-desk command (audit store command records): the core event, at the time it was given."""

    ts_ns: int
    source: int
    line: int
    event: ev.AdminCommand


class ClusterInput(NamedTuple):
    """This instance's share of a limit a cluster shares, or its fence (journal only: core/cluster.py)."""

    ts_ns: int
    source: int
    line: int
    event: ev.ClusterShare | ev.ClusterFence


Item = Message | RecordedDecision | SessionChange | AdminCommand | ClusterInput


class ReplayError(Exception):
    """An input that cannot be replayed at all (missing, unreadable, mixed with an audit store)."""


class Malformed(NamedTuple):
    source: str
    line: int
    reason: str
    text: str


class Scan(NamedTuple):
    """What a quick first pass over a text log finds (regular expressions over bytes, no parsing)."""

    senders: set[str]
    #: (sender, target, RefSeqNum, timestamp) of every session-level Reject (35=3).
    session_rejects: list[tuple[str, str, int, int]]


_SENDER = re.compile(rb"[\x01|]49=([^\x01|\r\n]*)")
_SESSION_REJECT = re.compile(rb"^.*[\x01|]35=3[\x01|].*$", re.M)
_CHUNK = 8 << 20


class _Reader:
    """What every input has: where it is, its label in reports, progress and counts."""

    format = ""

    def __init__(self, path: Path, index: int, label: str, progress: Progress | None = None):
        self.path = path
        self.index = index
        self.label = label
        self.progress = progress  # called with how much was read (bytes, or records for an audit store)
        self.size = 0
        self.malformed: list[Malformed] = []
        self.lines = 0
        self.messages = 0
        self.formats: set[str] = set()

    def scan(self) -> Scan:
        return Scan(set(), [])


class TextLog(_Reader):
    """A FileLog or raw FIX file (the format is told line by line)."""

    format = "text"

    def __init__(self, path: Path, index: int, label: str, progress: Progress | None = None):
        super().__init__(path, index, label, progress)
        self.size = path.stat().st_size

    def scan(self) -> Scan:
        senders: set[bytes] = set()
        rejects: list[tuple[str, str, int, int]] = []
        with open(self.path, "rb") as f:
            rest = b""
            while chunk := f.read(_CHUNK):
                data = rest + chunk
                cut = data.rfind(b"\n") + 1  # whole lines only; the rest waits for the next chunk
                self._scan_chunk(data[:cut], senders, rejects)
                rest = data[cut:]
            self._scan_chunk(rest, senders, rejects)
        return Scan({s.decode("utf-8", "replace") for s in senders}, rejects)

    @staticmethod
    def _scan_chunk(chunk: bytes, senders: set[bytes], rejects: list) -> None:
        senders.update(_SENDER.findall(chunk))
        for m in _SESSION_REJECT.finditer(chunk):
            try:
                ts, fields, _ = parse_line(m.group(0).decode("utf-8", "replace"))
                rejects.append((fields[49], fields[56], int(fields.get(45, "0")), ts))
            except (ValueError, KeyError):
                continue

    def __iter__(self) -> Iterator[Message]:
        progress, pending = self.progress, 0
        with open(self.path, "rb") as f:
            for number, data in enumerate(f, 1):
                pending += len(data)
                if progress is not None and pending >= 1 << 20:
                    progress(pending)
                    pending = 0
                line = data.decode("utf-8", "replace").rstrip("\r\n")
                if not line.strip():
                    continue
                self.lines += 1
                try:
                    ts, fields, fmt = parse_line(line)
                except ValueError as exc:
                    self.malformed.append(Malformed(self.label, number, str(exc), line[:160].replace("\x01", "|")))
                    continue
                self.messages += 1
                self.formats.add(fmt)
                yield Message(ts, self.index, number, fields)
        if progress is not None and pending:
            progress(pending)


def parse_line(line: str) -> tuple[int, dict[int, str], str]:
    """(timestamp ns, tag -> value, "filelog" or "raw") for one log line; ValueError says what is wrong."""
    if line.startswith("8="):
        stamp, body, fmt = "", line, "raw"
    else:
        stamp, sep, body = line.partition(" : ")
        if not sep or not body.startswith("8="):
            raise ValueError("not a FIX message (a line starts with 8= or with a FileLog timestamp and ' : ')")
        fmt = "filelog"
    sep = "\x01" if "\x01" in body else "|"
    trimmed = body.rstrip(sep)
    if not trimmed[trimmed.rfind(sep) + 1 :].startswith("10="):
        raise ValueError("truncated: the message does not end with CheckSum (10)")
    fields = parse_fields(trimmed, sep)
    for tag, name in ((35, "MsgType"), (49, "SenderCompID"), (56, "TargetCompID")):
        if not fields.get(tag):
            raise ValueError(f"no {name} ({tag})")
    if stamp:
        try:
            return fix_time_ns(stamp), fields, fmt
        except ValueError:
            raise ValueError(f"bad log timestamp {stamp[:40]!r}") from None
    sending = fields.get(52, "")
    try:
        return fix_time_ns(sending), fields, fmt
    except ValueError:
        raise ValueError(f"no usable timestamp: SendingTime (52) is {sending[:40]!r}") from None


_ORDER_MESSAGES = frozenset("DGF")
_COMMAND_RESULTS = frozenset(COMMAND_CODES.values())
#: Records held back behind an order message that waits for its decision (a bound, never reached in practice).
_HOLD_MAX = 10_000


class AuditLog(_Reader):
    """The proxy's audit store: messages with their session and direction, decisions, session changes,
    and the risk desk's commands.

    Records come in chain order, with one correction. An order message is recorded when it arrives,
    before it waits for the core's lock; a command is recorded under that lock. A command recorded
    between an order message and that order's decision was therefore applied before the order was
    decided: it is yielded before the order message.
    """

    format = "audit"

    def __init__(self, path: Path, index: int, label: str, progress: Progress | None = None):
        super().__init__(path, index, label, progress)
        self.db = open_for_reading(path)
        self.size = self.db[TABLE].count
        self.formats = {"audit"}
        #: Risk-desk actions recorded without their command (a store written before commands were recorded).
        self.uncommanded = 0

    def _records(self, kinds: tuple[str, ...]) -> Iterator[Record]:
        where = f"kind IN ({', '.join(repr(k) for k in kinds)})"
        for n, (r, _) in enumerate(iter_records(self.db, where), 1):
            if self.progress is not None and n % 10_000 == 0:
                self.progress(10_000)
            yield r

    def _answered(self, r: Record, unanswered: int) -> int:
        """An admin result read: it answers one pending command, or counts as recorded without one."""
        if r.code in _COMMAND_RESULTS:
            if unanswered:
                return unanswered - 1
            self.uncommanded += 1
        return unanswered

    def _command(self, r: Record) -> AdminCommand | None:
        try:
            return AdminCommand(r.ts_ns, self.index, r.seq, command_event(r))
        except ValueError as exc:
            self.malformed.append(Malformed(self.label, r.seq, str(exc), r.data[:160]))
            return None

    def __iter__(self) -> Iterator[Item]:
        waiting: tuple[str, str] | None = None  # (session, ClOrdID) of an order message not decided yet
        held: list[Item] = []  # that order message and the records after it
        commands: list[AdminCommand] = []  # commands recorded while it waited: applied before it
        unanswered = 0  # commands whose admin result is not read yet
        for r in self._records((KIND_MESSAGE, KIND_DECISION, KIND_NOTICE, KIND_COMMAND, KIND_ADMIN)):
            kind = r.kind
            if kind == KIND_ADMIN:
                unanswered = self._answered(r, unanswered)
                continue
            self.lines += 1
            item: Item | None = None
            if kind == KIND_MESSAGE:
                raw = json.loads(r.data).get("raw", "")
                self.messages += 1
                item = Message(r.ts_ns, self.index, r.seq, parse_fields(raw), (r.session, r.direction))
            elif kind == KIND_DECISION:
                item = RecordedDecision(
                    r.ts_ns, self.index, r.seq, r.session, r.cl_ord_id, r.decision == "accept", r.code
                )
            elif kind == KIND_COMMAND:
                unanswered += 1
                item = self._command(r)
                if item is not None and waiting is not None:
                    commands.append(item)
                    continue
            elif r.code in ("session_up", "session_down"):
                item = SessionChange(
                    r.ts_ns, self.index, r.seq, json.loads(r.data).get("detail", ""), r.code == "session_up"
                )
            if item is None:
                continue
            order = kind == KIND_MESSAGE and r.direction == "in" and r.msg_type in _ORDER_MESSAGES
            if waiting is not None and (order or len(held) >= _HOLD_MAX):
                # A new order message: the one before was handled (the acceptor's thread hands them over one by one).
                yield from commands
                yield from held
                waiting, held, commands = None, [], []
            if order:
                waiting, held = (r.session, r.cl_ord_id), [item]
            elif waiting is not None:
                held.append(item)
                if kind == KIND_DECISION and (r.session, r.cl_ord_id) == waiting:
                    yield from commands
                    yield from held
                    waiting, held, commands = None, [], []
            else:
                yield item
        yield from commands
        yield from held


class AuditCommands(AuditLog):
    """Only the risk desk's commands from an audit store: to replay beside FileLogs or raw FIX files."""

    format = "audit-commands"

    def __init__(self, path: Path, index: int, label: str, progress: Progress | None = None):
        super().__init__(path, index, label, progress)
        self.size = 0  # not counted by the progress bar
        self.formats = {"audit-commands"}

    def __iter__(self) -> Iterator[AdminCommand]:
        unanswered = 0
        for r in self._records((KIND_COMMAND, KIND_ADMIN)):
            if r.kind == KIND_ADMIN:
                unanswered = self._answered(r, unanswered)
                continue
            self.lines += 1
            unanswered += 1
            item = self._command(r)
            if item is not None:
                yield item


class JournalLog(_Reader):
    """A segment of the proxy's journal (spec/journal.md): every input in the order the core took it,
    the messages it sent, its decisions, session changes and the risk desk's commands, first hand."""

    format = "journal"

    def __init__(self, path: Path, index: int, label: str, progress: Progress | None = None):
        super().__init__(path, index, label, progress)
        self.size = path.stat().st_size
        self.formats = {"journal"}

    def __iter__(self) -> Iterator[Item]:
        from ..journal import format as fmt
        from ..journal.reader import read_segment

        done = 0
        for n, (pos, kind, payload) in enumerate(read_segment(self.path), 1):
            if self.progress is not None and n % 10_000 == 0:
                self.progress(pos - done)
                done = pos
            value = fmt.decode(kind, payload)
            self.lines += 1
            if kind in (fmt.INBOUND, fmt.OUTBOUND):
                session, now_ns, raw = value
                self.messages += 1
                yield Message(
                    now_ns, self.index, n, parse_fields(raw), (session, "in" if kind == fmt.INBOUND else "out")
                )
            elif isinstance(value, ev.Decision):
                yield RecordedDecision(
                    value.now_ns, self.index, n, value.session, value.cl_ord_id, value.accepted, value.code
                )
            elif isinstance(value, (ev.SessionUp, ev.SessionDown)):
                yield SessionChange(value.now_ns, self.index, n, value.name, isinstance(value, ev.SessionUp))
            elif isinstance(value, ev.ADMIN_COMMANDS):
                yield AdminCommand(value.now_ns, self.index, n, value)
            elif isinstance(value, (ev.ClusterShare, ev.ClusterFence)):
                yield ClusterInput(value.now_ns, self.index, n, value)


def is_journal(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"FXJRNL01"
    except OSError:
        return False


Source = TextLog | AuditLog | AuditCommands | JournalLog


def expand(paths: list[str]) -> list[tuple[Path, str]]:
    """(path, label) for every input: files as given; a folder gives its quickfix message logs."""
    out: list[tuple[Path, str]] = []
    for given in paths:
        p = Path(given)
        if p.is_dir() and any(p.glob("*.journal")):
            out += [(f, str(Path(given) / f.name)) for f in sorted(p.glob("*.journal"))]
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*.log") if f.is_file() and ".messages." in f.name)
            if not found:
                raise ReplayError(f"{given}: no quickfix message logs (*.messages.*.log) in this folder")
            out += [(f, str(Path(given) / f.relative_to(p))) for f in found]
        elif p.is_file():
            out.append((p, given))
        else:
            raise ReplayError(f"{given}: no such file or folder")
    return out


def open_sources(paths: list[str], progress: Progress | None = None, commands_from: str | None = None) -> list[Source]:
    """Readers for the inputs; an audit store must be the only input (it already holds every session).

    ``commands_from``: an audit store whose risk-desk commands are replayed beside text logs.
    """
    sources: list[Source] = []
    for i, (path, label) in enumerate(expand(paths)):
        cls = AuditLog if is_audit_store(path) else JournalLog if is_journal(path) else TextLog
        try:
            sources.append(cls(path, i, label, progress))
        except (OSError, AuditError) as exc:
            raise ReplayError(f"{label}: {exc}") from None
    if any(isinstance(s, JournalLog) for s in sources) and not all(isinstance(s, JournalLog) for s in sources):
        raise ReplayError("journal segments are replayed on their own (they already hold every session)")
    if len(sources) > 1 and any(isinstance(s, AuditLog) for s in sources):
        raise ReplayError("an audit store is replayed on its own (it already holds every session)")
    if commands_from:
        if any(isinstance(s, AuditLog) for s in sources):
            raise ReplayError(
                "--audit goes with FileLogs or raw FIX files: an audit store given as the log "
                "already holds its commands"
            )
        if not is_audit_store(Path(commands_from)):
            raise ReplayError(f"{commands_from}: not an audit store (--audit takes the proxy's audit.sqlite)")
        try:
            sources.append(AuditCommands(Path(commands_from), len(sources), commands_from, progress))
        except AuditError as exc:
            raise ReplayError(f"{commands_from}: {exc}") from None
    return sources
