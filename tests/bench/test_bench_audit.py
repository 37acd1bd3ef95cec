"""``python -m bench audit`` on a small journal: it follows every record and its JSON has every field.

Only the shape and the counts are checked, never a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_audit_follows_every_journal_record_and_reports_cpu_per_order(tmp_path):
    """40 orders, 7 journal records each (D in, decision, D out, ack and fill in and out) plus the start,
    the venue's logon and its notice: every one read, every one but the logon event stored."""
    args = ["--orders", "40", "--per-step", "3", "--repeat", "2", "--dir", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "-m", "bench", "audit", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["orders"] == 40 and result["journal_records"] == 40 * 7 + 3
    assert result["records_per_order"] == round(283 / 40, 2)
    assert result["cpu_us_per_order"] > 0 and result["cpu_us_per_record"] > 0
    assert len(result["runs"]) == 2
    for run in result["runs"]:
        assert run["journal_records"] == 283
        assert run["audit_records"] == 282 + run["checkpoints"]  # the SessionUp event has no record
        assert run["checkpoints"] >= 1  # keyed: at least the one written on close
        assert run["steps"] >= 40 // 3 and run["store_bytes"] > 0
