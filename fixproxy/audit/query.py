"""``fixproxy audit show``: filter the store and print the records as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json

import msgspec
import sqlite_utils

from ..timefmt import iso
from .records import KIND_ADMIN, KIND_COMMAND, KIND_DECISION, KIND_MESSAGE, KIND_NOTICE, Record
from .store import iter_records, sessions

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
        venue-side message carries) for each session name in the store (``store.sessions``).
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
            params["cl"] = self.cl_ord_id
            names = [name for name in sessions(db) if name]
            params.update({f"s{i}": f"{name}.{self.cl_ord_id}" for i, name in enumerate(names)})
            terms.append(f"cl_ord_id IN (:cl{''.join(f', :s{i}' for i in range(len(names)))})")
        return " AND ".join(terms), params


def select(db: sqlite_utils.Database, filters: Filters, limit: int | None = None) -> list[Record]:
    where, params = filters.sql(db)
    return [record for record, _ in iter_records(db, where, params, limit)]


def detail(record: Record) -> str:
    """One readable line for a record: the FIX message with | for SOH, the reject text, the notice ..."""
    data = json.loads(record.data)
    if record.kind == KIND_MESSAGE:
        return data.get("raw", "").replace("\x01", "|")
    if record.kind == KIND_DECISION:
        return data.get("text", "") or (f"to {data['venue']}" if data.get("venue") else "")
    if record.kind == KIND_NOTICE:
        return data.get("detail", "")
    if record.kind == KIND_ADMIN:
        return (
            f"{data.get('who')}: {data.get('what')} {data.get('scope')} ({data.get('reason')});"
            f" before {json.dumps(data.get('before'))}, after {json.dumps(data.get('after'))}"
        )
    if record.kind == KIND_COMMAND:
        what = {
            "AdminKill": lambda: f"{data.get('action')} {data.get('scope')}",
            "AdminSetLimit": lambda: f"{data.get('layer')} {data.get('field')} = {json.dumps(data.get('value'))}",
            "AdminSetReference": lambda: f"reference price of {data.get('symbol')} = {data.get('price')}",
        }
        show = what.get(data.get("type", ""))
        return f"{data.get('operator')}: {show() if show else record.data} ({data.get('reason')})"
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


def _cells(r: Record) -> tuple[str, ...]:
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
        detail(r),
    )


def render(records: list[Record], fmt: str) -> str:
    """The records as ``table`` (aligned text), ``csv`` (every column plus time and detail) or ``json``."""
    if fmt == "table":
        rows = [_TABLE_COLUMNS, *(_cells(r) for r in records)]
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
            writer.writerow([*msgspec.structs.astuple(r), iso(r.ts_ns, 9), detail(r)])
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
