"""Audit records: what one row holds, its canonical encoding and the hash chain. No I/O.

A record's hash is SHA-256 over the canonical JSON array of all its columns, ``prev_hash``
(the hash of the record before it) included, so changing, inserting or removing any row
breaks the chain from that row on. spec/audit-records.md describes every kind.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any

import msgspec

from ..core import events as ev

#: ``prev_hash`` of the first record.
GENESIS = "0" * 64

KIND_MESSAGE = "message"
KIND_DECISION = "decision"
KIND_NOTICE = "notice"
KIND_ADMIN = "admin"
KIND_COMMAND = "command"
#: A refusal monitor mode let pass (core events.WouldRefuse): the order went on.
KIND_WOULD_REFUSE = "would_refuse"
#: A keyed checkpoint: an HMAC of the chain's head, written by the journal follower (``checkpoint_draft``).
KIND_CHECKPOINT = "checkpoint"
#: ``code`` of a checkpoint record: how its ``mac`` is made.
CHECKPOINT_CODE = "hmac-sha256"
#: ``code`` of the notice that starts each journal segment's records (and, before the journal, each
#: start of the proxy's audit writer): replay starts a fresh core there.
AUDIT_STARTED = "audit_started"

#: ``code`` of a command record: the same word as the ``kind`` of the AdminResult that answers it.
COMMAND_CODES = {
    ev.AdminKill: "kill",
    ev.AdminSetLimit: "limit",
    ev.AdminSetReference: "reference",
    ev.DayRoll: "day_roll",
    ev.AdminSetMode: "mode",
}


class Record(msgspec.Struct, frozen=True, array_like=True):
    """One row of the ``records`` table, without its hash. Field order is the canonical order."""

    seq: int
    ts_ns: int
    kind: str
    session: str
    direction: str  # "in" or "out" for messages, else ""
    msg_type: str
    cl_ord_id: str
    account: str
    symbol: str
    decision: str  # "accept" or "reject" for decisions, else ""
    code: str  # reject code, notice kind, admin action
    data: str  # the kind's details as canonical JSON (sorted keys)
    prev_hash: str


#: Column names in canonical order, then the hash.
COLUMNS: tuple[str, ...] = (*Record.__struct_fields__, "hash")

_encoder = msgspec.json.Encoder(order="sorted", decimal_format="string")


def digest(record: Record) -> str:
    """The record's hash: SHA-256 over its canonical JSON (an array of the columns in order)."""
    return hashlib.sha256(_encoder.encode(record)).hexdigest()


def canonical_data(data: dict[str, Any]) -> str:
    return _encoder.encode(data).decode()


# A draft is a record before it is chained: every column but seq and prev_hash.
Draft = tuple[int, str, str, str, str, str, str, str, str, str, str]


def bare_draft(now_ns: int, kind: str, code: str, data: str) -> Draft:
    """A draft that names no session, message, order, account or symbol: its kind, code and data only."""
    return (now_ns, kind, "", "", "", "", "", "", "", code, data)


def chain(seq: int, prev_hash: str, drafts: list[Draft]) -> tuple[list[list[Any]], int, str]:
    """Chain drafts after record ``seq`` (hash ``prev_hash``): the rows (lists of every column, the
    hash last), the last seq and hash. The same hashes as ``digest``: a list of the columns encodes
    as the same JSON array as the array-like ``Record``, so the writer hashes it without building one,
    then appends the hash to the list it hashed (no second copy of the row)."""
    rows: list[list[Any]] = []
    append, encode, sha256 = rows.append, _encoder.encode, hashlib.sha256
    for draft in drafts:
        seq += 1
        row = [seq, *draft, prev_hash]
        prev_hash = sha256(encode(row)).hexdigest()
        row.append(prev_hash)
        append(row)
    return rows, seq, prev_hash


def message_draft(direction: str, session: str, raw: str, now_ns: int) -> Draft:
    """An application message as it crossed the wire (SOH-delimited), in or out of ``session``.

    The few fields the record indexes are found without parsing the whole message (the writer does
    this for every message the proxy handles); a later occurrence wins, as in ``parse``.
    """
    # canonical_data({"raw": raw}), without the dict: the one key needs no sorting.
    data = '{"raw":' + _encoder.encode(raw).decode() + "}"
    return (
        now_ns,
        KIND_MESSAGE,
        session,
        direction,
        _last(raw, "\x0135="),
        _last(raw, "\x0111=") or _last(raw, "\x01379="),  # 35=j names the order in 379
        _last(raw, "\x011="),
        _last(raw, "\x0155="),
        "",
        "",
        data,
    )


def _last(raw: str, key: str) -> str:
    """``fix.parse.last_value(raw, tag)`` for ``key`` = "<SOH>tag=": the same rule, with the key made
    once: the follower reads four fields of every message (test_audit_store holds it to ``parse``)."""
    at = raw.rfind(key)
    if at < 0:
        return ""
    at += len(key)
    end = raw.find("\x01", at)
    return raw[at:] if end < 0 else raw[at:end]


def admin_draft(who: str, what: str, scope: str, reason: str, before: Any, after: Any, now_ns: int) -> Draft:
    """An operator's action (halt, resume, limit change ...): who did what, where, why, from what to what."""
    data = {"who": who, "what": what, "scope": scope, "reason": reason, "before": before, "after": after}
    return bare_draft(now_ns, KIND_ADMIN, what, canonical_data(msgspec.to_builtins(data)))


def command_draft(command: ev.AdminCommand) -> Draft:
    """A risk-desk command as the core received it: the event's fields (its type under ``type``) in ``data``."""
    fields = msgspec.to_builtins(command)
    now_ns = fields.pop("now_ns")
    scope = (
        command.scope
        if isinstance(command, ev.AdminKill)
        else (
            command.layer
            if isinstance(command, ev.AdminSetLimit)
            else (command.layer or "firm")  # a rule's mode is the firm's
            if isinstance(command, ev.AdminSetMode)
            else "firm"
            if isinstance(command, ev.DayRoll)
            else f"symbol:{command.symbol}"
        )
    )
    account = scope.partition(":")[2] if scope.startswith("account:") else ""
    symbol = scope.partition(":")[2] if scope.startswith("symbol:") else ""
    session = scope.partition(":")[2] if scope.startswith("session:") else ""
    return (
        now_ns,
        KIND_COMMAND,
        session,
        "",
        "",
        "",
        account,
        symbol,
        "",
        COMMAND_CODES[type(command)],
        canonical_data(fields),
    )


def command_event(record: Record) -> ev.AdminCommand:
    """The core event a command record was made from, at the record's time (ValueError if it is not one)."""
    try:
        data = msgspec.json.decode(record.data)
        return msgspec.convert({**data, "now_ns": record.ts_ns}, ev.AdminCommand)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
        raise ValueError(f"record {record.seq}: not a risk-desk command ({exc})") from None


_COLUMN_FIELDS = ("session", "msg_type", "cl_ord_id", "account", "symbol")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def action_draft(action: msgspec.Struct) -> Draft:
    """A decision, a notice, or any other non-message action of the core (stored under its own kind);
    also a risk-desk command (the event itself, see ``command_draft``)."""
    if isinstance(action, ev.ADMIN_COMMANDS):
        return command_draft(action)
    fields = msgspec.structs.asdict(action)
    now_ns = fields.pop("now_ns", None)
    if now_ns is None:
        now_ns = time.time_ns()  # an action without a clock reading: stamp it when written
    if isinstance(action, ev.Decision):
        kind, decision, code = KIND_DECISION, "accept" if action.accepted else "reject", action.code
        fields.pop("accepted")
        fields.pop("code")
    elif isinstance(action, ev.Notice):
        kind, decision, code = KIND_NOTICE, "", fields.pop("kind")
    elif isinstance(action, ev.AdminResult):
        # The same shape as admin_draft's: who did what, where, why, from what to what; plus the outcome.
        fields["who"], fields["what"] = fields.pop("operator"), fields.pop("kind")
        return bare_draft(now_ns, KIND_ADMIN, fields["what"], canonical_data(msgspec.to_builtins(fields)))
    else:
        # Kinds added to the core later (alerts, positions ...) are kept whole under their own name.
        kind, decision, code = _snake(type(action).__name__), "", str(fields.pop("code", ""))
    cols = {name: str(fields.pop(name, "") or "") for name in _COLUMN_FIELDS}
    return (
        now_ns,
        kind,
        cols["session"],
        "",
        cols["msg_type"],
        cols["cl_ord_id"],
        cols["account"],
        cols["symbol"],
        decision,
        code,
        canonical_data(msgspec.to_builtins(fields)),
    )


# ---------------------------------------------------------------- keyed checkpoints


def checkpoint_mac(key: bytes, seq: int, hash_: str) -> str:
    """HMAC-SHA256(key, "<seq>:<hash>") in hex: what a checkpoint holds for record ``seq``."""
    return hmac.new(key, f"{seq}:{hash_}".encode(), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A short name of a key (an HMAC of a fixed text, not the key): tells "another key" from "forged"."""
    return hmac.new(key, b"fixproxy audit key id", hashlib.sha256).hexdigest()[:16]


def checkpoint_draft(key: bytes, seq: int, hash_: str, now_ns: int) -> Draft:
    """A checkpoint after record ``seq`` (hash ``hash_``): its seq, hash and their keyed MAC in ``data``."""
    data = {"seq": seq, "hash": hash_, "mac": checkpoint_mac(key, seq, hash_), "key_id": key_id(key)}
    return bare_draft(now_ns, KIND_CHECKPOINT, CHECKPOINT_CODE, canonical_data(data))


def segment_start_draft(segment: int, start_ns: int, note: str) -> Draft:
    """The ``audit_started`` notice that opens a journal segment's records: the proxy's start time, its
    note (the config it ran) in ``detail``, the segment's number in ``segment``."""
    return bare_draft(start_ns, KIND_NOTICE, AUDIT_STARTED, canonical_data({"detail": note, "segment": segment}))
