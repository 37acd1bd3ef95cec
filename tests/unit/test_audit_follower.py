"""The audit follower: the journal turned into the hash-chained store, resumed exactly after a kill."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time

import pytest

from fixproxy.audit import open_for_reading, verify
from fixproxy.audit.crosscheck import check_checkpoints, check_journal
from fixproxy.audit.follower import AuditFollowerProcess, Follower, FollowerSettings, journal_draft, lag_bytes
from fixproxy.audit.store import iter_records, read_position
from fixproxy.core import events as ev
from fixproxy.journal import format as fmt
from fixproxy.journal.reader import Tail, read_segment
from fixproxy.offload import WriterStartError

from .journal_day import KEY, Day, follow, journal_drafts, stored


def test_each_journal_record_becomes_the_record_the_old_recorder_wrote(tmp_path):
    """S: the audit_started notice (with its segment); I/O: messages in/out; A: decisions, notices,
    admin results; E: a command for a risk-desk command, nothing for other inputs."""
    day = Day(tmp_path)
    day.trade(orders=5)
    day.journal.event(ev.SessionDown("sim", day.tick()))  # an input with no record of its own
    day.journal.action(ev.VenueCancel("sim", "oms1.C1", "oms1.C1", "V1", "AAPL", "1", 100))  # a message: its O record
    day.close()
    follow(tmp_path)
    got = stored(tmp_path / "audit.sqlite")
    kinds = [(r[1], r[3], r[4], r[9]) for r in got]
    assert kinds[:3] == [
        ("notice", "", "", "audit_started"),
        ("notice", "", "", "session_up"),
        ("message", "in", "D", ""),
    ]
    assert json.loads(got[0][10]) == {"detail": "config test.toml", "segment": 1}
    assert got[0][0] == day.start_ns  # the start record's time: the proxy's start
    assert ("command", "", "", "kill") in kinds and ("admin", "", "", "kill") in kinds
    assert kinds.index(("command", "", "", "kill")) + 1 == kinds.index(("admin", "", "", "kill"))
    decisions = [r for r in got if r[1] == "decision"]
    assert [d[8] for d in decisions] == ["accept", "accept", "accept", "accept", "reject"]
    assert [r[4] for r in got if r[1] == "message" and r[3] == "out"] == ["D", "8"] * 4 + ["j"]
    assert got == journal_drafts(tmp_path)  # nothing else: no record for SessionDown or VenueCancel
    assert verify(open_for_reading(tmp_path / "audit.sqlite")).ok


def test_the_position_is_saved_with_the_records_it_covers(tmp_path):
    """After a commit the saved journal position is the end of what was read, with the chain head committed."""
    day = Day(tmp_path)
    day.trade(orders=3)
    f = follow(tmp_path)
    db = open_for_reading(tmp_path / "audit.sqlite")
    saved = read_position(db)
    assert (saved.segment, saved.offset) == day.journal.position
    assert (saved.seq, saved.hash) == (f.seq, f.hash) == (verify(db).head_seq, verify(db).head_hash)


def test_each_commit_saves_the_end_of_the_last_record_it_covers_and_records_without_one_move_it(tmp_path):
    """Batches committed in the middle of one read save the position right after the journal record of their
    last row; journal records with no audit record after the last batch (here session downs) still move it."""
    day = Day(tmp_path)
    day.trade(orders=6)
    for _ in range(3):
        day.journal.event(ev.SessionDown("sim", day.tick()))
    day.close()
    ends = []  # (journal offset after the record, audit records up to and including it)
    count = 0
    for off, kind, payload in read_segment(tmp_path / "journal" / "00000001.journal"):
        count += journal_draft(kind, payload) is not None
        ends.append((off, count))
    f = Follower(tmp_path / "audit.sqlite", tmp_path / "journal", batch_size=5, flush_interval_ms=60_000)
    commits: list[tuple[tuple[int, int], int]] = []
    f.on_commit = lambda follower: commits.append((follower.committed_position, follower.committed_seq))
    f.open()
    assert f.step() == len(ends)  # one read: the batches commit inside it
    f.close()
    assert len(commits) > 3 and all(seq % 5 == 0 for _, seq in commits[:-1])
    for (segment, offset), seq in commits[:-1]:
        assert segment == 1 and (offset, seq) in ends  # the rows of exactly the records before the position
    assert commits[-1] == ((1, ends[-1][0]), ends[-1][1])  # the session downs' end, with no row of their own
    assert ends[-1][1] == ends[-4][1]


@pytest.mark.parametrize("damage", ["payload", "kind", "length"])
def test_the_followers_reader_stops_where_read_segment_stops(tmp_path, damage):
    """A record torn or garbled (a payload byte, an unknown kind, a length past what is written) ends what
    the follower reads, exactly where ``read_segment`` ends; the records before it are read."""
    day = Day(tmp_path)
    day.trade(orders=2)
    before = day.journal.size
    day.trade(orders=1)
    position = {"payload": before + 12, "kind": before + 8, "length": before + 2}[damage]
    day.journal.map[position] ^= 0x40
    day.trade(orders=1)
    path = tmp_path / "journal" / "00000001.journal"
    expected = [(1, off, kind, payload) for off, kind, payload in read_segment(path)]
    assert expected and expected[-1][1] == before
    tail = Tail(tmp_path / "journal")
    assert tail.poll() == expected
    assert tail.poll() == []
    tail.close()
    day.close()


def test_a_follower_stopped_before_it_committed_resumes_with_nothing_lost_or_twice(tmp_path):
    """Records inserted but not committed when the follower dies are read again from the saved position."""
    day = Day(tmp_path)
    day.trade(orders=10)
    first = Follower(tmp_path / "audit.sqlite", tmp_path / "journal", flush_interval_ms=60_000, batch_size=100_000)
    first.open()
    first.step(force=True)  # committed: what the journal had so far
    day.trade(orders=10)
    assert first.step() > 0 and first._pending  # inserted, not committed
    first.db.conn.close()  # the process dies: the open transaction is gone
    day.trade(orders=5)
    day.close()
    second = follow(tmp_path)
    assert stored(tmp_path / "audit.sqlite") == journal_drafts(tmp_path)
    assert second.seq == len(journal_drafts(tmp_path))


class _FailingOnce:
    """A connection whose next executemany (or commit) fails as a full disk would."""

    def __init__(self, conn, method: str):
        self.conn, self.method = conn, method

    def _fail(self) -> None:
        if self.method:
            self.method = ""
            raise sqlite3.OperationalError("database or disk is full")

    def executemany(self, sql, rows):
        if self.method == "executemany":
            self._fail()
        return self.conn.executemany(sql, rows)

    def commit(self):
        if self.method == "commit":
            self._fail()
        return self.conn.commit()

    def __getattr__(self, name):
        return getattr(self.conn, name)


@pytest.mark.parametrize("method", ["executemany", "commit"])
def test_a_failed_write_goes_back_to_the_last_commit_and_writes_the_same_records_again(tmp_path, method):
    """A refused insert or commit (here in the middle of what one read brought, batch_size being small) rolls
    back to the last commit, journal position included; the next try writes those records once."""
    day = Day(tmp_path)
    day.trade(orders=3)
    f = Follower(tmp_path / "audit.sqlite", tmp_path / "journal", flush_interval_ms=1, batch_size=7)
    f.open()
    f.step(force=True)
    day.trade(orders=6)
    f.db.conn = _FailingOnce(f.db.conn, method)
    f.step(force=True)
    assert f.error.startswith("cannot write the audit store") and f.lost_transactions == 1
    f.step(force=True)
    assert f.error == ""
    f.db.conn = f.db.conn.conn
    day.close()
    f.close()
    assert stored(tmp_path / "audit.sqlite") == journal_drafts(tmp_path)


def test_a_new_segment_continues_the_chain_after_a_restart(tmp_path):
    """Each proxy start writes a new segment; the follower moves on to it and marks the restart."""
    first = Day(tmp_path, 1)
    first.trade(orders=3)
    first.close()
    follow(tmp_path)
    second = Day(tmp_path, 2, now_ns=first.now + 10**9)
    second.trade(orders=3)
    second.close()
    follow(tmp_path)
    got = stored(tmp_path / "audit.sqlite")
    assert got == journal_drafts(tmp_path)
    starts = [json.loads(r[10])["segment"] for r in got if r[9] == "audit_started"]
    assert starts == [1, 2]
    check = check_journal(open_for_reading(tmp_path / "audit.sqlite"), tmp_path / "journal", running=False)
    assert check.status == "ok"


def test_checkpoints_come_at_the_interval_of_the_records_times_and_when_the_follower_stops(tmp_path):
    """With a key: a checkpoint before a record more than the interval after the first uncovered one, and one at
    the end; each holds the seq and hash of the record before it."""
    day = Day(tmp_path)
    day.trade(orders=2)
    day.tick(3 * 10**9)
    day.trade(orders=2)
    day.close()
    follow(tmp_path, key=KEY, checkpoint_interval_s=2.0)
    records = [r for r, _ in iter_records(open_for_reading(tmp_path / "audit.sqlite"))]
    checkpoints = [r for r in records if r.kind == "checkpoint"]
    assert len(checkpoints) == 2 and records[-1].kind == "checkpoint"
    for c in checkpoints:
        data = json.loads(c.data)
        assert (data["seq"], data["hash"]) == (c.seq - 1, c.prev_hash) and c.code == "hmac-sha256"
    db = open_for_reading(tmp_path / "audit.sqlite")
    assert check_checkpoints(db, KEY, 2.0).status == "ok"
    assert check_journal(db, tmp_path / "journal", running=False).status == "ok"


def test_no_key_no_checkpoints(tmp_path):
    """Without a key the follower writes no checkpoint records."""
    day = Day(tmp_path)
    day.trade(orders=2)
    day.close()
    follow(tmp_path)
    assert [r for r in stored(tmp_path / "audit.sqlite", checkpoints=True) if r[1] == "checkpoint"] == []


def test_an_unreadable_journal_record_is_recorded_not_skipped():
    """A journal record this version cannot decode becomes a notice naming it, never a gap."""
    draft = journal_draft(fmt.ACTION, b"\xc1 not msgpack", 3, 99)
    assert draft[1:2] == ("notice",) and draft[9] == "journal_record_unreadable"
    assert "journal segment 3 record ending at 99" in json.loads(draft[10])["detail"]


def test_lag_counts_the_bytes_between_the_follower_and_the_writer(tmp_path):
    """Lag within a segment, across segments (by file size), and none when caught up."""
    day = Day(tmp_path, 1)
    day.trade(orders=1)
    day.close()
    size = os.path.getsize(tmp_path / "journal" / "00000001.journal")
    assert lag_bytes(tmp_path / "journal", (1, 100), (1, 150)) == 50
    assert lag_bytes(tmp_path / "journal", (1, 100), (2, 30)) == size - 100 + 30
    assert lag_bytes(tmp_path / "journal", (2, 30), (2, 30)) == 0


# ---------------------------------------------------------------- the process and its supervisor


def _settings(tmp_path, **kw) -> FollowerSettings:
    return FollowerSettings(
        store=str(tmp_path / "audit.sqlite"), journal_dir=str(tmp_path / "journal"), flush_interval_ms=10, **kw
    )


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.01)


def test_the_follower_process_killed_mid_stream_is_restarted_and_loses_nothing(tmp_path):
    """SIGKILL of the follower while the journal grows: the supervisor says "dead", starts it again, and the
    store ends with every journal record once, in order, chained."""
    day = Day(tmp_path)
    problems: list[tuple[str, str]] = []
    lock = threading.Lock()
    follower = AuditFollowerProcess(
        _settings(tmp_path, key=KEY, checkpoint_interval_s=0.05),
        journal_position=lambda: day.journal.position,
        on_problem=lambda kind, detail: problems.append((kind, detail)),
        check_interval_s=0.05,
    )
    follower.start()
    done = threading.Event()

    def trade() -> None:
        while not done.is_set():
            with lock:
                day.order(accept=day.orders % 3 != 0)
            time.sleep(0.0005)

    writer = threading.Thread(target=trade)
    writer.start()
    try:
        _wait(lambda: follower.health()["records"] > 200)
        os.kill(follower.pid, signal.SIGKILL)
        _wait(lambda: follower.restarts == 1)
        _wait(lambda: follower.health()["records"] > 400)
    finally:
        done.set()
        writer.join()
        day.close()
    assert follower.stop()
    assert [kind for kind, _ in problems] == ["dead", "ok"]
    db = open_for_reading(tmp_path / "audit.sqlite")
    assert verify(db).ok
    assert stored(tmp_path / "audit.sqlite") == journal_drafts(tmp_path)
    assert check_checkpoints(db, KEY, 10.0).status == "ok"
    health = follower.health()
    assert (health["position"]["segment"], health["position"]["offset"]) == day.journal.position
    assert health["lag_bytes"] == 0 and health["restarts"] == 1


def test_a_follower_that_cannot_keep_up_is_behind_then_stuck(tmp_path):
    """The journal's end beyond what the follower can read: "behind" after behind_s, "stuck" after stuck_s
    without progress; each change reported once."""
    day = Day(tmp_path)
    day.trade(orders=2)
    problems: list[str] = []
    follower = AuditFollowerProcess(
        _settings(tmp_path),
        journal_position=lambda: (1, day.journal.size + 10_000),
        on_problem=lambda kind, detail: problems.append(kind),
        check_interval_s=0.05,
        behind_s=0.2,
        stuck_s=0.6,
    )
    follower.start()
    try:
        _wait(lambda: follower.health()["state"] == "stuck", 10)
        health = follower.health()
        assert health["lag_bytes"] == 10_000 and health["pid"] == follower.pid
    finally:
        day.close()
        assert follower.stop()
    assert problems == ["behind", "stuck"]


def test_start_fails_within_5_s_naming_the_store_it_cannot_open(tmp_path):
    """A store that cannot be opened stops start() with WriterStartError naming it, within 5 s."""
    (tmp_path / "file").write_text("not a folder")
    follower = AuditFollowerProcess(
        FollowerSettings(store=str(tmp_path / "file" / "audit.sqlite"), journal_dir=str(tmp_path / "journal"))
    )
    started = time.monotonic()
    with pytest.raises(WriterStartError, match="cannot open the audit store"):
        follower.start()
    assert time.monotonic() - started < 5


_PROXY = """
import os, sys, time
from pathlib import Path
from tests.unit.journal_day import Day
from fixproxy.audit.follower import AuditFollowerProcess, FollowerSettings
root = Path(sys.argv[1])
day = Day(root, pid=os.getpid())
follower = AuditFollowerProcess(FollowerSettings(store=str(root / "audit.sqlite"), journal_dir=str(root / "journal"),
                                                 flush_interval_ms=60_000, batch_size=100_000),
                                journal_position=lambda: day.journal.position)
follower.start()
print(follower.pid, flush=True)
day.trade(orders=200)
print("traded", flush=True)
time.sleep(60)
"""


def test_when_the_proxy_is_killed_the_follower_records_what_the_journal_has_and_ends(tmp_path):
    """kill -9 of the proxy (here a process standing in for it) with nothing committed yet: the follower sees
    its parent gone, records the whole journal, commits and exits."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proxy = subprocess.Popen([sys.executable, "-c", _PROXY, str(tmp_path)], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        child = int(proxy.stdout.readline())
        assert proxy.stdout.readline().strip() == "traded"
    finally:
        proxy.kill()
        proxy.wait()

    def ended() -> bool:
        try:
            return open(f"/proc/{child}/stat").read().split()[2] == "Z"  # a zombie: ended, not reaped yet
        except OSError:
            return True

    _wait(ended, 20)
    assert stored(tmp_path / "audit.sqlite") == journal_drafts(tmp_path)
    assert verify(open_for_reading(tmp_path / "audit.sqlite")).ok
