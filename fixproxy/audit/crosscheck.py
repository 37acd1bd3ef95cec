"""``audit verify`` beyond the hash chain: the store against what it was made from and what was sent.

A hash chain shows a record altered, inserted or deleted in the middle; it cannot show records cut
off the end, nor a store rewritten and re-hashed from some record on, nor a store made up whole.
These checks can:

- ``check_journal``: every journal record that has an audit record has it in the store, in the
  journal's order, with the same columns (the follower is deterministic: ``follower.journal_draft``
  makes the same drafts here);
- ``check_fix_stores``: every application message in the FIX session stores (quickfix FileStore
  files, which both engines write before a message goes on the wire) has an ``out`` message record
  with the same sender, target, MsgSeqNum (34) and SendingTime (52);
- ``check_checkpoints``: with the key, every checkpoint's HMAC verifies, and no run of records
  without a checkpoint spans more than the checkpoint interval;
- ``check_head``: record SEQ exists with the hash noted earlier (``audit head``).

Each returns a ``Check``: "ok", "failed" or "not checked", a sentence and some detail lines.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import sqlite_utils

from ..fix.parse import ADMIN_TYPES, first_value
from ..journal import format as fmt
from ..journal.reader import read_segment, segments
from ..timefmt import fix_time_ns
from .follower import journal_draft
from .records import (
    AUDIT_STARTED,
    KIND_CHECKPOINT,
    KIND_MESSAGE,
    KIND_NOTICE,
    Record,
    checkpoint_mac,
    key_id,
)
from .store import TABLE, head, iter_records, read_position

#: At most this many detail lines per check.
MAX_DETAILS = 10


class Check(msgspec.Struct):
    """The outcome of one check."""

    name: str
    status: str  # "ok", "failed" or "not checked"
    summary: str
    details: list[str] = []

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def lines(self) -> list[str]:
        label = {"ok": "ok", "failed": "FAILED", "not checked": "not checked"}[self.status]
        return [f"{self.name}: {label}: {self.summary}"] + [f"  {d}" for d in self.details]


def _describe(values: tuple) -> str:
    """kind, decision, code, session, ClOrdID and MsgType of a record (or draft columns), for a sentence."""
    _, kind, session, direction, msg_type, cl_ord_id, _, _, decision, code, _ = values
    words = [
        kind,
        direction,
        f"35={msg_type}" if msg_type else "",
        decision,
        code,
        f"session {session}" if session else "",
        f"ClOrdID {cl_ord_id}" if cl_ord_id else "",
    ]
    return " ".join(w for w in words if w)


# ---------------------------------------------------------------- the journal


def journal_writer(journal_dir: Path) -> tuple[int, int] | None:
    """(segment, pid) of the process that wrote the newest segment, from its start record."""
    found = segments(journal_dir)
    if not found:
        return None
    try:
        for _, kind, payload in read_segment(Path(journal_dir) / f"{found[-1]:08d}.journal"):
            if kind == fmt.START:
                return found[-1], fmt.decode_start(payload).pid
            break
    except (OSError, ValueError, msgspec.DecodeError):
        pass
    return None


def proxy_running(journal_dir: Path) -> bool:
    """Whether the proxy that writes the journal's newest segment is running: its process exists and
    was started before the segment was (a process id used again by a later process is not it)."""
    writer = journal_writer(journal_dir)
    if writer is None or writer[1] <= 0:
        return False
    segment, pid = writer
    try:
        started = _process_start_ns(pid)
        start = fmt.decode_start(next(read_segment(Path(journal_dir) / f"{segment:08d}.journal"))[2])
    except (OSError, ValueError, IndexError, StopIteration, msgspec.DecodeError):
        return False
    return started <= start.start_ns + 2_000_000_000  # clock ticks are coarse: a little slack


def _process_start_ns(pid: int) -> int:
    """When process ``pid`` started (ns since the epoch), from /proc; OSError if there is no such process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22, starttime, in clock ticks since boot
    boot = next(
        int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
    )
    return boot * 1_000_000_000 + ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _journal_records(journal_dir: Path, found: list[int]) -> Iterator[tuple[int, int, bytes, bytes]]:
    for segment in found:
        for offset, kind, payload in read_segment(Path(journal_dir) / f"{segment:08d}.journal"):
            yield segment, offset, kind, payload


def _segment_starts(db: sqlite_utils.Database) -> dict[int, int]:
    """Journal segment -> seq of the ``audit_started`` notice that opens its records."""
    out: dict[int, int] = {}
    for seq, data in db.execute(
        f"SELECT seq, data FROM {TABLE} WHERE kind = ? AND code = ? ORDER BY seq", (KIND_NOTICE, AUDIT_STARTED)
    ):
        try:
            segment = json.loads(data).get("segment")
        except (ValueError, AttributeError):
            continue
        if isinstance(segment, int) and segment not in out:
            out[segment] = seq
    return out


class JournalCheck(Check):
    #: (sender, target, MsgSeqNum, SendingTime) of the out messages journaled but not yet followed.
    unfollowed_out: set = set()


def check_journal(db: sqlite_utils.Database, journal_dir: Path, *, running: bool | None = None) -> JournalCheck:
    """Every journal record that maps to an audit record is in the store, in order, with the same
    columns. Journal records after the follower's committed position are "not yet followed": not a
    failure while the proxy writing the journal runs (``running``; None: look at its process)."""
    name = "journal"
    journal_dir = Path(journal_dir)
    found = segments(journal_dir)
    if not found:
        return JournalCheck(name, "not checked", f"no journal segments in {journal_dir}")
    if running is None:
        running = proxy_running(journal_dir)
    starts = _segment_starts(db)
    saved = read_position(db)
    position = (saved.segment, saved.offset) if saved else None
    first = found[0]
    start_seq = starts.get(first)
    details: list[str] = []
    notes: list[str] = []
    problems: list[str] = []
    total, _ = head(db)
    if saved is not None:
        # The follower saved the chain head with its position: a store cut shorter than that shows
        # even when the records cut off were checkpoints (which the journal does not have).
        row = db.execute(f"SELECT hash FROM {TABLE} WHERE seq = ?", (saved.seq,)).fetchone()
        if row is None:
            problems.append(
                f"the follower committed records up to {saved.seq}, the store ends at record {total}: "
                "records were cut off the end"
            )
        elif row[0] != saved.hash:
            problems.append(
                f"record {saved.seq} no longer has the hash the follower committed with it "
                f"({saved.hash}): it, or a record before it, was rewritten"
            )
    elif start_seq is None and total:
        problems.append(
            f"the store holds {total} record(s) but none of journal segment {first} and no follower "
            "position: it was not written by this journal's follower"
        )
    if start_seq is None:
        actual: Iterator[tuple[Record, str]] = iter(())
        before = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    else:
        actual = iter_records(db, "seq >= ? AND kind != ?", (start_seq, KIND_CHECKPOINT))
        before = start_seq - 1
    compared = differ = 0
    missing = 0  # journal records the follower had recorded (by its position) that the store lacks
    first_missing: tuple[int, tuple] | None = None
    unfollowed = 0
    unfollowed_out: set = set()
    store_ended = False
    for segment, offset, kind, payload in _journal_records(journal_dir, found):
        draft = journal_draft(kind, payload, segment, offset)
        if draft is None:
            continue
        record = None if store_ended else next(actual, None)
        if record is None:
            store_ended = True
            if position is not None and (segment, offset) <= position:
                missing += 1
                if first_missing is None:
                    first_missing = (segment, draft)
            else:
                unfollowed += 1
                if kind == fmt.OUTBOUND:
                    unfollowed_out.add(_message_key(fmt.decode_message(payload)[2]))
            continue
        compared += 1
        stored = msgspec.structs.astuple(record[0])[1:-1]
        if stored != draft:
            differ += 1
            if differ <= MAX_DETAILS:
                details.append(
                    f"record {record[0].seq} differs from journal segment {segment} (record ending at "
                    f"byte {offset}): the journal has {_describe(draft)}, the store has "
                    f"{_describe(stored)}" + ("" if stored[:10] != draft[:10] else " (its data differs)")
                )
    extra = first_extra = last_extra = 0
    for extra_record, _ in actual:
        extra += 1
        first_extra = first_extra or extra_record.seq
        last_extra = extra_record.seq
    if differ:
        problems.append(f"{differ} record(s) differ from the journal (rewritten)")
    if first_missing is not None:  # set with the first of the ``missing``
        problems.append(
            f"{missing} journaled record(s) the follower had recorded are missing from the store "
            f"(from journal segment {first_missing[0]}, {_describe(first_missing[1])})"
        )
    if start_seq is None and (missing or unfollowed) and position is not None:
        details.append(
            f"the store has no audit_started record of journal segment {first}: it does not hold "
            "this journal's records (another store, or one made up)"
        )
    if extra:
        problems.append(
            f"the store has {extra} record(s) after the journal's last one (records "
            f"{first_extra}-{last_extra}): not from this journal"
        )
    if unfollowed:
        where = (
            f"after the follower's position (segment {position[0]}, byte {position[1]})"
            if position
            else "the follower has recorded none yet"
        )
        if running:
            notes.append(
                f"{unfollowed} journal record(s) not yet followed ({where}; the proxy is running, so not a failure)"
            )
        else:
            problems.append(
                f"{unfollowed} journal record(s) not yet followed ({where}) and no proxy is writing the "
                "journal: the follower records everything before it stops (start the proxy to let it "
                "catch up, or the store lost them)"
            )
    if before and start_seq is not None:
        notes.append(
            f"records 1-{before} precede journal segment {first}, the oldest on disk: not checked against the journal"
        )
    span = f"segment {first}" if len(found) == 1 else f"segments {first}-{found[-1]}"
    if problems:
        return JournalCheck(name, "failed", "; ".join(problems), details + notes, unfollowed_out=unfollowed_out)
    return JournalCheck(
        name,
        "ok",
        f"the {compared} audit record(s) of journal {span} are in the store, in order, as journaled",
        notes,
        unfollowed_out=unfollowed_out,
    )


# ---------------------------------------------------------------- the FIX session stores


def _message_key(raw: str) -> tuple[str, str, str, str]:
    """What identifies a sent message: SenderCompID, TargetCompID, MsgSeqNum, SendingTime."""
    return first_value(raw, 49), first_value(raw, 56), first_value(raw, 34), first_value(raw, 52)


def _stored_messages(store: Path, prefix: str) -> Iterator[str]:
    # Only what the session counted as sent: a message stored just before a kill, its number not yet
    # saved, never went out (and its number is used again).
    from ..engines.quickfix.recovery import sent_messages

    return sent_messages(store, prefix)


def check_fix_stores(
    db: sqlite_utils.Database,
    store_dir: Path,
    *,
    running: bool = False,
    unfollowed: set | None = None,
    now_ns: int | None = None,
    grace_s: float = 10.0,
) -> Check:
    """Every application message in the FIX session stores under ``store_dir`` (``oms/``, ``venue/``:
    ``<BeginString>-<Sender>-<Target>.header`` and ``.body``) has an ``out`` message record with the
    same SenderCompID, TargetCompID, MsgSeqNum and SendingTime. While the proxy runs, messages whose
    records are journaled but not yet followed (``unfollowed``) or sent in the last ``grace_s`` are
    not counted missing."""
    import time

    name = "fix stores"
    store_dir = Path(store_dir)
    headers = sorted(store_dir.rglob("*.header")) if store_dir.is_dir() else []
    if not headers:
        return Check(name, "not checked", f"no FIX session stores in {store_dir}")
    audited: set[tuple[str, str, str, str]] = set()
    for (data,) in db.execute(f"SELECT data FROM {TABLE} WHERE kind = ? AND direction = 'out'", (KIND_MESSAGE,)):
        try:
            raw = json.loads(data)["raw"]
        except (ValueError, KeyError, TypeError):
            continue
        audited.add(_message_key(raw))
    unfollowed = unfollowed or set()
    now_ns = time.time_ns() if now_ns is None else now_ns
    checked = late = 0
    details: list[str] = []
    missing_total = 0
    sessions = 0
    for header in headers:
        prefix = header.name[: -len(".header")]
        gaps: list[str] = []
        count = 0
        for raw in _stored_messages(header.parent, prefix):
            if first_value(raw, 35) in ADMIN_TYPES:  # session-level: not audited (the store keeps them too)
                continue
            count += 1
            key = _message_key(raw)
            if key in audited:
                continue
            if running:
                try:
                    recent = now_ns - fix_time_ns(key[3]) < grace_s * 1e9
                except ValueError:
                    recent = False
                if key in unfollowed or recent:
                    late += 1
                    continue
            gaps.append(key[2])
        if count:
            sessions += 1
        checked += count
        if gaps:
            missing_total += len(gaps)
            shown = ", ".join(gaps[:20]) + (f" ... ({len(gaps)} in all)" if len(gaps) > 20 else "")
            details.append(
                f"{header.parent.name}/{prefix}: {len(gaps)} sent message(s) with no out record, MsgSeqNum {shown}"
            )
    note = f"; {late} sent message(s) not recorded yet (the proxy is running)" if late else ""
    if missing_total:
        return Check(
            name,
            "failed",
            f"{missing_total} of the {checked} application messages in the FIX session "
            f"stores have no out record in the audit store{note}",
            details[:MAX_DETAILS],
        )
    return Check(
        name,
        "ok",
        f"each of the {checked} application messages in {sessions} FIX session store(s) has its out record{note}",
    )


# ---------------------------------------------------------------- keyed checkpoints


def check_checkpoints(db: sqlite_utils.Database, key: bytes, interval_s: float) -> Check:
    """With the key: every checkpoint's MAC verifies and covers the record just before it, and no run
    of records without a checkpoint spans more than ``interval_s`` by the records' times."""
    name = "checkpoints"
    if not key:
        return Check(
            name,
            "not checked",
            "no key: the keyed checkpoints were not checked (set the variable "
            "[audit] key_env names, [audit] key_file, or pass --key-file)",
        )
    interval_ns = int(interval_s * 1e9)
    kid = key_id(key)
    count = bad = other_key = 0
    details: list[str] = []
    first: Record | None = None
    last_record: Record | None = None
    uncovered_runs = 0
    last_checkpoint = 0
    flagged = False
    for record, _ in iter_records(db):
        if record.kind != KIND_CHECKPOINT:
            if first is None:
                first, flagged = record, False
            elif not flagged and record.ts_ns - first.ts_ns > interval_ns:
                flagged = True
                uncovered_runs += 1
                if len(details) < MAX_DETAILS:
                    details.append(
                        f"records {first.seq}-{record.seq} span "
                        f"{(record.ts_ns - first.ts_ns) / 1e9:.1f} s with no checkpoint (the interval is "
                        f"{interval_s:g} s)"
                    )
            last_record = record
            continue
        count += 1
        last_checkpoint = record.seq
        first = None
        try:
            data = json.loads(record.data)
            seq, hash_, mac = data["seq"], data["hash"], data["mac"]
        except (ValueError, KeyError, TypeError):
            bad += 1
            details.append(f"checkpoint {record.seq}: unreadable") if len(details) < MAX_DETAILS else None
            continue
        problem = ""
        if data.get("key_id") not in (None, kid):
            other_key += 1
            problem = f"made with another key (key id {data.get('key_id')}, this key's is {kid})"
        elif not hmac.compare_digest(str(mac), checkpoint_mac(key, seq, hash_)):
            problem = "its MAC does not verify with this key (forged, or rewritten)"
        elif (seq, hash_) != (record.seq - 1, record.prev_hash):
            problem = (
                f"it names record {seq} with hash {hash_}, but the record before it is {record.seq - 1} with "
                f"hash {record.prev_hash} (the records before it were rewritten)"
            )
        if problem:
            bad += 1
            if len(details) < MAX_DETAILS:
                details.append(f"checkpoint {record.seq}: {problem}")
    tail = ""
    if last_record is not None and last_record.seq > last_checkpoint:
        tail = (
            f"; records {max(last_checkpoint + 1, first.seq if first else 0)}-{last_record.seq} come after the "
            "last checkpoint"
            if count
            else ""
        )
    if bad or uncovered_runs:
        problems = []
        if other_key and other_key == bad:
            problems.append(f"{other_key} of {count} checkpoints were made with another key")
        elif bad:
            problems.append(f"{bad} of {count} checkpoints do not verify")
        if uncovered_runs:
            problems.append(
                f"{uncovered_runs} run(s) of records span more than the checkpoint interval "
                f"({interval_s:g} s) with no checkpoint" + ("" if count else " (the store has none)")
            )
        return Check(name, "failed", "; ".join(problems), details)
    if not count:
        return Check(
            name,
            "ok",
            f"no checkpoint yet: the store spans less than the checkpoint interval ({interval_s:g} s)"
            if last_record
            else "the store is empty",
        )
    return Check(name, "ok", f"{count} checkpoint(s) verify with the key (key id {kid}){tail}")


# ---------------------------------------------------------------- the head


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (or ``seq=SEQ hash=HASH``, as ``audit head`` prints it); ValueError otherwise."""
    text = text.strip()
    if text.startswith("seq="):
        fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
        seq_text, hash_ = fields.get("seq", ""), fields.get("hash", "")
    else:
        seq_text, _, hash_ = text.partition(":")
    hash_ = hash_.strip().lower()
    if not seq_text.strip().isdigit() or len(hash_) != 64 or any(c not in "0123456789abcdef" for c in hash_):
        raise ValueError(f"expected SEQ:HASH (a record number and its 64-digit hex hash), got {text!r}")
    return int(seq_text), hash_


def check_head(db: sqlite_utils.Database, seq: int, hash_: str) -> Check:
    """Record ``seq`` exists and has hash ``hash_`` (noted earlier with ``audit head``)."""
    name = "expected head"
    row = db.execute(f"SELECT hash FROM {TABLE} WHERE seq = ?", (seq,)).fetchone()
    newest, _ = head(db)
    if row is None:
        return Check(
            name,
            "failed",
            f"record {seq} is not in the store (its newest record is {newest}): records were cut off the end",
        )
    if row[0] != hash_:
        return Check(
            name,
            "failed",
            f"record {seq} has hash {row[0]}, not {hash_}: it, or a record before it, was "
            "rewritten and the chain re-hashed",
        )
    return Check(
        name,
        "ok",
        f"record {seq} has the expected hash" + (f" ({newest - seq} record(s) after it)" if newest > seq else ""),
    )


def head_line(db: sqlite_utils.Database) -> str:
    """``seq=N hash=H``: the newest record and its hash (what ``--expect-head`` takes)."""
    seq, hash_ = head(db)
    return f"seq={seq} hash={hash_}"
