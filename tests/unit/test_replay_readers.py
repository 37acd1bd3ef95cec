"""Log readers: FileLog and raw FIX lines (SOH or |), malformed lines counted with line numbers, folders expanded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fixproxy.replay.readers import ReplayError, TextLog, expand, open_sources, parse_line
from fixproxy.timefmt import fix_time_ns, iso

FIXTURES = Path(__file__).resolve().parents[1] / "replay_fixtures"
OMS1_FILELOG = FIXTURES / "filelog" / "FIX.4.4-FIXPROXY-OMS1.messages.current.log"
RAW = FIXTURES / "oms1_raw_pipe.fix"

D = "8=FIX.4.4{s}9=93{s}35=D{s}34=2{s}49=OMS1{s}52=20261125-14:00:02.000{s}56=FIXPROXY{s}11=F1{s}55=AAPL{s}10=131{s}"


@pytest.mark.parametrize(
    "line, fmt, stamp",
    [
        ("20261125-14:00:02.123456789 : " + D.format(s="\x01"), "filelog", "2026-11-25T14:00:02.123456789Z"),
        (D.format(s="\x01"), "raw", "2026-11-25T14:00:02.000000000Z"),
        (D.format(s="|"), "raw", "2026-11-25T14:00:02.000000000Z"),
        (D.format(s="|").rstrip("|"), "raw", "2026-11-25T14:00:02.000000000Z"),
    ],
)
def test_each_line_format_is_read_with_its_clock(line, fmt, stamp):
    """FileLog lines take the log's stamp; raw lines (SOH or |, trailing delimiter or not) take SendingTime."""
    ts, fields, found = parse_line(line)
    assert (found, iso(ts, 9), fields[35], fields[11], fields[55]) == (fmt, stamp, "D", "F1", "AAPL")


@pytest.mark.parametrize(
    "line, reason",
    [
        ("hello", "not a FIX message"),
        ("20261125-14:00:02.1 : garbage", "not a FIX message"),
        (D.format(s="|")[:70], "truncated"),
        (D.format(s="|").replace("35=D|", ""), "no MsgType (35)"),
        (D.format(s="|").replace("49=OMS1|", ""), "no SenderCompID (49)"),
        (D.format(s="|").replace("52=20261125-14:00:02.000|", ""), "no usable timestamp"),
        ("2026-11-25 14:00 : " + D.format(s="|"), "bad log timestamp"),
    ],
)
def test_malformed_line_says_why(line, reason):
    """Every way a line can be unusable raises ValueError naming the problem."""
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_line(line)


def test_filelog_fixture_malformed_lines_are_counted_with_numbers():
    """The FileLog fixture's three bad lines are reported by number and reason; every other line is read."""
    log = TextLog(OMS1_FILELOG, 0, "oms1.log")
    messages = list(log)
    assert [(m.line, m.reason.split(":")[0].split(" (")[0]) for m in log.malformed] == [
        (3, "not a FIX message"),
        (9, "truncated"),
        (13, "bad log timestamp '2026-11-25 14"),
    ]
    assert len(messages) == log.messages == 18 and log.lines == 21
    assert [m.line for m in messages][:3] == [1, 2, 4] and log.formats == {"filelog"}


def test_raw_pipe_fixture_malformed_lines_are_counted_with_numbers():
    """The raw | fixture's three bad lines are reported by number; the rest are read."""
    log = TextLog(RAW, 0, "raw.fix")
    assert len(list(log)) == 18
    assert [(m.line, m.reason) for m in log.malformed] == [
        (4, "no MsgType (35)"),
        (7, "no usable timestamp: SendingTime (52) is ''"),
        (11, "not a FIX message (a line starts with 8= or with a FileLog timestamp and ' : ')"),
    ]


def test_scan_finds_senders_and_session_level_rejects(tmp_path):
    """The quick first pass lists who sent messages and which inbound messages quickfix refused (35=3)."""
    path = tmp_path / "x.log"
    path.write_text(
        D.format(s="|")
        + "\n"
        + "8=FIX.4.4|35=3|34=3|49=FIXPROXY|52=20261125-14:00:02.001|56=OMS1|45=2|58=bad|10=000|\n"
    )
    scan = TextLog(path, 0, "x").scan()
    assert scan.senders == {"OMS1", "FIXPROXY"}
    assert scan.session_rejects == [("FIXPROXY", "OMS1", 2, fix_time_ns("20261125-14:00:02.001"))]


def test_folder_expands_to_its_message_logs_only(tmp_path):
    """A folder gives its *.messages.*.log files (not event logs), sorted, labelled under the name given."""
    (tmp_path / "oms").mkdir()
    for name in ("oms/B.messages.current.log", "oms/A.messages.current.log", "oms/A.event.current.log"):
        (tmp_path / name).write_text("")
    assert [label for _, label in expand([str(tmp_path)])] == [
        f"{tmp_path}/oms/A.messages.current.log",
        f"{tmp_path}/oms/B.messages.current.log",
    ]


def test_missing_input_and_mixed_audit_store_are_refused(tmp_path):
    """A path that does not exist, or an audit store given with other logs, stops the replay before it starts."""
    with pytest.raises(ReplayError, match="no such file"):
        open_sources([str(tmp_path / "nope.log")])
    db = tmp_path / "audit.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(ReplayError):
        open_sources([str(RAW), str(db)])


def test_fix_time_reads_any_fraction_length():
    """FIX timestamps with 0, 3, 6 or 9 fraction digits; nonsense is refused."""
    base = fix_time_ns("20261125-14:00:02")
    assert fix_time_ns("20261125-14:00:02.5") == base + 500_000_000
    assert fix_time_ns("20261125-14:00:02.000123") == base + 123_000
    assert fix_time_ns("20261125-14:00:02.000000007") == base + 7
    for bad in ("20261125 14:00:02", "20261125-14:00:02.", "20261125-14:00:02.1234567890"):
        with pytest.raises(ValueError):
            fix_time_ns(bad)
