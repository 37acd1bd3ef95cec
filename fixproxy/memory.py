"""The proxy's heap: long-lived objects kept out of the garbage collector's scans, free pages returned."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable


def freeze_heap() -> None:
    """Collect the young generations and move everything that survived out of the garbage
    collector's view (gc.freeze): the orders and fills the proxy holds only grow, and full
    collections scanning them stalled the order path (docs/benchmarks.md, "Long runs").

    Not a full collection first: a full collection untracks every dict that holds only untracked
    things (the order tables, the store's offsets), so they were not frozen with the rest; the next
    insert tracked each again, in the youngest generation, and every young collection walked it
    whole, so pauses grew with the tables. Cyclic garbage already in the oldest generation is
    frozen with the rest; the automatic full collections between two freezes still take what
    becomes garbage there.
    """
    gc.collect(1)
    gc.freeze()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere): gives the C heap's free pages back to the system."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


async def keep_heap_frozen(every_s: float = 1.0, trim_every: int = 10) -> None:
    """``freeze_heap`` now and every ``every_s``; and every ``trim_every``-th time the C heap trimmed
    (``malloc_trim``): the blocks of finished orders, messages and dict tables freed in the middle of
    the heap would otherwise stay in the process's RSS (docs/memory.md).

    Every second, not every ten: once finished orders leave memory as fast as new ones come, the
    objects freed keep the youngest generation's count under its threshold, so no automatic young
    collection runs and everything made since the last freeze waits for this one's young
    collection, which walks it all (docs/benchmarks.md, "Where the targets stand")."""
    trim = _malloc_trim()
    n = 0
    while True:
        freeze_heap()
        if trim is not None and n % trim_every == 0:
            trim(0)
        n += 1
        await asyncio.sleep(every_s)
