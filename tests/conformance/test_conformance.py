"""The conformance table (cases.fixscript) on each FIX engine, over real loopback TCP.

One proxy stack per engine for the whole table; every case logs on afresh (141=Y) and leaves the
session logged out. See docs/conformance.md for the format and what the table found.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..integration.harness import Stack
from .fixscript import FIXT_OMS, Runner, load

TABLE = Path(__file__).with_name("cases.fixscript")
CASES = load(TABLE)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine):
    """One proxy with its venue simulator: MSFT orders rest (acked, not filled), XOM is rejected."""
    s = Stack(tmp_path_factory.mktemp("conformance"), behaviours={"MSFT": "ack", "XOM": "reject"}, extra=FIXT_OMS)
    try:
        yield s
    finally:
        s.close()


def test_table_is_large_enough():
    """The table keeps at least 100 cases, each with a comment saying what it shows."""
    assert len(CASES) >= 100
    assert all(c.comment for c in CASES), [c.name for c in CASES if not c.comment]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(stack, case, engine):
    """Send the case's bytes; the proxy answers as the table says, and keeps serving."""
    Runner(stack.acceptor_port, stack.venue, CASES.index(case), engine).run(case)
    assert stack.proxy.popen.poll() is None, "the proxy stopped"
