"""``fixproxy positions export``: the proxy's positions as a start-of-day positions file.

The positions come from the journal, the way the proxy rebuilds its state after a restart (the
newest snapshot and the journal after it, ``journal.recovery.recover``): the same book whether
the proxy is stopped or still running (the journal holds every input before the core acts on it),
with no token and no admin API. The file is what ``config.load_positions`` reads: a header
``account,symbol,qty,avg_cost`` and one line per account and symbol with a quantity.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable
from decimal import Decimal

from .assemble import build_core, exec_id_generator
from .config import LoadedConfig
from .core.book import Position
from .journal.reader import segments
from .journal.recovery import recover


class ExportError(Exception):
    """No journal to read the positions from."""


def from_journal(loaded: LoadedConfig) -> list[Position]:
    """The positions the proxy of ``loaded`` holds now (or held when it stopped), rebuilt from its journal."""
    directory = loaded.journal_dir
    if not segments(directory):
        raise ExportError(f"no journal segments in {directory}: has the proxy of {loaded.path} run?")
    start_ns = time.time_ns()
    recovered = recover(
        directory,
        loaded.config,
        lambda: build_core(loaded, start_ns),
        exec_id_generator,
        lambda venue: {},  # nothing is sent again: the stores are not consulted
        lambda session: None,
    )
    assert recovered.state is not None, "recover() always leaves the recovered core's state"
    book = recovered.state["book"]
    return [book.positions[key] for key in sorted(book.positions)]


def _text(value: Decimal) -> str:
    """A decimal in plain notation, exactly (``Decimal`` reads it back to the same value)."""
    return format(value.normalize(), "f") if value else "0"


def to_csv(positions: Iterable[Position], note: str = "") -> tuple[str, int, int]:
    """(the file's text, positions written, positions left as comments). Flat positions are left out;
    a position without an account (orders sent without Account 1) cannot be a start-of-day position,
    so it is written as a comment line, which the loader skips, for a person to settle."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if note:
        out.write(f"# {note}\n")
    writer.writerow(("account", "symbol", "qty", "avg_cost"))
    written = commented = 0
    for p in positions:
        if not p.qty:
            continue
        if not p.account:
            out.write(f"# no account (a start-of-day position needs one): symbol {p.symbol}, qty {_text(p.qty)}, ")
            out.write(f"avg_cost {_text(p.avg_cost)}\n")
            commented += 1
            continue
        writer.writerow((p.account, p.symbol, _text(p.qty), _text(p.avg_cost)))
        written += 1
    return out.getvalue(), written, commented
