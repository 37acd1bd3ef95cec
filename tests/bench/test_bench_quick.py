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
SETUPS = (
    "direct",
    "relay",
    "native_full",
    "native_cluster",
    "native_ha_async",
    "native_ha_sync",
    "native_pass",
    "qf_full",
    "qf_relay",
)
PROXIES = ("native_full", "native_cluster", "native_ha_async", "native_ha_sync", "native_pass", "qf_full")
HA = ("native_ha_async", "native_ha_sync")
PERCENTILES = ("p50", "p90", "p99", "p99.9", "max")
LATENCY_RATIOS = (
    "relay/direct",
    "native_full/direct",
    "native_pass/direct",
    "native_full/native_pass",
    "native_cluster/native_full",
    "native_ha_async/native_full",
    "native_ha_sync/native_full",
    "qf_full/direct",
    "qf_relay/direct",
    "qf_full/qf_relay",
)
CPU_RATIOS = (
    "native_full/native_pass",
    "native_cluster/native_full",
    "native_ha_async/native_full",
    "native_ha_sync/native_full",
    "qf_full/native_full",
    "qf_full/qf_relay",
)
TARGETS = (
    "native_full_cpu_per_order_us",
    "native_full_over_native_pass_cpu",
    "native_full_added_p50_us_at_5000",
    "native_full_added_p99_us_at_5000",
    "native_full_sustained_rate",
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
    for section in ("TARGETS", "ADDED LATENCY", "CPU PER ORDER", "HA (issue 22", "LATENCY", "THROUGHPUT", "RATIOS"):
        assert section in done.stdout, section
    return json.loads(out.read_text())


def test_smoke_run_report_has_every_section(report):
    """Top level: machine, versions, settings, pinning, added latency, ratios, targets, figures, caveats, processes."""
    _has(
        report,
        "schema",
        "mode",
        "timestamp",
        "duration_s",
        "machine",
        "versions",
        "settings",
        "pinning",
        "ratios",
        "added_latency_us",
        "targets",
        "latency",
        "throughput",
        "not_measured",
        "processes",
        "profile",
        "cluster",
        "ha",
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
        "peers",
        "rates",
        "windows",
        "window_s",
        "step_s",
        "p99_limit_ms",
        "max_in_flight",
        "ack_timeout_s",
        "proxy",
        "config_changes",
        "sustain_criterion",
        "answered_share",
        "ladder",
        "order_path",
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
    assert [report["settings"]["proxy"][name]["engine"] for name in PROXIES] == [
        "native",
        "native",
        "native",
        "native",
        "native",
        "quickfix",
    ]
    assert report["settings"]["proxy"]["native_cluster"]["cluster"]["url"].startswith("postgresql://")
    assert "cluster" not in report["settings"]["proxy"]["native_full"]
    assert "ha" not in report["settings"]["proxy"]["native_full"]
    for name, copy in zip(HA, ("async", "sync"), strict=True):  # the active and its standby: one pair, two instances
        active, standby = report["settings"]["proxy"][name]["ha"], report["settings"]["proxy"][name]["standby"]["ha"]
        assert active["copy"] == standby["copy"] == copy and active["pair"] == standby["pair"]
        assert active["instance"] != standby["instance"] and active["copy_listen"] != standby["copy_listen"]
    assert report["settings"]["proxy"]["native_pass"]["rules"] == []
    _has(report["pinning"], "pinned", "how", "processes", where="pinning")
    if report["pinning"]["pinned"]:  # read back from /proc: the peers (and a standby) on core 0, the proxy's tree on 1
        for name in SETUPS:
            for process, cpus in report["pinning"]["processes"][name].items():
                assert cpus == ("0" if process.startswith(("peers", "standby")) else "1"), (name, process, cpus)
            if name in HA:
                assert any(p.startswith("standby") for p in report["pinning"]["processes"][name]), name
        assert report["pinning"]["processes"]["postgres"], "the database's processes"
        for process, cpus in report["pinning"]["processes"]["postgres"].items():  # with the peers, off the proxy's core
            assert cpus == "0", (process, cpus)
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
                "cpu_per_order_us",
                "per_window",
                where=where,
            )
            _has(agg["cpu_per_order_us"], "proxy_tree", "proxy_main", "peers", "standby", "orders", where=where)
            # The standby's CPU: measured for an HA setup (its own process), for no other.
            assert (agg["cpu_per_order_us"]["standby"] is not None) == (name in HA), where
            _has(agg["orders"], "planned", "sent", "acked", "rejected", "timeouts", "unsent", where=where)
            # Not a figure: a setup whose orders never come back (a relay that forwards nothing) measures nothing.
            assert agg["orders"]["acked"] > 0, f"{where}: no order acknowledged"
            _has(agg["latency_us"], *PERCENTILES, "count", where=f"{where}.latency_us")
            _has(agg["service_time_us"], *PERCENTILES, "count", where=f"{where}.service_time_us")
            # PostgreSQL's CPU: measured over every window (the cluster idles through the others' windows).
            _has(agg["cpu_per_order_us"], "postgres", where=where)
            assert agg["cpu_per_order_us"]["postgres"] is not None, where
            if name == "direct":  # no process between the peers: no proxy CPU
                assert agg["cpu_per_order_us"]["proxy_tree"] is None
            else:
                assert agg["cpu_per_order_us"]["proxy_tree"] is not None, where
            if name in ("direct", "relay", "qf_relay"):  # no proxy: nothing to time inside it
                assert agg["residence_us"] is None
            else:
                for direction in ("oms_to_venue", "venue_to_oms"):
                    _has(agg["residence_us"][direction], *PERCENTILES, where=f"{where}.residence_us.{direction}")
                _has(agg["proxy_gc_pauses"], "gen0", "gen1", "gen2", where=f"{where}.proxy_gc_pauses")


def test_smoke_run_has_throughput_added_latency_ratios_and_targets(report):
    """Throughput per setup, added latency and every ratio at every rate, the issue's targets, each process's pid."""
    for name in SETUPS:
        _has(
            report["throughput"][name],
            "sustained_rate",
            "at_ladder_top",
            "highest_passing_probe",
            "lowest_failing_probe",
            "probes",
            "steps",
            "limited_by",
            where=f"throughput.{name}",
        )
        assert report["throughput"][name]["probes"], f"throughput.{name}: no probe ran"
        _has(report["processes"][name], "pids", "exit_codes", where=f"processes.{name}")
    assert set(report["ratios"]["latency"]) == set(report["latency"]) == set(report["added_latency_us"])
    for rate, by_pair in report["ratios"]["latency"].items():
        assert set(by_pair) == set(LATENCY_RATIOS), rate
        for pair, values in by_pair.items():
            _has(values, *PERCENTILES, where=f"ratios.latency.{rate}.{pair}")
        assert set(report["ratios"]["cpu_per_order"][rate]) == set(CPU_RATIOS), rate
        assert set(report["added_latency_us"][rate]) == set(SETUPS) - {"direct"}, rate
        for name, added in report["added_latency_us"][rate].items():
            direct, own = report["latency"][rate]["direct"]["latency_us"], report["latency"][rate][name]["latency_us"]
            assert added == {k: own[k] - direct[k] for k in ("p50", "p99")}, (rate, name)
    _has(report["ratios"]["throughput"], *(f"{name}/direct" for name in SETUPS if name != "direct"), where="ratios")
    _has(report["targets"], *TARGETS, where="targets")
    assert set(report["cluster"]) == set(report["latency"])  # native_cluster beside native_full at every rate
    for rate, row in report["cluster"].items():
        _has(row, "carried", "added_us", "cpu_per_order_us", "cpu_tree_ratio", "added_p50_ratio", "within", where=rate)
        _has(row["cpu_per_order_us"], "native_full", "native_cluster", "postgres", where=f"cluster.{rate}")
    assert set(report["ha"]) == set(report["latency"])  # native_full -> async -> sync at every rate
    for rate, row in report["ha"].items():
        _has(row, "carried", "added_us", "cpu_per_order_us", "against_native_full", where=f"ha.{rate}")
        assert set(row["added_us"]) == set(row["cpu_per_order_us"]) == {"native_full", *HA}, rate
        assert set(row["against_native_full"]) == set(HA), rate
        for name in HA:
            _has(row["cpu_per_order_us"][name], "tree", "main", "standby", where=f"ha.{rate}.{name}")
            _has(row["against_native_full"][name], "added_p50", "added_p99", "cpu_tree", "cpu_main", where=f"ha.{rate}")
    for key, target in report["targets"].items():
        _has(target, "what", "value", "target", "met", where=f"targets.{key}")
    for name in PROXIES:
        _has(report["processes"][name]["pids"], "peers", "proxy", where=f"processes.{name}.pids")
    for name in HA:
        _has(report["processes"][name]["pids"], "standby", where=f"processes.{name}.pids")
        assert report["processes"][name]["exit_codes"]["standby"] == 0, name  # stopped by its pid, cleanly
    for name in ("relay", "qf_relay"):
        _has(report["processes"][name]["pids"], "peers", "relay", where=f"processes.{name}.pids")
    _has(report["processes"]["direct"]["pids"], "peers", where="processes.direct.pids")


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
