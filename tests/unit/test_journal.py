"""The write-ahead journal: records written and read back, a torn tail, a full disk, and a core
rebuilt from a snapshot and the journal equal to the core that wrote it."""

from __future__ import annotations

import errno
import os
import pickle
from decimal import Decimal
from pathlib import Path

import pytest

from fixproxy.assemble import build_core, exec_id_generator
from fixproxy.config import load
from fixproxy.core import events as ev, snapshot, views
from fixproxy.engines.bridge import CoreBridge, SessionInfo
from fixproxy.journal import format as fmt
from fixproxy.journal.reader import Tail, read_segment, segments
from fixproxy.journal.recovery import recover, write_snapshot
from fixproxy.journal.writer import Journal, JournalError, segment_path

CONFIG = Path(__file__).resolve().parents[1] / "replay_fixtures" / "fixproxy.toml"
T = 1_700_000_000 * 1_000_000_000


def start(segment: int = 1, start_ns: int = T) -> fmt.Start:
    return fmt.Start(segment, start_ns, 1234, "test")


def fix(text: str) -> str:
    return text.replace("|", "\x01")


def test_records_of_every_kind_read_back_as_written(tmp_path):
    """S, I, E, O and A records come back in order with their values."""
    j = Journal(tmp_path, 1, start())
    j.inbound("oms1", T, fix("8=FIX.4.4|35=D|11=A|"))
    j.event(ev.AdminKill("firm", "halt", "why", "alice", T))
    j.outbound("sim", T + 1, fix("8=FIX.4.4|35=D|11=oms1.A|"))
    j.action(ev.Decision("oms1", "D", "A", True, T, venue="sim"))
    j.close()
    values = [fmt.decode(kind, payload) for _, kind, payload in read_segment(segment_path(tmp_path, 1))]
    assert values == [
        start(),
        ("oms1", T, fix("8=FIX.4.4|35=D|11=A|")),
        ev.AdminKill("firm", "halt", "why", "alice", T),
        ("sim", T + 1, fix("8=FIX.4.4|35=D|11=oms1.A|")),
        ev.Decision("oms1", "D", "A", True, T, venue="sim"),
    ]


def test_reader_stops_at_a_torn_record(tmp_path):
    """A record cut short (the writer killed while copying it) ends the segment; what came before stays."""
    j = Journal(tmp_path, 1, start())
    j.inbound("oms1", T, "first")
    end_first = j.size
    j.inbound("oms1", T, "second")
    j.map[end_first + 12] ^= 0xFF  # a byte of the second record's payload
    assert [fmt.decode(k, p)[2] for _, k, p in read_segment(j.path) if k == fmt.INBOUND] == ["first"]


def test_an_existing_segment_is_never_overwritten(tmp_path):
    """Opening a segment that exists is an error naming the file."""
    Journal(tmp_path, 1, start()).close()
    with pytest.raises(JournalError, match=r"00000001\.journal"):
        Journal(tmp_path, 1, start())


def test_full_disk_sets_failed_keeps_the_reserve_then_counts_lost(tmp_path, monkeypatch):
    """A refused allocation marks the journal failed; records still go into the reserve until it is
    used up, then they are counted lost; resume succeeds once the disk has room again."""
    j = Journal(tmp_path, 1, start(), chunk=64 << 10, reserve=16 << 10)
    real = os.posix_fallocate
    full = {"on": True}

    def fallocate(fd, offset, length):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    payload = "x" * 1000
    while not j.failed:
        assert j.inbound("oms1", T, payload)
    assert "No space left on device" in j.failed
    kept = 0
    while j.inbound("oms1", T, payload):
        kept += 1
    assert kept >= 10 and j.lost == 1  # the reserve took records after the failure
    assert "No space" in j.resume()
    full["on"] = False
    assert j.resume() == "" and not j.failed
    assert j.inbound("oms1", T, payload)
    j.close()


def test_tail_follows_records_as_written_and_into_the_next_segment(tmp_path):
    """The follower's reader sees new records of the live segment, then moves on to the next one."""
    tail = Tail(tmp_path)
    assert tail.poll() == []
    j = Journal(tmp_path, 1, start())
    j.inbound("oms1", T, "a")
    got = tail.poll()
    assert [k for _, _, k, _ in got] == [fmt.START, fmt.INBOUND]
    j.inbound("oms1", T, "b")
    assert [fmt.decode(k, p)[2] for _, _, k, p in tail.poll()] == ["b"]
    j.close()
    j2 = Journal(tmp_path, 2, start(2))
    j2.inbound("oms1", T, "c")
    got = tail.poll()
    assert [(s, k) for s, _, k, _ in got] == [(2, fmt.START), (2, fmt.INBOUND)]
    assert segments(tmp_path) == [1, 2]


# ---------------------------------------------------------------- recovery


class Wire(CoreBridge):
    """The bridge with sessions that always send (``infos``: oms1, oms2 and the venue sim unless
    given): what went out is kept."""

    def __init__(self, core, journal, infos=None):
        infos = infos or [
            SessionInfo("oms1", "oms", "FIX.4.4"),
            SessionInfo("oms2", "oms", "FIX.4.2"),
            SessionInfo("sim", "venue", "FIX.4.4"),
        ]
        super().__init__(core, infos, lambda a: None, clock=lambda: T, journal=journal)
        self.sent: list[tuple[str, str]] = []
        self.infos = {i.name: i for i in infos}

    def _send(self, info, msg_type, body, now):
        raw = "".join(f"{t}={v}\x01" for t, v in [(35, msg_type), *body])
        self.sent.append((info.name, raw))
        self._sent(info.name, raw, now)
        return True


def order(cl: str, qty: int = 100, px: str = "190", seq: int = 1) -> str:
    return fix(
        f"8=FIX.4.4|35=D|34={seq}|49=OMS1|56=FIXPROXY|52=20231114-22:13:20|11={cl}|1=ACC|55=AAPL|54=1|"
        f"38={qty}|40=2|44={px}|"
    )


def report(cl: str, exec_id: str, status: str, exec_type: str, cum: int, leaves: int, last: int = 0) -> str:
    return fix(
        f"8=FIX.4.4|35=8|34=1|49=VENUE|56=FIXPROXY|11=oms1.{cl}|37=V{cl}|17={exec_id}|150={exec_type}|"
        f"39={status}|55=AAPL|54=1|38=100|14={cum}|151={leaves}|6=190|32={last}|31=190|"
    )


def picture(core) -> dict:
    return {
        name: getattr(views, name)(core)
        for name in ("positions", "open_orders", "trading_states", "limits", "exposure")
    }


def run_day(directory: Path, loaded, segment: int, start_ns: int, base: bytes | None):
    """A process's life: a core from the config (and snapshot), a journal segment, some inputs."""
    core = build_core(loaded, start_ns)
    if base is not None:
        snapshot.import_state(core, pickle.loads(base))
    j = Journal(directory, segment, start(segment, start_ns))
    return core, j, Wire(core, j)


def test_recovered_core_equals_the_core_that_wrote_the_journal(tmp_path):
    """Orders, fills, a halt, a limit change and the proxy's own ExecIDs come back exactly, across two
    process lives (a snapshot between them)."""
    loaded = load(CONFIG)
    write_snapshot(tmp_path, 1, pickle.dumps(snapshot.export_state(build_core(loaded, T))))
    core, j, wire = run_day(tmp_path, loaded, 1, T, None)
    sim, oms = wire.infos["sim"], wire.infos["oms1"]
    wire.submit(ev.SessionUp("sim", T))
    wire.receive(oms, order("A1"), T)
    wire.receive(sim, report("A1", "E1", "0", "0", 0, 100), T)
    wire.receive(sim, report("A1", "E2", "1", "F", 40, 60, 40), T)
    wire.receive(oms, order("A2", seq=2), T)
    wire.submit(ev.AdminSetLimit("firm", "max_order_qty", 500, "tighten", "alice", T))
    j.close()  # the process ends (a kill -9 leaves the same bytes in the page cache)

    def make() -> object:
        return build_core(loaded, T + 1)

    rec = recover(tmp_path, loaded.config, make, exec_id_generator, lambda v: {}, lambda s: {})
    assert rec.replayed == 6 and rec.segment == 2
    live = picture(core)
    live["sessions_up"] = sorted(core.up)
    restored = make()
    snapshot.import_state(restored, pickle.loads(rec.snapshot))
    assert picture(restored) == {k: v for k, v in live.items() if k != "sessions_up"}
    assert restored.book.positions[("ACC", "AAPL")].qty == Decimal(40)
    assert restored.up == set()  # a new process starts with no session logged on

    # Second life, from the recovered snapshot: a halt and a refusal with the proxy's own ExecID.
    write_snapshot(tmp_path, 2, rec.snapshot)
    core2, j2, wire2 = run_day(tmp_path, loaded, 2, T + 5, rec.snapshot)
    wire2.submit(ev.SessionUp("sim", T + 5))
    wire2.submit(ev.AdminKill("account:ACC", "halt", "runaway", "alice", T + 5))
    wire2.receive(
        wire2.infos["oms2"],
        fix(
            "8=FIX.4.2|35=D|34=1|49=OMS2|56=FIXPROXY|52=20231114-22:13:20|11=B1|"
            "1=ACC|55=AAPL|54=1|38=10|40=2|44=190|21=1|"
        ),
        T + 5,
    )
    j2.close()
    exec_ids = [raw for name, raw in wire2.sent if name == "oms2" and "\x0117=" in raw]
    assert exec_ids, wire2.sent
    rec2 = recover(tmp_path, loaded.config, make, exec_id_generator, lambda v: {}, lambda s: {})
    assert rec2.segments_read == [2]
    again = make()
    snapshot.import_state(again, pickle.loads(rec2.snapshot))
    assert picture(again) == picture(core2)
    assert again.kill.get("account:ACC").state.value == "HALTED"


def test_last_input_cut_short_is_reconciled_against_the_stores(tmp_path):
    """An order journaled but never in the venue store is reported not sent; an OMS report journaled
    but never in the OMS store is sent again; the inbound sequence number is counted."""
    loaded = load(CONFIG)
    write_snapshot(tmp_path, 1, pickle.dumps(snapshot.export_state(build_core(loaded, T))))
    _, j, wire = run_day(tmp_path, loaded, 1, T, None)
    wire.submit(ev.SessionUp("sim", T))
    wire.submit(ev.SessionUp("oms1", T))
    j.inbound("oms1", T, order("LOST", seq=7))  # journaled; the process died before the core saw it
    j.close()
    rec = recover(tmp_path, loaded.config, lambda: build_core(loaded, T), exec_id_generator, lambda v: {}, lambda s: {})
    assert rec.send_failed == [("sim", "oms1.LOST")]
    assert rec.inbound_seq == {"oms1": 7}

    # A fill journaled, its report to the OMS never stored: sent again.
    write_snapshot(tmp_path, 2, rec.snapshot)
    _, j2, wire2 = run_day(tmp_path, loaded, 2, T, rec.snapshot)
    wire2.submit(ev.SessionUp("sim", T))
    wire2.receive(wire2.infos["oms1"], order("F1", seq=8), T)
    j2.inbound("sim", T, report("F1", "X9", "2", "F", 100, 0, 100))
    j2.close()
    rec2 = recover(
        tmp_path,
        loaded.config,
        lambda: build_core(loaded, T),
        exec_id_generator,
        lambda v: {"oms1.F1": "35=D\x0134=3\x0111=oms1.F1\x01"},
        lambda s: {},
    )
    assert rec2.send_failed == []
    assert [(type(a).__name__, a.report.exec_id) for a in rec2.resend] == [("OmsReport", "X9")]
    fresh = build_core(loaded, T)
    snapshot.import_state(fresh, pickle.loads(rec2.snapshot))
    assert fresh.book.positions[("ACC", "AAPL")].qty == Decimal(100)


def test_message_in_the_store_but_not_in_the_journal_is_journaled_on_start(tmp_path):
    """Killed between the venue store's write and the journal's O record: recovery finds the order in the
    store, does not report it unsent, and hands its bytes over to be journaled (the audit then has it)."""
    loaded = load(CONFIG)
    write_snapshot(tmp_path, 1, pickle.dumps(snapshot.export_state(build_core(loaded, T))))
    _, j, wire = run_day(tmp_path, loaded, 1, T, None)
    wire.submit(ev.SessionUp("sim", T))
    j.inbound("oms1", T, order("G1", seq=3))
    j.close()
    stored = "8=FIX.4.4\x0135=D\x0134=9\x0149=FIXPROXY\x0156=VENUE\x0111=oms1.G1\x01"
    rec = recover(
        tmp_path,
        loaded.config,
        lambda: build_core(loaded, T),
        exec_id_generator,
        lambda v: {"oms1.G1": stored},
        lambda s: {},
    )
    assert rec.send_failed == [] and rec.resend == []
    assert rec.journal_out == [("sim", stored)]


def test_sync_error_fails_the_journal_like_a_full_disk(tmp_path, monkeypatch):
    """With sync "always", an fdatasync error (an I/O error) sets ``failed``; the record is still written."""
    j = Journal(tmp_path, 1, start(), sync="always")

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    assert j.inbound("oms1", T, "x")
    assert "Input/output error" in j.failed
    assert "Input/output error" in j.resume()
    monkeypatch.undo()
    assert j.resume() == ""
    j.close()


def test_a_message_stored_but_not_counted_is_not_sent(tmp_path):
    """Killed between a store's message write and its sequence number save: that message never went out.
    Recovery reads it as not sent (the report is sent again), and a number used twice reads as the later."""
    from fixproxy.engines.native.store import FileStore
    from fixproxy.engines.quickfix.recovery import sent_messages, stored_messages

    store = FileStore(tmp_path, "FIX.4.4-FIXPROXY-OMS1", T)
    store.sent(1, b"8=FIX.4.4\x0135=8\x0134=1\x0117=E1\x01")
    store.sent(2, b"8=FIX.4.4\x0135=8\x0134=2\x0117=E2\x01")
    store.next_sender = 2  # as if the process died before saving the number after message 2
    store.save_seqnums()
    store.close()
    assert [m.split("\x01")[3] for m in sent_messages(tmp_path, "FIX.4.4-FIXPROXY-OMS1")] == ["17=E1"]
    store = FileStore(tmp_path, "FIX.4.4-FIXPROXY-OMS1", T)
    store.sent(2, b"8=FIX.4.4\x0135=8\x0134=2\x0117=E3\x01")  # the number used again
    store.close()
    assert [m.split("\x01")[3] for m in stored_messages(tmp_path, "FIX.4.4-FIXPROXY-OMS1")] == ["17=E1", "17=E3"]


def test_order_arriving_after_the_journal_closed_is_refused(tmp_path):
    """Once the proxy closed its journal (stopping), an order that still arrives is refused, not handled unrecorded."""
    from fixproxy.journal.writer import ClosedJournal

    loaded = load(CONFIG)
    core = build_core(loaded, T)
    wire = Wire(core, ClosedJournal(1, 8))
    wire.core.up.add("sim")
    wire.receive(wire.infos["oms1"], order("LATE"), T)
    assert core.recording_failure == "the proxy is stopping"
    assert [raw for _, raw in wire.sent if "RECORDING_FAILED" in raw and "379=LATE" in raw]
