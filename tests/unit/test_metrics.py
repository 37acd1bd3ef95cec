"""GET /metrics: the edge's running counts (engines/counts.py), the collector over a real core and bridge
(admin/metrics.py), and the route's token rule, scraped and read back with prometheus_client's parser."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fixproxy.admin.control import Control, Feed
from fixproxy.admin.http import AdminApi
from fixproxy.admin.metrics import ProxyCollector, copy_utilization, registry
from fixproxy.config import ApiToken, load
from fixproxy.core import events as ev
from fixproxy.core.risk.limits import LimitSet
from fixproxy.engines.bridge import CoreBridge, SessionInfo
from fixproxy.engines.counts import LATENCY_BOUNDS_NS, EdgeCounts

from .conftest import LIMITS, T0, Harness, limits

TOKENS = [ApiToken("vera", "viewer", "viewer-secret-0123456789"), ApiToken("rita", "risk", "risk-secret-0123456789")]


def fix(text: str) -> str:
    return text.replace("|", "\x01")


def new_order(cl: str, seq: int, qty: int = 100, px: str = "100", account: str = "ACC", symbol: str = "AAPL") -> str:
    return fix(
        f"8=FIX.4.4|35=D|34={seq}|49=OMS1|56=FIXPROXY|52=20231114-22:13:20|11={cl}|1={account}|55={symbol}|54=1|"
        f"38={qty}|40=2|44={px}|60=20231114-22:13:20|"
    )


def cancel(cl: str, orig: str, seq: int) -> str:
    return fix(
        f"8=FIX.4.4|35=F|34={seq}|49=OMS1|56=FIXPROXY|52=20231114-22:13:20|11={cl}|41={orig}|1=ACC|55=AAPL|54=1|"
        f"38=100|60=20231114-22:13:20|"
    )


def ack(cl: str) -> str:
    return fix(
        f"8=FIX.4.4|35=8|34=1|49=VENUE|56=FIXPROXY|11=oms1.{cl}|37=V{cl}|17=E-{cl}|150=0|39=0|55=AAPL|54=1|"
        "38=100|14=0|151=100|6=0|"
    )


class Wire(CoreBridge):
    """The bridge with sessions that always send, a clock a test moves, no journal."""

    def __init__(self, core):
        self.now = T0
        infos = [
            SessionInfo("oms1", "oms", "FIX.4.4"),
            SessionInfo("oms2", "oms", "FIX.4.2"),
            SessionInfo("desk", "admin", "FIX.4.4"),
            SessionInfo("sim", "venue", "FIX.4.4"),
        ]
        super().__init__(core, infos, lambda a: None, clock=lambda: self.now)
        self.infos = {i.name: i for i in infos}

    def _send(self, info, msg_type, body, now):
        self._sent(info.name, msg_type, now)
        return True


def scrape(reg) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} of one scrape, read back by the Prometheus text parser."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: dict, metric: str, /, **labels: str) -> float:
    return samples[metric][tuple(sorted(labels.items()))]


AGGREGATE = LimitSet(
    firm=msgspec.structs.replace(LIMITS.firm, max_open_orders=10, max_gross_exposure=Decimal(100_000)),
    accounts={"ACC": limits(max_open_orders=4), "IDLE": limits(max_gross_exposure=5000)},
)


@pytest.fixture
def wired():
    h = Harness(rules=["max_order_qty"], limits=AGGREGATE)
    wire = Wire(h.core)
    collector = ProxyCollector(
        wire.lock,
        h.core,
        wire.counts,
        [(i.name, i.role) for i in wire.sessions()],
        health=lambda: {
            "status": "degraded",
            "journal": {"state": "ok", "reason": "", "segment": 3, "bytes": 4096, "lost_records": 0},
            "audit": {"state": "behind", "lag_bytes": 512, "records": 77, "restarts": 1},
            "engine": {"state": "ok", "reason": ""},
        },
        engine="native",
    )
    return h, wire, registry(collector)


# ---------------------------------------------------------------- the collector over a real core


def test_scrape_before_any_order_lists_sessions_limits_and_health_at_zero(wired):
    """Every configured session is listed (the desk as kind desk), only the venue up; utilisation 0 for
    each aggregate limit a layer sets; health as the proxy reports it; process metrics present."""
    _, _, reg = wired
    s = scrape(reg)
    assert value(s, "fixproxy_session_up", session="sim", kind="venue") == 1
    assert value(s, "fixproxy_session_up", session="oms1", kind="oms") == 0
    assert value(s, "fixproxy_session_up", session="desk", kind="desk") == 0
    assert value(s, "fixproxy_limit_utilization_ratio", scope="firm", limit="max_open_orders") == 0
    assert value(s, "fixproxy_limit_utilization_ratio", scope="account:IDLE", limit="max_gross_exposure") == 0
    assert value(s, "fixproxy_limit", scope="account:ACC", limit="max_open_orders") == 4
    assert value(s, "fixproxy_decision_latency_seconds_count") == 0
    assert value(s, "fixproxy_messages_total", session="oms1", kind="oms", direction="in") == 0
    assert value(s, "fixproxy_info", engine="native") == 1
    assert value(s, "fixproxy_health_status", status="degraded") == 1
    assert value(s, "fixproxy_health_status", status="ok") == 0
    assert value(s, "fixproxy_recording_failed", reason="") == 0
    assert value(s, "fixproxy_journal_segment_bytes") == 4096
    assert value(s, "fixproxy_audit_follower_state", state="behind") == 1
    assert value(s, "fixproxy_audit_lag_bytes") == 512
    assert value(s, "process_resident_memory_bytes") > 0
    assert value(s, "process_cpu_seconds_total") >= 0


def test_orders_move_received_forwarded_refused_latency_messages_and_utilisation(wired):
    """Two orders forwarded and one refused MAX_ORDER_QTY, a cancel forwarded, an ack relayed: each
    counter moves by what happened, the histogram counts the four decisions, the account's open-order
    limit shows 2 of 4 used."""
    _, wire, reg = wired
    oms, sim = wire.infos["oms1"], wire.infos["sim"]
    wire.submit(ev.SessionUp("oms1", T0))
    wire.now = T0 + 300_000  # each decision 300 µs after the message was read
    wire.receive(oms, new_order("A1", 1), T0)
    wire.receive(oms, new_order("A2", 2), T0)
    wire.receive(oms, new_order("A3", 3, qty=50_000), T0)
    wire.receive(sim, ack("A1"), T0)
    wire.receive(oms, cancel("X1", "A2", 4), T0)
    s = scrape(reg)
    assert value(s, "fixproxy_orders_received_total", session="oms1", msg_type="D") == 3
    assert value(s, "fixproxy_orders_received_total", session="oms1", msg_type="F") == 1
    assert value(s, "fixproxy_orders_forwarded_total", session="oms1", msg_type="D") == 2
    assert value(s, "fixproxy_orders_forwarded_total", session="oms1", msg_type="F") == 1
    assert value(s, "fixproxy_orders_refused_total", session="oms1", msg_type="D", code="MAX_ORDER_QTY") == 1
    assert value(s, "fixproxy_decision_latency_seconds_count") == 4
    assert value(s, "fixproxy_decision_latency_seconds_sum") == pytest.approx(4 * 0.0003)
    assert value(s, "fixproxy_decision_latency_seconds_bucket", le="0.00025") == 0
    assert value(s, "fixproxy_decision_latency_seconds_bucket", le="0.0005") == 4
    assert value(s, "fixproxy_decision_latency_seconds_bucket", le="+Inf") == 4
    # In: 4 from oms1, 1 from the venue. Out: 3 to the venue (2 orders, 1 cancel), 2 to oms1 (the
    # refusal and the relayed ack).
    assert value(s, "fixproxy_messages_total", session="oms1", kind="oms", direction="in") == 4
    assert value(s, "fixproxy_messages_total", session="sim", kind="venue", direction="in") == 1
    assert value(s, "fixproxy_messages_total", session="sim", kind="venue", direction="out") == 3
    assert value(s, "fixproxy_messages_total", session="oms1", kind="oms", direction="out") == 2
    assert value(s, "fixproxy_session_up", session="oms1", kind="oms") == 1
    assert value(s, "fixproxy_limit_observed", scope="account:ACC", limit="max_open_orders") == 2
    assert value(s, "fixproxy_limit_utilization_ratio", scope="account:ACC", limit="max_open_orders") == 0.5
    assert value(s, "fixproxy_open_orders") == 2
    assert value(s, "fixproxy_notices_total", kind="session_up") == 1  # oms1 (the harness set sim up directly)


def test_halt_and_alert_show_as_trading_state_admin_action_and_alert(wired):
    """A halt of the account is a trading-state series and an admin action; an order crossing the 10%
    alert level of the firm's and the account's open-order limits counts two Alerts by that limit."""
    h, wire, reg = wired
    h.core.alerts.levels = [Decimal(10)]
    wire.receive(wire.infos["oms1"], new_order("B1", 1), T0)
    wire.submit(ev.AdminKill("account:ACC", "halt", "runaway", "rita", T0))
    s = scrape(reg)
    assert value(s, "fixproxy_trading_state", scope="account:ACC", state="HALTED") == 1
    assert value(s, "fixproxy_admin_actions_total", kind="kill", ok="true") == 1
    assert value(s, "fixproxy_alerts_total", type="Alert", name="max_open_orders") == 2


def test_utilisation_of_a_scope_absent_from_the_book_adds_nothing_to_the_book():
    """A limit on an account that never traded observes 0, and reading it leaves the book's scopes as
    they were (a scrape must not change the core)."""
    h = Harness(limits=LimitSet(accounts={"GHOST": limits(max_net_exposure=100)}))
    before = h.core.book.scope_names()
    assert copy_utilization(h.core) == [("account:GHOST", "max_net_exposure", Decimal(100), 0)]
    assert h.core.book.scope_names() == before


# ---------------------------------------------------------------- the running counts


class RateAlert(msgspec.Struct, frozen=True, tag=True):
    detector: str
    scope: str
    now_ns: int


class ShadowRefusal(msgspec.Struct, frozen=True, tag=True):
    session: str
    code: str
    now_ns: int


def test_counts_take_new_alert_and_coded_action_classes_generically():
    """An action class named ...Alert counts as an alert by its detector; another class with a code
    counts as flagged; a decision let through with a code counts as forwarded and flagged; FIX message
    actions are not counted here."""
    c = EdgeCounts()
    c.action(RateAlert("order_rate", "session:oms1", T0))  # type: ignore[arg-type]
    c.action(ShadowRefusal("oms1", "MAX_ORDER_QTY", T0))  # type: ignore[arg-type]
    c.action(ev.Decision("oms1", "D", "C1", True, T0, code="PRICE_COLLAR"))
    c.action(ev.OmsBusinessReject("oms1", 1, "D", "C1", "HALTED", "HALTED: ..."))
    assert c.alerts == {("RateAlert", "order_rate"): 1}
    assert c.flagged == {("ShadowRefusal", "oms1", "MAX_ORDER_QTY"): 1, ("Decision", "oms1", "PRICE_COLLAR"): 1}
    assert c.forwarded == {("oms1", "D"): 1} and c.refused == {}


def test_monitor_and_anomaly_actions_of_the_core_are_counted():
    """The core's WouldRefuse (monitor mode) counts as flagged by session and code, its AnomalyAlert as
    an alert by detector, beside the accepted Decision of the same order."""
    c = EdgeCounts()
    c.action(ev.Decision("oms1", "D", "C1", True, T0, venue="sim"))
    c.action(ev.WouldRefuse("oms1", "D", "C1", T0, "MAX_ORDER_QTY", "MAX_ORDER_QTY: ...", rule="max_order_qty"))
    c.action(ev.AnomalyAlert("order_rate", "session:oms1", "50", "10", T0, session="oms1"))
    assert c.forwarded == {("oms1", "D"): 1}
    assert c.flagged == {("WouldRefuse", "oms1", "MAX_ORDER_QTY"): 1}
    assert c.alerts == {("AnomalyAlert", "order_rate"): 1}


@pytest.mark.parametrize(
    "elapsed_ns, bucket",
    [(-5, 0), (0, 0), (LATENCY_BOUNDS_NS[0], 0), (LATENCY_BOUNDS_NS[0] + 1, 1), (10**12, len(LATENCY_BOUNDS_NS))],
)
def test_latency_lands_in_the_first_bucket_whose_bound_it_does_not_exceed(elapsed_ns, bucket):
    """A bound is inclusive (Prometheus le); beyond the last bound is +Inf; a negative reading counts as 0."""
    c = EdgeCounts()
    c.latency(elapsed_ns)
    assert c.latency_buckets.index(1) == bucket
    assert c.latency_sum_ns == max(elapsed_ns, 0)


def test_other_application_message_types_fold_into_other(wired):
    """An OMS message type other than D, G or F is counted as msg_type other (bounded label values)."""
    _, wire, reg = wired
    wire.receive(wire.infos["oms1"], fix("8=FIX.4.4|35=AE|34=1|49=OMS1|56=FIXPROXY|52=20231114-22:13:20|"), T0)
    s = scrape(reg)
    assert value(s, "fixproxy_orders_received_total", session="oms1", msg_type="other") == 1
    refused = {k: v for k, v in s["fixproxy_orders_refused_total"].items() if dict(k)["msg_type"] == "other"}
    assert list(refused.values()) == [1]


# ---------------------------------------------------------------- the route


def _api(h: Harness, public: bool) -> AdminApi:
    lock = threading.Lock()
    control = Control(lambda e: h.core.handle(e), lock, h.core, Feed())
    wire_counts = EdgeCounts()
    reg = registry(ProxyCollector(lock, h.core, wire_counts, [("oms1", "oms")]), process=False)
    return AdminApi(control, TOKENS, metrics=reg, metrics_public=public)


async def test_metrics_route_needs_a_token_of_any_role_unless_public():
    """By default GET /metrics is 401 without a token and 200 with a viewer's; with metrics_public it
    needs none. The body is the Prometheus text format."""
    h = Harness()
    async with TestClient(TestServer(_api(h, public=False).app())) as c:
        assert (await c.get("/metrics")).status == 401
        r = await c.get("/metrics", headers={"Authorization": "Bearer viewer-secret-0123456789"})
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        names = {f.name for f in text_string_to_metric_families(await r.text())}
        assert {"fixproxy_session_up", "fixproxy_orders_refused", "fixproxy_decision_latency_seconds"} <= names
    async with TestClient(TestServer(_api(h, public=True).app())) as c:
        assert (await c.get("/metrics")).status == 200


async def test_metrics_route_without_a_registry_is_404():
    """An API made without metrics (tests of other routes) answers 404 in JSON."""
    h = Harness()
    lock = threading.Lock()
    api = AdminApi(Control(lambda e: h.core.handle(e), lock, h.core, Feed()), TOKENS)
    async with TestClient(TestServer(api.app())) as c:
        r = await c.get("/metrics", headers={"Authorization": "Bearer viewer-secret-0123456789"})
        assert r.status == 404 and "error" in await r.json()


@pytest.mark.parametrize("line, public", [("", False), ("metrics_public = true", True)])
def test_metrics_public_is_read_from_admin_and_off_by_default(tmp_path, line, public):
    """[admin] metrics_public: absent means a token is needed; true opens /metrics."""
    fixture = Path(__file__).resolve().parents[1] / "replay_fixtures"
    (tmp_path / "instruments.csv").write_text((fixture / "instruments.csv").read_text())
    (tmp_path / "fixproxy.toml").write_text((fixture / "fixproxy.toml").read_text() + f"\n[admin]\n{line}\n")
    assert load(tmp_path / "fixproxy.toml").config.admin.metrics_public is public
