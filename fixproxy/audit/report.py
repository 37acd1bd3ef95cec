"""``fixproxy report``: the end-of-day risk and compliance report, built from the audit store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

import sqlite_utils

from ..config import StartPosition
from ..timefmt import iso
from .positions import final_positions
from .query import KIND_ALERT, Filters, commands_answered, describe_admin, detail
from .records import KIND_ADMIN, KIND_CHECKPOINT, KIND_COMMAND, KIND_DECISION, KIND_MESSAGE, KIND_WOULD_REFUSE
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


def build(
    db: sqlite_utils.Database,
    store: Path,
    filters: Filters | None = None,
    start: Sequence[StartPosition] = (),
    start_from: str = "",
) -> dict:
    """The report as plain data (what ``--format json`` prints). ``start``: the start-of-day positions
    under the final positions, read from ``start_from`` (the config's positions file; "": none)."""
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
                f"'{KIND_POSITION}', '{KIND_CHECKPOINT}', '{KIND_WOULD_REFUSE}')",
            ),
            params,
        )
    ]
    would_refuse = _would_refuse(db, where, params)
    head_seq, head_hash = head(db)
    checkpoints = db.execute(f"SELECT count(*) FROM {TABLE} WHERE kind = ?", (KIND_CHECKPOINT,)).fetchone()[0]
    admin = _admin_actions(db, where, params)
    alerts = [
        {"time": iso(r.ts_ns), "seq": r.seq, "scope": json.loads(r.data).get("scope", ""), "text": detail(r)}
        # Limit alerts and the anomaly detectors' (an ev.AnomalyAlert is stored as anomaly_alert).
        for r, _ in iter_records(db, _and(where, f"kind IN ('{KIND_ALERT}', 'anomaly_alert')"), params)
    ]
    # Positions carry over: every fill up to the period's end counts, not only those in it.
    filters = filters or Filters()
    positions = final_positions(db, filters.end_ns, start)
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
        "would_have_refused": would_refuse,
        "alerts_and_notices": notices,
        "admin_actions": admin,
        "alerts": alerts,
        "final_positions": positions,
        "final_positions_start": start_from or "none",
    }


def _would_refuse(db: sqlite_utils.Database, where: str, params: dict) -> list[dict]:
    """Refusals monitor mode let pass, by code (and the rule and scope that would have refused): how
    often, and the largest value seen against the limit."""
    found: dict[tuple[str, str, str, str], list[str]] = {}
    for code, data in _rows(
        db, "SELECT code, data FROM {table} {where} ORDER BY seq", _and(where, f"kind = '{KIND_WOULD_REFUSE}'"), params
    ):
        d = json.loads(data)
        key = (code, d.get("rule", ""), d.get("scope", ""), d.get("limit", ""))
        found.setdefault(key, []).append(d.get("observed", ""))
    return [
        {"code": c, "rule": r, "scope": s, "limit": lim, "count": len(obs), "max_observed": _max_observed(obs)}
        for (c, r, s, lim), obs in sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]


def _admin_actions(db: sqlite_utils.Database, where: str, params: dict) -> list[dict]:
    """Each ``admin`` record in the period, with its action, change and outcome in words
    (``query.describe_admin``, told by the ``command`` record it answers)."""
    out = []
    records = [r for r, _ in iter_records(db, _and(where, f"kind IN ('{KIND_ADMIN}', '{KIND_COMMAND}')"), params)]
    answered = commands_answered(records)
    for r in records:
        if r.kind == KIND_ADMIN:
            data = json.loads(r.data)
            described = describe_admin(data, answered.get(r.seq))
            refused = data.get("ok", True) is False
            out.append({"time": iso(r.ts_ns), "seq": r.seq, **data, **described, "refused": refused})
    return out


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
        "Would have refused (monitor mode)",
        *_table(
            ("code", "rule", "scope", "limit", "count", "max observed"),
            [tuple(w.values()) for w in report.get("would_have_refused", ())],
        ),
    ]
    out += [
        "",
        "Alerts and notices",
        *_table(("kind", "what", "count"), [tuple(n.values()) for n in report["alerts_and_notices"]]),
    ]
    out += [
        "",
        "Alerts",
        *_table(("time", "scope", "alert"), [(a["time"], a["scope"], a["text"]) for a in report["alerts"]]),
    ]
    out += [
        "",
        "Kill-switch and admin actions",
        *_table(
            ("time", "who", "action", "scope", "change", "outcome", "reason"),
            [
                (
                    a["time"],
                    a.get("who", ""),
                    a.get("action", a.get("what", "")),
                    a.get("scope", ""),
                    a.get("change", ""),
                    a.get("outcome", ""),
                    a.get("reason", ""),
                )
                for a in report["admin_actions"]
            ],
        ),
    ]
    out += ["", f"Final positions (start of day: {report['final_positions_start']}; every fill to the period's end)"]
    out += (
        _table(
            ("account", "symbol", "qty", "avg cost", "bought", "sold", "realized P&L"),
            [tuple(p.values()) for p in report["final_positions"]],
        )
        if report["final_positions"]
        else ["  (none recorded)"]
    )
    return "\n".join(out) + "\n"
