"""The read-only tools need none of the proxy's secrets; `run` still names the variable it lacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixproxy.audit import AuditWriter
from fixproxy.cli import main
from fixproxy.config import ConfigError, load
from fixproxy.core import events as ev

FIXTURES = Path(__file__).resolve().parents[1] / "replay_fixtures"
DESK_VAR, TOKEN_VAR, OMS_VAR, KEY_VAR = (
    "FIXPROXY_TEST_DESK_PW",
    "FIXPROXY_TEST_TOKEN",
    "FIXPROXY_TEST_OMS_PW",
    "FIXPROXY_TEST_AUDIT_KEY",
)
SECRETS = f"""
[audit]
key_env = "{KEY_VAR}"

[admin]
http_port = 0

[[admin.tokens]]
name = "alice"
role = "risk"
token_env = "{TOKEN_VAR}"

[risk_desk]
comp_id = "DESK"
username = "desk"
password_env = "{DESK_VAR}"
"""


@pytest.fixture
def box(tmp_path, monkeypatch):
    """A compliance box: the fixture config with secrets from variables that are not set, and an audit store."""
    for var in (DESK_VAR, TOKEN_VAR, OMS_VAR, KEY_VAR):
        monkeypatch.delenv(var, raising=False)
    shutil.copy(FIXTURES / "instruments.csv", tmp_path / "instruments.csv")
    text = (FIXTURES / "fixproxy.toml").read_text()
    text = text.replace(
        'default_venue = "sim"\n', f'default_venue = "sim"\nusername = "oms1"\npassword_env = "{OMS_VAR}"\n', 1
    )
    config = tmp_path / "fixproxy.toml"
    config.write_text(text + SECRETS)
    (tmp_path / "var").mkdir()
    w = AuditWriter(tmp_path / "var" / "audit.sqlite")
    w.start()
    w.record(
        ev.Decision("oms1", "D", "A1", True, 1_700_000_000_000_000_000, account="ACC1", symbol="AAPL", venue="sim")
    )
    w.close()
    return config


def test_run_names_the_missing_variable(box):
    """What `run` loads: every secret, and the first missing one is named."""
    with pytest.raises(ConfigError, match=f"environment variable {TOKEN_VAR} \\(token 'alice'\\) is not set"):
        load(box)


def test_check_config_warns_of_missing_secrets_and_passes(box):
    """check-config says which variables `run` will need, and exits 0: the config itself is valid."""
    done = subprocess.run(
        [sys.executable, "-m", "fixproxy", "check-config", "-c", str(box)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3
    for where, var in (
        ("admin.tokens[0].token_env", TOKEN_VAR),
        ("risk_desk.password_env", DESK_VAR),
        ("oms[0].password_env", OMS_VAR),
    ):
        assert any(f"{where}: environment variable {var}" in w for w in warnings), (where, warnings)


def test_check_config_fails_on_a_secret_run_would_refuse(box, monkeypatch):
    """A token that is set but too short is an error (exit 2) naming the variable."""
    monkeypatch.setenv(TOKEN_VAR, "short")
    monkeypatch.setenv(KEY_VAR, "tiny")
    done = subprocess.run(
        [sys.executable, "-m", "fixproxy", "check-config", "-c", str(box)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert f"admin.tokens[0]: environment variable {TOKEN_VAR}: a token must be at least 16" in done.stderr
    assert f"audit.key_env: environment variable {KEY_VAR}: the audit key is 4 bytes" in done.stderr


def test_show_report_verify_and_replay_run_without_secrets(box, tmp_path, capsys):
    """audit show, report, audit verify and replay all run with none of the variables set."""
    assert main(["audit", "show", "--config", str(box)]) == 0
    assert "A1" in capsys.readouterr().out
    assert main(["report", "--config", str(box)]) == 0
    assert "fixproxy end-of-day report" in capsys.readouterr().out
    main(["audit", "verify", "--config", str(box)])
    assert "checkpoints: not checked" in capsys.readouterr().out
    out = tmp_path / "r.json"
    args = ["replay", str(FIXTURES / "filelog"), "--config", str(box), "--no-progress", "--json", str(out)]
    assert main(args) == 0 and out.is_file()
    assert main([*args, "--limits", str(FIXTURES / "tight_limits.toml")]) == 0


@pytest.mark.parametrize(
    ("argv", "target"),
    [
        (["sim", "oms", "--session", "oms1", "--count", "1"], "fixproxy.sim.oms.run_oms"),
        (["sim", "venue"], "fixproxy.sim.venue.run_venue"),
        (["sim", "desk"], "fixproxy.sim.oms.run_desk"),
    ],
)
def test_simulators_start_without_the_proxys_secrets(box, monkeypatch, argv, target):
    """A simulator reads its own session's password, not the desk's or the API tokens (README's tour
    runs `fixproxy sim oms` with none of them set)."""
    started: list[object] = []
    monkeypatch.setattr(target, lambda loaded, *a, **kw: started.append(loaded) or 0)
    assert main([*argv[:2], "--config", str(box), *argv[2:]]) == 0
    assert len(started) == 1
