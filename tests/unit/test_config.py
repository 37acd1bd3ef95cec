"""Configuration: the shipped files load; a bad file stops start-up naming the key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixproxy.config import ConfigError, load

CFG = Path(__file__).resolve().parents[2] / "cfg"


@pytest.fixture
def cfg(tmp_path):
    """A copy of cfg/ that a test may edit."""
    for f in CFG.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_shipped_config_loads_with_instruments():
    """cfg/ as shipped is valid: sessions, venue, limits layers and instruments."""
    loaded = load(CFG / "fixproxy.toml")
    cfg = loaded.config
    assert [s.name for s in cfg.oms] == ["oms1", "oms2"]
    assert cfg.limits.accounts["ACC-RETAIL"].restricted_symbols == frozenset({"TSLA"})
    assert loaded.instruments["SPYL"].lot_size == 100
    assert loaded.instruments["RSTR"].restricted is True
    assert loaded.instruments["AAPL"].reference_time_ns == (CFG / "instruments.csv").stat().st_mtime_ns
    assert loaded.instruments["NOREF"].reference_price is None


BAD = [
    ("unknown_key", "port = 9878", "prot = 9878", "acceptor: Object contains unknown field `prot`"),
    (
        "negative_limit",
        "max_order_qty = 10000",
        "max_order_qty = -5",
        "limits.firm: max_order_qty must be a positive number",
    ),
    ("wrong_type", "heartbeat_s = 30", 'heartbeat_s = "often"', "acceptor.heartbeat_s: Expected `int`, got `str`"),
    (
        "layer_key",
        "max_order_notional = 50000",
        "max_notional = 50000",
        "limits.accounts.ACC-RETAIL: Object contains unknown field `max_notional`",
    ),
    (
        "layer_value",
        "price_collar_pct = 2",
        'price_collar_pct = "wide"',
        "limits.symbols.GME.price_collar_pct: Invalid decimal",
    ),
    (
        "dangling_venue",
        'default_venue = "sim"',
        'default_venue = "nowhere"',
        "oms[0].default_venue: no venue named 'nowhere'",
    ),
    (
        "unknown_rule",
        "# rules = [",
        'rules = ["max_order_qty", "max_qty"]\n# x = [',
        "risk.rules[1]: unknown rule 'max_qty'",
    ),
    (
        "bad_version",
        'fix_version = "FIX.4.2"',
        'fix_version = "FIX.5.0"',
        "oms[1].fix_version: Invalid enum value 'FIX.5.0'",
    ),
    (
        "session_limits_typo",
        "[limits.sessions.oms2]",
        "[limits.sessions.omz2]",
        "limits.sessions.omz2: no OMS session named 'omz2'",
    ),
    (
        "desk_without_password",
        'username = "desk"\npassword_env = "FIXPROXY_DESK_PASSWORD"',
        "",
        "risk_desk: the risk-desk session needs username and password_env (or password), or allow_unauthenticated = true",
    ),
    ("desk_password_without_user", 'username = "desk"\n', "", "risk_desk: a password is set: give the username"),
    (
        "desk_password_unset",
        'password_env = "FIXPROXY_DESK_PASSWORD"',
        'password_env = "FIXPROXY_UNSET_VARIABLE_X"',
        "risk_desk.password_env: environment variable FIXPROXY_UNSET_VARIABLE_X is not set",
    ),
]


def test_desk_without_password_loads_only_when_allowed_in_so_many_words(cfg):
    """allow_unauthenticated = true is the one way to run the desk session without a password."""
    edit(
        cfg / "fixproxy.toml",
        'username = "desk"\npassword_env = "FIXPROXY_DESK_PASSWORD"',
        "allow_unauthenticated = true",
    )
    assert load(cfg / "fixproxy.toml").config.risk_desk.allow_unauthenticated


def test_engine_is_native_unless_the_file_chooses_quickfix(cfg):
    """The shipped file names the native engine, a file without the key gets it too, and
    engine = "quickfix" chooses quickfix."""
    assert load(CFG / "fixproxy.toml").config.proxy.engine == "native"
    edit(cfg / "fixproxy.toml", 'engine = "native"', "")
    assert load(cfg / "fixproxy.toml").config.proxy.engine == "native"
    edit(cfg / "fixproxy.toml", "[proxy]\n", '[proxy]\nengine = "quickfix"\n')
    assert load(cfg / "fixproxy.toml").config.proxy.engine == "quickfix"


@pytest.mark.parametrize("old, new, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_the_key(cfg, old, new, message):
    """Each kind of mistake is refused with the path of the bad key."""
    edit(cfg / "fixproxy.toml", old, new)
    with pytest.raises(ConfigError) as info:
        load(cfg / "fixproxy.toml")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "line, message",
    [
        ("ABC,Tech,abc,1,false", "reference_price: 'abc' is not a number"),
        ("ABC,Tech,10,-1,false", "lot_size: must be a positive number"),
        ("ABC,Tech,10,1,maybe", "restricted: expected true or false"),
        ("AAPL,Tech,10,1,false", "symbol AAPL is listed twice"),
    ],
)
def test_bad_instrument_row_names_file_and_line(cfg, line, message):
    """A bad instrument row stops start-up with file:line and the column."""
    with (cfg / "instruments.csv").open("a") as f:
        f.write(line + "\n")
    with pytest.raises(ConfigError) as info:
        load(cfg / "fixproxy.toml")
    assert "instruments.csv:13: " in str(info.value) and message in str(info.value)


def test_missing_instrument_file_is_a_clear_error(cfg):
    """No instrument file: a one-line error, not a traceback."""
    (cfg / "instruments.csv").unlink()
    with pytest.raises(ConfigError, match="cannot read the instrument file"):
        load(cfg / "fixproxy.toml")


def test_check_config_command_exits_nonzero_naming_the_key(cfg):
    """`fixproxy check-config` on a bad file exits 2 and prints the key; on a good one exits 0."""
    ok = subprocess.run(
        [sys.executable, "-m", "fixproxy", "check-config", "-c", str(cfg / "fixproxy.toml")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "ok" in ok.stdout and "native engine" in ok.stdout
    edit(cfg / "fixproxy.toml", "max_order_qty = 10000", "max_order_qty = 0")
    bad = subprocess.run(
        [sys.executable, "-m", "fixproxy", "check-config", "-c", str(cfg / "fixproxy.toml")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "limits.firm: max_order_qty must be a positive number, got 0" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_file_reference_prices_are_as_old_as_the_instrument_file(cfg):
    """A week-old instrument file gives week-old reference prices (its modification time), which the
    stale-reference rule refuses, not prices stamped with the start time."""
    import os
    import time

    from fixproxy.core import events as ev
    from fixproxy.core.model import OrderRequest, OrdType, Side
    from fixproxy.core.proxy import ProxyCore

    week_ago = time.time_ns() - 7 * 86_400 * 10**9
    os.utime(cfg / "instruments.csv", ns=(week_ago, week_ago))
    loaded = load(cfg / "fixproxy.toml", secrets=False)
    assert loaded.instruments["AAPL"].reference_time_ns == week_ago
    c = loaded.config
    core = ProxyCore(
        sessions=c.session_policies(),
        venues=[v.name for v in c.venues],
        instruments=loaded.instruments,
        limits=c.limits,
        rules=["price_collar"],
        next_id=lambda: "X",
    )
    req = OrderRequest("C1", "AAPL", Side.BUY, 1, OrdType.LIMIT, loaded.instruments["AAPL"].reference_price)
    for venue in core.venues:
        core.handle(ev.SessionUp(venue, time.time_ns()))
    decision = core.handle(ev.NewOrder("oms1", 1, time.time_ns(), req))[0]
    assert decision.code == "STALE_REFERENCE_PRICE"


CLUSTER = '\n[cluster]\nurl = "postgresql://fixproxy@127.0.0.1:5432/fixproxy"\ninstance = "a"\n'


def test_cluster_section_loads_and_is_absent_by_default(cfg):
    """Without [cluster] the proxy runs alone; with one, its keys come with their defaults."""
    assert load(cfg / "fixproxy.toml").config.cluster is None
    (cfg / "fixproxy.toml").write_text((cfg / "fixproxy.toml").read_text() + CLUSTER)
    cluster = load(cfg / "fixproxy.toml").config.cluster
    assert cluster is not None and (cluster.instance, cluster.lease_ttl_ms, cluster.renew_ms) == ("a", 3000, 500)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("fixproxy@127", "fixproxy:secret@127", "cluster: url: holds a password"),
        ("postgresql://", "mysql://", "cluster: url: 'mysql://"),
        ('instance = "a"', 'instance = "a b"', "cluster: instance: 'a b' is not a name"),
        ('instance = "a"', 'instance = "a"\nrenew_ms = 2000', "cluster: renew_ms: 2000 must be at most half"),
        ('instance = "a"', 'instance = "a"\nstep_pct = 0', "cluster.step_pct"),
        ('instance = "a"', 'instance = "a"\npassword_env = "FIXPROXY_TEST_UNSET_PG"', "cluster.password_env"),
    ],
)
def test_bad_cluster_key_is_named(cfg, old, new, message, monkeypatch):
    """A [cluster] mistake stops start-up naming the key; a password must come from the environment."""
    monkeypatch.delenv("FIXPROXY_TEST_UNSET_PG", raising=False)
    (cfg / "fixproxy.toml").write_text((cfg / "fixproxy.toml").read_text() + CLUSTER.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load(cfg / "fixproxy.toml")
    assert message in str(info.value)


HA = '\n[ha]\nurl = "postgresql://fixproxy@127.0.0.1:5432/fixproxy"\npair = "gw"\ninstance = "a"\ncopy_listen = "127.0.0.1:7201"\n'


def test_ha_section_loads_and_is_absent_by_default(cfg):
    """Without [ha] the proxy runs alone; with one, its keys come with their defaults."""
    assert load(cfg / "fixproxy.toml").config.ha is None
    (cfg / "fixproxy.toml").write_text((cfg / "fixproxy.toml").read_text() + HA)
    ha = load(cfg / "fixproxy.toml").config.ha
    assert ha is not None
    assert (ha.pair, ha.instance, ha.copy, ha.lease_ttl_ms, ha.renew_ms) == ("gw", "a", "sync", 600, 150)
    assert ha.copy_address == ("127.0.0.1", 7201)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("fixproxy@127", "fixproxy:secret@127", "ha: url: holds a password"),
        ('pair = "gw"', 'pair = "g w"', "ha: pair: 'g w' is not a name"),
        ('copy_listen = "127.0.0.1:7201"', 'copy_listen = "7201"', "ha: copy_listen: '7201' is not host:port"),
        ('instance = "a"', 'instance = "a"\ncopy = "maybe"', "ha.copy"),
        ('instance = "a"', 'instance = "a"\nrenew_ms = 300', "ha: renew_ms: 300 must be at most a third"),
        ('instance = "a"', 'instance = "a"\npassword_env = "FIXPROXY_TEST_UNSET_PG"', "ha.password_env"),
    ],
)
def test_bad_ha_key_is_named(cfg, old, new, message, monkeypatch):
    """An [ha] mistake stops start-up naming the key."""
    monkeypatch.delenv("FIXPROXY_TEST_UNSET_PG", raising=False)
    (cfg / "fixproxy.toml").write_text((cfg / "fixproxy.toml").read_text() + HA.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load(cfg / "fixproxy.toml")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        (CLUSTER, "[ha] and [cluster] together are not supported"),
        ("", "proxy.oms_store: [ha] needs"),
    ],
)
def test_ha_refuses_what_a_standby_could_not_take_over(cfg, extra, message):
    """A pair needs stores the standby can copy, and is not a cluster instance (yet)."""
    text = (cfg / "fixproxy.toml").read_text()
    if not extra:
        text = text.replace("[proxy]\n", '[proxy]\noms_store = "memory"\n', 1)
    (cfg / "fixproxy.toml").write_text(text + HA + extra)
    with pytest.raises(ConfigError) as info:
        load(cfg / "fixproxy.toml")
    assert message in str(info.value)
