"""The end-of-day positions file: what `positions export` writes is what the start-of-day loader reads."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

from fixproxy.cli import main
from fixproxy.config import load_positions
from fixproxy.core.book import Position
from fixproxy.positions import to_csv

FIXTURES = Path(__file__).resolve().parents[1] / "replay_fixtures"


def test_exported_file_reads_back_to_the_same_positions(tmp_path):
    """Long, short and fractional average costs come back exactly; flat positions are left out; a position
    without an account is a comment the loader skips."""
    book = [
        Position("ACC1", "AAPL", Decimal(90), Decimal("194.1666666666666666666666667")),
        Position("ACC2", "XOM", Decimal(-500), Decimal("112.00")),
        Position("ACC3", "MSFT", Decimal(0), Decimal(0), bought_qty=Decimal(10), sold_qty=Decimal(10)),
        Position("", "NVDA", Decimal(300), Decimal(120)),
        Position("ACC4", "SPYL", Decimal("1E+3"), Decimal("50.5")),
    ]
    text, written, commented = to_csv(book, "test day")
    assert (written, commented) == (3, 1)
    assert text.splitlines()[:2] == ["# test day", "account,symbol,qty,avg_cost"]
    assert "ACC4,SPYL,1000,50.5" in text  # no exponent for a person to misread
    path = tmp_path / "eod.csv"
    path.write_text(text)
    read = {(p.account, p.symbol): (p.qty, p.avg_cost) for p in load_positions(path)}
    assert read == {(p.account, p.symbol): (p.qty, p.avg_cost) for p in book if p.qty and p.account}


def test_export_without_a_journal_says_so(tmp_path, capsys):
    """A config whose proxy never ran has no journal: exit 1 naming the folder, no file written."""
    shutil.copy(FIXTURES / "fixproxy.toml", tmp_path / "fixproxy.toml")
    shutil.copy(FIXTURES / "instruments.csv", tmp_path / "instruments.csv")
    out = tmp_path / "eod.csv"
    assert main(["positions", "export", "--config", str(tmp_path / "fixproxy.toml"), "--out", str(out)]) == 1
    assert f"no journal segments in {tmp_path / 'var' / 'journal'}" in capsys.readouterr().err
    assert not out.exists()
