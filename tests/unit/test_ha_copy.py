"""The standby's copy (ha/copy.py) over real loopback TCP: a catch-up of what was written before the
standby came, the sync gate, sequence numbers, a standby that falls away, refusals."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fixproxy.core import events as ev
from fixproxy.ha.copy import Receiver, Shipper
from fixproxy.journal import format as fmt
from fixproxy.journal.reader import read_segment
from fixproxy.journal.writer import Journal
from fixproxy.sim.process import free_port


def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


class Active:
    def __init__(self, root: Path, accept_alone: bool = True, mode: str = "sync") -> None:
        self.dir = root / "active"
        self.journal = Journal(self.dir / "journal", 1, fmt.Start(1, 1, 1, "test"))
        self.seqs: dict[str, int] = {}
        self.states: list[tuple[str, str]] = []
        self.accept_alone = accept_alone
        self.port = free_port()
        self.shipper = Shipper(
            self.dir,
            ("127.0.0.1", self.port),
            mode,
            7,
            [3, 7],
            "a",
            journal_position=lambda: self.journal.position,
            journal_path=lambda: self.journal.path,
            seqs=lambda: dict(self.seqs),
            on_state=self.on_state,
            sync_timeout_s=0.5,
        )

    def on_state(self, state: str, standby: str) -> bool:
        self.states.append((state, standby))
        return state != "alone" or self.accept_alone

    def store(self, name: str, data: bytes, pad: int = 0) -> Path:
        path = self.dir / "store" / "venue" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data + b"\0" * pad)
        return path


class Standby:
    def __init__(self, root: Path, port: int, lineage: int | None = None, writer: bool = False) -> None:
        self.dir = root / "standby"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.receiver = Receiver(self.dir, "b", lineage, writer)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.receiver.run, args=("127.0.0.1", port, self.stop), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.receiver.close()
        self.thread.join(5)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Active, Callable[..., Standby]]]:
    active = Active(tmp_path)
    standbys: list[Standby] = []

    def standby(**kw: object) -> Standby:
        s = Standby(tmp_path, active.port, **kw)  # type: ignore[arg-type]
        standbys.append(s)
        return s

    active.shipper.start()
    yield active, standby
    for s in standbys:
        s.close()
    active.shipper.stop()
    active.journal.close()


def records(path: Path) -> list[tuple[bytes, bytes]]:
    return [(kind, payload) for _, kind, payload in read_segment(path)]


def test_catch_up_copies_what_was_written_before_then_copy_is_in_sync(pair) -> None:
    """Journal records, a store (zero-padded as the native engine maps it) and its sequence numbers
    written before the standby came are all there once the copy is in sync."""
    active, standby = pair
    for i in range(50):
        active.journal.inbound("oms1", i, f"8=FIX.4.4\x0135=D\x0111=O{i}\x01")
    active.store("FIX.4.4-FIXPROXY-VENUE.body", b"8=FIX.4.4\x0134=1\x01", pad=4096)
    active.store("FIX.4.4-FIXPROXY-VENUE.seqnums", b"00000000000000000002 : 00000000000000000001")
    s = standby()
    until(lambda: active.shipper.view()["copy_state"] == "sync")
    assert active.states == [("catching_up", "b"), ("sync", "b")]
    copied = s.dir / "journal" / "00000001.journal"
    assert records(copied) == records(active.journal.path)
    assert (s.dir / "store/venue/FIX.4.4-FIXPROXY-VENUE.body").read_bytes() == b"8=FIX.4.4\x0134=1\x01"
    assert (s.dir / "store/venue/FIX.4.4-FIXPROXY-VENUE.seqnums").read_bytes().startswith(b"00000000000000000002")
    assert s.receiver.token == 7 and s.receiver.history == [3, 7] and s.receiver.active == "a"


def test_sync_gate_returns_only_once_the_standby_has_the_journal_and_sequence_numbers(pair) -> None:
    """After sync() returns True the standby's copy holds every record appended before it, and the
    sessions' next outgoing numbers."""
    active, standby = pair
    s = standby()
    until(lambda: active.shipper.view()["copy_state"] == "sync")
    for n in range(20):
        active.journal.event(ev.SessionUp(f"s{n}", n))
        active.seqs["sim"] = 100 + n
        assert active.shipper.sync()
        assert len(records(s.dir / "journal" / "00000001.journal")) == len(records(active.journal.path))
        assert s.receiver.seqs["sim"] == 100 + n
    view = active.shipper.view()
    assert view["copy_state"] == "sync" and view["partner"]["lag_bytes"] == 0 and view["partner"]["instance"] == "b"


def test_standby_gone_the_active_goes_on_alone_once_the_row_says_so(pair) -> None:
    """The standby closes: the next sync() drops it, records "alone" and lets the bytes go."""
    active, standby = pair
    s = standby()
    until(lambda: active.shipper.view()["copy_state"] == "sync")
    s.close()
    active.journal.event(ev.SessionUp("x", 1))
    assert active.shipper.sync()
    until(lambda: active.shipper.state == "alone")
    assert active.states[-1] == ("alone", "")
    assert active.shipper.view()["partner"]["connected"] is False


def test_standby_gone_and_row_not_told_nothing_goes_out(tmp_path: Path) -> None:
    """If "alone" cannot be recorded (the database did not take it), sync() says no (fail closed)
    until a retry records it."""
    active = Active(tmp_path, accept_alone=False)
    active.shipper.start()
    try:
        s = Standby(tmp_path, active.port)
        until(lambda: active.shipper.view()["copy_state"] == "sync")
        s.close()
        active.journal.event(ev.SessionUp("x", 1))
        until(lambda: not active.shipper.sync() or active.shipper.state == "sync_lost")
        assert active.shipper.state == "sync_lost"
        assert not active.shipper.retry_alone()
        active.accept_alone = True
        assert active.shipper.retry_alone() and active.shipper.state == "alone"
    finally:
        active.shipper.stop()
        active.journal.close()


def test_superseded_former_active_is_refused(pair) -> None:
    """A standby that wrote as the active under another token is told to set its state aside."""
    _active, standby = pair
    s = standby(lineage=5, writer=True)
    until(lambda: not s.thread.is_alive())
    assert "superseded" in s.receiver.refused


def test_copy_of_another_line_is_refused(pair) -> None:
    """A copy whose token is not in the active's line (diverged) is refused; one in it is welcome."""
    active, standby = pair
    (Path(active.dir).parent / "standby" / "journal").mkdir(parents=True)
    (Path(active.dir).parent / "standby" / "journal" / "00000001.journal").write_bytes(b"FXJRNL01")
    s = standby(lineage=4)
    until(lambda: not s.thread.is_alive())
    assert "diverged" in s.receiver.refused


def test_store_reset_is_copied_as_a_truncation(pair) -> None:
    """A store file cut back (a new day's reset) is cut back on the standby too."""
    active, standby = pair
    body = active.store("FIX.4.4-FIXPROXY-VENUE.body", b"A" * 100)
    s = standby()
    until(lambda: active.shipper.view()["copy_state"] == "sync")
    until(lambda: (s.dir / "store/venue/FIX.4.4-FIXPROXY-VENUE.body").exists())
    body.write_bytes(b"B" * 10)
    until(lambda: (s.dir / "store/venue/FIX.4.4-FIXPROXY-VENUE.body").read_bytes() == b"B" * 10)


def test_async_copy_follows_without_the_gate(tmp_path: Path) -> None:
    """Async copy: sync() never waits (it returns at once), and the shipper's thread brings the
    standby's journal and numbers up to the active's within milliseconds on its own."""
    active = Active(tmp_path, mode="async")
    active.shipper.start()
    try:
        s = Standby(tmp_path, active.port)
        until(lambda: active.shipper.view()["copy_state"] == "async")
        assert active.states[-1] == ("async", "b")
        for n in range(30):
            active.journal.event(ev.SessionUp(f"s{n}", n))
        active.seqs["sim"] = 42
        assert active.shipper.sync()  # nothing to wait for in async copy
        copied = s.dir / "journal" / "00000001.journal"
        until(lambda: copied.exists() and len(records(copied)) == len(records(active.journal.path)))
        until(lambda: s.receiver.seqs.get("sim") == 42)
        s.close()
    finally:
        active.shipper.stop()
        active.journal.close()
