"""`fixproxy audit verify`: the first altered, deleted or inserted record is named; exit 1 on a broken chain."""

from __future__ import annotations

import sqlite3

import pytest

from fixproxy.audit import AuditWriter, open_for_reading, verify
from fixproxy.audit.records import Record, digest
from fixproxy.audit.store import iter_records
from fixproxy.cli import main
from fixproxy.core import events as ev


@pytest.fixture
def store(tmp_path):
    """An audit store of 10 records (the start notice and 9 notices)."""
    w = AuditWriter(tmp_path / "audit.sqlite")
    w.start()
    for i in range(9):
        w.record(ev.Notice("session_up", 100 + i, f"s{i}"))
    w.close()
    return tmp_path / "audit.sqlite"


def tamper(path, *sql: str) -> None:
    """What someone with write access would do: drop the guards, then change rows."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER records_no_update")
    conn.execute("DROP TRIGGER records_no_delete")
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_untouched_store_verifies_with_head_hash(store):
    """An untouched chain is intact; the verdict names the count and the head."""
    verdict = verify(open_for_reading(store))
    assert verdict.ok and verdict.records == 10 and verdict.head_seq == 10
    assert verdict.head_hash in verdict.sentence()


def test_altered_row_is_named(store):
    """Changing one column of record 6 breaks the chain at record 6, as altered."""
    tamper(store, "UPDATE records SET ts_ns = ts_ns + 1 WHERE seq = 6")
    verdict = verify(open_for_reading(store))
    assert (verdict.broken.seq, verdict.broken.problem) == (6, "altered")
    assert verdict.records == 5


def test_deleted_row_is_named(store):
    """Removing record 4 is reported at record 4, as deleted."""
    tamper(store, "DELETE FROM records WHERE seq = 4")
    verdict = verify(open_for_reading(store))
    assert (verdict.broken.seq, verdict.broken.problem) == (4, "deleted")
    assert "record 4 is missing" in verdict.sentence()


def test_rewritten_row_with_fresh_hash_breaks_the_next_link(store):
    """A row rewritten together with a recomputed hash still breaks the chain: the next record no longer links to it."""
    db = open_for_reading(store)
    row = next(r for r, _ in iter_records(db, "seq = 3"))
    forged = Record(*[("forged" if name == "code" else getattr(row, name)) for name in Record.__struct_fields__])
    tamper(store, f"UPDATE records SET code = 'forged', hash = '{digest(forged)}' WHERE seq = 3")
    verdict = verify(open_for_reading(store))
    assert (verdict.broken.seq, verdict.broken.problem) == (4, "inserted")


def test_verify_command_exits_1_naming_the_record(store, capsys):
    """The command prints the verdict and exits 0 on an intact chain, 1 on a broken one."""
    assert main(["audit", "verify", "--db", str(store)]) == 0
    tamper(store, "DELETE FROM records WHERE seq = 7")
    assert main(["audit", "verify", "--db", str(store)]) == 1
    assert "BROKEN at record 7 (deleted)" in capsys.readouterr().out


def test_verify_command_without_a_store_exits_2(tmp_path, capsys):
    """A missing store is a usage error (exit 2), not a broken chain."""
    with pytest.raises(SystemExit) as stop:
        main(["audit", "verify", "--db", str(tmp_path / "none.sqlite")])
    assert stop.value.code == 2
    assert "no audit store there" in capsys.readouterr().err
