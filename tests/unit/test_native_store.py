"""The native engine's files: the quickfix-format store and log (its session: test_native_session.py).

The text layer itself (framing, fields, building, the dictionaries' checks) is tested in test_fix_*.py.
"""

from __future__ import annotations

from pathlib import Path

from fixproxy.engines.native.store import FileLog, FileStore
from fixproxy.engines.quickfix.recovery import stored_messages
from fixproxy.replay.readers import parse_line

from .fixtext import T, message

DAY = 86_400 * 1_000_000_000


def test_store_is_read_back_after_a_clean_close_and_in_quickfix_layout(tmp_path: Path):
    """Sequence numbers and sent messages survive a restart; the files are quickfix's FileStore
    (the proxy's recovery reads them as it reads quickfix's)."""
    store = FileStore(tmp_path, "FIX.4.4-FIXPROXY-VENUE", T)
    for seq in (1, 2, 3):
        store.sent(seq, message(seq, f"C{seq}"))
    store.next_target = 9
    store.save_seqnums()
    store.close()
    assert (tmp_path / "FIX.4.4-FIXPROXY-VENUE.seqnums").read_text() == f"{4:020d} : {9:020d}"
    assert (tmp_path / "FIX.4.4-FIXPROXY-VENUE.body").stat().st_size == sum(len(message(s, f"C{s}")) for s in (1, 2, 3))
    again = FileStore(tmp_path, "FIX.4.4-FIXPROXY-VENUE", T + 1000)
    assert (again.next_sender, again.next_target) == (4, 9)
    assert [seq for seq, _ in again.get(1, 10)] == [1, 2, 3]
    again.close()
    assert [m.encode() for m in stored_messages(tmp_path, "FIX.4.4-FIXPROXY-VENUE")] == [
        message(s, f"C{s}") for s in (1, 2, 3)
    ]


def test_store_written_but_never_closed_reads_back_everything_sent(tmp_path: Path):
    """As after kill -9: the mapped files were never cut to size; nothing sent is lost or invented."""
    store = FileStore(tmp_path, "P", T)
    for seq in (1, 2):
        store.sent(seq, message(seq))
    # no close(): the files still have their zero-filled tail
    assert len(list(stored_messages(tmp_path, "P"))) == 2
    again = FileStore(tmp_path, "P", T)
    assert again.next_sender == 3 and [s for s, _ in again.get(1, 5)] == [1, 2]
    again.sent(3, message(3))
    assert [s for s, _ in again.get(1, 5)] == [1, 2, 3]
    again.close()
    store.close()


def test_store_of_an_earlier_day_starts_again_at_one(tmp_path: Path):
    store = FileStore(tmp_path, "P", T)
    store.sent(1, message(1))
    store.close()
    next_day = FileStore(tmp_path, "P", T + DAY)
    assert (next_day.next_sender, next_day.next_target, next_day.get(1, 5)) == (1, 1, [])
    next_day.close()


def test_message_log_lines_are_read_by_the_replay_reader(tmp_path: Path):
    log = FileLog(tmp_path, "P", deferred=True)
    log.message(message(1, "LOG-1"), T)
    assert not (tmp_path / "P.messages.current.log").read_text()  # deferred until flushed
    log.flush()
    log.close()
    line = (tmp_path / "P.messages.current.log").read_text().rstrip("\n")
    stamp_ns, fields, fmt = parse_line(line)
    assert (stamp_ns, fields[11], fmt) == (T, "LOG-1", "filelog")


def test_store_keeps_a_window_of_offsets_and_reads_older_ones_from_the_header(tmp_path, monkeypatch):
    """Only the last messages' offsets stay in memory; a resend of older ones (and a restart) still finds
    every message, from the header file."""
    from fixproxy.engines.native import store as native_store

    monkeypatch.setattr(native_store._Index, "WINDOW", 16)
    now = 1_700_000_000 * 1_000_000_000
    st = native_store.FileStore(tmp_path, "S", now)
    for seq in range(1, 101):
        st.sent(seq, f"8=FIX.4.4\x0134={seq}\x01".encode())
    assert st.index.first > 1 and len(st.index.offsets) < 32
    assert [seq for seq, _ in st.get(1, 100)] == list(range(1, 101))
    assert st.get(3, 3) == [(3, "8=FIX.4.4\x0134=3\x01")]
    st.close()
    again = native_store.FileStore(tmp_path, "S", now)
    assert [seq for seq, _ in again.get(10, 12)] == [10, 11, 12] and again.next_sender == 101
