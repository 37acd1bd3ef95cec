"""The proxy's periodic heap freeze keeps its growing tables out of the young collections."""

from __future__ import annotations

import gc

from fixproxy.memory import freeze_heap


def test_a_growing_table_stays_frozen_after_an_insert():
    """A table of plain values (here: offsets as int tuples, like a message store's) is frozen with
    the rest and stays out of generation 0 when it grows, so young collections never walk it.
    A full collection before the freeze untracks such a table; its next insert then put it back in
    generation 0 and every young collection walked it whole."""
    table = {i: (i, i + 1) for i in range(10_000)}
    try:
        freeze_heap()
        table[10_000] = (10_000, 10_001)  # a new tuple: tracked when made
        assert gc.is_tracked(table)
        assert not any(obj is table for obj in gc.get_objects(generation=0))
    finally:
        gc.unfreeze()
