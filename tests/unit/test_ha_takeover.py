"""Before a standby starts as the active (ha/takeover.py): its store copies brought up to the
journal's outbound records and the numbers the active reported; a superseded folder set aside."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fixproxy.config import load
from fixproxy.engines.native.store import FileStore
from fixproxy.engines.quickfix.recovery import next_sender, sent_messages
from fixproxy.fix.parse import first_value
from fixproxy.ha.takeover import read_lineage, repair_stores, session_stores, set_aside, write_lineage
from fixproxy.journal import format as fmt
from fixproxy.journal.writer import Journal
from tests.integration.harness import REPO, config_text

PREFIX = "FIX.4.4-FIXPROXY-VENUE"


def loaded(tmp_path: Path):
    shutil.copy(REPO / "cfg" / "instruments.csv", tmp_path / "instruments.csv")
    path = tmp_path / "fixproxy.toml"
    path.write_text(config_text(1, 2, engine="native"))
    return load(path)


def venue_message(seq: int, cl_ord_id: str, poss_dup: bool = False) -> str:
    dup = "43=Y\x01" if poss_dup else ""
    return f"8=FIX.4.4\x019=50\x0135=D\x0134={seq}\x01{dup}49=FIXPROXY\x0156=VENUE\x0111={cl_ord_id}\x0110=000\x01"


def test_store_copy_gets_the_journaled_messages_it_lacks_and_the_reported_numbers(tmp_path: Path) -> None:
    """The copy's venue store has 1-3, the journal 1-5 (and a resend of 2): 4 and 5 are added, a
    resend is not, and the next number goes past what the active reported sending (admin messages)."""
    lc = loaded(tmp_path)
    state = lc.state_dir
    now = time.time_ns()
    store = FileStore(state / "store" / "venue", PREFIX, now)
    for seq in (1, 2, 3):
        store.sent(seq, venue_message(seq, f"C{seq}").encode())
    store.close()
    journal = Journal(state / "journal", 1, fmt.Start(1, now, 1, "test"))
    for seq in (1, 2, 3, 4, 5):
        journal.outbound("sim", now, venue_message(seq, f"C{seq}"))
    journal.outbound("sim", now, venue_message(2, "C2", poss_dup=True))
    journal.close()
    report = repair_stores(state, lc.config, {"sim": 8}, now)
    assert report["sim"] == {"messages": 2, "next": 8, "next_in": 1}
    stored = {first_value(raw, 34): first_value(raw, 11) for raw in sent_messages(state / "store" / "venue", PREFIX)}
    assert stored == {"1": "C1", "2": "C2", "3": "C3", "4": "C4", "5": "C5"}
    assert next_sender(state / "store" / "venue", PREFIX) == 8
    assert all(not first_value(raw, 43) for raw in sent_messages(state / "store" / "venue", PREFIX))


def test_messages_from_before_the_store_day_are_not_added(tmp_path: Path) -> None:
    """A journaled message sent before the store's day began (yesterday's numbers) stays out of it."""
    lc = loaded(tmp_path)
    state = lc.state_dir
    now = time.time_ns()
    yesterday = now - 86_400 * 1_000_000_000
    journal = Journal(state / "journal", 1, fmt.Start(1, yesterday, 1, "test"))
    journal.outbound("sim", yesterday, venue_message(40, "OLD"))
    journal.outbound("sim", now, venue_message(1, "NEW"))
    journal.close()
    report = repair_stores(state, lc.config, {}, now)
    assert report["sim"] == {"messages": 1, "next": 2, "next_in": 1}
    assert [first_value(r, 11) for r in sent_messages(state / "store" / "venue", PREFIX)] == ["NEW"]


def test_every_session_has_its_store_named_as_the_engines_name_it(tmp_path: Path) -> None:
    """OMS sessions and venues map to the stores both engines write."""
    stores = session_stores(loaded(tmp_path).config)
    assert stores["sim"] == ("venue", PREFIX)
    assert stores["oms1"] == ("oms", "FIX.4.4-FIXPROXY-OMS1")
    assert stores["oms2"] == ("oms", "FIX.4.2-FIXPROXY-OMS2")


def test_superseded_state_is_set_aside_with_why(tmp_path: Path) -> None:
    """The journal, stores, logs, audit store and lineage move under superseded/<time>/ with a WHY file."""
    for rel in ("journal/00000001.journal", "store/venue/x.body", "log/venue/x.log", "audit.sqlite"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    write_lineage(tmp_path, 3, True, [1, 3])
    target = set_aside(tmp_path, "superseded: test")
    assert target is not None and (target / "WHY").read_text().strip() == "superseded: test"
    assert {p.name for p in target.iterdir()} == {"journal", "store", "log", "audit.sqlite", "ha.json", "WHY"}
    assert not (tmp_path / "journal").exists()
    assert read_lineage(tmp_path) == {"token": None, "writer": False, "history": []}
    assert set_aside(tmp_path, "nothing left") is None


def test_lineage_round_trip(tmp_path: Path) -> None:
    write_lineage(tmp_path, 4, False, [2, 4])
    assert read_lineage(tmp_path) == {"token": 4, "writer": False, "history": [2, 4]}
