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
    head = text[: text.index("[audit]")]

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


@pytest.mark.parametrize(
    "audit, message",
    [
        ("[audit]\nbatch_size = 0\n", "audit.batch_size: Expected `int` >= 1"),
        ("[audit]\nflush_interval_ms = 0\n", "audit.flush_interval_ms: Expected `int` >= 1"),
        ('[audit]\nflush_interval_ms = "fast"\n', "audit.flush_interval_ms: Expected `int`, got `str`"),
        ("[audit]\nenable = true\n", "audit: Object contains unknown field `enable`"),
    ],
)
def test_bad_audit_value_names_the_key(cfg, audit, message):
    """A bad [audit] value stops loading with the key's path."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(cfg(audit))


def test_shipped_config_takes_the_checkpoint_key_from_the_environment(monkeypatch):
    """[audit] key_env defaults to FIXPROXY_AUDIT_KEY; no variable, no key (no checkpoints)."""
    monkeypatch.delenv("FIXPROXY_AUDIT_KEY", raising=False)
    loaded = load(CFG / "fixproxy.toml")
    assert (loaded.config.audit.key_env, loaded.config.audit.checkpoint_interval_s, loaded.audit_key) == (
        "FIXPROXY_AUDIT_KEY",
        5.0,
        b"",
    )
    monkeypatch.setenv("FIXPROXY_AUDIT_KEY", "a-key-of-sixteen-or-more")
    assert load(CFG / "fixproxy.toml").audit_key == b"a-key-of-sixteen-or-more"


def test_key_file_is_read_relative_to_the_config(cfg, tmp_path):
    """[audit] key_file is resolved against the config file and read only with secrets."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "audit.key").write_bytes(b"0123456789abcdef0123\n")
    loaded = load(cfg('[audit]\nkey_file = "keys/audit.key"\n'))
    assert loaded.audit_key == b"0123456789abcdef0123"
    assert load(cfg('[audit]\nkey_file = "keys/audit.key"\n'), secrets=False).audit_key == b""


@pytest.mark.parametrize(
    "audit, message",
    [
        ('[audit]\nkey_file = "../var/audit.key"\n', "audit.key_file: .* is inside the state dir"),
        (
            '[audit]\npath = "records/day.sqlite"\nkey_file = "records/audit.key"\n',
            "audit.key_file: .* is inside the audit store's folder",
        ),
        ('[audit]\nkey_file = "missing.key"\n', "audit.key_file: cannot read"),
        ("[audit]\ncheckpoint_interval_s = 0\n", "audit.checkpoint_interval_s: Expected `float` > 0"),
    ],
)
def test_a_key_file_in_the_wrong_place_stops_loading_naming_the_key(cfg, audit, message):
    """The key must not sit where whoever can rewrite the store can read it."""
    with pytest.raises(ConfigError, match=message):
        load(cfg(audit))


def test_a_short_key_is_refused(cfg, monkeypatch):
    """A key under 16 bytes stops loading, naming where it came from."""
    monkeypatch.setenv("FIXPROXY_AUDIT_KEY", "short")
    with pytest.raises(
        ConfigError,
        match=r"audit\.key_env: environment variable FIXPROXY_AUDIT_KEY: the audit key is "
        r"5 bytes; it needs at least 16",
    ):
        load(cfg("[audit]\n"))
