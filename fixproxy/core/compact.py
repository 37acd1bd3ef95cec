"""A set of identifiers (ClOrdIDs, ExecIDs) held as 64-bit hashes: 8 bytes each, however long the id.

The duplicate-ClOrdID check and the ExecID dedupe must remember every id of the trading day, and a
Python ``set`` of strings costs 100-150 bytes an id. Here an id is the first 8 bytes of its BLAKE2b
digest (the same in every process: snapshots and replays agree), kept in a small ``set`` of recent
hashes that is sorted into an ``array('q')`` run when it fills; runs of similar length are merged
(as a log-structured merge tree does), so there are about log2(n / RECENT) runs, each searched by
bisection.

A hash collision makes a new id look used: a fresh ClOrdID is refused DUPLICATE_CLORDID (the OMS
sends it again under another id), a fresh ExecID looks like a repeat (a PossDup report is not
relayed; a fill is not booked, with a ``duplicate_fill`` notice and an alert). With n ids in a day
the chance of any collision is about n^2 / 2^65: 2.7e-8 for a million.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from hashlib import blake2b

#: How many hashes wait in the recent set before they are sorted into a run.
RECENT = 2048
#: Runs are merged up to this length: a merge makes one transient int per hash (``sorted``), so a
#: bounded run bounds that spike and the pause; a lookup bisects one run per 64k ids beyond it.
MAX_RUN = 1 << 16


# The last id hashed: an order's ClOrdID is checked, then added; a report's ExecID is looked up in
# one period's set, then added to the next.
_last: tuple[str, int] = ("", 0)


def id_hash(value: str) -> int:
    """The 64-bit (signed) hash an id is kept as."""
    global _last
    last = _last
    if value == last[0] and value:
        return last[1]
    h = int.from_bytes(blake2b(value.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little", signed=True)
    _last = (value, h)
    return h


class CompactIdSet:
    """``add`` / ``in`` / ``len`` for strings, 8 bytes an id once sorted into a run."""

    __slots__ = ("_miss", "_n", "_recent", "_runs")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._recent: set[int] = set()
        self._runs: list[array[int]] = []
        self._n = 0
        self._miss: int | None = None  # the last hash looked up and not found (nothing added since)
        for v in values:
            self.add(v)

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return self.contains_hash(id_hash(value))

    def contains_hash(self, h: int) -> bool:
        if h in self._recent:
            return True
        for run in self._runs:
            i = bisect_left(run, h)
            if i < len(run) and run[i] == h:
                return True
        self._miss = h
        return False

    def add(self, value: str) -> bool:
        """Add ``value``; False if it (or an id with the same hash) was there already."""
        return self.add_hash(id_hash(value))

    def add_hash(self, h: int) -> bool:
        # A check for this id that just missed (the duplicate-ClOrdID rule, then the add) is not repeated.
        if h != self._miss and self.contains_hash(h):
            return False
        self._miss = None
        self._recent.add(h)
        self._n += 1
        if len(self._recent) >= RECENT:
            self._flush()
        return True

    def _flush(self) -> None:
        runs = self._runs
        runs.append(array("q", sorted(self._recent)))
        self._recent = set()
        # Merge the newest run into the one before it while that one is not more than twice as long.
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]) and len(runs[-2]) + len(runs[-1]) <= MAX_RUN:
            b, a = runs.pop(), runs.pop()
            runs.append(array("q", sorted(a + b)))

    def __len__(self) -> int:
        return self._n

    def nbytes(self) -> int:
        """About what the hashes take (runs at 8 bytes each, recent ones as set entries)."""
        return sum(len(r) for r in self._runs) * 8 + len(self._recent) * 60

    def __getstate__(self) -> tuple[list[int], list[bytes], int]:
        return (sorted(self._recent), [bytes(r) for r in self._runs], self._n)

    def __setstate__(self, state: tuple[list[int], list[bytes], int]) -> None:
        recent, runs, self._n = state
        self._miss = None
        self._recent = set(recent)
        self._runs = []
        for raw in runs:
            run = array("q")
            run.frombytes(raw)
            self._runs.append(run)

    def __repr__(self) -> str:
        return f"CompactIdSet({self._n} ids, {len(self._runs)} runs)"
