"""Anomaly detectors on order flow (core/anomaly.py): each fires past its threshold, stays quiet
below it and below its minimum counts, fires once per episode, acts through the kill switch when
configured, and survives a snapshot and a replay."""

from __future__ import annotations

import pickle

import msgspec
import pytest

from fixproxy.admin.control import Feed
from fixproxy.audit import records
from fixproxy.config import Config
from fixproxy.core import events as ev, snapshot
from fixproxy.core.anomaly import (
    Anomaly,
    AnomalySettings,
    CancelRatio,
    FatFinger,
    OrderRate,
    PriceWalk,
    RejectRatio,
    RepeatedRejects,
)
from fixproxy.core.killswitch import TradingState
from fixproxy.core.model import OrderRequest

from .conftest import NS, Harness, order

MS = NS // 1000


class Watched(Harness):
    """The unit tests' core with the anomaly detectors of ``settings`` around its order handlers."""

    def __init__(self, settings: AnomalySettings, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.core.anomaly = Anomaly(settings)
        self.core.anomaly.attach(self.core, self.core._dispatch)
        self.n = 0

    def send(self, req: OrderRequest | None = None, **order_kw: object) -> list[ev.Action]:
        """A new order with a fresh ClOrdID unless ``req`` gives one."""
        self.n += 1
        return self.new(req if req is not None else order(f"N{self.n}", **order_kw))  # type: ignore[arg-type]


def alerts(actions: list[ev.Action]) -> list[ev.AnomalyAlert]:
    return [a for a in actions if type(a) is ev.AnomalyAlert]


def decision(actions: list[ev.Action]) -> ev.Decision:
    return next(a for a in actions if type(a) is ev.Decision)


def fat(action: str = "alert", history: int = 5, factor: float = 10) -> AnomalySettings:
    return AnomalySettings(fat_finger=FatFinger(enabled=True, action=action, history=history, factor=factor))


def with_history(h: Watched, n: int = 5, qty: int = 100, account: str = "A1") -> None:
    for _ in range(n):
        assert decision(h.send(qty=qty, account=account)).accepted


# ---------------------------------------------------------------- fat finger


def test_fat_finger_above_factor_times_median_alerts_before_the_decision():
    """An order over factor x the median of the account's last accepted sizes in the symbol alerts once."""
    h = Watched(fat())
    with_history(h)
    actions = h.send(qty=1001, account="A1")
    (alert,) = alerts(actions)
    assert (alert.detector, alert.scope, alert.observed, alert.threshold, alert.action) == (
        "fat_finger",
        "account:A1",
        "1001",
        "1000",
        "alert",
    )
    assert (alert.account, alert.symbol, alert.session) == ("A1", "AAPL", "oms1")
    assert actions.index(alert) < actions.index(decision(actions))
    assert decision(actions).accepted  # alert only: the rules decide as usual


def test_fat_finger_at_the_bound_or_before_full_history_stays_quiet():
    """Exactly factor x median does not alert, nor does any size before ``history`` accepted orders."""
    h = Watched(fat())
    with_history(h, 4)
    assert alerts(h.send(qty=5000, account="A1")) == []  # 4 of 5 orders of history
    h2 = Watched(fat())
    with_history(h2)
    assert alerts(h2.send(qty=1000, account="A1")) == []
    assert alerts(h2.send(qty=5000, account="A2")) == []  # another account has no history
    assert alerts(h2.send(qty=5000, symbol="TSLA", account="A1")) == []  # nor another symbol


def test_fat_finger_median_ignores_one_outlier_in_the_history():
    """The median, not the mean: one large order in the history does not raise the usual size."""
    h = Watched(fat(factor=3))
    with_history(h, 4)
    assert decision(h.send(qty=5000, account="A1")).accepted  # history not full yet: no alert
    (alert,) = alerts(h.send(qty=301, account="A1"))
    assert alert.threshold == "300"


def test_fat_finger_fires_once_per_episode_and_rearms_after_a_usual_size():
    """Two outsize orders in a row alert once; a usual order re-arms the detector."""
    h = Watched(fat(history=5))
    with_history(h)
    assert len(alerts(h.send(qty=2000, account="A1"))) == 1
    assert alerts(h.send(qty=2000, account="A1")) == []
    assert alerts(h.send(qty=100, account="A1")) == []
    assert len(alerts(h.send(qty=2000, account="A1"))) == 1


def test_fat_finger_with_halt_refuses_the_order_and_halts_the_account_as_the_anomaly_detector():
    """action halt: the account is HALTED by operator anomaly:fat_finger, the order itself refused HALTED."""
    h = Watched(fat("halt"))
    with_history(h)
    actions = h.send(qty=5000, account="A1")
    (result,) = [a for a in actions if type(a) is ev.AdminResult]
    assert (result.kind, result.scope, result.operator, result.before, result.after) == (
        "kill",
        "account:A1",
        "anomaly:fat_finger",
        "ACTIVE",
        "HALTED",
    )
    assert decision(actions).code == "HALTED"
    state = h.core.kill.get("account:A1")
    assert (state.state, state.operator) == (TradingState.HALTED, "anomaly:fat_finger")
    assert decision(h.send(qty=100, account="A1")).code == "HALTED"
    assert decision(h.send(qty=100, account="A2")).accepted  # another account trades on
    h.handle(ev.AdminKill("account:A1", "resume", "checked with the trader", "desk1", h.now))
    assert decision(h.send(qty=100, account="A1")).accepted


def test_fat_finger_with_reducing_lets_only_position_reducing_orders_through():
    """action reducing: the scope goes REDUCING; a buy that does not shrink a position is refused."""
    h = Watched(fat("reducing"))
    with_history(h)
    actions = h.send(qty=5000, account="A1")
    assert decision(actions).code == "REDUCING_ONLY"
    assert h.core.kill.get("account:A1").state is TradingState.REDUCING


def test_detector_does_not_loosen_a_stricter_desk_state():
    """A scope the desk halted is not moved to REDUCING by a detector, and no AdminResult is made."""
    h = Watched(fat("reducing"))
    with_history(h)
    h.handle(ev.AdminKill("account:A1", "halt", "desk", "desk1", h.now))
    actions = h.send(qty=5000, account="A1")
    assert len(alerts(actions)) == 1
    assert [a for a in actions if type(a) is ev.AdminResult] == []
    assert h.core.kill.get("account:A1").operator == "desk1"


def test_fat_finger_without_account_judges_the_session():
    """An order without an account is judged against its session's history."""
    h = Watched(fat())
    with_history(h, account="")
    (alert,) = alerts(h.send(qty=5000))
    assert alert.scope == "session:oms1"


# ---------------------------------------------------------------- order rate


def rate(action: str = "alert", min_rate: float = 10) -> AnomalySettings:
    return AnomalySettings(
        order_rate=OrderRate(enabled=True, action=action, window_s=1, baseline_s=10, factor=5, min_rate=min_rate)
    )


def steady(h: Watched, seconds: int, per_s: int = 1, account: str = "A1") -> list[ev.Action]:
    out: list[ev.Action] = []
    for _ in range(seconds):
        for _ in range(per_s):
            out += h.send(account=account)
            h.now += NS // per_s
    return out


def burst(h: Watched, n: int, account: str = "A1") -> list[ev.Action]:
    out: list[ev.Action] = []
    for _ in range(n):
        out += h.send(account=account)
        h.now += MS
    return out


def test_order_rate_spike_over_the_baseline_alerts_for_session_and_account():
    """A second at 20 orders against a 1/s baseline alerts once for the session and once for the account."""
    h = Watched(rate())
    assert alerts(steady(h, 11)) == []
    found = alerts(burst(h, 20))
    assert sorted(a.scope for a in found) == ["account:A1", "session:oms1"]
    assert all(a.detector == "order_rate" for a in found)


def test_order_rate_below_min_rate_or_before_a_full_baseline_stays_quiet():
    """A quiet session's few orders, or a burst before a whole baseline window was seen, do not alert."""
    h = Watched(rate(min_rate=30))
    steady(h, 11)
    assert alerts(burst(h, 20)) == []  # 20/s, under min_rate 30
    fresh = Watched(rate())
    assert alerts(burst(fresh, 50)) == []  # no baseline yet


def test_order_rate_rearms_when_the_rate_falls_back():
    """After the spike, a quiet stretch re-arms it; a second spike alerts again."""
    h = Watched(rate())
    steady(h, 11)
    assert alerts(burst(h, 20))
    assert alerts(burst(h, 20)) == []  # still the same episode
    assert alerts(steady(h, 30)) == []
    assert len(alerts(burst(h, 20))) == 2


def test_order_rate_with_halt_halts_the_session():
    """action halt on a rate spike halts the session (the first scope judged) and the next order is refused."""
    h = Watched(rate("halt"))
    steady(h, 11)
    actions = burst(h, 20)
    results = [a for a in actions if type(a) is ev.AdminResult]
    assert {r.scope for r in results} == {"session:oms1", "account:A1"}
    assert all(r.operator == "anomaly:order_rate" for r in results)
    assert decision(h.send(account="A1")).code == "HALTED"


# ---------------------------------------------------------------- cancel and reject ratios


def test_cancel_ratio_alerts_from_min_count_cancels():
    """Cancels over new orders at the ratio alert once the window holds min_count cancels."""
    h = Watched(AnomalySettings(cancel_ratio=CancelRatio(enabled=True, window_s=60, max_ratio=0.9, min_count=5)))
    out: list[ev.Action] = []
    for i in range(5):
        h.live(f"L{i}", account="A1", order_id=f"V{i}")
    for i in range(4):
        out += h.cancel(f"L{i}", f"X{i}")
    assert alerts(out) == []  # 4 cancels: under min_count
    (found, *_) = alerts(h.cancel("L4", "X4"))
    assert (found.detector, found.scope, found.observed, found.threshold) == (
        "cancel_ratio",
        "session:oms1",
        "1.00",
        "0.9",
    )


def test_cancel_ratio_below_the_ratio_stays_quiet():
    """Five cancels for ten new orders (0.5) stay under a 0.9 ratio."""
    h = Watched(AnomalySettings(cancel_ratio=CancelRatio(enabled=True, window_s=60, max_ratio=0.9, min_count=5)))
    for i in range(10):
        h.live(f"L{i}", account="A1", order_id=f"V{i}")
    out: list[ev.Action] = []
    for i in range(5):
        out += h.cancel(f"L{i}", f"X{i}")
    assert alerts(out) == []


def reject_settings(action: str = "alert") -> AnomalySettings:
    return AnomalySettings(
        reject_ratio=RejectRatio(enabled=True, action=action, window_s=60, max_ratio=0.5, min_count=10)
    )


def test_reject_ratio_alerts_when_half_the_window_is_refused():
    """Five refusals in ten order messages reach 0.5: one alert per scope, at the tenth message."""
    h = Watched(reject_settings())
    out: list[ev.Action] = []
    for _ in range(5):
        out += h.send(account="A1")
    for _ in range(4):
        out += h.send(symbol="NOPE", account="A1")
    assert alerts(out) == []
    found = alerts(h.send(symbol="NOPE", account="A1"))
    assert sorted((a.scope, a.observed) for a in found) == [("account:A1", "0.50"), ("session:oms1", "0.50")]


def test_reject_ratio_under_min_count_or_after_the_window_stays_quiet():
    """All refused but fewer than min_count messages: no alert; refusals that left the window do not count."""
    h = Watched(reject_settings())
    out: list[ev.Action] = []
    for _ in range(9):
        out += h.send(symbol="NOPE", account="A1")
    assert alerts(out) == []
    h.now += 61 * NS
    out = []
    for _ in range(9):
        out += h.send(account="A1")
    assert alerts(out + h.send(symbol="NOPE", account="A1")) == []


def test_reject_ratio_rearms_when_it_falls_back():
    """Accepted orders bring the ratio under; refusals raising it again alert again."""
    h = Watched(reject_settings())
    for _ in range(10):
        h.send(symbol="NOPE", account="A1")
    out: list[ev.Action] = []
    for _ in range(15):
        out += h.send(account="A1")
    assert alerts(out) == []
    out = []
    for _ in range(20):
        out += h.send(symbol="NOPE", account="A1")
    assert len(alerts(out)) == 2


# ---------------------------------------------------------------- repeated rejects


def repeated(window_s: float = 60, action: str = "alert") -> AnomalySettings:
    return AnomalySettings(repeated_rejects=RepeatedRejects(enabled=True, window_s=window_s, count=3, action=action))


def test_repeated_rejects_of_one_cl_ord_id_alert_at_the_count():
    """The same ClOrdID refused three times (unknown symbol, then duplicate ClOrdID) alerts on the third."""
    h = Watched(repeated())
    bad = order("R1", symbol="NOPE", account="A1")
    assert alerts(h.send(bad)) == []
    assert alerts(h.send(bad)) == []
    (alert,) = alerts(h.send(bad))
    assert (alert.detector, alert.scope, alert.observed) == ("repeated_rejects", "account:A1", "3")
    assert "R1" in alert.text


def test_repeated_rejects_of_the_same_order_under_new_cl_ord_ids_alert():
    """Same account, symbol, side, quantity and price refused three times under fresh ClOrdIDs alerts."""
    h = Watched(repeated(action="halt"))
    h.send(symbol="NOPE", account="A1", qty=7)
    h.send(symbol="NOPE", account="A1", qty=7)
    actions = h.send(symbol="NOPE", account="A1", qty=7)
    assert [a.detector for a in alerts(actions)] == ["repeated_rejects"]
    assert h.core.kill.get("account:A1").operator == "anomaly:repeated_rejects"


def test_repeated_rejects_spread_beyond_the_window_or_differing_stay_quiet():
    """Refusals further apart than the window, or of orders that differ, do not alert."""
    h = Watched(repeated(window_s=10))
    out: list[ev.Action] = []
    for _ in range(3):
        out += h.send(symbol="NOPE", account="A1", qty=7)
        h.now += 6 * NS
    for qty in (1, 2, 3):
        out += h.send(symbol="NOPE", account="A1", qty=qty)
    assert alerts(out) == []


# ---------------------------------------------------------------- price walk


def walk(window_s: float = 10) -> AnomalySettings:
    return AnomalySettings(price_walk=PriceWalk(enabled=True, window_s=window_s, move_pct=2, min_steps=3))


def prices(h: Watched, *values: str, step_ns: int = NS, side: object = None) -> list[ev.Action]:
    out: list[ev.Action] = []
    for p in values:
        kw: dict = {"price": p, "account": "A1"}
        if side is not None:
            kw["side"] = side
        out += h.send(**kw)
        h.now += step_ns
    return out


def test_price_walk_one_way_past_move_pct_alerts_once():
    """Buys walking the price up 2% in four steps within the window alert once."""
    h = Watched(walk())
    assert alerts(prices(h, "100", "100.5", "101", "101.5")) == []
    (alert,) = alerts(prices(h, "102"))
    assert (alert.detector, alert.scope, alert.observed, alert.threshold) == ("price_walk", "account:A1", "2.00%", "2%")
    assert alerts(prices(h, "102.5")) == []  # the same episode


def test_price_walk_replaces_walk_the_price_too():
    """Replaces of one order moving its price up count as steps."""
    h = Watched(walk())
    h.live("W0", account="A1", price="100")
    out: list[ev.Action] = []
    orig = "W0"
    for i, p in enumerate(("100.7", "101.4", "102.1"), 1):
        out += h.replace(orig, order(f"W{i}", price=p, account="A1"))
        orig = f"W{i}"
    assert [a.detector for a in alerts(out)] == ["price_walk"]


def test_price_walk_reversal_or_slow_walk_stays_quiet():
    """A change of direction starts a new run; a walk slower than the window does not alert."""
    h = Watched(walk())
    assert alerts(prices(h, "100", "101", "100.5", "101.2", "102")) == []  # run from 100.5: 1.5%
    h2 = Watched(walk(window_s=10))
    assert alerts(prices(h2, "100", "100.5", "101", "101.5", "102", "102.5", step_ns=6 * NS)) == []


# ---------------------------------------------------------------- snapshot, replay, config, audit


def test_snapshot_round_trip_carries_the_detectors_state():
    """A fresh core given a snapshot has the history: the next outsize order alerts there as here."""
    h = Watched(fat())
    with_history(h)
    state = pickle.loads(pickle.dumps(snapshot.export_state(h.core)))
    fresh = Watched(fat())
    snapshot.import_state(fresh.core, state)
    fresh.n = h.n
    assert alerts(fresh.send(qty=2000, account="A1")) == alerts(h.send(qty=2000, account="A1"))
    assert len(alerts(fresh.send(qty=100, account="A1") + fresh.send(qty=3000, account="A1"))) == 1


def test_snapshot_under_other_settings_starts_afresh():
    """State saved under other detector settings is not taken over (the counts would not fit)."""
    h = Watched(fat())
    with_history(h)
    fresh = Watched(fat(history=6))
    snapshot.import_state(fresh.core, pickle.loads(pickle.dumps(snapshot.export_state(h.core))))
    assert fresh.core.anomaly.sizes == {}


def _mixed_events() -> list[ev.Event]:
    """Orders, refusals, a price walk and a burst, at moving times."""
    events: list[ev.Event] = []
    now = 1_700_000_000 * NS
    seq = 0

    def add(req: OrderRequest) -> None:
        nonlocal now, seq
        seq += 1
        now += 200 * MS
        events.append(ev.NewOrder("oms1", seq, now, req))

    for i in range(12):
        add(order(f"H{i}", qty=100, account="A1"))
    add(order("BIG", qty=5000, account="A1"))
    for i, p in enumerate(("100", "101", "102", "103")):
        add(order(f"P{i}", price=p, account="A2"))
    for _ in range(4):
        add(order("BAD", symbol="NOPE", account="A3"))
    return events


ALL = AnomalySettings(
    order_rate=OrderRate(enabled=True, window_s=1, baseline_s=2, factor=2, min_rate=2),
    reject_ratio=RejectRatio(enabled=True, min_count=4, max_ratio=0.1),
    repeated_rejects=RepeatedRejects(enabled=True, count=3),
    fat_finger=FatFinger(enabled=True, history=10, factor=5, action="halt"),
    price_walk=PriceWalk(enabled=True, move_pct=2, min_steps=2),
)


def test_replay_and_recovery_give_the_same_alerts():
    """The same events give the same alerts; a core recovered from a snapshot mid-way raises the rest."""
    events = _mixed_events()

    def run(core_events: list[ev.Event], h: Watched) -> list[ev.AnomalyAlert]:
        return [a for e in core_events for a in alerts(h.handle(e))]

    first = run(events, Watched(ALL))
    assert {a.detector for a in first} == {"fat_finger", "price_walk", "repeated_rejects", "reject_ratio"}
    assert run(events, Watched(ALL)) == first
    h = Watched(ALL)
    head = run(events[:13], h)
    recovered = Watched(ALL)
    snapshot.import_state(recovered.core, pickle.loads(pickle.dumps(snapshot.export_state(h.core))))
    assert head + run(events[13:], recovered) == first


def test_config_anomaly_section_decodes_and_fails_on_bad_keys():
    """[anomaly.<detector>] tables decode into the settings; an unknown key or a bad window stops the load."""
    base = '[[oms]]\nname = "o"\ncomp_id = "O"\n[[venues]]\nname = "v"\ncomp_id = "V"\nport = 9\n'
    cfg = msgspec.toml.decode(
        base + '[anomaly.fat_finger]\nenabled = true\naction = "halt"\nhistory = 30\nfactor = 8\n', type=Config
    )
    assert cfg.anomaly.fat_finger == FatFinger(enabled=True, action="halt", history=30, factor=8)
    assert cfg.anomaly.any_enabled and not AnomalySettings().any_enabled
    with pytest.raises(msgspec.ValidationError, match=r"anomaly.fat_finger"):
        msgspec.toml.decode(base + "[anomaly.fat_finger]\nfactr = 8\n", type=Config)
    with pytest.raises(msgspec.ValidationError, match="baseline_s"):
        msgspec.toml.decode(base + "[anomaly.order_rate]\nwindow_s = 10\nbaseline_s = 15\n", type=Config)
    with pytest.raises(msgspec.ValidationError, match=r"anomaly.price_walk.action"):
        msgspec.toml.decode(base + '[anomaly.price_walk]\naction = "panic"\n', type=Config)


def test_anomaly_alert_audit_record_has_its_own_kind_and_columns():
    """The audit store keeps an AnomalyAlert as kind anomaly_alert with its session, account and symbol."""
    alert = ev.AnomalyAlert("fat_finger", "account:A1", "5000", "1000", 7, "text", "halt", "oms1", "A1", "AAPL")
    draft = records.action_draft(alert)
    assert draft[:2] == (7, "anomaly_alert")
    assert (draft[2], draft[6], draft[7]) == ("oms1", "A1", "AAPL")
    data = msgspec.json.decode(draft[-1])
    assert (data["detector"], data["scope"], data["threshold"], data["action"]) == (
        "fat_finger",
        "account:A1",
        "1000",
        "halt",
    )


def test_detectors_off_leave_the_order_handlers_alone():
    """With every detector off the dispatch table is the core's own (no cost per order)."""
    h = Harness()
    assert h.core._dispatch[ev.NewOrder] == h.core._new_order
    assert alerts(h.new(order("C1"))) == []


def test_anomaly_alert_goes_to_the_alerts_feed_with_its_detector():
    """The admin API's alerts feed (and so the event stream) carries an AnomalyAlert, named by ``detector``."""
    feed = Feed()
    feed.add(ev.AnomalyAlert("price_walk", "account:A1", "2.5%", "2%", 9, "walked", "alert", "oms1", "A1", "AAPL"))
    (item,) = feed.recent("alert")
    assert (item["feed"], item["detector"], item["scope"], item["text"]) == (
        "alert",
        "price_walk",
        "account:A1",
        "walked",
    )


def test_reject_ratio_forgets_refusals_as_the_window_slides_past_them():
    """Refusals slide out bucket by bucket: five old refusals no longer count once the window moved past."""
    h = Watched(reject_settings())
    for _ in range(5):
        h.send(symbol="NOPE", account="A1")
    out: list[ev.Action] = []
    for _ in range(5):
        h.now += 12 * NS  # one bucket (a fifth of the 60 s window) at a time
        out += h.send(account="A1")
    for _ in range(4):
        out += h.send(symbol="NOPE", account="A1")  # 4 refused of 9 in the window: under min_count
    assert alerts(out) == []
    (found, _) = alerts(h.send(symbol="NOPE", account="A1"))  # 5 of 10
    assert found.observed == "0.50"
