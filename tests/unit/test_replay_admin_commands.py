"""The risk desk's commands in the audit store and in replay: recorded as the core event, read back in
chain order (ahead of an order still waiting for the core), applied again at their time."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from fixproxy.audit import AuditWriter
from fixproxy.audit.records import GENESIS, Record, action_draft, command_event
from fixproxy.config import load
from fixproxy.core import events as ev
from fixproxy.logs import Recorder
from fixproxy.replay import open_sources, replay
from fixproxy.replay.readers import AdminCommand, AuditLog, Message, RecordedDecision, ReplayError, SessionChange
from fixproxy.replay.replayer import Replayer
from fixproxy.replay.report import summarize, to_html, to_text

FIXTURES = Path(__file__).resolve().parents[1] / "replay_fixtures"
CONFIG = FIXTURES / "fixproxy.toml"
MS = 1_000_000
T = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z

ORDER = (
    "8=FIX.4.4|35=D|34={seq}|49=OMS1|56=FIXPROXY|11={cl}|1={account}|55=AAPL|54=1|38={qty}|40=2|44={px}|10=000|"
).replace("|", "\x01")


@pytest.fixture(scope="module")
def loaded():
    return load(CONFIG)


def halt(scope: str = "account:A", action: str = "halt", at: int = 0) -> ev.AdminKill:
    return ev.AdminKill(scope, action, "runaway algo", "desk-risk", T + at * MS)


class Day:
    """An audit store written the way the proxy writes it: messages, decisions, commands and their results."""

    def __init__(self, path: Path):
        self.path = path
        self.writer = AuditWriter(path)
        self.writer.start()
        self.seq = 1
        self.writer.record(ev.Notice("session_up", T, "sim"))

    def order(self, cl: str, at: int, *, account: str = "A", qty: int = 100, px: str = "190") -> None:
        self.seq += 1
        self.writer.message(
            "in", "oms1", ORDER.format(seq=self.seq, cl=cl, account=account, qty=qty, px=px), T + at * MS
        )

    def decided(self, cl: str, at: int, code: str = "", account: str = "A") -> None:
        self.writer.record(
            ev.Decision(
                "oms1",
                "D",
                cl,
                not code,
                T + at * MS,
                code,
                f"{code}: x" if code else "",
                account=account,
                symbol="AAPL",
                venue="" if code else "sim",
            )
        )

    def command(self, command: ev.AdminCommand, result: bool = True) -> None:
        """The command, then (as the core answers it) its admin result."""
        self.writer.record(command)
        if result:
            kind = {ev.AdminKill: "kill", ev.AdminSetLimit: "limit", ev.AdminSetReference: "reference"}[type(command)]
            self.writer.record(ev.AdminResult(kind, True, "", command.operator, command.reason, command.now_ns))

    def close(self) -> Path:
        self.writer.close()
        return self.path


def outcomes(result) -> list[tuple[str, str, str]]:
    return [(r.cl_ord_id, f"{r.original}:{r.original_code}", f"{r.replayed}:{r.replayed_code}") for r in result.rows]


# ---------------------------------------------------------------- recording


@pytest.mark.parametrize(
    "command",
    [
        halt(action="halt_and_cancel"),
        ev.AdminKill("firm", "resume", "all clear", "desk-admin", T, request_id="REQ-7"),
        ev.AdminSetLimit("account:A", "max_order_qty", 50, "tighten", "desk-risk", T),
        ev.AdminSetLimit("firm", "max_order_qty", None, "clear", "desk-risk", T),
        ev.AdminSetLimit("symbol:AAPL", "restricted_symbols", ["AAPL", "MSFT"], "list", "desk-risk", T),
        ev.AdminSetReference("AAPL", "191.25", "stale close", "desk-risk", T),
    ],
)
def test_command_record_reads_back_as_the_same_core_event(command):
    """A command's record (kind, code, data) gives back an equal core event at the record's time."""
    record = Record(1, *action_draft(command), GENESIS)
    assert record.kind == "command" and record.ts_ns == T
    assert (
        record.code
        == {ev.AdminKill: "kill", ev.AdminSetLimit: "limit", ev.AdminSetReference: "reference"}[type(command)]
    )
    assert command_event(record) == command


def test_record_that_is_no_command_is_refused_with_its_number():
    """A command record whose data is not a desk command raises ValueError naming the record."""
    record = Record(7, T, "command", "", "", "", "", "", "", "", "kill", '{"type": "NewOrder"}', GENESIS)
    with pytest.raises(ValueError, match="record 7: not a risk-desk command"):
        command_event(record)


def test_recorder_keeps_commands_out_of_the_live_feed():
    """The recorder shows an admin result on the live feed; the command itself only reaches the journal."""
    fed = []

    class Feed:
        def add(self, action):
            fed.append(action)

    recorder = Recorder(Feed())
    recorder(ev.AdminResult("kill", True, "account:A", "desk-risk", "runaway algo", T, "ACTIVE", "HALTED"))
    assert [type(a) for a in fed] == [ev.AdminResult]


def test_edge_journals_the_command_before_what_the_core_did(loaded, tmp_path):
    """QuickfixBridge.submit journals the command (E) first, then the AdminResult the core returns (A)."""
    from fixproxy.assemble import build_core
    from fixproxy.engines.quickfix.bridge import QuickfixBridge
    from fixproxy.journal import format as fmt
    from fixproxy.journal.reader import read_segment
    from fixproxy.journal.writer import Journal

    journal = Journal(tmp_path, 1, fmt.Start(1, T, 0))
    recorded = []
    app = QuickfixBridge(build_core(loaded, T), [], recorded.append, journal=journal)
    try:
        command = ev.AdminSetLimit("firm", "max_order_qty", 50, "tighten", "desk-risk", T)
        app.submit(command)
        app.submit(ev.SessionUp("sim", T))
    finally:
        app.close()
        journal.close()
    records = [fmt.decode(kind, payload) for _, kind, payload in read_segment(journal.path)]
    assert records[1] == command
    assert [type(r).__name__ for r in records] == ["Start", "AdminSetLimit", "AdminResult", "SessionUp", "Notice"]
    assert [type(a).__name__ for a in recorded] == ["AdminResult", "Notice"]


# ---------------------------------------------------------------- reading


def test_audit_reader_yields_commands_among_the_messages_in_chain_order(tmp_path):
    """Commands come out as AdminCommand items (the core event, its record's seq) between the records around them."""
    day = Day(tmp_path / "audit.sqlite")
    day.order("A1", 1)
    day.decided("A1", 1)
    day.command(halt(at=2))
    day.order("A2", 3)
    day.decided("A2", 3, "HALTED")
    items = list(AuditLog(day.close(), 0, "audit"))
    assert [type(i).__name__ for i in items] == [
        "SessionChange",
        "Message",
        "RecordedDecision",
        "AdminCommand",
        "Message",
        "RecordedDecision",
    ]
    command = items[3]
    assert isinstance(command, AdminCommand) and command.event == halt(at=2) and command.ts_ns == T + 2 * MS


def test_command_recorded_while_an_order_waits_for_the_core_is_yielded_before_that_order(tmp_path):
    """An order message recorded before a command but decided after it was decided under the command: the
    reader puts the command first, and leaves every other record in its place."""
    day = Day(tmp_path / "audit.sqlite")
    day.order("A1", 1)
    day.writer.message("in", "sim", "8=FIX.4.4\x0135=0\x0149=VENUE\x0156=FIXPROXY\x0110=000\x01", T + 1 * MS)
    day.command(halt(at=1))
    day.decided("A1", 2, "HALTED")
    day.order("A2", 3)
    day.decided("A2", 3, "HALTED")
    items = list(AuditLog(day.close(), 0, "audit"))
    names = [(type(i).__name__, getattr(i, "fields", {}).get(11, "")) for i in items]
    assert names == [
        ("SessionChange", ""),
        ("AdminCommand", ""),
        ("Message", "A1"),
        ("Message", ""),
        ("RecordedDecision", ""),
        ("Message", "A2"),
        ("RecordedDecision", ""),
    ]


def test_order_never_decided_holds_nothing_back_past_the_next_order(tmp_path):
    """An order message with no decision (a resent duplicate) is let go at the next order message, in order."""
    day = Day(tmp_path / "audit.sqlite")
    day.order("A1", 1)
    day.order("A2", 2)
    day.decided("A2", 2)
    day.command(halt(at=3))
    items = list(AuditLog(day.close(), 0, "audit"))
    assert [type(i) for i in items] == [SessionChange, Message, Message, RecordedDecision, AdminCommand]


def test_admin_result_without_its_command_is_counted_as_not_applied(tmp_path, loaded):
    """A store written before commands were recorded has admin results alone: counted, and named in the replay."""
    day = Day(tmp_path / "audit.sqlite")
    day.writer.record(ev.AdminResult("kill", True, "account:A", "desk-risk", "old", T + MS, "ACTIVE", "HALTED"))
    day.writer.record(ev.AdminResult("cancel_on_disconnect", True, "session:oms1", "fixproxy", "down", T + MS))
    day.command(halt(at=2))
    path = day.close()
    reader = AuditLog(path, 0, "audit")
    list(reader)
    assert reader.uncommanded == 1
    result = replay(loaded, open_sources([str(path)]))
    assert result.skipped == {"risk-desk action recorded without its command (an older store): not applied": 1}


def test_audit_for_commands_goes_only_with_text_logs(tmp_path):
    """--audit takes an audit store, beside FileLogs or raw FIX files; not beside an audit store, not a text file."""
    store = Day(tmp_path / "audit.sqlite").close()
    with pytest.raises(ReplayError, match="already holds its commands"):
        open_sources([str(store)], commands_from=str(store))
    with pytest.raises(ReplayError, match="not an audit store"):
        open_sources([str(FIXTURES / "oms1_raw_pipe.fix")], commands_from=str(FIXTURES / "oms1_raw_pipe.fix"))
    sources = open_sources([str(FIXTURES / "oms1_raw_pipe.fix")], commands_from=str(store))
    assert [s.format for s in sources] == ["text", "audit-commands"]


# ---------------------------------------------------------------- replaying


def test_halt_then_resume_from_the_store_reproduces_halted_rejects(tmp_path, loaded):
    """A halt of account:A refuses A's orders (HALTED, with the desk's operator and reason) until the resume;
    B trades throughout; nothing differs."""
    day = Day(tmp_path / "audit.sqlite")
    day.order("A1", 1)
    day.decided("A1", 1)
    day.command(halt(at=2))
    day.order("A2", 3)
    day.decided("A2", 3, "HALTED")
    day.order("B1", 4, account="B")
    day.decided("B1", 4, account="B")
    day.command(halt(action="resume", at=5))
    day.order("A3", 6)
    day.decided("A3", 6)
    result = replay(loaded, open_sources([str(day.close())]))
    assert outcomes(result) == [
        ("A1", "forwarded:", "forwarded:"),
        ("A2", "rejected:HALTED", "rejected:HALTED"),
        ("B1", "forwarded:", "forwarded:"),
        ("A3", "forwarded:", "forwarded:"),
    ]
    assert result.rows[1].replayed_text == "HALTED: trading is halted for account:A by desk-risk: runaway algo"
    assert [(a["what"], a["before"], a["after"]) for a in result.admin_actions] == [
        ("halt", "ACTIVE", "HALTED"),
        ("resume", "HALTED", "ACTIVE"),
    ]


def test_limit_and_reference_commands_from_the_store_change_later_decisions(tmp_path, loaded):
    """A tightened limit and a new reference price apply from their time on, as they did live."""
    day = Day(tmp_path / "audit.sqlite")
    day.order("A1", 1, qty=100)
    day.decided("A1", 1)
    day.command(ev.AdminSetLimit("firm", "max_order_qty", 50, "tighten", "desk-risk", T + 2 * MS))
    day.order("A2", 3, qty=100)
    day.decided("A2", 3, "MAX_ORDER_QTY")
    day.command(ev.AdminSetReference("AAPL", "200", "stale close", "desk-risk", T + 4 * MS))
    day.order("A3", 5, qty=10, px="185")
    day.decided("A3", 5, "PRICE_COLLAR")
    result = replay(loaded, open_sources([str(day.close())]))
    assert outcomes(result) == [
        ("A1", "forwarded:", "forwarded:"),
        ("A2", "rejected:MAX_ORDER_QTY", "rejected:MAX_ORDER_QTY"),
        ("A3", "rejected:PRICE_COLLAR", "rejected:PRICE_COLLAR"),
    ]
    assert [(a["command"], a["before"], a["after"]) for a in result.admin_actions] == [
        ("limit", "1000", "50"),
        ("reference", "190", "200"),
    ]


def test_command_the_core_refuses_is_refused_again_and_listed(tmp_path, loaded):
    """A limit change the live core refused (no such limit) is refused in replay too, and listed with why."""
    day = Day(tmp_path / "audit.sqlite")
    day.command(ev.AdminSetLimit("firm", "max_qty", 5, "typo", "desk-risk", T + MS))
    day.order("A1", 2, qty=100)
    day.decided("A1", 2)
    result = replay(loaded, open_sources([str(day.close())]))
    assert outcomes(result) == [("A1", "forwarded:", "forwarded:")]
    (action,) = result.admin_actions
    assert (action["ok"], action["detail"]) == (False, "max_qty: no limit named 'max_qty'")
    text = to_text(result, summarize(result, "cfg", None))
    assert "limit firm max_qty = 5 (typo): refused, max_qty: no limit named 'max_qty'" in text


def test_halt_and_cancel_in_replay_is_settled_by_the_venues_answer_to_the_live_cancel(tmp_path, loaded):
    """The replay's own cancel (its ids differ from the live ones) is matched by the cancelled order's ClOrdID:
    the order ends cancelled and no cancel stays pending."""
    day = Day(tmp_path / "audit.sqlite")
    day.order("A1", 1)
    day.decided("A1", 1)
    ack = (
        "8=FIX.4.4|35=8|49=VENUE|56=FIXPROXY|11=oms1.A1|37=V1|17=E1|150=0|39=0|55=AAPL|54=1|38=100|151=100|14=0|"
        "6=0|10=000|"
    )
    day.writer.message("in", "sim", ack.replace("|", "\x01"), T + 2 * MS)
    day.command(halt(action="halt_and_cancel", at=3))
    cancelled = (
        "8=FIX.4.4|35=8|49=VENUE|56=FIXPROXY|11=oms1!KFP18bcfe5-1|41=oms1.A1|37=V1|17=E2|150=4|39=4|"
        "55=AAPL|54=1|38=100|151=0|14=0|6=0|10=000|"
    )
    day.writer.message("in", "sim", cancelled.replace("|", "\x01"), T + 4 * MS)
    replayer = Replayer(loaded)
    result = replayer.run(open_sources([str(day.close())]))
    assert result.admin_actions[0]["detail"] == "halt_and_cancel: 1 working order(s) cancelled"
    assert replayer.core.kill_cancels_pending() == 0
    assert replayer.core.orders.by_oms("oms1", "A1").status.name == "CANCELED"


def test_commands_beside_a_text_log_apply_at_their_time(tmp_path, loaded):
    """A raw FIX log has no desk actions; with --audit's commands, the order after the halt is HALTED again."""
    log = tmp_path / "oms1.fix"
    stamp = "20231114-22:13:20.{ms:03d}"
    lines = []
    for n, (cl, ms) in enumerate((("A1", 1), ("A2", 5)), 2):
        lines.append(
            f"8=FIX.4.4|35=D|34={n}|49=OMS1|52={stamp.format(ms=ms)}|56=FIXPROXY|11={cl}|1=A|55=AAPL|"
            "54=1|38=10|40=2|44=190|10=000|"
        )
    lines.append(
        f"8=FIX.4.4|35=j|34=3|49=FIXPROXY|52={stamp.format(ms=6)}|56=OMS1|45=3|372=D|379=A2|380=0|"
        "58=HALTED: trading is halted|10=000|"
    )
    log.write_text("\n".join(lines) + "\n")
    day = Day(tmp_path / "audit.sqlite")
    day.command(halt(at=3))
    store = day.close()
    alone = replay(loaded, open_sources([str(log)]))
    assert outcomes(alone)[1] == ("A2", "rejected:HALTED", "forwarded:")
    summary = summarize(alone, "cfg", None)
    assert "risk-desk actions: none in these inputs" in to_text(alone, summary)
    assert "Risk-desk actions: none in these inputs" in to_html(alone, summary)
    with_commands = replay(loaded, open_sources([str(log)], commands_from=str(store)))
    assert outcomes(with_commands)[1] == ("A2", "rejected:HALTED", "rejected:HALTED")
    assert len(with_commands.admin_actions) == 1 and with_commands.inputs[1]["format"] == "audit-commands"


def test_risk_desk_session_messages_are_skipped_with_a_reason(tmp_path):
    """The desk's own FIX messages are not order flow: counted as not replayed, their commands come from the store."""
    cfg = tmp_path / "fixproxy.toml"
    cfg.write_text(
        CONFIG.read_text() + '\n[risk_desk]\ncomp_id = "DESK"\nname = "desk"\nallow_unauthenticated = true\n'
    )
    (tmp_path / "instruments.csv").write_text((FIXTURES / "instruments.csv").read_text())
    desk_loaded = load(cfg)
    log = tmp_path / "desk.fix"
    log.write_text(
        "8=FIX.4.4|35=U1|34=2|49=DESK|52=20231114-22:13:20.001|56=FIXPROXY|2328=R1|2329=1|20101=firm|58=x|10=000|\n"
    )
    result = replay(desk_loaded, open_sources([str(log)]))
    assert result.skipped == {"risk-desk session message (its commands come from the audit store)": 1}


def test_summary_lists_the_desk_actions_as_plain_data(tmp_path, loaded):
    """The JSON summary carries each action applied again (time, operator, command, scope, what, before/after)."""
    day = Day(tmp_path / "audit.sqlite")
    day.command(halt(at=1))
    result = replay(loaded, open_sources([str(day.close())]))
    summary = summarize(result, "cfg", None)
    assert json.loads(json.dumps(summary))["risk_desk_actions"] == [
        {
            "time": "2023-11-14T22:13:20.001000Z",
            "source": f"{tmp_path / 'audit.sqlite'}:3",
            "operator": "desk-risk",
            "command": "kill",
            "what": "halt",
            "scope": "account:A",
            "reason": "runaway algo",
            "ok": True,
            "before": "ACTIVE",
            "after": "HALTED",
            "detail": "halt: 0 working order(s) cancelled",
        }
    ]
    assert "Risk-desk actions applied again (1)" in to_html(result, summary)
    assert msgspec.json.decode(msgspec.json.encode(result.admin_actions)) == summary["risk_desk_actions"]
