"""``fixproxy report``: the end-of-day risk and compliance report, built from the audit store."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

import sqlite_utils

from ..timefmt import iso
from .query import Filters
from .records import KIND_ADMIN, KIND_CHECKPOINT, KIND_COMMAND, KIND_DECISION, KIND_MESSAGE
from .store import TABLE, head, iter_records
from .verify import verify

_MSG_NAMES = {"D": "new orders (D)", "G": "replaces (G)", "F": "cancels (F)"}
#: Record kind under which the position book's snapshots are stored (none are recorded yet).
KIND_POSITION = "position"


def _rows(db: sqlite_utils.Database, sql: str, where: str, params: dict) -> list[tuple]:
    return list(db.execute(sql.format(table=TABLE, where=f"WHERE {where}" if where else ""), params))


def _and(where: str, extra: str) -> str:
    return f"{where} AND {extra}" if where else extra


def _max_observed(values: list[str]) -> str:
    best: tuple[Decimal, str] | None = None
    for v in values:
        try:
            d = Decimal(v)
        except (InvalidOperation, TypeError):
            continue
        if best is None or d > best[0]:
            best = (d, v)
    return best[1] if best else ""


def build(db: sqlite_utils.Database, store: Path, filters: Filters | None = None) -> dict:
    """The report as plain data (what ``--format json`` prints)."""
    where, params = (filters or Filters()).sql(db)
    verdict = verify(db)
    first, last, count = _rows(db, "SELECT min(ts_ns), max(ts_ns), count(*) FROM {table} {where}", where, params)[0]
    dwhere = _and(where, f"kind = '{KIND_DECISION}'")
    outcomes: dict[str, dict[str, int]] = {}
    for msg_type, decision, n in _rows(
        db, "SELECT msg_type, decision, count(*) FROM {table} {where} GROUP BY 1, 2 ORDER BY 1, 2", dwhere, params
    ):
        row = outcomes.setdefault(_MSG_NAMES.get(msg_type, f"other ({msg_type})"), {"accepted": 0, "rejected": 0})
        row["accepted" if decision == "accept" else "rejected"] += n
    rwhere = _and(where, f"kind = '{KIND_DECISION}' AND decision = 'reject'")
    by_rule = dict(
        _rows(db, "SELECT code, count(*) FROM {table} {where} GROUP BY 1 ORDER BY 2 DESC, 1", rwhere, params)
    )
    by_account = {
        a or "(none)": n
        for a, n in _rows(
            db, "SELECT account, count(*) FROM {table} {where} GROUP BY 1 ORDER BY 2 DESC, 1", rwhere, params
        )
    }
    breaches: dict[tuple[str, str, str], list[str]] = {}
    for code, data in _rows(db, "SELECT code, data FROM {table} {where} ORDER BY seq", rwhere, params):
        d = json.loads(data)
        if d.get("limit"):
            breaches.setdefault((code, d.get("scope", ""), d["limit"]), []).append(d.get("observed", ""))
    notices = [
        {"kind": k, "code": c, "count": n}
        for k, c, n in _rows(
            db,
            "SELECT kind, code, count(*) FROM {table} {where} GROUP BY 1, 2 ORDER BY 1, 2",
            # Commands are listed through the admin records that answer them; checkpoints under the head.
            _and(
                where,
                f"kind NOT IN ('{KIND_DECISION}', '{KIND_MESSAGE}', '{KIND_ADMIN}', '{KIND_COMMAND}', "
                f"'{KIND_POSITION}', '{KIND_CHECKPOINT}')",
            ),
            params,
        )
    ]
    head_seq, head_hash = head(db)
    checkpoints = db.execute(f"SELECT count(*) FROM {TABLE} WHERE kind = ?", (KIND_CHECKPOINT,)).fetchone()[0]
    admin = [
        {"time": iso(r.ts_ns), "seq": r.seq, **json.loads(r.data)}
        for r, _ in iter_records(db, _and(where, f"kind = '{KIND_ADMIN}'"), params)
    ]
    positions: dict[tuple[str, str, str], dict] = {}
    for r, _ in iter_records(db, _and(where, f"kind = '{KIND_POSITION}'"), params):
        positions[(r.session, r.account, r.symbol)] = {
            "session": r.session,
            "account": r.account,
            "symbol": r.symbol,
            **json.loads(r.data),
        }
    return {
        "store": str(store),
        "period": {"first": iso(first) if first is not None else "", "last": iso(last) if last is not None else ""},
        "records": count,
        "chain": {
            "ok": verdict.ok,
            "records": verdict.records,
            "head_seq": verdict.head_seq,
            "head_hash": verdict.head_hash,
            "verdict": verdict.sentence(),
        },
        # The whole store's newest record (not only the filtered period's), as `audit head` prints it:
        # note it elsewhere, and `audit verify --expect-head SEQ:HASH` shows any later cut or re-hash.
        "head": {
            "seq": head_seq,
            "hash": head_hash,
            "line": f"seq={head_seq} hash={head_hash}",
            "checkpoints": checkpoints,
        },
        "orders_by_outcome": outcomes,
        "rejects_by_rule": by_rule,
        "rejects_by_account": by_account,
        "limit_breaches": [
            {"code": c, "scope": s, "limit": lim, "count": len(obs), "max_observed": _max_observed(obs)}
            for (c, s, lim), obs in sorted(breaches.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        ],
        "alerts_and_notices": notices,
        "admin_actions": admin,
        "final_positions": [positions[k] for k in sorted(positions)],
    }


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    if not rows:
        return ["  (none)"]
    cells = [header, *[tuple(str(c) for c in row) for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def render_text(report: dict) -> str:
    out = [
        f"fixproxy end-of-day report — {report['store']}",
        f"period {report['period']['first'] or '-'} to {report['period']['last'] or '-'}, {report['records']} records",
        report["chain"]["verdict"],
        f"head (keep it elsewhere; `fixproxy audit verify --expect-head SEQ:HASH` checks it): "
        f"{report['head']['line']}, {report['head']['checkpoints']} keyed checkpoint(s)",
        "",
        "Orders by outcome",
    ]
    out += _table(
        ("message", "accepted", "rejected"),
        [(k, v["accepted"], v["rejected"]) for k, v in report["orders_by_outcome"].items()],
    )
    out += ["", "Rejects by rule", *_table(("code", "count"), list(report["rejects_by_rule"].items()))]
    out += ["", "Rejects by account", *_table(("account", "count"), list(report["rejects_by_account"].items()))]
    out += [
        "",
        "Limit breaches",
        *_table(
            ("code", "scope", "limit", "count", "max observed"), [tuple(b.values()) for b in report["limit_breaches"]]
        ),
    ]
    out += [
        "",
        "Alerts and notices",
        *_table(("kind", "what", "count"), [tuple(n.values()) for n in report["alerts_and_notices"]]),
    ]
    out += [
        "",
        "Kill-switch and admin actions",
        *_table(
            ("time", "who", "what", "scope", "reason"),
            [
                (a["time"], a.get("who", ""), a.get("what", ""), a.get("scope", ""), a.get("reason", ""))
                for a in report["admin_actions"]
            ],
        ),
    ]
    out += ["", "Final positions"]
    out += [f"  {json.dumps(p, sort_keys=True)}" for p in report["final_positions"]] or ["  (none recorded)"]
    return "\n".join(out) + "\n"
