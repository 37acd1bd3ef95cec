"""The audit writer and store: records in order, batched, flushed on close, chained across restarts."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from fixproxy.audit import GENESIS, AuditWriter, open_for_reading, verify
from fixproxy.audit.records import COLUMNS, Record, action_draft, canonical_data, chain, digest, message_draft
from fixproxy.audit.store import _DRAFT, iter_records
from fixproxy.core import events as ev
from fixproxy.fix.parse import parse

RAW_D = "8=FIX.4.4|9=80|35=D|34=2|49=OMS1|56=FIXPROXY|11=A1|1=ACC1|55=AAPL|54=1|38=100|10=000|".replace("|", "\x01")
RAW_J = "8=FIX.4.4|9=70|35=j|34=3|49=FIXPROXY|56=OMS1|45=2|379=A1|58=MAX_ORDER_QTY: x|10=000|".replace("|", "\x01")


def decision(accepted: bool = False, cl: str = "A1", now: int = 5) -> ev.Decision:
    if accepted:
        return ev.Decision("oms1", "D", cl, True, now, account="ACC1", symbol="AAPL", venue="sim")
    return ev.Decision(
        "oms1",
        "D",
        cl,
        False,
        now,
        "MAX_ORDER_QTY",
        "MAX_ORDER_QTY: order quantity 200 exceeds the limit 100 (firm)",
        "200",
        "100",
        "firm",
        "ACC1",
        "AAPL",
    )


@pytest.fixture
def writer(tmp_path):
    w = AuditWriter(tmp_path / "audit.sqlite", batch_size=3, flush_interval_ms=20)
    w.start()
    yield w
    w.close()


def rows(path) -> list[Record]:
    return [r for r, _ in iter_records(open_for_reading(path))]


def test_message_decision_notice_are_stored_in_enqueue_order(writer):
    """A message, its decision, the answer and a notice come back in enqueue order, with their columns filled."""
    writer.message("in", "oms1", RAW_D, 5)
    writer.record(decision())
    writer.message("out", "oms1", RAW_J, 6)
    writer.record(ev.Notice("session_down", 7, "sim"))
    writer.close()
    got = rows(writer.path)
    assert [(r.kind, r.code) for r in got] == [
        ("notice", "audit_started"),
        ("message", ""),
        ("decision", "MAX_ORDER_QTY"),
        ("message", ""),
        ("notice", "session_down"),
    ]
    msg, dec, answer = got[1], got[2], got[3]
    assert (msg.session, msg.direction, msg.msg_type, msg.cl_ord_id, msg.account, msg.symbol) == (
        "oms1",
        "in",
        "D",
        "A1",
        "ACC1",
        "AAPL",
    )
    assert json.loads(msg.data)["raw"] == RAW_D
    assert (dec.decision, dec.ts_ns, dec.account) == ("reject", 5, "ACC1")
    assert json.loads(dec.data) == {
        "limit": "100",
        "observed": "200",
        "scope": "firm",
        "venue": "",
        "text": "MAX_ORDER_QTY: order quantity 200 exceeds the limit 100 (firm)",
    }
    assert answer.cl_ord_id == "A1"  # a 35=j names the order in 379


def test_every_record_chains_to_the_one_before(writer):
    """seq runs 1..n and each prev_hash is the hash of the record before it."""
    for i in range(7):
        writer.message("in", "oms1", RAW_D, i)
    writer.close()
    db = open_for_reading(writer.path)
    prev = GENESIS
    for n, (record, stored) in enumerate(iter_records(db), 1):
        assert record.seq == n and record.prev_hash == prev and digest(record) == stored
        prev = stored
    assert verify(db).ok and verify(db).records == 8


def test_close_flushes_everything_enqueued_from_many_threads(tmp_path):
    """Records enqueued by several threads right before close() are all committed."""
    w = AuditWriter(tmp_path / "a.sqlite", batch_size=50, flush_interval_ms=10_000)
    w.start()
    threads = [
        threading.Thread(target=lambda k=k: [w.message("in", f"s{k}", RAW_D, i) for i in range(500)]) for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    assert len(rows(w.path)) == 1 + 4 * 500
    assert verify(open_for_reading(w.path)).ok


def test_flush_returns_once_records_are_readable(tmp_path):
    """flush() blocks until what was enqueued is committed, without waiting for the flush interval."""
    w = AuditWriter(tmp_path / "a.sqlite", batch_size=1000, flush_interval_ms=60_000)
    w.start()
    w.record(decision(accepted=True))
    assert w.flush(5)
    assert [r.kind for r in rows(w.path)] == ["notice", "decision"]
    w.close()


def _wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the writer did not get there in time"
        time.sleep(0.005)


def test_records_are_inserted_as_they_come_and_committed_at_the_interval(tmp_path):
    """The writer turns what came into rows every few ms (small steps of work, not one burst per
    flush interval) but commits only at the flush interval or a flush: until then a reader sees none."""
    w = AuditWriter(tmp_path / "a.sqlite", batch_size=1000, flush_interval_ms=60_000)
    w.start()
    w.record(decision(accepted=True))
    _wait_until(lambda: w._pending == 2)  # the start notice and the decision, inserted, not committed
    assert rows(w.path) == []
    assert w.flush(5)
    assert [r.kind for r in rows(w.path)] == ["notice", "decision"]
    w.close()


def test_a_failed_insert_loses_the_open_transaction_and_the_chain_goes_on_from_the_last_commit(tmp_path):
    """A batch SQLite refuses rolls back the whole open transaction: its records are counted lost, the
    chain head goes back to the last committed record, and what comes after chains on from there."""
    w = AuditWriter(tmp_path / "a.sqlite", batch_size=1000, flush_interval_ms=60_000)
    w.start()
    assert w.flush(5)  # the start notice, committed
    w.record(decision(cl="UNCOMMITTED"))
    _wait_until(lambda: w._pending == 1)  # inserted in the open transaction
    bad = (7, "notice", "", "", "", "", "", "", "", "bad", {"not": "bindable"})  # SQLite cannot bind a dict
    w._queue.put((_DRAFT, bad))
    assert w.flush(5)
    assert w.lost == 2  # the uncommitted decision and the bad draft
    w.record(decision(cl="AFTER"))
    w.close()
    got = rows(tmp_path / "a.sqlite")
    assert [(r.seq, r.kind, r.cl_ord_id) for r in got] == [(1, "notice", ""), (2, "decision", "AFTER")]
    assert verify(open_for_reading(tmp_path / "a.sqlite")).ok


def test_restart_continues_the_chain(tmp_path):
    """A second writer on the same file appends after the last record and the whole chain verifies."""
    for _ in range(2):
        w = AuditWriter(tmp_path / "a.sqlite")
        w.start()
        w.record(decision())
        w.close()
    got = rows(tmp_path / "a.sqlite")
    assert [r.seq for r in got] == [1, 2, 3, 4]
    assert verify(open_for_reading(tmp_path / "a.sqlite")).ok


def test_admin_action_is_recorded_with_who_what_why_before_after(writer):
    """The admin API stores who did what to which scope, why, and the state before and after."""
    writer.admin(
        who="risk-desk:alice",
        what="HALT",
        scope="account:ACC1",
        reason="runaway algo",
        before={"state": "ACTIVE"},
        after={"state": "HALTED"},
        now_ns=42,
    )
    writer.close()
    admin = rows(writer.path)[-1]
    assert (admin.kind, admin.code, admin.ts_ns) == ("admin", "HALT", 42)
    assert json.loads(admin.data) == {
        "who": "risk-desk:alice",
        "what": "HALT",
        "scope": "account:ACC1",
        "reason": "runaway algo",
        "before": {"state": "ACTIVE"},
        "after": {"state": "HALTED"},
    }


def test_other_action_kinds_keep_their_own_name(writer):
    """A core action the store has no column for (an alert) is kept whole under its snake_case name."""
    writer.record(ev.Alert("max_gross_exposure", "firm", "90", "45000000", "50000000", 9, "90% of the limit"))
    writer.close()
    alert = rows(writer.path)[-1]
    assert (alert.kind, alert.ts_ns) == ("alert", 9)
    assert json.loads(alert.data)["limit_name"] == "max_gross_exposure"


def test_update_and_delete_are_refused_by_the_store(writer):
    """The table is append-only at the SQL level: UPDATE and DELETE raise."""
    writer.close()
    conn = sqlite3.connect(writer.path)
    for sql in ("UPDATE records SET code = 'X' WHERE seq = 1", "DELETE FROM records WHERE seq = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_unreadable_item_is_counted_and_the_writer_goes_on(writer):
    """An item that cannot be turned into a record is counted as lost; the records after it are written."""
    writer.record(object())  # not an action
    writer.record(decision())
    writer.close()
    assert writer.lost == 1
    assert rows(writer.path)[-1].kind == "decision"


def test_drafts_need_no_io_and_hash_every_column():
    """Changing any one column of a record changes its hash."""
    record = Record(1, *message_draft("in", "oms1", RAW_D, 5), GENESIS)
    base = digest(record)
    for i, name in enumerate(COLUMNS[:-1]):
        value = getattr(record, name)
        changed = value + 1 if isinstance(value, int) else value + "x"
        assert digest(Record(*[changed if j == i else getattr(record, n) for j, n in enumerate(COLUMNS[:-1])])) != base
    assert action_draft(decision())[1] == "decision"


def test_admin_result_from_the_core_is_an_admin_record(writer):
    """An AdminResult the recorder receives is stored as an admin record with who/what/scope/reason/before/after."""
    writer.record(
        ev.AdminResult(
            "kill", True, "account:ACC1", "desk:bob", "limit breach", 11, "ACTIVE", "HALTED", orders_cancelled=3
        )
    )
    writer.close()
    admin = rows(writer.path)[-1]
    assert (admin.kind, admin.code, admin.ts_ns) == ("admin", "kill", 11)
    data = json.loads(admin.data)
    assert (data["who"], data["what"], data["scope"], data["reason"], data["before"], data["after"]) == (
        "desk:bob",
        "kill",
        "account:ACC1",
        "limit breach",
        "ACTIVE",
        "HALTED",
    )
    assert data["ok"] is True and data["orders_cancelled"] == 3


_VALUES = st.text(alphabet=st.characters(blacklist_characters="\x01", blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["35", "11", "379", "1", "55", "58", "44", "9", "111", "155", "135"]), _VALUES),
        max_size=12,
    ),
    st.booleans(),
)
def test_message_draft_finds_the_indexed_fields_and_wraps_the_raw_message_canonically(fields, last_soh):
    """The writer's fast path (no dict, no int tags) gives what a plain parse and canonical_data give,
    also when the last field has no SOH after it."""
    raw = "8=FIX.4.4\x01" + "".join(f"{tag}={value}\x01" for tag, value in fields)
    if not last_soh:
        raw = raw[:-1]
    last = parse(raw)  # a later occurrence wins
    draft = message_draft("out", "sim", raw, 7)
    assert draft[4:8] == (
        last.get(35, ""),
        last.get(11) or last.get(379, ""),
        last.get(1, ""),
        last.get(55, ""),
    )
    assert draft[10] == canonical_data({"raw": raw})


def test_chain_gives_each_record_the_hash_verify_checks():
    drafts = [
        message_draft("in", "oms1", RAW_D, 5),
        action_draft(decision()),
        message_draft("out", "oms1", RAW_J, 6),
        action_draft(ev.Notice("note", 9, 'quotes " and \\ and \u00e9')),
    ]
    rows, seq, last = chain(41, "ab" * 32, drafts)
    prev = "ab" * 32
    for n, (draft, row) in enumerate(zip(drafts, rows, strict=True), start=42):
        record = Record(n, *draft, prev)
        prev = digest(record)  # what audit verify recomputes
        assert row == [*msgspec.structs.astuple(record), prev]
    assert (seq, last) == (45, prev)
