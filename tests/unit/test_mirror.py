"""Fills and positions of an instance mirrored from its journal into PostgreSQL (cluster/mirror.py)."""

from __future__ import annotations

import pickle
import shutil
from decimal import Decimal
from pathlib import Path

import psycopg

from fixproxy.assemble import build_core, exec_id_generator
from fixproxy.cli import main
from fixproxy.cluster.mirror import Mirror
from fixproxy.config import load, load_positions
from fixproxy.core import events as ev, snapshot
from fixproxy.journal.recovery import recover, write_snapshot
from fixproxy.positions import from_journal
from tests.unit.test_journal import CONFIG, T, fix, order, report, run_day


def sell(cl: str, qty: int, seq: int) -> str:
    return fix(
        f"8=FIX.4.4|35=D|34={seq}|49=OMS1|56=FIXPROXY|52=20231114-22:13:20|11={cl}|1=ACC|55=AAPL|54=2|"
        f"38={qty}|40=2|44=190|"
    )


def sold(cl: str, exec_id: str, status: str, cum: int, leaves: int, last: int, px: str) -> str:
    return fix(
        f"8=FIX.4.4|35=8|34=1|49=VENUE|56=FIXPROXY|11=oms1.{cl}|37=V{cl}|17={exec_id}|150=F|"
        f"39={status}|55=AAPL|54=2|38=70|14={cum}|151={leaves}|6={px}|32={last}|31={px}|"
    )


def two_lives(directory: Path) -> None:
    """A journal of two process lives: buys, a fill resent, then (after a recovery) part sold in two fills."""
    loaded = load(CONFIG)
    write_snapshot(directory, 1, pickle.dumps(snapshot.export_state(build_core(loaded, T))))
    _core, j, wire = run_day(directory, loaded, 1, T, None)
    sim, oms = wire.infos["sim"], wire.infos["oms1"]
    wire.submit(ev.SessionUp("sim", T))
    wire.receive(oms, order("A1"), T)
    wire.receive(sim, report("A1", "E1", "0", "0", 0, 100), T)
    wire.receive(sim, report("A1", "E2", "1", "F", 40, 60, 40), T)
    wire.receive(sim, report("A1", "E2", "1", "F", 40, 60, 40), T)  # sent again (no PossDup): booked once
    wire.receive(sim, report("A1", "E3", "2", "F", 100, 0, 60), T)
    j.close()

    def make() -> object:
        return build_core(loaded, T + 1)

    rec = recover(directory, loaded.config, make, exec_id_generator, lambda v: {}, lambda s: {})
    write_snapshot(directory, 2, rec.snapshot)
    _core2, j2, wire2 = run_day(directory, loaded, 2, T + 5, rec.snapshot)
    sim2, oms2 = wire2.infos["sim"], wire2.infos["oms1"]
    wire2.submit(ev.SessionUp("sim", T + 5))
    wire2.receive(oms2, sell("B1", 70, 2), T + 5)
    wire2.receive(sim2, sold("B1", "F1", "1", 30, 40, 30, "200"), T + 5)
    wire2.receive(sim2, sold("B1", "F2", "2", 70, 0, 40, "195"), T + 5)
    j2.close()


def config_for(tmp_path: Path, url: str) -> Path:
    """The fixture config with its journal in ``tmp_path/var`` and a ``[cluster]`` on ``url``."""
    shutil.copy(CONFIG.parent / "instruments.csv", tmp_path / "instruments.csv")
    text = CONFIG.read_text() + f'\n[cluster]\nurl = "{url}"\ninstance = "a"\n'
    path = tmp_path / "fixproxy.toml"
    path.write_text(text)
    return path


def rows(url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def mirror_of(path: Path, url: str) -> Mirror:
    return Mirror.for_config(load(path), lambda: psycopg.connect(url, autocommit=True))


def test_fills_are_counted_once_and_positions_equal_the_journal_export(tmp_path, pg_url):
    """Every fill once (a resent one too), positions as `positions export` rebuilds them, after a
    restart and after the mirror's saved position is moved back and the journal read again."""
    path = config_for(tmp_path, pg_url)
    two_lives(tmp_path / "var" / "journal")
    expected = {(p.account, p.symbol): (p.qty, p.avg_cost) for p in from_journal(load(path))}
    assert expected == {("ACC", "AAPL"): (Decimal(30), Decimal(190))}

    def mirrored() -> dict:
        return {(a, s): (q, c) for a, s, q, c in rows(pg_url, "SELECT account, symbol, qty, avg_cost FROM fp_position")}

    m = mirror_of(path, pg_url)
    while m.run_once():
        pass
    assert m.health()["state"] == "ok" and m.unmatched == 0
    fills = rows(pg_url, "SELECT exec_id, side, qty, price FROM fp_fill ORDER BY exec_id")
    assert fills == [
        ("E2", "buy", 40, 190),
        ("E3", "buy", 60, 190),
        ("F1", "sell", 30, 200),
        ("F2", "sell", 40, 195),
    ]
    assert mirrored() == expected

    # A restart reads again from the snapshot before its saved position (segment 2's start); one whose
    # position went back to the journal's start reads all of it again. Nothing is counted twice.
    again = mirror_of(path, pg_url)
    assert again.run_once() > 0 and again.fills_written == 0 and again.committed == m.committed
    assert mirrored() == expected
    rows(pg_url, "UPDATE fp_mirror SET segment = 1, \"offset\" = 0 WHERE instance = 'a' RETURNING 1")
    third = mirror_of(path, pg_url)
    read = 0
    while n := third.run_once():
        read += n
    assert read > 0 and third.fills_written == 0
    assert len(rows(pg_url, "SELECT 1 FROM fp_fill")) == 4
    assert mirrored() == expected


def test_cluster_export_reads_back_as_a_start_of_day_file(tmp_path, pg_url):
    """`positions export --cluster` writes what the start-of-day loader reads: one instance's, and the
    firm's summed over instances."""
    path = config_for(tmp_path, pg_url)
    two_lives(tmp_path / "var" / "journal")
    m = mirror_of(path, pg_url)
    while m.run_once():
        pass
    rows(
        pg_url,
        "INSERT INTO fp_position (instance, account, symbol, qty, avg_cost) VALUES "
        "('b', 'ACC', 'AAPL', 20, 205), ('b', 'ACC2', 'MSFT', 10, 400) RETURNING 1",
    )
    out = tmp_path / "sod-a.csv"
    assert main(["positions", "export", "--cluster", "--instance", "a", "--config", str(path), "-o", str(out)]) == 0
    assert [(p.account, p.symbol, p.qty, p.avg_cost) for p in load_positions(out)] == [
        ("ACC", "AAPL", Decimal(30), Decimal(190))
    ]
    firm = tmp_path / "sod.csv"
    assert main(["positions", "export", "--cluster", "--config", str(path), "-o", str(firm)]) == 0
    assert [(p.account, p.symbol, p.qty, p.avg_cost) for p in load_positions(firm)] == [
        ("ACC", "AAPL", Decimal(50), Decimal(30 * 190 + 20 * 205) / 50),
        ("ACC2", "MSFT", Decimal(10), Decimal(400)),
    ]
