"""replay --limits: the file's limits laid over the recorded ones, and direct differences told from knock-on ones."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from fixproxy.cli import main
from fixproxy.config import load, load_limits
from fixproxy.replay import open_sources, replay
from fixproxy.replay.replayer import DIRECT, KNOCK_ON, OTHER
from fixproxy.replay.report import summarize, to_text

FIXTURES = Path(__file__).resolve().parents[1] / "replay_fixtures"
CONFIG = FIXTURES / "fixproxy.toml"


@pytest.fixture(scope="module")
def loaded():
    return load(CONFIG, secrets=False)


def test_limits_file_overlays_field_by_field_and_layer_by_layer(loaded, tmp_path):
    """A what-if on one firm field keeps the other firm fields; a session layer is merged, a new account layer added."""
    path = tmp_path / "whatif.toml"
    path.write_text(
        "[limits.firm]\nmax_order_qty = 150\n\n[limits.sessions.oms1]\nmax_open_orders = 7\n\n"
        "[limits.accounts.ACC9]\nmax_long_position = 10\n"
    )
    base = msgspec_replace_session(loaded, "oms1", max_order_notional=Decimal(5000))
    limits = load_limits(path, base).config.limits
    assert limits.firm.max_order_qty == Decimal(150)
    assert limits.firm.price_collar_pct == Decimal(5)  # from the config, not dropped
    assert limits.sessions["oms1"].max_open_orders == 7
    assert limits.sessions["oms1"].max_order_notional == Decimal(5000)
    assert limits.accounts["ACC9"].max_long_position == Decimal(10)


def msgspec_replace_session(loaded, session: str, **fields):
    """``loaded`` with a session layer of limits set (the fixture config has none)."""
    import msgspec

    from fixproxy.core.risk.limits import Limits

    limits = loaded.config.limits.with_layer("session", session, Limits(**fields))
    return msgspec.structs.replace(loaded, config=msgspec.structs.replace(loaded.config, limits=limits))


def test_tighter_limit_differences_are_direct_and_the_cancel_after_is_knock_on(loaded):
    """A 150-share limit refuses F4 and G1 itself (direct); F4's cancel then finds no order (knock-on)."""
    tight = load_limits(FIXTURES / "tight_limits.toml", loaded)
    result = replay(tight, open_sources([str(FIXTURES / "filelog")]), loaded.config.limits)
    assert [(r.cl_ord_id, r.replayed_code, r.cause) for r in result.rows if r.differs] == [
        ("F4", "MAX_ORDER_QTY", DIRECT),
        ("F4-C", "UNKNOWN_ORDER", KNOCK_ON),
        ("G1", "MAX_ORDER_QTY", DIRECT),
    ]
    assert all(r.cause == "" for r in result.rows if not r.differs)
    summary = summarize(result, "cfg", "tight")
    assert summary["differences_by_cause"] == {DIRECT: 2, KNOCK_ON: 1, OTHER: 0}
    text = to_text(result, summary)
    assert "differences: 3 (direct 2, knock-on 1, other 0)" in text
    assert "F4-C: forwarded -> rejected:UNKNOWN_ORDER [knock-on]" in text


def test_looser_limit_lets_through_directly(loaded, tmp_path):
    """Orders the recorded quantity limit refused pass under a larger one: direct, the changed limit accepted them."""
    loose = tmp_path / "loose.toml"
    loose.write_text("[limits.firm]\nmax_order_qty = 1000000\n")
    result = replay(load_limits(loose, loaded), open_sources([str(FIXTURES / "filelog")]), loaded.config.limits)
    assert [(r.cl_ord_id, r.original_code, r.cause) for r in result.rows if r.differs] == [
        ("F2", "MAX_ORDER_QTY", DIRECT),
        ("G2", "MAX_ORDER_QTY", DIRECT),
    ]


def _msg(msg_type: str, seq: int, sender: str, target: str, ms: int, body: str = "") -> str:
    return f"8=FIX.4.4|9=1|35={msg_type}|34={seq}|49={sender}|52=20261125-14:00:00.{ms:03d}|56={target}|{body}10=000|"


def test_difference_the_limits_did_not_cause_is_other(loaded, tmp_path):
    """A refusal the input cannot explain (a desk halt absent from a raw log) is neither direct nor knock-on."""
    order = "11={cl}|1=A|55=AAPL|54=1|38=10|40=2|44=190|"
    path = tmp_path / "day.fix"
    path.write_text(
        "\n".join(
            [
                _msg("D", 2, "OMS1", "FIXPROXY", 1, order.format(cl="H1")),
                _msg("j", 2, "FIXPROXY", "OMS1", 2, "45=2|372=D|379=H1|380=6|58=HALTED: trading is halted for firm|"),
            ]
        )
        + "\n"
    )
    same = tmp_path / "same.toml"
    same.write_text("[limits.firm]\nmax_order_qty = 2000\n")
    result = replay(load_limits(same, loaded), open_sources([str(path)]), loaded.config.limits)
    assert [(r.cl_ord_id, r.original_code, r.replayed, r.cause) for r in result.rows] == [
        ("H1", "HALTED", "forwarded", OTHER)
    ]


def test_replay_command_classifies_differences_in_its_json(tmp_path, capsys):
    """`fixproxy replay --limits` writes each row's cause and the counts by cause; without --limits there are none."""
    out = tmp_path / "r.json"
    args = ["replay", str(FIXTURES / "filelog"), "--config", str(CONFIG), "--no-progress", "--json", str(out)]
    assert main([*args, "--limits", str(FIXTURES / "tight_limits.toml")]) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["differences_by_cause"] == {DIRECT: 2, KNOCK_ON: 1, OTHER: 0}
    assert {r["cl_ord_id"]: r["cause"] for r in doc["rows"] if r["differs"]} == {
        "F4": DIRECT,
        "F4-C": KNOCK_ON,
        "G1": DIRECT,
    }
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["differences_by_cause"] == {} and {r["cause"] for r in doc["rows"]} == {""}
    capsys.readouterr()


def test_a_desk_monitor_mode_applies_to_the_recorded_limits_too(loaded, tmp_path):
    """The desk put the firm's max_order_qty in monitor mode: under the recorded limits too an order above it
    passes, so a difference the limits did not cause (a halt the raw log alone cannot show) stays "other"."""
    from fixproxy.audit import AuditWriter
    from fixproxy.core import events as ev
    from fixproxy.timefmt import parse_when

    t = parse_when("2026-11-25T14:00:00")
    store = tmp_path / "audit.sqlite"
    w = AuditWriter(store)
    w.start()
    w.record(ev.AdminSetMode("", "monitor", "watch it first", "alice", t, "firm", "max_order_qty"))
    w.record(ev.AdminResult("mode", True, "firm", "alice", "watch it first", t, "enforce", "monitor", "max_order_qty"))
    w.close()
    order = "11=BIG|1=A|55=AAPL|54=1|38=1500|40=2|44=190|"
    path = tmp_path / "day.fix"
    path.write_text(
        _msg("D", 2, "OMS1", "FIXPROXY", 500, order)
        + "\n"
        + _msg("j", 2, "FIXPROXY", "OMS1", 501, "45=2|372=D|379=BIG|380=6|58=HALTED: trading is halted for firm|")
        + "\n"
    )
    other = tmp_path / "other.toml"
    other.write_text("[limits.firm]\nmax_order_notional = 100000000\n")
    result = replay(
        load_limits(other, loaded), open_sources([str(path)], commands_from=str(store)), loaded.config.limits
    )
    assert [(r.cl_ord_id, r.original_code, r.replayed, r.cause) for r in result.rows] == [
        ("BIG", "HALTED", "forwarded", OTHER)
    ]
