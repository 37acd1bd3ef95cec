"""GET /metrics: the proxy's Prometheus metrics, on a registry of its own (never the global one).

Nothing here runs on the order path. The bridge keeps plain running counts as it works
(``engines/counts.py``); a scrape copies them, which sessions are up, the trading states and the
use of the aggregate limits out under the core lock (no walk over the orders), reads the health of
the journal, audit follower and engine, and makes the metric families from the copies once the
lock is released; in a cluster, this instance's shares of the shared limits too, and the cluster's
health and firm-wide view as the lease manager last read them; in an active/passive pair (``[ha]``),
the HA node's role, token and copy lag (``ha_families``, also served by the standby's own server). ``ProcessCollector`` adds the process's CPU, memory and open files. Every name is
listed in docs/metrics.md.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from ..core import alerts, cluster as shared
from ..core.book import FIRM
from ..core.proxy import ProxyCore
from ..engines.counts import LATENCY_BOUNDS_NS, EdgeCounts

#: The message types counted by name; an OMS's other application messages count as "other".
ORDER_TYPES = frozenset(("D", "G", "F"))
#: Session roles as the metrics name them (the risk desk's FIX session is "desk").
KINDS = {"admin": "desk"}
#: The audit follower's states (one series each, 1 for the current one).
AUDIT_STATES = ("ok", "behind", "stuck", "dead", "disabled")
HEALTH_STATES = ("ok", "degraded", "failed")
#: An HA instance's roles and copy states (ha/node.py ``view``; one series each, 1 for the current one).
HA_ROLES = ("active", "standby", "fenced", "starting", "superseded")
HA_COPY_STATES = ("sync", "async", "catching_up", "alone", "none")


class Scrape(NamedTuple):
    """What one scrape copied under the core lock."""

    counts: EdgeCounts
    up: frozenset[str]
    #: (scope, limit name, limit, observed) for every aggregate limit set on a firm, session or account layer.
    utilization: list[tuple[str, str, Decimal | int, Decimal | int]]
    #: (scope, state) of every scope that is not ACTIVE.
    states: list[tuple[str, str]]
    open_orders: int
    recording_failure: str


def copy_utilization(core: ProxyCore) -> list[tuple[str, str, Decimal | int, Decimal | int]]:
    """(scope, limit, its value, observed) per aggregate limit set on a layer, observed as the desk's
    exposure view does (``alerts.observed``); a scope with nothing in the book observes 0."""
    limit_set = core.limits.limits
    book = core.book
    in_book = set(book.scope_names())  # observed() must not add a scope to the book
    layers = [(FIRM, limit_set.firm)]
    layers += [(f"session:{name}", layer) for name, layer in limit_set.sessions.items()]
    layers += [(f"account:{name}", layer) for name, layer in limit_set.accounts.items()]
    out: list[tuple[str, str, Decimal | int, Decimal | int]] = []
    for scope, layer in layers:
        for name in alerts.ALERT_LIMITS:
            limit = getattr(layer, name)
            if limit:
                out.append((scope, name, limit, alerts.observed(book, name, scope) if scope in in_book else 0))
    return out


def copy_scrape(core: ProxyCore, counts: EdgeCounts) -> Scrape:
    """The copies a scrape needs; the caller holds the core lock."""
    return Scrape(
        counts.copy(),
        frozenset(core.up),
        copy_utilization(core),
        [(s.scope, s.state.value) for s in core.kill.states()],
        len(core.tally.open),
        core.recording_failure,
    )


def _msg_type(msg_type: str) -> str:
    return msg_type if msg_type in ORDER_TYPES else "other"


def _summed(counts: dict[Any, int], key: Callable[[Any], tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}
    for k, n in counts.items():
        label = key(k)
        out[label] = out.get(label, 0) + n
    return out


def families(
    scrape: Scrape, sessions: Iterable[tuple[str, str]], health: dict[str, Any] | None, engine: str
) -> Iterator[Metric]:
    """The metric families of one scrape (``sessions``: (name, role) of every configured session)."""
    c = scrape.counts
    kinds = {name: KINDS.get(role, role) for name, role in sessions}

    info = GaugeMetricFamily("fixproxy_info", "The running proxy: its FIX engine (always 1)", labels=["engine"])
    info.add_metric([engine], 1)
    yield info

    up = GaugeMetricFamily(
        "fixproxy_session_up", "1 while the FIX session is logged on, else 0", labels=["session", "kind"]
    )
    for name, kind in sorted(kinds.items()):
        up.add_metric([name, kind], 1 if name in scrape.up else 0)
    yield up

    messages = CounterMetricFamily(
        "fixproxy_messages",
        "Application messages received (in) and sent (out) per session since start-up",
        labels=["session", "kind", "direction"],
    )
    for direction, per_session in (("in", c.messages_in), ("out", c.messages_out)):
        for name in sorted(set(kinds) | set(per_session)):
            messages.add_metric([name, kinds.get(name, ""), direction], per_session.get(name, 0))
    yield messages

    received = CounterMetricFamily(
        "fixproxy_orders_received",
        "Messages an OMS session sent, by MsgType: D new order, G replace, F cancel, other",
        labels=["session", "msg_type"],
    )
    for (name, msg_type), n in sorted(_summed(c.received, lambda k: (k[0], _msg_type(k[1]))).items()):
        received.add_metric([name, msg_type], n)
    yield received

    forwarded = CounterMetricFamily(
        "fixproxy_orders_forwarded",
        "Risk decisions that let an OMS's message through to its venue, by MsgType",
        labels=["session", "msg_type"],
    )
    for (name, msg_type), n in sorted(_summed(c.forwarded, lambda k: (k[0], _msg_type(k[1]))).items()):
        forwarded.add_metric([name, msg_type], n)
    yield forwarded

    refused = CounterMetricFamily(
        "fixproxy_orders_refused",
        "Risk decisions that refused an OMS's message, by MsgType and reject code (spec/reject-codes.md)",
        labels=["session", "msg_type", "code"],
    )
    for (name, msg_type, code), n in sorted(_summed(c.refused, lambda k: (k[0], _msg_type(k[1]), k[2])).items()):
        refused.add_metric([name, msg_type, code], n)
    yield refused

    flagged = CounterMetricFamily(
        "fixproxy_flagged",
        "Actions with a reject code that refused nothing (a monitored rule's would-have-refused), by action",
        labels=["action", "session", "code"],
    )
    for (action, name, code), n in sorted(c.flagged.items()):
        flagged.add_metric([action, name, code], n)
    yield flagged

    latency = HistogramMetricFamily(
        "fixproxy_decision_latency_seconds",
        "From the engine reading an OMS's message to the core's decision on it",
    )
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, n in zip((*LATENCY_BOUNDS_NS, None), c.latency_buckets, strict=True):
        cumulative += n
        buckets.append(("+Inf" if bound is None else _seconds(bound), cumulative))
    latency.add_metric([], buckets, c.latency_sum_ns / 1e9)
    yield latency

    alerts_total = CounterMetricFamily(
        "fixproxy_alerts",
        "Alerts raised: type Alert for limit use (name: the limit) and engine or audit alerts, other types "
        "(e.g. anomaly alerts) by what they are about",
        labels=["type", "name"],
    )
    for (cls, name), n in sorted(c.alerts.items()):
        alerts_total.add_metric([cls, name], n)
    yield alerts_total

    admin = CounterMetricFamily(
        "fixproxy_admin_actions", "Risk-desk and proxy admin actions by kind and outcome", labels=["kind", "ok"]
    )
    for (kind, ok), n in sorted(c.admin.items()):
        admin.add_metric([kind, "true" if ok else "false"], n)
    yield admin

    notices = CounterMetricFamily("fixproxy_notices", "Notices (state changes, anomalies) by kind", labels=["kind"])
    for kind, n in sorted(c.notices.items()):
        notices.add_metric([kind], n)
    yield notices

    used = GaugeMetricFamily(
        "fixproxy_limit_utilization_ratio",
        "Observed value of an aggregate limit over the limit (1 = fully used), per scope that sets it",
        labels=["scope", "limit"],
    )
    observed = GaugeMetricFamily(
        "fixproxy_limit_observed", "Observed value of an aggregate limit per scope", labels=["scope", "limit"]
    )
    value = GaugeMetricFamily("fixproxy_limit", "An aggregate limit per scope that sets it", labels=["scope", "limit"])
    for scope, name, limit, seen in scrape.utilization:
        used.add_metric([scope, name], float(Decimal(seen) / Decimal(limit)))
        observed.add_metric([scope, name], float(seen))
        value.add_metric([scope, name], float(limit))
    yield used
    yield observed
    yield value

    open_orders = GaugeMetricFamily("fixproxy_open_orders", "Orders working at the venues or pending")
    open_orders.add_metric([], scrape.open_orders)
    yield open_orders

    states = GaugeMetricFamily(
        "fixproxy_trading_state", "1 for each scope that is HALTED or REDUCING", labels=["scope", "state"]
    )
    for scope, state in scrape.states:
        states.add_metric([scope, state], 1)
    yield states

    yield from _health_families(scrape, health)


def _one_of(name: str, doc: str, label: str, values: Iterable[str], current: object) -> GaugeMetricFamily:
    """A gauge with one series per possible value: 1 for the current one, 0 for the others."""
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value in values:
        family.add_metric([value], 1 if value == current else 0)
    return family


def _seconds(ns: int) -> str:
    return repr(ns / 1e9)


def _health_families(scrape: Scrape, health: dict[str, Any] | None) -> Iterator[Metric]:
    health = health or {}
    journal = health.get("journal", {})
    reason = scrape.recording_failure or journal.get("reason") or ""
    recording = GaugeMetricFamily(
        "fixproxy_recording_failed",
        "1 while the proxy cannot record its inputs (new orders refused), with the reason; else 0",
        labels=["reason"],
    )
    recording.add_metric([reason], 1 if reason else 0)
    yield recording

    status = health.get("status", "failed" if reason else "ok")
    yield _one_of(
        "fixproxy_health_status",
        "1 for the proxy's health status (as /healthz), 0 for the others",
        "status",
        HEALTH_STATES,
        status,
    )

    if journal.get("bytes") is not None:
        size = GaugeMetricFamily("fixproxy_journal_segment_bytes", "Bytes written to the current journal segment")
        size.add_metric([], journal["bytes"])
        yield size
        segment = GaugeMetricFamily("fixproxy_journal_segment", "The current journal segment's number")
        segment.add_metric([], journal.get("segment", 0))
        yield segment
        lost = GaugeMetricFamily(
            "fixproxy_journal_lost_records", "Records that found no room in the journal since start-up"
        )
        lost.add_metric([], journal.get("lost_records", 0))
        yield lost

    engine = health.get("engine")
    if engine is not None:
        failed = GaugeMetricFamily(
            "fixproxy_engine_failed", "1 once a thread of the FIX engine has ended, with why; else 0", labels=["reason"]
        )
        failed.add_metric([engine.get("reason") or ""], 1 if engine.get("state") == "failed" else 0)
        yield failed

    audit = health.get("audit")
    if audit is not None:
        state = audit.get("state", "disabled")
        yield _one_of(
            "fixproxy_audit_follower_state",
            "1 for the audit follower's state, 0 for the others",
            "state",
            AUDIT_STATES,
            state,
        )
        if state != "disabled":
            for name, key, doc in (
                (
                    "fixproxy_audit_lag_bytes",
                    "lag_bytes",
                    "Journal bytes the audit store has not committed (-1: unknown)",
                ),
                ("fixproxy_audit_records", "records", "Records in the audit store (its head's sequence number)"),
                ("fixproxy_audit_follower_restarts", "restarts", "Times the audit follower was restarted"),
            ):
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], audit.get(key) if isinstance(audit.get(key), int) else -1)
                yield g


class ClusterView(Protocol):
    """What the metrics read of this instance's part in a cluster (cluster/manager.py ClusterManager)."""

    def health(self) -> dict[str, Any]: ...

    def view(self) -> dict[str, Any]: ...


def copy_shares(core: ProxyCore) -> list[tuple[str, str, Decimal, Decimal]]:
    """(limit, scope, allowance, usage) of every limit the cluster shares or this instance holds a share
    of (the caller holds the core lock)."""
    shares = core.shares
    keys = sorted(set(shared.shared_limits(core.limits.limits)) | set(shares.allowance))
    return [(*shared.split(k), shares.allowance.get(k, shared.ZERO), shared.usage(core.book, k)) for k in keys]


def cluster_families(
    shares: list[tuple[str, str, Decimal, Decimal]], health: dict[str, Any], view: dict[str, Any]
) -> Iterator[Metric]:
    """The cluster's metric families: the database, the fence, this instance's shares, the instances alive
    (as last read from the database) and the desk commands shared."""
    lost = health.get("database") != "up"
    up = GaugeMetricFamily(
        "fixproxy_cluster_up",
        "1 while the cluster's database is reachable; 0 while it is lost, with the reason",
        labels=["reason"],
    )
    up.add_metric([(health.get("reason") or "") if lost else ""], 0 if lost else 1)
    yield up

    fence = health.get("fenced") or ""
    fenced = GaugeMetricFamily(
        "fixproxy_cluster_fenced",
        "1 while this instance takes no new headroom of the shared limits (database lost, leases expired), "
        "with why; else 0",
        labels=["reason"],
    )
    fenced.add_metric([fence], 1 if fence else 0)
    yield fenced

    expire = health.get("leases_expire_in_s")
    if expire is not None:
        left = GaugeMetricFamily(
            "fixproxy_cluster_leases_expire_in_seconds", "Time left before this instance's leases expire unrenewed"
        )
        left.add_metric([], float(expire))
        yield left

    allowance = GaugeMetricFamily(
        "fixproxy_cluster_allowance",
        "This instance's allowance of a shared limit (committed in the database)",
        labels=["limit", "scope"],
    )
    usage = GaugeMetricFamily(
        "fixproxy_cluster_usage", "What this instance uses of a shared limit now", labels=["limit", "scope"]
    )
    for field, scope, held, used in shares:
        allowance.add_metric([field, scope], float(held))
        usage.add_metric([field, scope], float(used))
    yield allowance
    yield usage

    alive = GaugeMetricFamily(
        "fixproxy_cluster_instances_alive",
        "Instances of the cluster whose heartbeat is recent (as last read from the database)",
    )
    alive.add_metric([], sum(1 for i in view.get("instances", []) if i.get("alive")))
    yield alive

    for name, key, doc in (
        ("fixproxy_cluster_commands_applied", "commands_applied", "Other instances' desk commands applied here"),
        ("fixproxy_cluster_commands_published", "commands_published", "Desk commands made here and published"),
    ):
        counter = CounterMetricFamily(name, doc)
        counter.add_metric([], int(health.get(key) or 0))
        yield counter


class HaNodeView(Protocol):
    """What the surfaces read of an HA node (ha/node.py HaNode): its view and its health."""

    def health(self) -> dict[str, Any]: ...

    def view(self) -> dict[str, Any]: ...


def ha_families(view: dict[str, Any]) -> Iterator[Metric]:
    """An HA instance's metric families from its view: role, fencing token, copy state and the lag of
    the copy to (on the active) or from (on a standby) its partner; -1 for a lag without a partner."""
    info = GaugeMetricFamily(
        "fixproxy_ha_info", "This instance of an active/passive pair (always 1)", labels=["pair", "name", "copy"]
    )
    info.add_metric([str(view.get("pair", "")), str(view.get("instance", "")), str(view.get("copy", ""))], 1)
    yield info

    yield _one_of(
        "fixproxy_ha_role", "1 for this instance's HA role, 0 for the others", "role", HA_ROLES, view.get("role")
    )

    token = GaugeMetricFamily("fixproxy_ha_token", "The fencing token of the leadership this instance last saw")
    token.add_metric([], int(view.get("token") or 0))
    yield token

    yield _one_of(
        "fixproxy_ha_copy_state",
        "1 for the state of the copy between active and standby, 0 for the others",
        "state",
        HA_COPY_STATES,
        view.get("copy_state"),
    )

    partner = view.get("partner") or {}
    connected = GaugeMetricFamily("fixproxy_ha_partner_connected", "1 while the copy connection to the partner is up")
    connected.add_metric([], 1 if partner.get("connected") else 0)
    yield connected

    lag_bytes, lag_ms = partner.get("lag_bytes"), partner.get("lag_ms")
    lag = GaugeMetricFamily(
        "fixproxy_ha_copy_lag_bytes", "Journal bytes the standby has not acknowledged (-1: no partner)"
    )
    lag.add_metric([], lag_bytes if isinstance(lag_bytes, int) else -1)
    yield lag
    seconds = GaugeMetricFamily(
        "fixproxy_ha_copy_lag_seconds", "How far behind the active the standby's copy is, in time (-1: no partner)"
    )
    seconds.add_metric([], lag_ms / 1000 if isinstance(lag_ms, int | float) else -1)
    yield seconds

    left = view.get("lease_left_ms")
    if isinstance(left, int | float):
        lease = GaugeMetricFamily(
            "fixproxy_ha_lease_left_seconds", "Time left before the leadership lease lapses unless renewed"
        )
        lease.add_metric([], left / 1000)
        yield lease


class ProxyCollector:
    """The proxy's metrics, collected at each scrape (a prometheus_client collector)."""

    def __init__(
        self,
        lock: threading.Lock,
        core: ProxyCore,
        counts: EdgeCounts,
        sessions: Iterable[tuple[str, str]],
        *,
        health: Callable[[], dict[str, Any]] | None = None,
        engine: str = "",
        cluster: ClusterView | None = None,
        ha: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self._cluster = cluster
        self._ha = ha
        self._lock = lock
        self._core = core
        self._counts = counts
        self._sessions = list(sessions)
        self._health = health
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        cluster = self._cluster
        with self._lock:
            scrape = copy_scrape(self._core, self._counts)
            shares = copy_shares(self._core) if cluster is not None else []
        health = self._health() if self._health is not None else None
        out = families(scrape, self._sessions, health, self._engine)
        if cluster is not None:
            out = itertools.chain(out, cluster_families(shares, cluster.health(), cluster.view()))
        ha = self._ha() if self._ha is not None else None
        if ha is not None:
            out = itertools.chain(out, ha_families(ha))
        return out


def registry(collector: ProxyCollector, process: bool = True) -> CollectorRegistry:
    """A registry of the proxy's own: its collector and (``process``) the process's CPU and memory."""
    reg = CollectorRegistry()
    reg.register(collector)
    if process:
        ProcessCollector(registry=reg)
    return reg


def render(reg: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """(body, Content-Type) of a scrape, in the format the ``Accept`` header asks for (Prometheus text
    by default, OpenMetrics on request). Takes the core lock: call it off the event loop."""
    encoder, content_type = choose_encoder(accept)
    return encoder(reg), content_type
