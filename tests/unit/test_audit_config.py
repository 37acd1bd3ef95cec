"""The [audit] config section: where the store goes, and bad values stop start-up naming the key."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from fixproxy.config import ConfigError, load

CFG = Path(__file__).resolve().parents[2] / "cfg"


@pytest.fixture
def cfg(tmp_path):
    """A copy of cfg/ with the [audit] section replaced by the test's."""
    for f in CFG.iterdir():
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "fixproxy.toml").read_text()
    head = text[:text.index("[audit]")]

    def write(audit: str) -> Path:
        (tmp_path / "fixproxy.toml").write_text(head + audit)
        return tmp_path / "fixproxy.toml"

    return write


def test_shipped_config_puts_the_store_under_state_dir():
    """cfg/ as shipped: the audit store is <state_dir>/audit.sqlite, enabled, with the documented batching."""
    loaded = load(CFG / "fixproxy.toml")
    assert loaded.audit_path == loaded.state_dir / "audit.sqlite"
    audit = loaded.config.audit
    assert (audit.enabled, audit.batch_size, audit.flush_interval_ms) == (True, 1000, 200)


def test_path_is_relative_to_the_config_file(cfg):
    """[audit] path is resolved against the config file's folder, like the other paths."""
    loaded = load(cfg('[audit]\npath = "records/day.sqlite"\n'))
    assert loaded.audit_path == loaded.path.parent / "records" / "day.sqlite"


@pytest.mark.parametrize("audit, message", [
    ("[audit]\nbatch_size = 0\n", "audit.batch_size: Expected `int` >= 1"),
    ("[audit]\nflush_interval_ms = 0\n", "audit.flush_interval_ms: Expected `int` >= 1"),
    ("[audit]\nflush_interval_ms = \"fast\"\n", "audit.flush_interval_ms: Expected `int`, got `str`"),
    ("[audit]\nenable = true\n", "audit: Object contains unknown field `enable`"),
])
def test_bad_audit_value_names_the_key(cfg, audit, message):
    """A bad [audit] value stops loading with the key's path."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(cfg(audit))
