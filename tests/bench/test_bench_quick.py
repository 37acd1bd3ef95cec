"""The benchmark harness in its quickest mode: it runs to the end and its JSON has every field.

Only the shape is checked, never a figure: timings on a shared 2-core machine are not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUPS = ("direct", "relay", "qf_relay", "pass_through", "full", "full_native")
PROXIES = ("pass_through", "full", "full_native")
PERCENTILES = ("p50", "p90", "p99", "p99.9", "max")
RATIOS = (
    "full/direct",
    "pass_through/direct",
    "full/pass_through",
    "relay/direct",
    "full/relay",
    "qf_relay/direct",
    "full/qf_relay",
    "full_native/direct",
    "full_native/relay",
    "full_native/full",
)

pytestmark = pytest.mark.bench


def _has(record: dict, *keys: str, where: str) -> None:
    missing = [k for k in keys if k not in record]
    assert not missing, f"{where}: missing {missing}"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"bench run --smoke failed:\n{done.stderr[-4000:]}"
    assert "RATIOS" in done.stdout
    return json.loads(out.read_text())


def test_smoke_run_report_has_every_section(report):
    """Top level: machine, versions, settings, ratios, targets, figures, caveats, processes."""
    _has(
        report,
        "schema",
        "mode",
        "timestamp",
        "duration_s",
        "machine",
        "versions",
        "settings",
        "ratios",
        "targets",
        "latency",
        "throughput",
        "not_measured",
        "processes",
        "profile",
        where="report",
    )
    _has(
        report["machine"],
        "cpu_model",
        "cores",
        "memory_gib",
        "load_average_start",
        "load_average_end",
        "other_work_cores",
        where="machine",
    )
    _has(
        report["versions"], "python", "quickfix", "uvloop", "hdrhistogram", "git_commit", "git_dirty", where="versions"
    )
    _has(
        report["settings"],
        "venue_behaviour",
        "rates",
        "windows",
        "window_s",
        "step_s",
        "p99_limit_ms",
        "max_in_flight",
        "ack_timeout_s",
        "proxy",
        "config_changes",
        "load_generator",
        "sustain_criterion",
        "p50_limit_ms",
        where="settings",
    )
    for name in PROXIES:
        _has(
            report["settings"]["proxy"][name],
            "rules",
            "message_log",
            "log_level",
            "engine",
            where=f"settings.proxy.{name}",
        )
    assert report["settings"]["proxy"]["full_native"]["engine"] == "native"
    assert isinstance(report["not_measured"], list) and report["not_measured"]


def test_smoke_run_latency_has_every_percentile_per_setup_and_rate(report):
    """Each offered rate has every setup with merged percentiles, order counts and, behind the proxy, residence."""
    assert len(report["latency"]) >= 2
    for rate, by_setup in report["latency"].items():
        assert set(by_setup) == set(SETUPS), rate
        for name, agg in by_setup.items():
            where = f"latency.{rate}.{name}"
            _has(
                agg,
                "windows",
                "orders",
                "all_acked",
                "sustained",
                "latency_us",
                "service_time_us",
                "residence_us",
                "per_window",
                where=where,
            )
            _has(agg["orders"], "planned", "sent", "acked", "rejected", "timeouts", "unsent", where=where)
            # Not a figure: a setup whose orders never come back (a relay that forwards nothing) measures nothing.
            assert agg["orders"]["acked"] > 0, f"{where}: no order acknowledged"
            _has(agg["latency_us"], *PERCENTILES, "count", where=f"{where}.latency_us")
            _has(agg["service_time_us"], *PERCENTILES, "count", where=f"{where}.service_time_us")
            if name in ("direct", "relay", "qf_relay"):  # no proxy: nothing to time inside it
                assert agg["residence_us"] is None
            else:
                for direction in ("oms_to_venue", "venue_to_oms"):
                    _has(agg["residence_us"][direction], *PERCENTILES, where=f"{where}.residence_us.{direction}")
                _has(agg["proxy_gc_pauses"], "gen0", "gen1", "gen2", where=f"{where}.proxy_gc_pauses")


def test_smoke_run_has_throughput_ratios_and_targets(report):
    """Throughput per setup, every ratio at every rate, the issue's targets, and each process's pid."""
    for name in SETUPS:
        _has(
            report["throughput"][name],
            "sustained_rate",
            "highest_passing_probe",
            "lowest_failing_probe",
            "probes",
            "steps",
            "limited_by",
            where=f"throughput.{name}",
        )
        _has(report["processes"][name], "pids", "exit_codes", where=f"processes.{name}")
    assert set(report["ratios"]["latency"]) == set(report["latency"])
    for rate, by_pair in report["ratios"]["latency"].items():
        assert set(by_pair) == set(RATIOS), rate
        for pair, values in by_pair.items():
            _has(values, *PERCENTILES, where=f"ratios.latency.{rate}.{pair}")
    _has(report["ratios"]["throughput"], *RATIOS, where="ratios.throughput")
    _has(
        report["targets"],
        "throughput_full_ge_0.5x_direct",
        "throughput_full_native_ge_0.5x_direct",
        "throughput_floor_qf_relay_ge_0.5x_direct",
        where="targets",
    )
    for rate in report["latency"]:
        _has(
            report["targets"][rate],
            "full_p50_le_2.0x_direct",
            "full_p99_le_2.5x_direct",
            "full_over_pass_through_p50_le_1.10",
            "full_native_p50_le_2.0x_direct",
            "full_native_p99_le_2.5x_direct",
            "floor_qf_relay_p50_le_2.0x_direct",
            "floor_qf_relay_p99_le_2.5x_direct",
            where=f"targets.{rate}",
        )
    for name in PROXIES:
        _has(report["processes"][name]["pids"], "venue", "proxy", "oms", where=f"processes.{name}.pids")
    for name in ("relay", "qf_relay"):
        _has(report["processes"][name]["pids"], "venue", "relay", "oms", where=f"processes.{name}.pids")


def test_long_run_reports_each_window_with_its_gc_pauses(tmp_path):
    """bench long: one line and one JSON record per window, with latency and GC pauses."""
    out = tmp_path / "long.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "long", "--windows", "2", "--seconds", "1", "--rate", "200", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"bench long failed:\n{done.stderr[-4000:]}"
    windows = json.loads(out.read_text())["windows"]
    assert [w["window"] for w in windows] == [1, 2]
    for w in windows:
        _has(w, "orders_so_far", "acked", "planned", "p50_us", "p99_us", "p99.9_us", "gc", where="window")
        _has(w["gc"], "gen0", "gen1", "gen2", where="window gc")
    assert windows[1]["orders_so_far"] > windows[0]["orders_so_far"]
    assert "run folder kept" not in done.stdout  # its stores are removed unless asked to keep them


def test_ab_run_interleaves_a_and_b_and_merges_each(tmp_path):
    """bench ab: A and B windows alternate, each variant's windows merged, B / A per percentile."""
    out = tmp_path / "ab.json"
    before = set((REPO / "var" / "bench").glob("ab-*"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "ab",
            "--windows",
            "2",
            "--seconds",
            "1",
            "--rate",
            "200",
            "--b-set",
            'proxy.writer_priority="normal"',
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"bench ab failed:\n{done.stderr[-4000:]}"
    report = json.loads(out.read_text())
    assert [(w["window"], w["variant"]) for w in report["windows"]] == [(1, "A"), (1, "B"), (2, "A"), (2, "B")]
    for w in report["windows"]:
        _has(w, "acked", "planned", "p50_us", "p90_us", "p99_us", "p99.9_us", "max_us", where="window")
    for label in ("A", "B"):
        assert report["merged"][label]["count"] == sum(w["acked"] for w in report["windows"] if w["variant"] == label)
    _has(report["b_over_a"], "p50", "p90", "p99", "p99.9", where="b_over_a")
    assert report["b_set"] == ['proxy.writer_priority="normal"']
    assert report["applied"] == {"A": {}, "B": {"proxy.writer_priority": "normal"}}  # read back from B's config
    assert set((REPO / "var" / "bench").glob("ab-*")) == before  # its run folder is removed


def test_ab_run_refuses_a_change_it_cannot_read():
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ab", "--b-set", "proxy.writer_priority=normal"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "must be JSON" in done.stderr
