"""What the benchmark's processes share: the latency histogram shape and its wire form.

The driver (bench/run.py), the load-generating OMS (bench/oms.py) and the timed proxy
(bench/proxy.py) run as separate processes and exchange HDR histograms as base64 text
in JSON lines, so windows can be merged exactly instead of averaging percentiles.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

#: Values are microseconds, from 1 µs to 60 s, three significant digits (0.1% resolution).
LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3

#: The percentiles reported everywhere, as (JSON key, percentile).
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_ns(hist: HdrHistogram, values_ns: Iterable[int]) -> None:
    """Record nanosecond durations as whole microseconds (at least 1, at most the histogram's top)."""
    for v in values_ns:
        hist.record_value(min(max(v // 1000, LOWEST_US), HIGHEST_US))


def encode(hist: HdrHistogram) -> str:
    return hist.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    hist = new_histogram()
    if text:
        hist.add(HdrHistogram.decode(text.encode("ascii")))
    return hist


def summary(hist: HdrHistogram) -> dict[str, float | int | None]:
    """p50, p90, p99, p99.9 and max in microseconds, and the count; None for an empty histogram."""
    count = hist.get_total_count()
    out: dict[str, float | int | None] = {
        key: (hist.get_value_at_percentile(p) if count else None) for key, p in PERCENTILES
    }
    out["max"] = hist.get_max_value() if count else None
    out["count"] = count
    return out
