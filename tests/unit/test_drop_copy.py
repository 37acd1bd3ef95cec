"""Drop copies in the core: a copy of every OMS execution report and (where asked) of each refusal,
the FIX the codec makes of one, the config that declares them, and recovery of a copy a crash cut short."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import msgspec
import pytest

from fixproxy.assemble import build_core, exec_id_generator
from fixproxy.config import ConfigError, load
from fixproxy.core import events as ev, snapshot
from fixproxy.core.drop_copy import DropCopies, DropCopyTarget
from fixproxy.core.events import Decision, DropCopy, OmsBusinessReject, OmsReport, VenueNewOrder
from fixproxy.core.model import ExecType, OrdStatus
from fixproxy.engines.bridge import SessionInfo
from fixproxy.fix import codec
from fixproxy.journal.recovery import oms_key, recover, write_snapshot
from fixproxy.journal.writer import Journal

from .conftest import T0, D, Harness, kinds, order
from .test_journal import CONFIG, T, Wire, fix, report, start

E, S = ExecType, OrdStatus
COMP_IDS = {"oms1": "OMS1", "oms2": "OMS2"}


def with_copies(*targets: DropCopyTarget) -> Harness:
    """The unit harness (oms1 refuses with 35=j, oms2 with 35=8) with drop-copy sessions."""
    proxy = Harness()
    proxy.core.drop_copies = DropCopies(targets, COMP_IDS)
    return proxy


def copies(actions: list) -> list[DropCopy]:
    return [a for a in actions if isinstance(a, DropCopy)]


def _wire(action: ev.Action, fix42: bool = False) -> tuple[str, list[tuple[int, str]]]:
    return codec.action_to_message(action, fix42, "20231114-12:00:00.000")


# ---------------------------------------------------------------- the core


def test_ack_and_fill_are_copied_to_every_drop_copy_after_the_oms_report():
    """Each OmsReport of a venue's ack and fill is followed by one DropCopy per drop-copy session,
    carrying that same report and the OMS's SenderCompID."""
    proxy = with_copies(DropCopyTarget("dc1"), DropCopyTarget("dc2", copy_refusals=False))
    assert isinstance(proxy.new(order("C1", account="ACC"))[-1], VenueNewOrder)
    ack = proxy.ack("oms1.C1")
    fill = proxy.report("oms1.C1", E.TRADE, S.FILLED, exec_id="X2", last_qty=100, last_px=100, cum=100, avg_px=100)
    for actions in (ack, fill):
        sent = [a for a in actions if isinstance(a, OmsReport)]
        assert len(sent) == 1
        assert kinds(actions)[-3:] == [OmsReport, DropCopy, DropCopy]
        assert copies(actions) == [DropCopy("dc1", "OMS1", sent[0]), DropCopy("dc2", "OMS1", sent[0])]
    assert copies(fill)[0].copy.report.cl_ord_id == "C1"  # the OMS's own ClOrdID, as the OMS got it
    assert proxy.tracked("C1").status is S.FILLED


def test_refusal_answered_with_business_reject_is_copied_as_an_execution_report():
    """A refused order on a 35=j session: the OMS still gets its BusinessMessageReject; the drop copies
    that take refusals get an ExecutionReport 150=8 39=8 with the reject code and the order's fields."""
    proxy = with_copies(DropCopyTarget("dc1"), DropCopyTarget("dc2", copy_refusals=False))
    actions = proxy.new(order("BIG", qty=20_000, account="ACC"))
    assert kinds(actions) == [Decision, OmsBusinessReject, DropCopy]
    (dc,) = copies(actions)
    r = dc.copy.report
    assert (dc.session, dc.on_behalf_of, dc.copy.session, dc.copy.code) == ("dc1", "OMS1", "oms1", "MAX_ORDER_QTY")
    assert (r.exec_type, r.ord_status, r.cl_ord_id, r.symbol, r.order_qty, r.account) == (
        E.REJECTED,
        S.REJECTED,
        "BIG",
        "AAPL",
        D(20_000),
        "ACC",
    )
    assert r.exec_id == f"R{T0:x}.oms1.{proxy.seq}"


def test_refusal_answered_with_execution_report_copies_that_report_and_draws_the_same_ids():
    """On a 35=8 session the copy is the OMS's own refusal report (same ExecID), and the ids the core
    draws are the ones it draws with no drop copy configured."""
    plain, copying = Harness(), with_copies(DropCopyTarget("dc1"))
    for proxy in (plain, copying):
        proxy.new(order("BIG1", qty=20_000), session="oms2")
        proxy.new(order("BIG2", qty=20_000), session="oms2")
    got = copying.new(order("BIG3", qty=20_000), session="oms2")
    want = plain.new(order("BIG3", qty=20_000), session="oms2")
    assert [a for a in got if not isinstance(a, DropCopy)] == want
    (dc,) = copies(got)
    assert dc.copy is got[1] and dc.copy.report.exec_id == "E3" and dc.on_behalf_of == "OMS2"


def test_refusals_are_not_copied_where_copy_refusals_is_off():
    """copy_refusals = false: a refusal on either kind of session makes no copy; relayed reports still do."""
    proxy = with_copies(DropCopyTarget("dc2", copy_refusals=False))
    assert copies(proxy.new(order("BIG", qty=20_000))) == []
    assert copies(proxy.new(order("BIG", qty=20_000), session="oms2")) == []
    proxy.live("C1")
    assert len(copies(proxy.report("oms1.C1", E.CANCELED, S.CANCELED, exec_id="X3"))) == 1


def test_venue_reject_is_a_relayed_report_and_copied_everywhere():
    """A venue's own reject (150=8 from the venue, no proxy code) is a relayed report, not a refusal."""
    proxy = with_copies(DropCopyTarget("dc2", copy_refusals=False))
    proxy.new(order("C1"))
    actions = proxy.report("oms1.C1", E.REJECTED, S.REJECTED, exec_id="X4", text="venue says no")
    assert [(d.session, d.copy.report.text) for d in copies(actions)] == [("dc2", "venue says no")]


def test_invalid_and_not_sent_orders_are_copied_as_refusals():
    """An order the proxy could not read (INVALID_ORDER) and one the venue never got (VENUE_UNAVAILABLE)
    are refusals of new orders like the others."""
    proxy = with_copies(DropCopyTarget("dc1"))
    invalid = proxy.handle(ev.InvalidMessage("oms1", 9, T0, "D", "BAD1", "OrderQty (38) is not a number"))
    assert [(d.copy.report.cl_ord_id, d.copy.code) for d in copies(invalid)] == [("BAD1", "INVALID_ORDER")]
    proxy.new(order("C2"))
    failed = proxy.handle(ev.VenueSendFailed("sim", "oms1.C2", T0 + 1))
    assert [(d.copy.report.cl_ord_id, d.copy.code) for d in copies(failed)] == [("C2", "VENUE_UNAVAILABLE")]


def test_no_drop_copy_configured_makes_no_copy():
    """Without drop-copy sessions the core's answers carry no DropCopy."""
    proxy = Harness()
    proxy.live("C1")
    actions = proxy.report("oms1.C1", E.TRADE, S.FILLED, exec_id="X2", last_qty=100, last_px=100, cum=100)
    actions += proxy.new(order("BIG", qty=20_000))
    assert copies(actions) == []


# ---------------------------------------------------------------- the wire


def test_copy_on_the_wire_names_the_oms_in_on_behalf_of_comp_id():
    """35=8 whose first field is OnBehalfOfCompID (115, a header field) and, on FIX 4.4, CopyMsgIndicator
    797=Y; the rest as the OMS got it; PossResend (97) kept when the copy is sent again."""
    proxy = with_copies(DropCopyTarget("dc1"))
    proxy.new(order("C1"))
    (dc,) = copies(proxy.ack("oms1.C1"))
    msg_type, body = _wire(dc)
    assert msg_type == "8" and body[0] == (115, "OMS1") and body[-1] == (797, "Y")
    assert body[1:-1] == _wire(dc.copy)[1]
    _, body42 = _wire(dc, fix42=True)
    assert 797 not in dict(body42) and body42[1:] == _wire(dc.copy, fix42=True)[1]
    again = msgspec.structs.replace(dc, copy=msgspec.structs.replace(dc.copy, poss_resend=True))
    assert _wire(again)[1][:2] == [(115, "OMS1"), (97, "Y")]


def test_store_key_of_a_copy_tells_the_oms_sessions_apart():
    """A stored copy is keyed with its 115, so the same ExecID and ClOrdID of two OMS sessions are two messages."""
    one = oms_key({35: "8", 17: "X1", 11: "C1", 115: "OMS1"})
    two = oms_key({35: "8", 17: "X1", 11: "C1", 115: "OMS2"})
    assert one != two and oms_key({35: "8", 17: "X1", 11: "C1"}) == ("8", "X1", "C1")


# ---------------------------------------------------------------- the config


def _cfg(tmp_path: Path, text: str) -> Path:
    for f in CONFIG.parent.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    path = tmp_path / "fixproxy.toml"
    path.write_text(path.read_text() + text)
    return path


def test_config_declares_drop_copies_with_refusals_copied_by_default(tmp_path):
    """[[drop_copy]] entries load; copy_refusals defaults to true; the core gets one target each."""
    path = _cfg(
        tmp_path,
        '\n[[drop_copy]]\nname = "surv"\ncomp_id = "SURV"\n'
        '\n[[drop_copy]]\nname = "back"\ncomp_id = "BACK"\nfix_version = "FIX.4.2"\ncopy_refusals = false\n',
    )
    loaded = load(path)
    assert [(d.name, d.fix_version, d.copy_refusals) for d in loaded.config.drop_copy] == [
        ("surv", "FIX.4.4", True),
        ("back", "FIX.4.2", False),
    ]
    core = build_core(loaded, T)
    assert core.drop_copies is not None
    assert (core.drop_copies.every, core.drop_copies.refusals) == (("surv", "back"), ("surv",))
    assert build_core(load(CONFIG), T).drop_copies is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('name = "oms1"\ncomp_id = "SURV"', "drop_copy[0].name: 'oms1' is also an OMS"),
        ('name = "surv"\ncomp_id = "OMS2"', "drop_copy[0].comp_id: 'OMS2' is also an OMS"),
        ('name = "surv"\ncomp_id = "SURV"\nusername = "u"', "give password or password_env"),
        ('name = "surv"\ncomp_id = "SURV"\nfix_version = "FIX.5.0"', "drop_copy[0].fix_version"),
    ],
)
def test_bad_drop_copy_config_names_the_key(tmp_path, text, error):
    """A drop copy that takes an OMS's name or CompID, or a username without a password, stops start-up."""
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
        load(_cfg(tmp_path, f"\n[[drop_copy]]\n{text}\n"))


# ---------------------------------------------------------------- recovery


#: An OMS and a drop copy beside the venue, for test_journal's Wire (sessions that always send).
SESSIONS = [
    SessionInfo("oms1", "oms", "FIX.4.4"),
    SessionInfo("surv", "drop_copy", "FIX.4.4"),
    SessionInfo("sim", "venue", "FIX.4.4"),
]


def test_copy_missing_from_the_drop_copy_store_is_sent_again_after_a_crash(tmp_path):
    """The fill was journaled and relayed to the OMS, then the process died before the copy reached the
    drop-copy store: recovery sends the copy again (the OMS's report, in its store, is not)."""
    loaded = load(_cfg(tmp_path, '\n[[drop_copy]]\nname = "surv"\ncomp_id = "SURV"\n'))
    journal_dir = tmp_path / "journal"
    write_snapshot(journal_dir, 1, pickle.dumps(snapshot.export_state(build_core(loaded, T))))
    core = build_core(loaded, T)
    j = Journal(journal_dir, 1, start())
    wire = Wire(core, j, SESSIONS)
    wire.submit(ev.SessionUp("sim", T))
    wire.receive(wire.infos["oms1"], fix_order("F1"), T)
    wire.receive(wire.infos["sim"], report("F1", "X9", "2", "F", 100, 0, 100), T)
    assert [name for name, raw in wire.sent if "\x0117=X9\x01" in raw] == ["oms1", "surv"]
    j.close()
    stores = {name: {oms_key(_fields(raw)): raw} for name, raw in wire.sent if "\x0117=X9\x01" in raw}

    def rec(drop_copy_store: dict) -> list:
        got = recover(
            journal_dir,
            loaded.config,
            lambda: build_core(loaded, T),
            exec_id_generator,
            lambda v: {"oms1.F1": "35=D\x0111=oms1.F1\x01"},
            lambda s: stores["oms1"] if s == "oms1" else drop_copy_store,
        )
        return got.resend

    (lost,) = rec({})
    assert isinstance(lost, DropCopy) and (lost.session, lost.on_behalf_of, lost.copy.report.exec_id) == (
        "surv",
        "OMS1",
        "X9",
    )
    assert rec(stores["surv"]) == []


def fix_order(cl: str) -> str:
    return fix(
        f"8=FIX.4.4|35=D|34=1|49=OMS1|56=FIXPROXY|52=20231114-22:13:20|11={cl}|1=ACC|55=AAPL|54=1|38=100|40=2|44=190|"
    )


def _fields(raw: str) -> dict[int, str]:
    return {int(t): v for t, _, v in (p.partition("=") for p in raw.split("\x01") if p)}


# ---------------------------------------------------------------- replay


def test_replay_leaves_drop_copy_messages_out(tmp_path):
    """A drop copy's messages in a log (its refused order, the copies it got) are not replayed as an
    OMS's or a venue's: the decisions are those of the OMS log alone."""
    from fixproxy.replay import open_sources, replay

    fixtures = CONFIG.parent
    loaded = load(_cfg(tmp_path, '\n[[drop_copy]]\nname = "surv"\ncomp_id = "SURV"\n'))
    plain = replay(loaded, open_sources([str(fixtures / "oms1_raw_pipe.fix")]))
    extra = [
        "8=FIX.4.4|9=1|35=D|34=2|49=SURV|52=20261125-14:00:01.000|56=FIXPROXY|11=DC1|55=AAPL|54=1|38=100|40=2|44=190|10=000|",
        "8=FIX.4.4|9=1|35=8|34=2|49=FIXPROXY|52=20261125-14:00:02.005|56=SURV|115=OMS1|37=V1|17=V1-0|11=F1|"
        "150=0|39=0|55=AAPL|54=1|38=100|151=100|14=0|6=0|10=000|",
    ]
    mixed = tmp_path / "mixed.fix"
    mixed.write_text((fixtures / "oms1_raw_pipe.fix").read_text() + "\n".join(extra) + "\n")
    got = replay(loaded, open_sources([str(mixed)]))
    assert [(r.cl_ord_id, r.replayed, r.replayed_code) for r in got.rows] == [
        (r.cl_ord_id, r.replayed, r.replayed_code) for r in plain.rows
    ]
    assert got.final_positions == plain.final_positions
    assert got.skipped.get("drop-copy session message (a drop copy sends no orders)") == 1
