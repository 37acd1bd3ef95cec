"""``fixproxy audit show``: filter the store and print the records as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json

import msgspec
import sqlite_utils

from ..fix.parse import last_value
from ..timefmt import iso
from .records import KIND_ADMIN, KIND_COMMAND, KIND_DECISION, KIND_MESSAGE, KIND_NOTICE, KIND_WOULD_REFUSE, Record
from .store import TABLE, iter_records, sessions

FORMATS = ("table", "csv", "json")


class Filters(msgspec.Struct, frozen=True):
    """What ``audit show`` keeps; empty fields match everything. Times are ns since the epoch, end exclusive."""

    start_ns: int | None = None
    end_ns: int | None = None
    session: str = ""
    account: str = ""
    symbol: str = ""
    cl_ord_id: str = ""
    decision: str = ""  # "accept" or "reject"
    code: str = ""
    kind: str = ""

    def sql(self, db: sqlite_utils.Database) -> tuple[str, dict[str, int | str]]:
        """An SQL condition on the records table of ``db`` and its parameters.

        A ClOrdID is looked up in the ClOrdID index, as itself and as ``<session>.<ClOrdID>`` (what a
        venue-side message carries) for each session name in the store (``store.sessions``), with
        every other ClOrdID of its replace and cancel chain (``order_chain``).
        """
        terms: list[str] = []
        params: dict[str, int | str] = {}
        if self.start_ns is not None:
            terms.append("ts_ns >= :start")
            params["start"] = self.start_ns
        if self.end_ns is not None:
            terms.append("ts_ns < :end")
            params["end"] = self.end_ns
        for name in ("session", "account", "symbol", "decision", "code", "kind"):
            value = getattr(self, name)
            if value:
                terms.append(f"{name} = :{name}")
                params[name] = value
        if self.cl_ord_id:
            # Venue-side messages carry "<session>.<ClOrdID>": match those too.
            names = [name for name in sessions(db) if name]
            ids = [form for cl in order_chain(db, self.cl_ord_id) for form in (cl, *(f"{name}.{cl}" for name in names))]
            params.update({f"c{i}": cl for i, cl in enumerate(ids)})
            terms.append(f"cl_ord_id IN ({', '.join(f':c{i}' for i in range(len(ids)))})")
        return " AND ".join(terms), params


def order_chain(db: sqlite_utils.Database, cl_ord_id: str) -> list[str]:
    """``cl_ord_id`` and every ClOrdID linked to it by OrigClOrdID (41) in the replaces and cancels
    (G, F) an OMS sent, both ways: any ClOrdID of a chain gives the whole chain.

    Back: the 41 of the chain's own G and F messages (the ClOrdID index). Forth: the G and F messages
    of the same session after it that name it in 41 (the session-and-time index; 41 has none of its own).
    """
    found = [cl_ord_id]
    todo = [cl_ord_id]
    encode = msgspec.json.encode
    while todo:
        cl = todo.pop()
        linked: set[str] = set()
        rows = db.execute(
            f"SELECT session, min(ts_ns) FROM {TABLE} WHERE cl_ord_id = ? AND kind = ? AND direction = 'in' "
            "GROUP BY session",
            (cl, KIND_MESSAGE),
        ).fetchall()
        for (data,) in db.execute(
            f"SELECT data FROM {TABLE} WHERE cl_ord_id = ? AND kind = ? AND direction = 'in' AND msg_type IN ('G', 'F')",
            (cl, KIND_MESSAGE),
        ):
            linked.add(last_value(json.loads(data).get("raw", ""), 41))
        # The stored data is JSON: SOH is written \u0001 there, and the ClOrdID as JSON escapes it.
        needle = "\\u000141=" + encode(cl).decode()[1:-1] + "\\u0001"
        for session, since in rows:
            linked.update(
                c
                for (c,) in db.execute(
                    f"SELECT cl_ord_id FROM {TABLE} WHERE session = ? AND ts_ns >= ? AND kind = ? "
                    "AND direction = 'in' AND msg_type IN ('G', 'F') AND instr(data, ?) > 0",
                    (session, since, KIND_MESSAGE, needle),
                )
            )
        for c in sorted(linked - {""}):
            if c not in found:
                found.append(c)
                todo.append(c)
    return found


def select(db: sqlite_utils.Database, filters: Filters, limit: int | None = None) -> list[Record]:
    where, params = filters.sql(db)
    return [record for record, _ in iter_records(db, where, params, limit)]


#: The kind of a limit alert record (an ``ev.Alert``, stored under its class name).
KIND_ALERT = "alert"
#: What a kill-switch action is called where people read it.
KILL_ACTIONS = {"halt": "halt", "halt_and_cancel": "halt and cancel", "reducing": "reduce only", "resume": "resume"}
_KILL_BY_STATE = {"HALTED": "halt", "REDUCING": "reducing", "ACTIVE": "resume"}


def describe_admin(data: dict, command: dict | None = None) -> dict[str, str]:
    """An ``admin`` record's data as words: ``action`` (halt, resume, reduce only, halt and cancel,
    limit <field>, mode rule <name> or mode <field>, reference price ...), ``change`` (before -> after) and ``outcome`` (applied, or
    REFUSED with why). ``command``: the data of the ``command`` record it answers, when known (the
    action of a refused kill is only there)."""
    what, ok = data.get("what", ""), data.get("ok", True) is not False
    detail = str(data.get("detail") or "")
    before, after = str(data.get("before") or ""), str(data.get("after") or "")
    note = detail
    if what == "kill":
        verb = (command or {}).get("action") or (detail.partition(":")[0] if ok else "")
        verb = verb if verb in KILL_ACTIONS else _KILL_BY_STATE.get(after, "kill switch")
        # An applied halt says "halt: 0 working order(s) cancelled": only halt and cancel's count tells anything.
        action, note = KILL_ACTIONS.get(verb, verb), (detail.partition(": ")[2] if verb == "halt_and_cancel" else "")
        note = note if ok else detail
    elif what == "limit":
        # The core puts the field in detail ("<field>" applied, "<field>: why" refused).
        field = (command or {}).get("field") or detail.partition(":")[0]
        action, note = f"limit {field}".strip(), detail.partition(": ")[2] if not ok else ""
        before, after = before or "(unset)", after or "(unset)"
    elif what == "mode":
        # The core puts "rule <name>" or the layer's field in detail ("<subject>: why" when refused).
        subject = detail if ok else detail.partition(": ")[0]
        action, note = f"mode {subject}".strip(), "" if ok else detail.partition(": ")[2]
    elif what == "reference":
        action = "reference price"
    else:
        action = what.replace("_", " ")
    change = f"{before or '(none)'} -> {after or '(none)'}" if ok and (before or after) else ""
    outcome = ("applied" + (f"; {note}" if note else "")) if ok else f"REFUSED: {note or 'no reason given'}"
    return {"action": action, "change": change, "outcome": outcome}


def admin_line(data: dict, command: dict | None = None) -> str:
    """``alice: halt account:A1 ACTIVE -> HALTED, applied; 3 working order(s) cancelled (runaway algo)``;
    a limit names its layer, then its field: ``bob: limit firm max_order_qty 10000 -> 500, applied (...)``."""
    d = describe_admin(data, command)
    change = f" {d['change']}," if d["change"] else ""
    kind, _, field = d["action"].partition(" ")
    what = f"limit {data.get('scope')} {field}" if kind == "limit" and field else f"{d['action']} {data.get('scope')}"
    return f"{data.get('who')}: {what}{change} {d['outcome']} ({data.get('reason')})"


def alert_text(data: dict) -> str:
    """An alert as a sentence: its own ``text``, else its limit, scope, level, observed value and limit."""
    if data.get("text"):
        return str(data["text"])
    if "limit_name" in data:
        return (
            f"{data.get('limit_name')} of {data.get('scope')} crossed {data.get('level_pct')}%: "
            f"{data.get('observed')} of {data.get('limit')}"
        )
    return plain_text(data)


def plain_text(data: dict) -> str:
    """Any record's data as ``key value`` pairs: a reader never gets raw JSON."""
    return "; ".join(f"{k} {json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in sorted(data.items()))


def commands_answered(records: list[Record]) -> dict[int, dict]:
    """seq of each ``admin`` record -> the data of the ``command`` record it answers (the one just
    before it with the same code), among the records at hand."""
    out: dict[int, dict] = {}
    last: Record | None = None
    for r in records:
        if r.kind == KIND_COMMAND:
            last = r
        elif r.kind == KIND_ADMIN and last is not None:
            if last.code == r.code:
                out[r.seq] = json.loads(last.data)
            last = None
    return out


def detail(record: Record, command: dict | None = None) -> str:
    """One readable line for a record: the FIX message with | for SOH, the reject text, the notice ...
    ``command``: for an ``admin`` record, the data of the ``command`` record it answers (if known)."""
    data = json.loads(record.data)
    if record.kind == KIND_MESSAGE:
        return data.get("raw", "").replace("\x01", "|")
    if record.kind == KIND_DECISION:
        return data.get("text", "") or (f"to {data['venue']}" if data.get("venue") else "")
    if record.kind == KIND_NOTICE:
        return data.get("detail", "")
    if record.kind == KIND_ADMIN:
        return admin_line(data, command)
    if record.kind == KIND_ALERT:
        return alert_text(data)
    if record.kind == KIND_COMMAND:
        what = {
            "AdminKill": lambda: f"{data.get('action')} {data.get('scope')}",
            "AdminSetLimit": lambda: f"{data.get('layer')} {data.get('field')} = {json.dumps(data.get('value'))}",
            "AdminSetReference": lambda: f"reference price of {data.get('symbol')} = {data.get('price')}",
            "AdminSetMode": lambda: (
                (f"rule {data.get('rule')}" if data.get("rule") else f"{data.get('layer')} {data.get('field')}")
                + f" in {data.get('mode')} mode"
            ),
        }
        show = what.get(data.get("type", ""))
        shown = show() if show else plain_text({k: v for k, v in data.items() if k not in ("operator", "reason")})
        return f"{data.get('operator')}: {shown} ({data.get('reason')})"
    if record.kind == KIND_WOULD_REFUSE:
        return f"would have refused (monitor mode, rule {data.get('rule')}): {data.get('text', '')}"
    if isinstance(data, dict):
        return str(data.get("text") or data.get("detail") or plain_text(data))
    return record.data


_TABLE_COLUMNS = (
    "seq",
    "time",
    "kind",
    "session",
    "dir",
    "type",
    "ClOrdID",
    "account",
    "symbol",
    "decision",
    "code",
    "detail",
)


def _cells(r: Record, command: dict | None = None) -> tuple[str, ...]:
    return (
        str(r.seq),
        iso(r.ts_ns, 6),
        r.kind,
        r.session,
        r.direction,
        r.msg_type,
        r.cl_ord_id,
        r.account,
        r.symbol,
        r.decision,
        r.code,
        detail(r, command),
    )


def render(records: list[Record], fmt: str) -> str:
    """The records as ``table`` (aligned text), ``csv`` (every column plus time and detail) or ``json``."""
    answered = commands_answered(records)
    if fmt == "table":
        rows = [_TABLE_COLUMNS, *(_cells(r, answered.get(r.seq)) for r in records)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE_COLUMNS) - 1)]
        # The last column (detail) is not padded: zip stops at the widths.
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows
        ]
        return "\n".join(line.rstrip() for line in lines) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*Record.__struct_fields__, "time", "detail"])
        for r in records:
            writer.writerow([*msgspec.structs.astuple(r), iso(r.ts_ns, 9), detail(r, answered.get(r.seq))])
        return out.getvalue()
    if fmt == "json":
        objects = []
        for r in records:
            obj = msgspec.structs.asdict(r)
            obj["time"] = iso(r.ts_ns, 9)
            obj["data"] = json.loads(r.data)
            objects.append(json.dumps(obj, sort_keys=True))
        return "[\n" + ",\n".join(objects) + "\n]\n" if objects else "[]\n"
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
