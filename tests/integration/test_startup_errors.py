"""Start-up refuses what it cannot use: exit non-zero within 5 seconds with one line naming the cause,
never a traceback, never a process left waiting (a service manager must see the failure)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fixproxy.sim.process import free_port

from .harness import REPO, config_text


def run_proxy(tmp_path, extra: str = "") -> subprocess.CompletedProcess:
    (tmp_path / "instruments.csv").write_text((REPO / "cfg" / "instruments.csv").read_text())
    config = tmp_path / "fixproxy.toml"
    config.write_text(config_text(free_port(), free_port(), extra=extra, http_port=free_port()))
    # The bound the issue sets: a failed start-up is over within 5 seconds.
    return subprocess.run(
        [sys.executable, "-m", "fixproxy", "run", "--config", str(config)], capture_output=True, text=True, timeout=5
    )


def cannot_start_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("fixproxy: cannot start")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_journal_folder_that_cannot_be_made_stops_startup(tmp_path):
    """var/journal is a file: the proxy cannot create its journal and says so."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "journal").write_text("in the way\n")
    line = cannot_start_line(run_proxy(tmp_path))
    assert "journal" in line and ("File exists" in line or "Not a directory" in line), line


def test_unwritable_audit_folder_stops_startup(tmp_path):
    """The audit store's folder cannot be made (a file is in the way): exit, naming the audit store."""
    (tmp_path / "blocked").write_text("in the way\n")
    line = cannot_start_line(run_proxy(tmp_path, extra='\n[audit]\npath = "blocked/audit.sqlite"\n'))
    assert "audit" in line and "blocked" in line, line


@pytest.mark.parametrize("damage", ["not a journal", ""])
def test_damaged_journal_segment_stops_startup(tmp_path, damage):
    """A segment that is not a journal (overwritten or emptied): refuse to start rather than run on a partial past."""
    (tmp_path / "var" / "journal").mkdir(parents=True)
    (tmp_path / "var" / "journal" / "00000001.journal").write_text(damage)
    line = cannot_start_line(run_proxy(tmp_path))
    assert "00000001.journal" in line, line


def test_session_store_folder_in_the_way_stops_startup(tmp_path):
    """A file where the venue sessions' store folder goes: the engine's own error (quickfix's
    ConfigError, the native engine's OSError) is one line naming the store, never a traceback."""
    (tmp_path / "var" / "store").mkdir(parents=True)
    (tmp_path / "var" / "store" / "venue").write_text("in the way\n")
    line = cannot_start_line(run_proxy(tmp_path))
    assert "store/venue" in line, line
