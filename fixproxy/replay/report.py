"""Replay output: a terminal summary, CSV and JSON for tools, a self-contained HTML page for people.

Everything here is a pure function of the Result (and the names given on the command line), with
sorted keys and fixed number formats, so two replays of the same input write the same bytes.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ..timefmt import iso
from .replayer import CAUSES, FORWARDED, REJECTED, UNANSWERED, Result, Row

#: Rows listed in full on the terminal and in the HTML page; the CSV and JSON hold all of them.
SHOWN_DIFFERENCES_TERMINAL = 20
SHOWN_DIFFERENCES_HTML = 2000
SHOWN_MALFORMED = 20

CSV_COLUMNS = (
    "time",
    "source",
    "session",
    "msg_type",
    "seq",
    "cl_ord_id",
    "orig_cl_ord_id",
    "account",
    "symbol",
    "side",
    "qty",
    "price",
    "original",
    "original_code",
    "replayed",
    "replayed_code",
    "differs",
    "replayed_text",
    "cause",
)


def _outcome(outcome: str, code: str) -> str:
    return f"{outcome}:{code}" if code else outcome


def summarize(result: Result, config: str, limits: str | None) -> dict:
    """The counts everything else shows: by outcome, by rule, the differences and what was skipped."""
    rows = result.rows
    original = Counter(r.original for r in rows)
    replayed = Counter(r.replayed for r in rows)
    by_rule: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.original == REJECTED:
            by_rule.setdefault(r.original_code, {"original": 0, "replayed": 0})["original"] += 1
        if r.replayed == REJECTED:
            by_rule.setdefault(r.replayed_code, {"original": 0, "replayed": 0})["replayed"] += 1
    diffs = [r for r in rows if r.differs]
    blocked = Counter(r.replayed_code for r in diffs if r.original == FORWARDED and r.replayed == REJECTED)
    allowed = Counter(r.original_code for r in diffs if r.original == REJECTED and r.replayed == FORWARDED)
    changed = Counter(
        f"{r.original_code} -> {r.replayed_code}" for r in diffs if r.original == REJECTED and r.replayed == REJECTED
    )
    first = min((r.ts_ns for r in rows), default=None)
    last = max((r.ts_ns for r in rows), default=None)
    return {
        "config": config,
        "limits": limits or "",
        "inputs": result.inputs,
        "period": {"first": iso(first) if first is not None else "", "last": iso(last) if last is not None else ""},
        "orders": len(rows),
        "by_message_type": dict(sorted(Counter(r.msg_type for r in rows).items())),
        "original": {k: original.get(k, 0) for k in (FORWARDED, REJECTED, UNANSWERED)},
        "replayed": {k: replayed.get(k, 0) for k in (FORWARDED, REJECTED)},
        "rejects_by_rule": dict(sorted(by_rule.items())),
        "differences": len(diffs),
        # With --limits: each difference direct, knock-on or other (replayer.DIRECT ...).
        "differences_by_cause": {c: sum(1 for r in diffs if r.cause == c) for c in CAUSES} if limits else {},
        "would_block": dict(sorted(blocked.items())),
        "would_allow": dict(sorted(allowed.items())),
        "code_changed": dict(sorted(changed.items())),
        "alerts": result.alerts,
        "risk_desk_actions": result.admin_actions,
        "skipped": result.skipped,
        "venues_assumed_up": result.venues_assumed_up,
        "malformed": len(result.malformed),
        "final_positions": result.final_positions,
    }


def _row_dict(r: Row) -> dict:
    return {
        "time": iso(r.ts_ns, 6),
        "source": r.source,
        "session": r.session,
        "msg_type": r.msg_type,
        "seq": r.seq,
        "cl_ord_id": r.cl_ord_id,
        "orig_cl_ord_id": r.orig_cl_ord_id,
        "account": r.account,
        "symbol": r.symbol,
        "side": r.side,
        "qty": r.qty,
        "price": r.price,
        "original": r.original,
        "original_code": r.original_code,
        "replayed": r.replayed,
        "replayed_code": r.replayed_code,
        "differs": r.differs,
        "replayed_text": r.replayed_text,
        "cause": r.cause,
    }


def to_csv(result: Result) -> str:
    """One line per order message (differences flagged in ``differs``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in result.rows:
        d = _row_dict(r)
        writer.writerow([str(d[c]).lower() if c == "differs" else d[c] for c in CSV_COLUMNS])
    return out.getvalue()


def to_json(result: Result, summary: dict) -> str:
    """``{"malformed": [...], "rows": [...], "summary": {...}}``, one malformed line or order message a line."""

    def items(objects: Iterable[Any]) -> str:
        return ",\n".join(json.dumps(o, sort_keys=True, ensure_ascii=False) for o in objects)

    # Built a line at a time: one json.dumps of the whole document needs several times the memory.
    return (
        f'{{"malformed": [\n{items(m._asdict() for m in result.malformed)}\n],\n'
        f'"rows": [\n{items(_row_dict(r) for r in result.rows)}\n],\n'
        f'"summary": {json.dumps(summary, indent=1, sort_keys=True, ensure_ascii=False)}}}\n'
    )


# ---------------------------------------------------------------- terminal


_NO_COMMANDS = (
    "risk-desk actions: none in these inputs (only the audit store records them; add --audit <store> beside FileLogs)"
)


def _has_commands(summary: dict) -> bool:
    """Whether an input could hold the risk desk's commands (only an audit store does)."""
    return any(i["format"] in ("audit", "audit-commands") for i in summary["inputs"])


def _desk_action(a: dict) -> str:
    """``kill account:H1 halt_and_cancel (runaway algo): ACTIVE -> HALTED``; a refused one says why."""
    head = f"{a['command']} {a['scope']} {a['what']} ({a['reason']})"
    return f"{head}: {a['before'] or '-'} -> {a['after'] or '-'}" if a["ok"] else f"{head}: refused, {a['detail']}"


def _lines(title: str, pairs: list[tuple[str, object]], indent: str = "  ") -> list[str]:
    if not pairs:
        return []
    width = max(len(k) for k, _ in pairs)
    return [title] + [f"{indent}{k.ljust(width)}  {v}" for k, v in pairs]


def to_text(result: Result, summary: dict) -> str:
    s = summary
    out = [
        f"replay of {len(s['inputs'])} input(s) under {s['config']}"
        + (f" with limits from {s['limits']}" if s["limits"] else ""),
        f"period {s['period']['first'] or '-'} to {s['period']['last'] or '-'}: {s['orders']} order messages "
        f"({', '.join(f'{k} {v}' for k, v in s['by_message_type'].items()) or 'none'})",
        "",
    ]
    out.append(f"{'outcome':<12}{'original':>10}{'replayed':>10}")
    out += [
        f"{k:<12}{s['original'][k]:>10}{s['replayed'].get(k, '-')!s:>10}" for k in (FORWARDED, REJECTED, UNANSWERED)
    ]
    if s["rejects_by_rule"]:
        out += ["", f"{'rejects by rule':<28}{'original':>10}{'replayed':>10}"]
        out += [f"  {code:<26}{n['original']:>10}{n['replayed']:>10}" for code, n in s["rejects_by_rule"].items()]
    causes = s.get("differences_by_cause") or {}
    out += [
        "",
        f"differences: {s['differences']}"
        + (f" ({', '.join(f'{c} {n}' for c, n in causes.items())})" if causes and s["differences"] else ""),
    ]
    out += _lines("  would have been blocked, by rule:", list(s["would_block"].items()), "    ")
    out += _lines("  would have been let through, by original rule:", list(s["would_allow"].items()), "    ")
    out += _lines("  refused for another reason:", list(s["code_changed"].items()), "    ")
    diffs = [r for r in result.rows if r.differs]
    for r in diffs[:SHOWN_DIFFERENCES_TERMINAL]:
        out.append(
            f"  {iso(r.ts_ns)} {r.source} {r.session} {r.msg_type} {r.cl_ord_id}: "
            f"{_outcome(r.original, r.original_code)} -> {_outcome(r.replayed, r.replayed_code)}"
            + (f" [{r.cause}]" if r.cause else "")
        )
    if len(diffs) > SHOWN_DIFFERENCES_TERMINAL:
        out.append(f"  ... {len(diffs) - SHOWN_DIFFERENCES_TERMINAL} more in the CSV/JSON/HTML output")
    if s["risk_desk_actions"]:
        out += ["", f"risk-desk actions applied again: {len(s['risk_desk_actions'])}"]
        out += [f"  {a['time']} {a['operator']}: {_desk_action(a)}" for a in s["risk_desk_actions"]]
    elif not _has_commands(s):
        out += ["", _NO_COMMANDS]
    if s["alerts"]:
        out += ["", *_lines("alerts raised in replay (limits, anomalies):", list(s["alerts"].items()))]
    if s["skipped"]:
        out += ["", *_lines("not replayed:", list(s["skipped"].items()))]
    if s["venues_assumed_up"]:
        out += [
            "",
            f"venues with no messages of their own in the input, taken as connected throughout: "
            f"{', '.join(s['venues_assumed_up'])}",
        ]
    out += ["", f"malformed lines: {s['malformed']}"]
    for m in result.malformed[:SHOWN_MALFORMED]:
        out.append(f"  {m.source}:{m.line}: {m.reason}")
    if len(result.malformed) > SHOWN_MALFORMED:
        out.append(f"  ... {len(result.malformed) - SHOWN_MALFORMED} more in the JSON output")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- HTML

_BUCKETS_S = (1, 5, 15, 60, 300, 900, 3600)
_MAX_BARS = 120


def _series(per_second: dict[int, list]) -> tuple[int, list[tuple[int, int, int, int, Decimal]]]:
    """(bucket seconds, [(start second, orders, original rejects, replayed rejects, gross at end)])."""
    if not per_second:
        return 60, []
    first, last = min(per_second), max(per_second)
    size = next((b for b in _BUCKETS_S if (last - first) // b < _MAX_BARS), 3600)
    buckets: dict[int, list] = {}
    for second in sorted(per_second):
        orders, orig, rep, gross = per_second[second]
        bucket = buckets.setdefault(second - second % size, [0, 0, 0, Decimal(0)])
        bucket[0] += orders
        bucket[1] += orig
        bucket[2] += rep
        bucket[3] = gross
    start = first - first % size
    out, gross = [], Decimal(0)
    for t in range(start, last + 1, size):
        b = buckets.get(t)
        if b is not None:
            gross = b[3]
        out.append((t, *(b[:3] if b else (0, 0, 0)), gross))
    return size, out


def _bucket_name(size: int) -> str:
    return {1: "second", 60: "minute", 3600: "hour"}.get(size, f"{size // 60} minutes" if size >= 60 else f"{size} s")


def svg_chart(per_second: dict[int, list]) -> str:
    """Orders and rejects (original and replayed) per bucket as bars; the firm's gross exposure as a line."""
    size, series = _series(per_second)
    if not series:
        return "<p>No orders to chart.</p>"
    w, h, left, right, top, bottom = 900, 300, 56, 86, 16, 40
    plot_w, plot_h = w - left - right, h - top - bottom
    n = len(series)
    slot = plot_w / n
    top_count = max(max(s[1] for s in series), 1)
    top_gross = max(max(s[4] for s in series), Decimal(1))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        f'role="img" aria-label="orders and rejects per {_bucket_name(size)}, gross exposure">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="ax">{round(top_count * frac)}</text>'
        )
        parts.append(
            f'<text x="{w - right + 6}" y="{y + 4:.1f}" class="ax g">{_money(top_gross * Decimal(frac))}</text>'
        )
    bar = slot / 3.2
    for i, (t, orders, orig, rep, _) in enumerate(series):
        x = left + i * slot + slot * 0.1
        for j, (value, cls) in enumerate(((orders, "o"), (orig, "r0"), (rep, "r1"))):
            bh = plot_h * value / top_count
            parts.append(
                f'<rect class="{cls}" x="{x + j * bar:.2f}" y="{top + plot_h - bh:.2f}" '
                f'width="{bar * 0.9:.2f}" height="{bh:.2f}"><title>{iso(t * 1_000_000_000, 0)}: '
                f"{value}</title></rect>"
            )
    points = " ".join(
        f"{left + (i + 0.5) * slot:.2f},{top + plot_h * (1 - float(s[4] / top_gross)):.2f}"
        for i, s in enumerate(series)
    )
    parts.append(f'<polyline class="gl" points="{points}"/>')
    parts += [
        f'<text x="{left + (i + 0.5) * slot:.1f}" y="{h - bottom + 16}" text-anchor="middle" '
        f'class="ax">{iso(series[i][0] * 1_000_000_000, 0)[11:19]}</text>'
        for i in sorted({0, n // 2, n - 1})
    ]
    legend = (("o", "orders"), ("r0", "rejected (original)"), ("r1", "rejected (replayed)"))
    for j, (cls, label) in enumerate(legend):
        parts.append(
            f'<rect class="{cls}" x="{left + j * 170}" y="{h - 14}" width="10" height="10"/>'
            f'<text x="{left + j * 170 + 14}" y="{h - 5}" class="ax">{label}</text>'
        )
    parts.append(
        f'<line class="gl" x1="{left + 510}" y1="{h - 9}" x2="{left + 530}" y2="{h - 9}"/>'
        f'<text x="{left + 534}" y="{h - 5}" class="ax">firm gross exposure (replayed, right axis)</text>'
    )
    parts.append("</svg>")
    caption = (
        f"<p>Bars: order messages and rejects per {_bucket_name(size)}; line: the firm's gross exposure "
        "in the replayed position book.</p>"
    )
    return caption + "\n".join(parts)


def _money(value: Decimal) -> str:
    v = float(value)
    for unit, div in (("bn", 1e9), ("m", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.1f}{unit}"
    return f"{v:.0f}"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px;white-space:nowrap}
th{background:#f0f0f0} td.n{text-align:right} .diff{background:#fff4f0}
.ax{font-size:11px;fill:#555} .g{fill:#1f6f3f}
.o{fill:#9db4d6} .r0{fill:#d98c8c} .r1{fill:#a32020} .gl{fill:none;stroke:#1f6f3f;stroke-width:2}
"""


def _table(header: tuple[str, ...], rows: list[tuple], cls: str = "") -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{v}</td>' if isinstance(v, int) else f"<td>{html.escape(str(v))}</td>" for v in row
        )
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def to_html(result: Result, summary: dict) -> str:
    s = summary
    e = html.escape
    diffs = [r for r in result.rows if r.differs]
    sections = [
        f"<h1>fixproxy replay</h1><p>{len(s['inputs'])} input(s) under <code>{e(s['config'])}</code>"
        + (f" with limits from <code>{e(s['limits'])}</code>" if s["limits"] else "")
        + f"; {s['orders']} order messages from {e(s['period']['first'] or '-')} "
        f"to {e(s['period']['last'] or '-')}.</p>",
        "<h2>Summary</h2>",
        _table(
            ("outcome", "original", "replayed"),
            [(k, s["original"][k], s["replayed"].get(k, "-")) for k in (FORWARDED, REJECTED, UNANSWERED)],
        ),
        "<h2>Rejects by rule</h2>",
        _table(
            ("code", "original", "replayed"),
            [(c, n["original"], n["replayed"]) for c, n in s["rejects_by_rule"].items()],
        ),
        "<h2>Over the day</h2>",
        svg_chart(result.per_second),
        f"<h2>Differences ({s['differences']})</h2>",
        _table(("cause", "orders"), list(s["differences_by_cause"].items())) if s.get("differences_by_cause") else "",
        _table(("would have been blocked by", "orders"), list(s["would_block"].items())) if s["would_block"] else "",
        _table(("would have been let through (original code)", "orders"), list(s["would_allow"].items()))
        if s["would_allow"]
        else "",
        _table(
            (
                "time",
                "source",
                "session",
                "type",
                "ClOrdID",
                "account",
                "symbol",
                "qty",
                "price",
                "original",
                "replayed",
                "replayed text",
                "cause",
            ),
            [
                (
                    iso(r.ts_ns),
                    r.source,
                    r.session,
                    r.msg_type,
                    r.cl_ord_id,
                    r.account,
                    r.symbol,
                    r.qty,
                    r.price,
                    _outcome(r.original, r.original_code),
                    _outcome(r.replayed, r.replayed_code),
                    r.replayed_text,
                    r.cause,
                )
                for r in diffs[:SHOWN_DIFFERENCES_HTML]
            ],
            "diff",
        ),
        f"<p>{len(diffs) - SHOWN_DIFFERENCES_HTML} more differences in the CSV and JSON output.</p>"
        if len(diffs) > SHOWN_DIFFERENCES_HTML
        else "",
        f"<h2>Risk-desk actions applied again ({len(s['risk_desk_actions'])})</h2>",
        f"<p>{e(_NO_COMMANDS[0].upper() + _NO_COMMANDS[1:])}.</p>"
        if not s["risk_desk_actions"] and not _has_commands(s)
        else _table(
            ("time", "source", "operator", "command", "scope", "what", "reason", "before", "after", "replayed"),
            [
                (
                    a["time"],
                    a["source"],
                    a["operator"],
                    a["command"],
                    a["scope"],
                    a["what"],
                    a["reason"],
                    a["before"],
                    a["after"],
                    "applied" if a["ok"] else f"refused: {a['detail']}",
                )
                for a in s["risk_desk_actions"]
            ],
        ),
        "<h2>Final positions (replayed)</h2>",
        _table(
            ("account", "symbol", "qty", "avg cost", "bought", "sold", "traded notional"),
            [tuple(p.values()) for p in s["final_positions"]],
        ),
        "<h2>Inputs</h2>",
        _table(("path", "format", "lines", "messages", "malformed"), [tuple(i.values()) for i in s["inputs"]]),
        "<h2>Not replayed</h2>",
        _table(("why", "messages"), list(s["skipped"].items())),
        f"<h2>Malformed lines ({s['malformed']})</h2>",
        _table(("source", "line", "reason", "text"), [tuple(m) for m in result.malformed]),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>fixproxy replay</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(x for x in sections if x) + "\n</body></html>\n"
    )
