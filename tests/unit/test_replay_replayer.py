"""Replay through the core: original outcomes beside replayed decisions, other limits, determinism, the outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fixproxy.audit import AuditWriter
from fixproxy.cli import main
from fixproxy.config import ConfigError, load, load_limits
from fixproxy.core import events as ev
from fixproxy.replay import open_sources, replay
from fixproxy.replay.report import summarize, svg_chart, to_html
from fixproxy.replay.synth import write_day

FIXTURES = Path(__file__).resolve().parents[1] / "replay_fixtures"
CONFIG = FIXTURES / "fixproxy.toml"


@pytest.fixture(scope="module")
def loaded():
    return load(CONFIG)


def run(loaded, *paths):
    return replay(loaded, open_sources([str(p) for p in paths]))


def outcomes(result) -> list[tuple[str, str, str, str]]:
    return [
        (r.cl_ord_id, f"{r.original}:{r.original_code}", f"{r.replayed}:{r.replayed_code}", "DIFF" if r.differs else "")
        for r in result.rows
    ]


FIXTURE_OUTCOMES = [
    ("F1", "forwarded:", "forwarded:", ""),
    ("F2", "rejected:MAX_ORDER_QTY", "rejected:MAX_ORDER_QTY", ""),
    ("F3", "rejected:PRICE_COLLAR", "rejected:PRICE_COLLAR", ""),
    ("F4", "forwarded:", "forwarded:", ""),
    ("F4-C", "forwarded:", "forwarded:", ""),
    ("F5", "rejected:UNKNOWN_SYMBOL", "rejected:UNKNOWN_SYMBOL", ""),
    ("G1", "forwarded:", "forwarded:", ""),
    ("G2", "rejected:MAX_ORDER_QTY", "rejected:MAX_ORDER_QTY", ""),  # answered 35=8 on the FIX 4.2 session
    ("F6", "forwarded:", "forwarded:", ""),
]


def test_filelog_fixture_replays_every_decision_unchanged(loaded):
    """Both OMS sessions and the venue log: each order's original outcome is found and replayed the same."""
    result = run(loaded, FIXTURES / "filelog")
    assert outcomes(result) == FIXTURE_OUTCOMES
    assert len(result.malformed) == 3 and result.venues_assumed_up == []
    assert {(p["account"], p["symbol"], p["qty"]) for p in result.final_positions} == {
        ("", "AAPL", "0"),
        ("", "NVDA", "300"),
    }


def test_raw_oms_only_log_replays_with_relayed_reports_as_venue_reports(loaded):
    """Without a venue log the venue is taken as up and the reports relayed to the OMS drive order state and fills."""
    result = run(loaded, FIXTURES / "oms1_raw_pipe.fix")
    assert outcomes(result) == [o for o in FIXTURE_OUTCOMES if o[0].startswith("F")]
    assert result.venues_assumed_up == ["sim"]
    assert [(p["symbol"], p["bought"], p["sold"]) for p in result.final_positions] == [("AAPL", "100", "100")]


def test_tighter_limits_report_what_they_would_have_blocked(loaded):
    """A 150-share limit blocks F4 and G1, and so F4's cancel finds no order: three differences, by rule."""
    tight = load_limits(FIXTURES / "tight_limits.toml", loaded)
    result = run(tight, FIXTURES / "filelog")
    summary = summarize(result, "cfg", "tight")
    assert [(r.cl_ord_id, r.replayed_code) for r in result.rows if r.differs] == [
        ("F4", "MAX_ORDER_QTY"),
        ("F4-C", "UNKNOWN_ORDER"),
        ("G1", "MAX_ORDER_QTY"),
    ]
    assert summary["would_block"] == {"MAX_ORDER_QTY": 2, "UNKNOWN_ORDER": 1} and summary["differences"] == 3
    assert summary["rejects_by_rule"]["MAX_ORDER_QTY"] == {"original": 2, "replayed": 4}


def test_looser_limits_report_what_they_would_have_let_through(loaded, tmp_path):
    """With a far larger quantity limit, the two MAX_ORDER_QTY rejects would have gone to the venue."""
    loose = tmp_path / "loose.toml"
    loose.write_text("[limits.firm]\nmax_order_qty = 1000000\n")
    summary = summarize(run(load_limits(loose, loaded), FIXTURES / "filelog"), "cfg", "loose")
    assert summary["would_allow"] == {"MAX_ORDER_QTY": 2} and summary["differences"] == 2


def test_bad_limits_file_names_the_file_and_key(loaded, tmp_path):
    """A limits file is checked like the config: unknown keys, bad values and unknown sessions name the place."""
    cases = {
        "[limits.firm]\nmax_order_qty = -1\n": "limits.firm: max_order_qty must be a positive number",
        "[limits.firm]\nmax_qty = 1\n": "unknown field `max_qty`",
        "[limits.sessions.nobody]\nmax_order_qty = 1\n": "limits.sessions.nobody: no OMS session",
        "[risk]\nrules = []\n": "unknown field `risk`",
    }
    for text, message in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_limits(path, loaded)


def _raw(lines: list[str], tmp_path: Path) -> Path:
    path = tmp_path / "session.fix"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _msg(msg_type: str, seq: int, sender: str, target: str, ms: int, body: str = "") -> str:
    return f"8=FIX.4.4|9=1|35={msg_type}|34={seq}|49={sender}|52=20261125-14:00:00.{ms:03d}|56={target}|{body}10=000|"


def test_venue_down_until_its_logon_is_reproduced(loaded, tmp_path):
    """With the venue's own messages in the log it is up only after its logon: an earlier order is VENUE_UNAVAILABLE."""
    order = "11={cl}|55=AAPL|54=1|38=10|40=2|44=190|"
    path = _raw(
        [
            _msg("D", 2, "OMS1", "FIXPROXY", 1, order.format(cl="EARLY")),
            _msg("j", 2, "FIXPROXY", "OMS1", 2, "45=2|372=D|379=EARLY|380=4|58=VENUE_UNAVAILABLE: venue sim is down|"),
            _msg("A", 1, "FIXPROXY", "VENUE", 3),
            _msg("A", 1, "VENUE", "FIXPROXY", 4),
            _msg("D", 3, "OMS1", "FIXPROXY", 5, order.format(cl="LATE")),
            _msg("D", 2, "FIXPROXY", "VENUE", 6, "11=oms1.LATE|55=AAPL|54=1|38=10|40=2|44=190|"),
        ],
        tmp_path,
    )
    assert outcomes(run(loaded, path)) == [
        ("EARLY", "rejected:VENUE_UNAVAILABLE", "rejected:VENUE_UNAVAILABLE", ""),
        ("LATE", "forwarded:", "forwarded:", ""),
    ]


def test_resent_and_session_rejected_messages_are_not_replayed(loaded, tmp_path):
    """A message seen again with an old sequence number, and one refused by quickfix (35=3), never reach the core."""
    order = "11={cl}|55=AAPL|54=1|38=10|40=2|44=190|"
    path = _raw(
        [
            _msg("D", 2, "OMS1", "FIXPROXY", 1, order.format(cl="A1")),
            _msg("D", 2, "OMS1", "FIXPROXY", 2, "43=Y|" + order.format(cl="A1")),
            _msg("D", 3, "OMS1", "FIXPROXY", 3, "11=BAD|55=AAPL|"),
            _msg("3", 2, "FIXPROXY", "OMS1", 4, "45=3|58=Required tag missing|"),
            _msg("A", 9, "OMS9", "FIXPROXY", 5),
        ],
        tmp_path,
    )
    result = run(loaded, path)
    assert [r.cl_ord_id for r in result.rows] == ["A1"]
    assert result.skipped == {
        "message of an unconfigured session": 1,
        "refused by quickfix (35=3), never reached the risk checks": 1,
        "resent message (sequence number already seen)": 1,
    }


def test_audit_store_replays_with_recorded_decisions_as_originals(loaded, tmp_path):
    """From the audit store the original outcome is the recorded decision, and session changes come from its notices."""
    w = AuditWriter(tmp_path / "audit.sqlite")
    w.start()
    w.record(ev.Notice("session_up", 1, "sim"))
    body = (
        "8=FIX.4.4\x0135=D\x0134={seq}\x0149=OMS1\x0156=FIXPROXY\x0111={cl}\x0155=AAPL\x0154=1\x0138={qty}"
        "\x0140=2\x0144=190\x0110=000\x01"
    )
    w.message("in", "oms1", body.format(seq=2, cl="A1", qty=100), 2)
    w.record(ev.Decision("oms1", "D", "A1", True, 2, symbol="AAPL", venue="sim"))
    w.message("in", "oms1", body.format(seq=3, cl="A2", qty=5000), 3)
    w.record(ev.Decision("oms1", "D", "A2", False, 3, "MAX_ORDER_QTY", "MAX_ORDER_QTY: x", symbol="AAPL"))
    w.record(ev.Notice("session_down", 4, "sim"))
    w.message("in", "oms1", body.format(seq=4, cl="A3", qty=100), 5)
    w.record(ev.Decision("oms1", "D", "A3", False, 5, "VENUE_UNAVAILABLE", "VENUE_UNAVAILABLE: x", symbol="AAPL"))
    w.close()
    assert outcomes(run(loaded, tmp_path / "audit.sqlite")) == [
        ("A1", "forwarded:", "forwarded:", ""),
        ("A2", "rejected:MAX_ORDER_QTY", "rejected:MAX_ORDER_QTY", ""),
        ("A3", "rejected:VENUE_UNAVAILABLE", "rejected:VENUE_UNAVAILABLE", ""),
    ]


def test_generated_day_replays_without_a_difference(tmp_path):
    """A generated day (both OMS sessions, fills, cancels, every kind of reject it makes) replays identically."""
    cfg = load(Path(__file__).resolve().parents[2] / "cfg" / "fixproxy.toml")
    write_day(cfg, tmp_path, 400, seed=7)
    summary = summarize(run(cfg, tmp_path), "cfg", None)
    assert summary["orders"] >= 400 and summary["differences"] == 0
    assert summary["original"]["rejected"] > 10 and summary["original"]["unanswered"] == 0


def test_two_replays_write_identical_files(tmp_path, capsys):
    """The same input and arguments give byte-identical CSV, JSON and HTML, and the same terminal summary."""
    outputs = []
    for n in (1, 2):
        args = [
            "replay",
            str(FIXTURES / "filelog"),
            str(FIXTURES / "oms1_raw_pipe.fix"),
            "--config",
            str(CONFIG),
            "--limits",
            str(FIXTURES / "tight_limits.toml"),
            "--no-progress",
        ]
        for kind in ("csv", "json", "html"):
            args += [f"--{kind}", str(tmp_path / f"run{n}.{kind}")]
        assert main(args) == 0
        outputs.append(
            [(tmp_path / f"run{n}.{kind}").read_bytes() for kind in ("csv", "json", "html")]
            + [capsys.readouterr().out.encode()]
        )
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0][1])["summary"]["malformed"] == 6


def test_fail_on_difference_exits_1(capsys):
    """--fail-on-difference turns a difference into exit status 1 (for scripted checks)."""
    args = ["replay", str(FIXTURES / "filelog"), "--config", str(CONFIG), "--no-progress", "--fail-on-difference"]
    assert main(args) == 0
    assert main([*args, "--limits", str(FIXTURES / "tight_limits.toml")]) == 1
    assert "would have been blocked" in capsys.readouterr().out


def test_html_report_is_self_contained_with_a_chart(loaded):
    """The HTML page loads nothing from elsewhere and draws orders, rejects and exposure as inline SVG."""
    result = run(load_limits(FIXTURES / "tight_limits.toml", loaded), FIXTURES / "filelog")
    page = to_html(result, summarize(result, "cfg", "tight"))
    assert "<svg" in page and "<polyline" in page and "would have been blocked by" in page
    assert not re.search(r"(src|href)=|https?://|@import|url\(", page.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    assert "F4-C" in page and 'OMS1.messages.current.log</td><td class="n">3</td>' in page  # a malformed line


def test_chart_buckets_fit_the_day():
    """A few seconds chart per second; a whole day per 15 minutes, never more than 120 bars."""
    from decimal import Decimal

    short = {100 + i: [1, 0, 0, Decimal(0)] for i in range(10)}
    day = {i * 60: [1, 0, 1, Decimal(i)] for i in range(24 * 60)}
    assert svg_chart(short).count('class="o"') == 10 + 1  # ten bars and the legend swatch
    assert svg_chart(day).count('class="o"') == 96 + 1
