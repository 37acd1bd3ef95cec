"""Monitor (shadow) mode: a monitored rule or layer limit lets the order through and records what it
would have refused; enforced rules and limits still refuse; the modes survive a snapshot, the journal
and the audit trail."""

from __future__ import annotations

import pickle

import msgspec
import pytest

from fixproxy.audit.records import KIND_WOULD_REFUSE, action_draft, command_draft, command_event
from fixproxy.config import Config
from fixproxy.core import events as ev, snapshot
from fixproxy.core.risk.limits import LIMIT_FIELDS, LimitResolver, Limits, LimitSet
from fixproxy.journal import format as fmt

from .conftest import Harness, firm, kinds, limits, only, order

MONITOR_QTY = ev.AdminSetMode("max_order_qty", "monitor", "watch first", "alice", 0)
#: The quantity and notional rules only (no price collar), so the test prices need no care.
SIZE_RULES = ["max_order_qty", "max_order_notional"]


def _set(h: Harness, rule: str = "", mode: str = "monitor", layer: str = "", field: str = "") -> ev.AdminResult:
    return only(h.handle(ev.AdminSetMode(rule, mode, "trial", "alice", h.now, layer, field)), ev.AdminResult)


def _would(actions: list) -> list[ev.WouldRefuse]:
    return [a for a in actions if isinstance(a, ev.WouldRefuse)]


def test_monitored_rule_lets_order_through_with_would_refuse():
    """A rule in monitor mode forwards an order it would refuse, with one WouldRefuse naming why."""
    h = Harness(rules=SIZE_RULES)
    result = _set(h, "max_order_qty")
    assert (result.ok, result.kind, result.before, result.after, result.detail) == (
        True,
        "mode",
        "enforce",
        "monitor",
        "rule max_order_qty",
    )
    actions = h.new(order("BIG", qty=20_000, price=10, account="A1"))
    decision = only(actions, ev.Decision)
    assert decision.accepted
    assert isinstance(actions[-1], ev.VenueNewOrder)
    [hit] = _would(actions)
    assert (hit.code, hit.observed, hit.limit, hit.scope, hit.rule) == (
        "MAX_ORDER_QTY",
        "20000",
        "10000",
        "firm",
        "max_order_qty",
    )
    assert (hit.session, hit.msg_type, hit.cl_ord_id, hit.account, hit.symbol, hit.venue) == (
        "oms1",
        "D",
        "BIG",
        "A1",
        "AAPL",
        "sim",
    )
    assert h.tracked("BIG").request.order_qty == 20_000


def test_order_within_monitored_rule_has_no_would_refuse():
    """Monitor mode records only what the rule would have refused."""
    h = Harness()
    _set(h, "max_order_qty")
    assert _would(h.new(order("OK", qty=100))) == []


def test_later_enforced_rule_still_refuses():
    """A monitored rule does not stop a later enforced rule from refusing the same order."""
    h = Harness()
    _set(h, "max_order_qty")
    # 20,000 at 100 is over the quantity limit (monitored) and the notional limit (enforced).
    decision = only(h.new(order("BIG", qty=20_000)), ev.Decision)
    assert (decision.accepted, decision.code) == (False, "MAX_ORDER_NOTIONAL")


def test_enforce_again_refuses():
    """Back in enforce mode the rule refuses as before."""
    h = Harness()
    _set(h, "max_order_qty")
    result = _set(h, "max_order_qty", "enforce")
    assert (result.before, result.after) == ("monitor", "enforce")
    assert only(h.new(order("BIG", qty=20_000)), ev.Decision).code == "MAX_ORDER_QTY"


def test_several_monitored_rules_each_record_a_hit():
    """Every monitored rule that would refuse records its own WouldRefuse."""
    h = Harness()
    _set(h, "max_order_qty")
    _set(h, "max_order_notional")
    hits = _would(h.new(order("BIG", qty=20_000)))
    assert [(w.code, w.rule) for w in hits] == [
        ("MAX_ORDER_QTY", "max_order_qty"),
        ("MAX_ORDER_NOTIONAL", "max_order_notional"),
    ]


def test_monitored_layer_limit_falls_back_to_less_specific_layer():
    """An account's monitored limit is watched; the firm's limit of the same name is enforced meanwhile."""
    limit_set = msgspec.convert(
        {"firm": {"max_order_qty": "1000"}, "accounts": {"A1": {"max_order_qty": "100", "monitor": ["max_order_qty"]}}},
        LimitSet,
    )
    h = Harness(limits=limit_set)
    actions = h.new(order("W", qty=500, account="A1"))
    assert only(actions, ev.Decision).accepted
    [hit] = _would(actions)
    assert (hit.code, hit.observed, hit.limit, hit.scope) == ("MAX_ORDER_QTY", "500", "100", "account:A1")
    refused = only(h.new(order("X", qty=1500, account="A1")), ev.Decision)
    assert (refused.code, refused.scope) == ("MAX_ORDER_QTY", "firm")
    # Another account is not watched: no shadow check, the firm limit only.
    assert _would(h.new(order("B", qty=500, account="B1"))) == []


def test_layer_mode_set_live():
    """AdminSetMode on one layer's limit: before/after in the result, the order forwarded with a hit."""
    h = Harness(limits=LimitSet(firm=limits(max_order_qty=10_000), accounts={"A1": limits(max_order_qty=100)}))
    assert only(h.new(order("R", qty=500, account="A1")), ev.Decision).code == "MAX_ORDER_QTY"
    result = _set(h, layer="account:A1", field="max_order_qty")
    assert (result.ok, result.scope, result.before, result.after, result.detail) == (
        True,
        "account:A1",
        "enforce",
        "monitor",
        "max_order_qty",
    )
    assert h.core.limits.limits.accounts["A1"].monitor == frozenset({"max_order_qty"})
    assert h.core.limits.limits.accounts["A1"].max_order_qty == 100  # the limit itself is kept
    actions = h.new(order("W", qty=500, account="A1"))
    assert only(actions, ev.Decision).accepted
    assert [(w.code, w.scope) for w in _would(actions)] == [("MAX_ORDER_QTY", "account:A1")]


def test_monitored_aggregate_limit_keeps_other_layers_enforced():
    """A monitored account gross exposure limit is watched while the firm's gross limit still refuses."""
    limit_set = msgspec.convert(
        {
            "firm": {"max_gross_exposure": "100000"},
            "accounts": {"A1": {"max_gross_exposure": "20000", "monitor": ["max_gross_exposure"]}},
        },
        LimitSet,
    )
    h = Harness(limits=limit_set, rules=["gross_exposure"])
    actions = h.new(order("G1", qty=500, price=100, account="A1"))  # 50,000 gross
    assert only(actions, ev.Decision).accepted
    [hit] = _would(actions)
    assert (hit.code, hit.scope, hit.limit) == ("GROSS_EXPOSURE", "account:A1", "20000")
    refused = only(h.new(order("G2", qty=600, price=100, account="A1")), ev.Decision)  # 110,000 gross
    assert (refused.code, refused.scope) == ("GROSS_EXPOSURE", "firm")


def test_replace_checked_in_monitor_mode():
    """A replace a monitored rule would refuse goes to the venue, with a WouldRefuse for G."""
    h = Harness(rules=SIZE_RULES)
    h.live("C1", qty=100)
    _set(h, "max_order_qty")
    actions = h.replace("C1", order("C2", qty=12_000, price=50))
    assert only(actions, ev.Decision).accepted
    assert isinstance(actions[-1], ev.VenueReplace)
    [hit] = _would(actions)
    assert (hit.msg_type, hit.cl_ord_id, hit.code) == ("G", "C2", "MAX_ORDER_QTY")


def test_halted_order_is_refused_whatever_the_mode():
    """Monitor mode is about rules: the kill switch still refuses, and no WouldRefuse is made."""
    h = Harness()
    _set(h, "max_order_qty")
    h.handle(ev.AdminKill("firm", "halt", "stop", "alice", h.now))
    actions = h.new(order("BIG", qty=20_000))
    assert only(actions, ev.Decision).code == "HALTED"
    assert _would(actions) == []


@pytest.mark.parametrize(
    ("rule", "mode", "layer", "field", "why"),
    [
        ("max_qty", "monitor", "", "", "not a rule this proxy runs"),
        ("max_order_qty", "shadow", "", "", "mode must be enforce or monitor"),
        ("", "monitor", "account:A1", "max_qty", "no limit named"),
        ("", "monitor", "desk:A1", "max_order_qty", "layer must be"),
        ("", "monitor", "account:A1", "monitor", "no limit named"),
    ],
)
def test_bad_mode_command_is_refused(rule: str, mode: str, layer: str, field: str, why: str):
    """A mode command naming no rule, limit or mode is refused with why, and changes nothing."""
    h = Harness()
    result = _set(h, rule, mode, layer, field)
    assert not result.ok and why in result.detail
    assert h.core.mode_changes == [] and h.core.monitored == frozenset()


def test_rule_not_in_pipeline_cannot_be_monitored():
    """Only a rule the proxy runs has a mode."""
    h = Harness(rules=["max_order_qty"])
    assert not _set(h, "price_collar").ok


def test_set_limit_cannot_touch_monitor_list():
    """The monitor list is a mode, changed by AdminSetMode, not a limit AdminSetLimit may set."""
    h = Harness()
    result = only(h.handle(ev.AdminSetLimit("firm", "monitor", ["max_order_qty"], "x", "bob", h.now)), ev.AdminResult)
    assert not result.ok
    assert "monitor" not in LIMIT_FIELDS


def test_snapshot_round_trip_keeps_modes():
    """A snapshot carries the live mode changes; a core made from the config takes them over."""
    h = Harness(
        limits=LimitSet(firm=limits(max_order_qty=10_000), accounts={"A1": limits(max_order_qty=100)}), rules=SIZE_RULES
    )
    _set(h, "max_order_qty")
    _set(h, "max_order_notional")
    _set(h, "max_order_notional", "enforce")
    _set(h, "price_collar", "enforce")
    _set(h, layer="account:A1", field="max_order_qty")
    h.handle(ev.AdminSetLimit("account:A1", "max_order_qty", "50", "tighten", "bob", h.now))
    state = pickle.loads(pickle.dumps(snapshot.export_state(h.core)))
    fresh = Harness(
        limits=LimitSet(firm=limits(max_order_qty=10_000), accounts={"A1": limits(max_order_qty=100)}), rules=SIZE_RULES
    )
    snapshot.import_state(fresh.core, state)
    assert fresh.core.monitored == frozenset({"max_order_qty"})
    layer = fresh.core.limits.limits.accounts["A1"]
    assert (layer.max_order_qty, layer.monitor) == (50, frozenset({"max_order_qty"}))
    assert fresh.core.mode_changes == h.core.mode_changes
    actions = fresh.new(order("BIG", qty=20_000, account="A1", price=1))
    assert only(actions, ev.Decision).accepted
    assert [(w.rule, w.scope) for w in _would(actions)] == [("max_order_qty", "account:A1")]
    other = fresh.new(order("BIG2", qty=20_000, account="B1", price=1))
    assert only(other, ev.Decision).accepted  # the whole rule is still in monitor mode
    assert [(w.rule, w.scope) for w in _would(other)] == [("max_order_qty", "firm")]


def test_snapshot_without_mode_changes_loads():
    """A snapshot written before monitor mode (no mode_changes key) still loads, every rule enforced."""
    h = Harness()
    state = snapshot.export_state(h.core)
    del state["mode_changes"]
    fresh = Harness()
    snapshot.import_state(fresh.core, state)
    assert fresh.core.monitored == frozenset() and fresh.core.mode_changes == []


def test_mode_command_audit_record_round_trip():
    """The command record of an AdminSetMode gives back the same event (replay re-applies it)."""
    from fixproxy.audit.records import Record

    for command in (MONITOR_QTY, ev.AdminSetMode("", "monitor", "w", "bob", 5, "account:A1", "max_gross_exposure")):
        draft = command_draft(command)
        record = Record(1, *draft, "0" * 64)
        assert record.code == "mode"
        assert command_event(record) == command
    assert command_draft(ev.AdminSetMode("", "monitor", "w", "bob", 5, "account:A1", "max_order_qty"))[6] == "A1"


def test_would_refuse_audit_record():
    """A WouldRefuse is stored as its own record kind, with the code and the order's columns."""
    draft = action_draft(
        ev.WouldRefuse("oms1", "D", "C9", 7, "MAX_ORDER_QTY", "t", "200", "100", "firm", "A1", "AAPL", "sim", "r")
    )
    assert draft[1] == KIND_WOULD_REFUSE
    assert (draft[2], draft[4], draft[5], draft[6], draft[7], draft[9]) == (
        "oms1",
        "D",
        "C9",
        "A1",
        "AAPL",
        "MAX_ORDER_QTY",
    )
    assert msgspec.json.decode(draft[10])["observed"] == "200"


def test_journal_replay_of_mode_command_reproduces_decisions():
    """The events as journaled (mode command included), fed to a fresh core, decide alike."""
    h = Harness(rules=SIZE_RULES)
    events: list[ev.Event] = [
        ev.AdminSetMode("max_order_qty", "monitor", "trial", "alice", h.now),
        ev.NewOrder("oms1", 1, h.now, order("BIG", qty=20_000, price=1)),
    ]
    first = [h.handle(e) for e in events]
    again = Harness(rules=SIZE_RULES)
    replayed = [again.handle(fmt.decode_event(fmt.encode(e))) for e in events]
    assert first == replayed
    assert kinds(replayed[1])[:2] == [ev.Decision, ev.WouldRefuse]


def test_config_modes_validated():
    """[risk] modes names a known rule and a known mode, or the config is refused naming the key."""
    base = {"oms": [{"name": "o", "comp_id": "O"}], "venues": [{"name": "v", "host": "h", "port": 1}]}
    ok = msgspec.convert({**base, "risk": {"modes": {"max_order_qty": "monitor"}}}, Config)
    assert ok.monitored_rules() == ["max_order_qty"]
    with pytest.raises(msgspec.ValidationError, match=r"risk\.modes\.max_qty"):
        msgspec.convert({**base, "risk": {"modes": {"max_qty": "monitor"}}}, Config)
    with pytest.raises(msgspec.ValidationError, match=r"risk\.modes\.max_order_qty.*enforce or monitor"):
        msgspec.convert({**base, "risk": {"modes": {"max_order_qty": "shadow"}}}, Config)
    with pytest.raises(msgspec.ValidationError, match="monitor: no limit named 'max_qty'"):
        msgspec.convert({**base, "limits": {"accounts": {"A1": {"monitor": ["max_qty"]}}}}, Config)


def test_resolver_shadow_only_where_a_layer_monitors():
    """The shadow limits exist only for keys whose layers monitor something."""
    limit_set = msgspec.convert(
        {"firm": {"max_order_qty": "1000"}, "accounts": {"A1": {"max_order_qty": "100", "monitor": ["max_order_qty"]}}},
        LimitSet,
    )
    resolver = LimitResolver(limit_set)
    assert resolver("s", "A1", "X").max_order_qty.scope == "firm"
    shadow = resolver.shadow("s", "A1", "X")
    assert shadow is not None and shadow.max_order_qty.scope == "account:A1"
    assert resolver.shadow("s", "B1", "X") is None
    assert LimitResolver(firm(max_order_qty=5)).shadow("s", "A1", "X") is None


def test_recovery_from_journal_keeps_mode_and_would_refuse(tmp_path):
    """A mode command journaled before a crash is applied again by recovery: the recovered core forwards
    what the rule would refuse, as the core that wrote the journal did."""
    from fixproxy.assemble import build_core, exec_id_generator
    from fixproxy.config import load
    from fixproxy.journal.reader import read_segment
    from fixproxy.journal.recovery import recover, write_snapshot

    from .test_journal import CONFIG, T, order as fix_order, run_day

    loaded = load(CONFIG)  # the firm's max_order_qty is 1000
    write_snapshot(tmp_path, 1, pickle.dumps(snapshot.export_state(build_core(loaded, T))))
    core, journal, wire = run_day(tmp_path, loaded, 1, T, None)
    wire.submit(ev.SessionUp("sim", T))
    wire.submit(ev.AdminSetMode("max_order_qty", "monitor", "trial", "alice", T))
    wire.receive(wire.infos["oms1"], fix_order("BIG", qty=2000), T)
    journal.close()
    assert core.orders.by_oms("oms1", "BIG") is not None
    written = [fmt.decode(kind, payload) for _, kind, payload in read_segment(tmp_path / "00000001.journal")]
    [hit] = [a for a in written if isinstance(a, ev.WouldRefuse)]
    assert (hit.cl_ord_id, hit.code, hit.limit) == ("BIG", "MAX_ORDER_QTY", "1000")

    def make():
        return build_core(loaded, T + 1)

    rec = recover(tmp_path, loaded.config, make, exec_id_generator, lambda v: {}, lambda s: {})
    restored = make()
    snapshot.import_state(restored, pickle.loads(rec.snapshot))
    assert restored.monitored == frozenset({"max_order_qty"})
    assert restored.mode_changes == [("max_order_qty", "", "", "monitor")]
    assert restored.orders.by_oms("oms1", "BIG") is not None  # forwarded before the crash, still open


def test_audit_show_reads_mode_command_and_would_refuse():
    """`audit show` says what a mode command did and what monitor mode let through, in words."""
    from fixproxy.audit.query import detail
    from fixproxy.audit.records import Record

    def record(draft: tuple) -> Record:
        return Record(1, *draft, "0" * 64)

    shown = detail(
        record(command_draft(ev.AdminSetMode("", "monitor", "new", "bob", 5, "account:A1", "max_order_qty")))
    )
    assert "account:A1 max_order_qty in monitor mode" in shown and shown.startswith("bob: ")
    hit = ev.WouldRefuse("oms1", "D", "C9", 7, "MAX_ORDER_QTY", "MAX_ORDER_QTY: too big", rule="max_order_qty")
    assert (
        detail(record(action_draft(hit)))
        == "would have refused (monitor mode, rule max_order_qty): MAX_ORDER_QTY: too big"
    )


def test_sector_floor_cannot_be_monitored():
    """sector_min_gross refuses nothing itself: it is not a limit a layer can monitor."""
    with pytest.raises(ValueError, match="no limit named 'sector_min_gross' to monitor"):
        Limits(monitor=frozenset({"sector_min_gross"}))
    h = Harness()
    assert not _set(h, layer="firm", field="sector_min_gross").ok
