"""``python -m bench path --ha``: native_full as the active of an HA pair, a standby process in copy.

Only the counts are checked, never a timing: every order goes the whole way, the copy stays in its
mode for the whole run, and in sync copy the proxy's writes wait for the standby (in async, none do).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.bench


def _path(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "path", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_bench_path_with_sync_copy_waits_for_the_standby_before_writes():
    result = _path("--orders", "300", "--ha", "sync")
    assert result["ha"] == "sync" and result["copy"]["state"] == "sync"  # in copy from start to end
    assert result["decisions"] == 300
    assert (result["messages_in_per_order"], result["messages_out_per_order"]) == (3.0, 3.0)
    # Three messages out an order (to the venue, two reports to the OMS), each written once the
    # standby acknowledged the journal up to it: a round trip per write, at most one per message.
    assert 0 < result["copy"]["syncs_per_order"] <= 3.0


def test_bench_path_with_async_copy_writes_without_waiting():
    result = _path("--orders", "300", "--ha", "async")
    assert result["ha"] == "async" and result["copy"]["state"] == "async"
    assert result["decisions"] == 300
    assert result["copy"]["syncs_per_order"] == 0.0


def test_bench_path_without_ha_has_no_copy():
    result = _path("--orders", "300")
    assert result["ha"] is None and result["copy"] is None
