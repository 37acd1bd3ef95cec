"""`fixproxy audit verify` beyond the chain: cut-off tails, re-hashed rewrites and made-up stores are caught
against the journal, the FIX session stores, the keyed checkpoints and a head noted earlier."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from fixproxy.audit import open_for_reading, verify
from fixproxy.audit.crosscheck import (
    check_checkpoints,
    check_fix_stores,
    check_head,
    check_journal,
    head_line,
    parse_head,
    proxy_running,
)
from fixproxy.audit.records import chain, segment_start_draft
from fixproxy.audit.store import INSERT, open_for_writing
from fixproxy.cli import main

from .journal_day import KEY, Day, follow, rehash_from, tamper


@pytest.fixture
def day(tmp_path):
    """A day of 40 orders (every fifth rejected, a halt), followed to the end with the key; no proxy running."""
    d = Day(tmp_path)
    d.trade(orders=40)
    d.close()
    follow(tmp_path, key=KEY)
    return d


def run(tmp_path, capsys, *extra: str) -> tuple[int, str]:
    """`fixproxy audit verify` on the day's store, journal, FIX stores and key."""
    (tmp_path / "key").write_bytes(KEY)
    code = main(
        [
            "audit",
            "verify",
            "--db",
            str(tmp_path / "audit.sqlite"),
            "--journal",
            str(tmp_path / "journal"),
            "--fix-stores",
            str(tmp_path / "store"),
            "--key-file",
            str(tmp_path / "key"),
            *extra,
        ]
    )
    return code, capsys.readouterr().out


def db(tmp_path):
    return open_for_reading(tmp_path / "audit.sqlite")


def test_an_untouched_store_passes_every_check(day, tmp_path, capsys):
    """Chain, journal, FIX stores and checkpoints all ok: exit 0."""
    code, out = run(tmp_path, capsys)
    assert code == 0, out
    assert "audit chain intact" in out
    assert "journal: ok: the " in out and "fix stores: ok: each of the 72 application messages" in out
    assert "checkpoints: ok: 1 checkpoint(s) verify with the key" in out


@pytest.mark.parametrize("cut", [1, 50])
def test_records_cut_off_the_end_are_caught(day, tmp_path, capsys, cut):
    """Deleting the newest 1 or 50 rows (the no-delete trigger dropped first) leaves an intact, shorter chain:
    the journal, the follower's saved head and the FIX stores show it."""
    tamper(tmp_path / "audit.sqlite", f"DELETE FROM records WHERE seq > (SELECT max(seq) - {cut} FROM records)")
    assert verify(db(tmp_path)).ok  # the chain alone cannot see it
    code, out = run(tmp_path, capsys)
    assert code == 1
    assert "journal: FAILED:" in out and "records were cut off the end" in out
    if cut == 50:
        assert "journaled record(s) the follower had recorded are missing from the store" in out
        assert "fix stores: FAILED:" in out


def test_cut_records_and_a_rewound_position_are_still_caught_without_a_running_proxy(day, tmp_path, capsys):
    """Someone who also rewinds the follower's position makes the cut records look "not yet followed": with no
    proxy running, that is a failure too."""
    conn_sql = (
        "DELETE FROM records WHERE seq > (SELECT max(seq) - 50 FROM records)",
        "UPDATE journal_position SET segment = 1, journal_offset = 8, seq = 1",
    )
    tamper(tmp_path / "audit.sqlite", *conn_sql)
    check = check_journal(db(tmp_path), tmp_path / "journal", running=False)
    assert check.failed and "not yet followed" in check.summary and "no proxy is writing the journal" in check.summary


def test_a_reject_rewritten_as_an_accept_with_every_later_hash_recomputed_is_caught(day, tmp_path, capsys):
    """The chain verifies after the re-hash; the journal says what the record was, and the checkpoint after it
    (whose MAC needs the key, which is not in the store) no longer verifies."""
    sql = "SELECT seq FROM records WHERE decision = 'reject' ORDER BY seq LIMIT 1"
    reject = db(tmp_path).execute(sql).fetchone()[0]
    tamper(
        tmp_path / "audit.sqlite",
        "UPDATE records SET decision = 'accept', code = '', data = '{\"text\":\"\"}' WHERE seq = ?",
        params=(reject,),
    )
    rehash_from(tmp_path / "audit.sqlite", reject)
    assert verify(db(tmp_path)).ok  # a consistent, re-hashed chain
    code, out = run(tmp_path, capsys)
    assert code == 1
    assert f"record {reject} differs from journal segment 1" in out
    assert "the journal has decision 35=D reject MAX_ORDER_QTY session oms1 ClOrdID C5" in out
    assert "the store has decision 35=D accept session oms1 ClOrdID C5" in out
    assert "checkpoints: FAILED: 1 of 1 checkpoints do not verify" in out


def test_a_made_up_store_replacing_the_real_one_is_caught(day, tmp_path, capsys):
    """A 3-record store with a valid chain, even one opening with journal segment 1's start, holds none of the
    journal's records."""
    (tmp_path / "audit.sqlite").unlink()
    fake = open_for_writing(tmp_path / "audit.sqlite")
    drafts = [
        segment_start_draft(1, day.start_ns, "config test.toml"),
        (day.start_ns + 1, "notice", "", "", "", "", "", "", "", "session_up", '{"detail":"sim"}'),
        (day.start_ns + 2, "notice", "", "", "", "", "", "", "", "session_down", '{"detail":"sim"}'),
    ]
    rows, _, _ = chain(0, "0" * 64, drafts)
    fake.conn.executemany(INSERT, rows)
    fake.conn.commit()
    fake.conn.close()
    assert verify(db(tmp_path)).ok
    code, out = run(tmp_path, capsys)
    assert code == 1
    assert "journal: FAILED:" in out and "record 3 differs from journal segment 1" in out
    assert "fix stores: FAILED: 72 of the 72 application messages" in out


def test_a_made_up_store_with_no_journal_records_and_no_position_is_caught(day, tmp_path):
    """Records, none of the journal's and no follower position: a failure even while a proxy runs."""
    (tmp_path / "audit.sqlite").unlink()
    fake = open_for_writing(tmp_path / "audit.sqlite")
    rows, _, _ = chain(0, "0" * 64, [(day.start_ns, "notice", "", "", "", "", "", "", "", "x", "{}")] * 3)
    fake.conn.executemany(INSERT, rows)
    fake.conn.commit()
    check = check_journal(db(tmp_path), tmp_path / "journal", running=True)
    assert check.failed and "not written by this journal's follower" in check.summary


def test_checkpoints_verify_with_the_key_and_fail_with_another(day, tmp_path, capsys):
    """The right key verifies every checkpoint; another key is named as another key, exit 1."""
    assert check_checkpoints(db(tmp_path), KEY, 5).status == "ok"
    wrong = check_checkpoints(db(tmp_path), b"another-key-of-enough-bytes", 5)
    assert wrong.failed and "made with another key" in wrong.summary
    (tmp_path / "wrong").write_bytes(b"another-key-of-enough-bytes")
    code, _ = run(tmp_path, capsys)
    assert code == 0
    code = main(["audit", "verify", "--db", str(tmp_path / "audit.sqlite"), "--key-file", str(tmp_path / "wrong")])
    assert code == 1 and "checkpoints: FAILED" in capsys.readouterr().out


def test_a_forged_checkpoint_mac_fails(day, tmp_path):
    """A checkpoint whose MAC was replaced does not verify."""
    last = db(tmp_path).execute("SELECT seq, data FROM records WHERE kind = 'checkpoint'").fetchone()
    data = json.loads(last[1])
    data["mac"] = "0" * 64
    tamper(
        tmp_path / "audit.sqlite",
        "UPDATE records SET data = ? WHERE seq = ?",
        params=(json.dumps(data, sort_keys=True, separators=(",", ":")), last[0]),
    )
    check = check_checkpoints(db(tmp_path), KEY, 5)
    assert check.failed and "does not verify with this key" in check.details[0]


def test_without_the_key_checkpoints_are_not_checked_and_verify_says_so(day, tmp_path, capsys, monkeypatch):
    """No key and --db alone: the chain is checked, and each check not made says so."""
    monkeypatch.delenv("FIXPROXY_AUDIT_KEY", raising=False)
    assert main(["audit", "verify", "--db", str(tmp_path / "audit.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "checkpoints: not checked: no key" in out
    assert "journal: not checked" in out and "fix stores: not checked" in out


def test_a_store_spanning_more_than_the_interval_without_a_checkpoint_fails(tmp_path):
    """Records 20 s apart, written without a key: with the key, verify says the run is not anchored."""
    d = Day(tmp_path)
    d.trade(orders=2)
    d.tick(20 * 10**9)
    d.trade(orders=2)
    d.close()
    follow(tmp_path)  # no key: no checkpoints
    check = check_checkpoints(db(tmp_path), KEY, 5)
    assert check.failed and "with no checkpoint (the store has none)" in check.summary


def test_expect_head_fails_on_truncation_and_on_a_rehash_below_it(day, tmp_path, capsys):
    """`audit head` prints seq=N hash=H; --expect-head with it passes, and fails once records are cut off."""
    assert main(["audit", "head", "--db", str(tmp_path / "audit.sqlite")]) == 0
    line = capsys.readouterr().out.strip()
    seq, hash_ = parse_head(line)
    assert line == f"seq={seq} hash={hash_}" == head_line(db(tmp_path))
    code, out = run(tmp_path, capsys, "--expect-head", f"{seq}:{hash_}")
    assert code == 0 and "expected head: ok" in out
    assert check_head(db(tmp_path), seq - 10, hash_).failed  # another record's hash
    tamper(tmp_path / "audit.sqlite", f"DELETE FROM records WHERE seq > {seq - 3}")
    code, out = run(tmp_path, capsys, "--expect-head", line)
    assert code == 1 and f"expected head: FAILED: record {seq} is not in the store" in out


def test_expect_head_fails_after_a_rewrite_and_rehash_below_it(day, tmp_path):
    """A record below the noted head rewritten and the chain re-hashed: the noted hash no longer matches."""
    seq, hash_ = parse_head(head_line(db(tmp_path)))
    tamper(tmp_path / "audit.sqlite", "UPDATE records SET ts_ns = ts_ns + 1 WHERE seq = 5")
    rehash_from(tmp_path / "audit.sqlite", 5)
    check = check_head(db(tmp_path), seq, hash_)
    assert check.failed and "re-hashed" in check.summary


def test_bad_expect_head_is_a_usage_error(day, tmp_path):
    """--expect-head that is not SEQ:HASH stops with a message."""
    with pytest.raises(SystemExit, match="expected SEQ:HASH"):
        main(["audit", "verify", "--db", str(tmp_path / "audit.sqlite"), "--expect-head", "12"])


def test_records_not_yet_followed_are_a_note_while_the_proxy_runs_and_a_failure_otherwise(tmp_path):
    """Journal records beyond the follower's position: a note while the proxy runs, a failure when none does."""
    d = Day(tmp_path)
    d.trade(orders=5)
    follow(tmp_path)
    d.trade(orders=5)  # journaled after the follower stopped
    d.close()
    running = check_journal(db(tmp_path), tmp_path / "journal", running=True)
    assert (
        running.status == "ok"
        and "not yet followed" in running.details[0]
        and "the proxy is running" in running.details[0]
    )
    assert check_journal(db(tmp_path), tmp_path / "journal", running=False).failed
    fix = check_fix_stores(db(tmp_path), tmp_path / "store", running=True, unfollowed=running.unfollowed_out, grace_s=0)
    assert fix.status == "ok" and "not recorded yet (the proxy is running)" in fix.summary


def test_a_message_in_a_fix_store_with_no_out_record_is_named(tmp_path):
    """A message the venue store holds but nothing recorded (killed between the store and the journal)."""
    d = Day(tmp_path)
    d.trade(orders=3)
    seq = d.send("sim", "F", [(11, "oms1.X"), (41, "oms1.C1"), (55, "AAPL"), (54, "1")], journal=False)
    d.close()
    follow(tmp_path)
    check = check_fix_stores(db(tmp_path), tmp_path / "store")
    assert check.failed and check.summary.startswith("1 of the ")
    assert check.details == [f"venue/FIX.4.4-FIXPROXY-VENUE: 1 sent message(s) with no out record, MsgSeqNum {seq}"]


def test_the_writer_of_the_journal_is_running_only_while_its_process_lives(tmp_path):
    """The newest segment's writer runs while its process lives (and started before the segment)."""
    proc = subprocess.Popen(["bash", "-c", "exec -a fixproxy-test sleep 30"])
    try:
        d = Day(tmp_path, pid=proc.pid)
        d.close()
        assert proxy_running(tmp_path / "journal")
    finally:
        proc.kill()
        proc.wait()
    assert not proxy_running(tmp_path / "journal")


def test_verify_reads_journal_and_stores_from_the_config(day, tmp_path, capsys):
    """With --config, the journal and FIX stores are the state dir's, the key the config's."""
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[2] / "cfg"
    for f in cfg.iterdir():
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "fixproxy.toml").read_text()
    text = text.replace('state_dir = "../var"', 'state_dir = "."')
    (tmp_path.parent / f"{tmp_path.name}.key").write_bytes(KEY)
    text = text.replace('key_file = ""', f'key_file = "../{tmp_path.name}.key"', 1)
    (tmp_path / "fixproxy.toml").write_text(text)
    assert main(["audit", "verify", "--config", str(tmp_path / "fixproxy.toml")]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "journal: ok" in out and "fix stores: ok" in out and "checkpoints: ok" in out


def test_a_store_begun_before_the_journal_is_continued_and_its_older_part_named(tmp_path):
    """A store the old in-process writer began: the follower chains on after it; verify checks the journal's part
    and says the older records were not checked against it."""
    from fixproxy.audit import AuditWriter
    from fixproxy.core import events as ev

    old = AuditWriter(tmp_path / "audit.sqlite")
    old.start()
    old.record(ev.Notice("session_up", 1, "sim"))
    old.close()
    d = Day(tmp_path)
    d.trade(orders=3)
    d.close()
    follow(tmp_path)
    assert verify(db(tmp_path)).ok
    check = check_journal(db(tmp_path), tmp_path / "journal", running=False)
    assert check.status == "ok" and check.details == [
        "records 1-2 precede journal segment 1, the oldest on disk: not checked against the journal"
    ]


def test_a_process_id_used_again_by_a_later_process_is_not_the_writer(tmp_path):
    """A live process that started after the segment was begun is not the proxy that began it."""
    import time

    proc = subprocess.Popen(["sleep", "30"])
    try:
        d = Day(tmp_path, pid=proc.pid, now_ns=time.time_ns() - 100 * 10**9)
        d.close()
        assert not proxy_running(tmp_path / "journal")
    finally:
        proc.kill()
        proc.wait()
