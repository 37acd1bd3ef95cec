"""`fixproxy audit show` and `fixproxy report`: filters, output formats and the end-of-day counts."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fixproxy.audit import AuditWriter, open_for_reading
from fixproxy.audit.query import Filters, render, select
from fixproxy.audit.report import build, render_text
from fixproxy.audit.store import iter_records, sessions
from fixproxy.cli import main
from fixproxy.core import events as ev
from fixproxy.timefmt import parse_when

T = parse_when("2026-11-25T14:00:00")
S = 1_000_000_000


def raw(msg_type: str, sender: str, target: str, **tags: str) -> str:
    body = "".join(f"{t}={v}\x01" for t, v in tags.items())
    return f"8=FIX.4.4\x0135={msg_type}\x0149={sender}\x0156={target}\x01{body}10=000\x01"


def rejected(
    cl: str,
    code: str,
    now: int,
    account: str = "",
    symbol: str = "AAPL",
    limit: str = "",
    observed: str = "",
    scope: str = "",
) -> ev.Decision:
    return ev.Decision("oms1", "D", cl, False, now, code, f"{code}: because", observed, limit, scope, account, symbol)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small day: two accepted orders, three rejects on two accounts, a cancel, an alert and an admin action."""
    path = tmp_path_factory.mktemp("audit") / "audit.sqlite"
    w = AuditWriter(path)
    w.start()
    w.message("in", "oms1", raw("D", "OMS1", "FIXPROXY", **{"11": "A1", "1": "ACC1", "55": "AAPL"}), T)
    w.record(ev.Decision("oms1", "D", "A1", True, T, account="ACC1", symbol="AAPL", venue="sim"))
    w.message("out", "sim", raw("D", "FIXPROXY", "VENUE", **{"11": "oms1.A1", "1": "ACC1", "55": "AAPL"}), T + 1)
    w.record(rejected("A2", "MAX_ORDER_QTY", T + 60 * S, "ACC1", limit="100", observed="200", scope="firm"))
    w.record(rejected("A3", "MAX_ORDER_QTY", T + 61 * S, "ACC2", limit="100", observed="900", scope="firm"))
    w.record(rejected("A4", "PRICE_COLLAR", T + 62 * S, "ACC2", "MSFT", "5", "21.9512", "firm"))
    w.record(ev.Decision("oms2", "D", "B1", True, T + 120 * S, account="ACC2", symbol="MSFT", venue="sim"))
    w.record(ev.Decision("oms2", "F", "B1-C", True, T + 121 * S, account="ACC2", symbol="MSFT", venue="sim"))
    w.record(ev.Alert("max_gross_exposure", "firm", "70", "35000000", "50000000", T + 122 * S))
    w.admin(who="alice", what="HALT", scope="firm", reason="drill", before="ACTIVE", after="HALTED", now_ns=T + 130 * S)
    w.close()
    return path


def test_filters_pick_records_by_each_field(store):
    """Each filter keeps only its records; ClOrdID also finds the venue-side <session>.<id> message."""
    db = open_for_reading(store)

    def seqs(**kw) -> list[str]:
        return [(r.kind, r.cl_ord_id) for r in select(db, Filters(**kw))]

    assert seqs(cl_ord_id="A1") == [("message", "A1"), ("decision", "A1"), ("message", "oms1.A1")]
    assert seqs(decision="reject", account="ACC2") == [("decision", "A3"), ("decision", "A4")]
    assert seqs(code="PRICE_COLLAR") == [("decision", "A4")]
    assert seqs(session="oms2") == [("decision", "B1"), ("decision", "B1-C")]
    assert seqs(symbol="MSFT", kind="decision") == [("decision", "A4"), ("decision", "B1"), ("decision", "B1-C")]
    # (kind too: the writer's own start-up notice carries the wall clock, which may fall in any range)
    assert seqs(start_ns=T + 60 * S, end_ns=T + 62 * S, kind="decision") == [("decision", "A2"), ("decision", "A3")]


SUFFIX_MATCH = (
    "cl_ord_id = :cl OR (length(cl_ord_id) > length(:cl)"
    " AND substr(cl_ord_id, length(cl_ord_id) - length(:cl)) = '.' || :cl)"
)


def test_a_clordid_is_looked_up_in_its_index_and_finds_what_the_suffix_match_finds(store):
    """audit show --cl-ord-id seeks the ClOrdID index (itself and <session>.<id> for each session in
    the store), where the suffix match read every record; both find the same records."""
    db = open_for_reading(store)
    assert sessions(db) == sorted({r.session for r in select(db, Filters())})
    for cl in ("A1", "A2", "B1", "B1-C", "nope"):
        indexed = Filters(cl_ord_id=cl).sql(db)
        suffix = [r for r, _ in iter_records(db, SUFFIX_MATCH, {"cl": cl})]  # how it was matched before
        assert [r for r, _ in iter_records(db, *indexed)] == suffix
        plan = " ".join(
            row[-1] for row in db.execute("EXPLAIN QUERY PLAN SELECT * FROM records WHERE " + indexed[0], indexed[1])
        )
        assert "idx_records_cl_ord_id" in plan and "SCAN" not in plan
    assert [r.cl_ord_id for r in select(db, Filters(cl_ord_id="A1"))] == ["A1", "A1", "oms1.A1"]


def test_show_formats_table_csv_json_carry_the_same_records(store):
    """Table, CSV and JSON list the same records; CSV and JSON keep every column and the decoded detail."""
    records = select(open_for_reading(store), Filters(decision="reject"))
    table = render(records, "table").splitlines()
    assert table[0].split()[:3] == ["seq", "time", "kind"] and len(table) == 4
    assert "MAX_ORDER_QTY: because" in table[1]
    rows = list(csv.DictReader(io.StringIO(render(records, "csv"))))
    assert [r["cl_ord_id"] for r in rows] == ["A2", "A3", "A4"] and rows[0]["time"].startswith("2026-11-25T14:01:00")
    objects = json.loads(render(records, "json"))
    assert objects[2]["data"]["observed"] == "21.9512" and objects[2]["prev_hash"] == records[2].prev_hash
    assert [o["code"] for o in objects] == ["MAX_ORDER_QTY", "MAX_ORDER_QTY", "PRICE_COLLAR"]


def test_show_command_filters_by_time_range_and_rule(store, capsys):
    """The command parses --from/--to as UTC and applies every filter given."""
    assert (
        main(
            [
                "audit",
                "show",
                "--db",
                str(store),
                "--from",
                "2026-11-25T14:01",
                "--to",
                "2026-11-25 14:02",
                "--code",
                "MAX_ORDER_QTY",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert [o["cl_ord_id"] for o in json.loads(capsys.readouterr().out)] == ["A2", "A3"]


def test_show_command_rejects_a_bad_time(store):
    """An unreadable --from stops with a message naming the text."""
    with pytest.raises(SystemExit, match="not a time: 'yesterday'"):
        main(["audit", "show", "--db", str(store), "--from", "yesterday"])


def test_report_counts_outcomes_rules_accounts_and_actions(store):
    """The end-of-day report counts orders by outcome, rejects by rule and account, breaches, alerts, admin actions."""
    report = build(open_for_reading(store), store)
    assert report["orders_by_outcome"] == {
        "cancels (F)": {"accepted": 1, "rejected": 0},
        "new orders (D)": {"accepted": 2, "rejected": 3},
    }
    assert report["rejects_by_rule"] == {"MAX_ORDER_QTY": 2, "PRICE_COLLAR": 1}
    assert report["rejects_by_account"] == {"ACC2": 2, "ACC1": 1}
    assert report["limit_breaches"][0] == {
        "code": "MAX_ORDER_QTY",
        "scope": "firm",
        "limit": "100",
        "count": 2,
        "max_observed": "900",
    }
    assert {"kind": "alert", "code": "", "count": 1} in report["alerts_and_notices"]
    assert [(a["who"], a["what"]) for a in report["admin_actions"]] == [("alice", "HALT")]
    assert report["final_positions"] == [] and report["chain"]["ok"]
    text = render_text(report)
    assert "Kill-switch and admin actions" in text and "(none recorded)" in text


def test_report_prints_the_head_to_keep_elsewhere(store, capsys):
    """The report prints the head as `audit head` does (what `audit verify --expect-head` takes)."""
    report = build(open_for_reading(store), store)
    assert main(["audit", "head", "--db", str(store)]) == 0
    line = capsys.readouterr().out.strip()
    assert report["head"]["line"] == line == f"seq={report['chain']['head_seq']} hash={report['chain']['head_hash']}"
    assert line in render_text(report)


def test_parse_when_reads_dates_times_and_fix_stamps():
    """Command-line times: a date, a minute, seconds with a fraction, the FIX form; all UTC."""
    assert parse_when("2026-11-25") == T - 14 * 3600 * S
    assert parse_when("2026-11-25T14:00") == parse_when("20261125-14:00:00") == T
    assert parse_when("2026-11-25 14:00:00.5Z") == T + S // 2
    for bad in ("2026-13-01", "14:00", "2026-11-25T25:00"):
        with pytest.raises(ValueError):
            parse_when(bad)
