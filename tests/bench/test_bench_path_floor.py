"""``python -m bench path`` and ``python -m bench floor`` in their smallest runs: every order goes the
whole way (three messages in, three out, one decision each) and the JSON has every part.

Only the shape and the counts are checked, never a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("setup", ["native_full", "native_pass"])
def test_bench_path_carries_every_order_through_the_native_engine(setup):
    result = _bench("path", "--orders", "300", "--setup", setup)
    assert result["setup"] == setup and result["orders"] == 300
    assert result["decisions"] == 300  # every order decided (none refused: the OMS peer would stop counting fills)
    assert result["messages_in_per_order"] == 3.0  # the order, its ack and its fill
    assert result["messages_out_per_order"] == 3.0  # the order to the venue, two reports to the OMS
    assert result["proxy_us_per_order"] > 0


def test_bench_path_with_features_copies_every_report_to_the_drop_copy():
    """``--features``: monitor mode, the anomaly detectors and a drop copy on; every order still goes
    through, and the drop copy gets both reports (five messages out an order)."""
    result = _bench("path", "--orders", "300", "--features")
    assert result["features"] == ["anomaly", "drop_copy", "monitor"] and result["decisions"] == 300
    assert (result["messages_in_per_order"], result["messages_out_per_order"]) == (3.0, 5.0)


def test_bench_path_with_cluster_checks_every_order_against_the_shares():
    """``--cluster``: the firm's four shared limits (gross, net long and short, open orders) held as
    shares; every order still goes through, none refused and no top-up wanted (the run fails otherwise)."""
    result = _bench("path", "--orders", "300", "--cluster")
    assert result["cluster"] is True and result["shared_limits"] >= 4
    assert result["decisions"] == 300
    assert (result["messages_in_per_order"], result["messages_out_per_order"]) == (3.0, 3.0)


def test_bench_floor_times_every_part():
    result = _bench("floor", "--orders", "500")
    parts = ["fix_in_us", "fix_out_us", "journal_us", "message_logs_us", "session_store_us"]
    assert result["orders"] == 500
    assert all(result[p] > 0 for p in parts)
    assert result["floor_us_per_order"] == pytest.approx(sum(result[p] for p in parts), abs=0.3)
