"""Start-up refuses what it cannot use with one clear line, never a traceback."""

from __future__ import annotations

import subprocess
import sys

from .harness import REPO, config_text, free_port


def test_unreadable_state_store_stops_startup_cleanly(tmp_path):
    """A state file that is not a database: `fixproxy run` exits non-zero naming the problem."""
    (tmp_path / "instruments.csv").write_text((REPO / "cfg" / "instruments.csv").read_text())
    config = tmp_path / "fixproxy.toml"
    config.write_text(config_text(free_port(), free_port()))
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "state.sqlite").write_text("this is not a database\n" * 100)
    done = subprocess.run([sys.executable, "-m", "fixproxy", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "fixproxy: cannot start: file is not a database" in done.stderr
    assert "Traceback" not in done.stderr
