"""Anomaly detection on order flow: each session's and account's flow against its own recent past.

Six detectors, each off unless configured (``[anomaly.<detector>]``):

- ``order_rate``: the order-message rate of the last ``window_s`` against the rate of the
  ``baseline_s`` before it (at least ``min_rate`` a second, judged once a full baseline was seen);
- ``cancel_ratio``: OrderCancelRequests over NewOrderSingles in the window (from ``min_count`` cancels);
- ``reject_ratio``: the proxy's refusals over order messages in the window (from ``min_count`` messages);
- ``repeated_rejects``: the same ClOrdID, or the same account, symbol, side, quantity and price,
  refused ``count`` times within the window;
- ``fat_finger``: an order's quantity above ``factor`` times the median of the last ``history``
  accepted orders of its account (or session, for orders without one) in the symbol;
- ``price_walk``: successive orders and replaces of one account, symbol and side moving the limit
  price one way by ``move_pct`` percent or more within the window, in ``min_steps`` steps or more.

Rates and ratios run per session and per account; the per-order detectors judge the order's account
(its session when it has none). Each raises an AnomalyAlert once per episode: the detector re-arms
once its statistic is back within the threshold. With ``action = "reducing"`` or ``"halt"`` it also
moves the scope through the kill switch as a desk user would, the operator named
``anomaly:<detector>``; the desk resumes the scope as any other. Fat finger and price walk judge an
order before the rules do, so when they act the order that tripped them is refused already; the
others judge the flow once the order is decided, and act on the orders that follow.

Everything is driven by the events' clocks and is part of the core's snapshot, so recovery and replay
raise the same alerts. Per order: a few counters in fixed rings of buckets per scope, one dict lookup
per per-order detector; the median is read from a sorted list of at most ``history`` quantities kept
by bisection (no sort per order).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from . import events as ev
from .killswitch import _SEVERITY, TARGET, KillAction, parse_scope
from .model import OrderRequest, plain

if TYPE_CHECKING:
    from .proxy import ProxyCore

_NS = 1_000_000_000
#: Buckets per window: the window slides in steps of a fifth of its length.
_STEPS = 5
#: Most keys (scopes, orders, symbols) a detector keeps: accounts and ClOrdIDs come from the OMS.
MAX_KEYS = 100_000

Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Ratio = Annotated[float, msgspec.Meta(gt=0)]


class _Detector(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    #: What a detection does besides the alert: set the scope REDUCING or HALTED.
    action: Literal["alert", "reducing", "halt"] = "alert"


class OrderRate(_Detector, frozen=True):
    window_s: Seconds = 1.0
    baseline_s: Seconds = 60.0
    #: Alert when the window's rate is at least this many times the baseline's.
    factor: Annotated[float, msgspec.Meta(gt=1)] = 5.0
    #: ... and at least this many order messages a second.
    min_rate: Ratio = 20.0

    def __post_init__(self) -> None:
        if self.baseline_s < 2 * self.window_s:
            raise ValueError("anomaly.order_rate: baseline_s must be at least twice window_s")


class CancelRatio(_Detector, frozen=True):
    window_s: Seconds = 60.0
    #: Alert when cancels over new orders in the window reach this.
    max_ratio: Ratio = 0.9
    #: ... once the window holds at least this many cancels.
    min_count: Annotated[int, msgspec.Meta(ge=1)] = 100


class RejectRatio(_Detector, frozen=True):
    window_s: Seconds = 60.0
    #: Alert when refusals over order messages in the window reach this.
    max_ratio: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    #: ... once the window holds at least this many order messages.
    min_count: Annotated[int, msgspec.Meta(ge=1)] = 20


class RepeatedRejects(_Detector, frozen=True):
    window_s: Seconds = 60.0
    #: Refusals of the same order within the window that make an alert.
    count: Annotated[int, msgspec.Meta(ge=2, le=1000)] = 3


class FatFinger(_Detector, frozen=True):
    #: Accepted orders of the account in the symbol whose median is the usual size; judged only once
    #: this many were seen.
    history: Annotated[int, msgspec.Meta(ge=2, le=1000)] = 20
    #: Alert when an order's quantity is above this many times that median.
    factor: Annotated[float, msgspec.Meta(gt=1)] = 10.0


class PriceWalk(_Detector, frozen=True):
    window_s: Seconds = 10.0
    #: Alert when the limit price moved one way this many percent within the window ...
    move_pct: Ratio = 2.0
    #: ... in at least this many successive price changes.
    min_steps: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3


class AnomalySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[anomaly]`` section: one sub-table per detector."""

    order_rate: OrderRate = OrderRate()
    cancel_ratio: CancelRatio = CancelRatio()
    reject_ratio: RejectRatio = RejectRatio()
    repeated_rejects: RepeatedRejects = RepeatedRejects()
    fat_finger: FatFinger = FatFinger()
    price_walk: PriceWalk = PriceWalk()

    @property
    def any_enabled(self) -> bool:
        return any(getattr(self, name).enabled for name in self.__struct_fields__)


# ---------------------------------------------------------------- rolling counts


class _Counts:
    """Two counts (``a`` and ``b``) over the last ``_STEPS`` buckets of time (the window of a ratio),
    their totals kept as buckets expire."""

    __slots__ = ("a", "b", "total_a", "total_b", "head")

    def __init__(self) -> None:
        self.a = [0] * _STEPS
        self.b = [0] * _STEPS
        self.total_a = self.total_b = 0
        self.head = -1  # the bucket last added to

    def add(self, bucket: int, da: int, db: int) -> None:
        head = self.head
        if bucket > head:
            a, b = self.a, self.b
            if head < 0 or bucket - head >= _STEPS:
                a[:] = b[:] = [0] * _STEPS
                self.total_a = self.total_b = 0
            else:
                for j in range(head + 1, bucket + 1):
                    i = j % _STEPS
                    self.total_a -= a[i]
                    self.total_b -= b[i]
                    a[i] = b[i] = 0
            self.head = head = bucket
        i = head % _STEPS  # a clock that stepped back counts in the newest bucket
        self.a[i] += da
        self.b[i] += db
        self.total_a += da
        self.total_b += db


class _Rate:
    """Order messages over the last ``n`` buckets of time (the baseline) and over the last ``_STEPS``
    of them (``recent``: the window), kept as buckets expire."""

    __slots__ = ("counts", "total", "recent", "head", "first")

    def __init__(self, n: int) -> None:
        self.counts = [0] * n
        self.total = self.recent = 0
        self.head = -1  # the bucket last added to
        self.first = -1  # the first bucket ever added to

    def add(self, bucket: int) -> None:
        head = self.head
        if bucket > head:
            counts = self.counts
            n = len(counts)
            if head < 0 or bucket - head >= n:
                counts[:] = [0] * n
                self.total = self.recent = 0
                if head < 0:
                    self.first = bucket
            else:
                for j in range(head + 1, bucket + 1):
                    self.recent -= counts[(j - _STEPS) % n]  # n > _STEPS: not yet cleared below
                    i = j % n
                    self.total -= counts[i]
                    counts[i] = 0
            self.head = head = bucket
        self.counts[head % len(self.counts)] += 1
        self.total += 1
        self.recent += 1


class _Flow:
    """A session's or account's rolling counts, and which of its detectors are in an episode."""

    __slots__ = ("rate", "cancels", "rejects", "alerted")

    def __init__(self, rate_n: int) -> None:
        self.rate = _Rate(rate_n) if rate_n else None
        self.cancels = _Counts()  # a: cancels, b: new orders
        self.rejects = _Counts()  # a: refusals, b: order messages
        self.alerted: set[str] = set()


class _Sizes:
    """The last quantities accepted for one account and symbol, in arrival order and sorted."""

    __slots__ = ("order", "sorted", "median", "bound", "alerted")

    def __init__(self) -> None:
        self.order: deque[Decimal] = deque()
        self.sorted: list[Decimal] = []
        self.median = Decimal(0)
        self.bound: Decimal | None = None  # factor x median, once the history is full
        self.alerted = False


class _Walk:
    """The current one-way run of limit prices of one account, symbol and side: (time, price)."""

    __slots__ = ("run", "direction", "alerted")

    def __init__(self) -> None:
        self.run: deque[tuple[int, Decimal]] = deque(maxlen=1000)
        self.direction = 0
        self.alerted = False


class _Hits:
    __slots__ = ("times", "alerted")

    def __init__(self) -> None:
        self.times: deque[int] = deque()
        self.alerted = False


def _bounded_get(table: dict, key: Any, make: Callable[[], Any]) -> Any:
    found = table.get(key)
    if found is None:
        if len(table) >= MAX_KEYS:
            del table[next(iter(table))]  # the oldest key made
        found = table[key] = make()
    return found


# ---------------------------------------------------------------- the detectors


class Anomaly:
    """The detectors and their state; ``attach`` puts them around the core's order handlers."""

    __slots__ = (
        "settings",
        "flows",
        "sizes",
        "walks",
        "hits",
        "_rate_bucket_ns",
        "_rate_n",
        "_cancel_bucket_ns",
        "_reject_bucket_ns",
        "_rate_min",
        "_rate_span",
        "_rate_factor",
        "_fat_factor",
        "_on",
        "_fat_on",
        "_cancel_min",
        "_cancel_ratio",
        "_reject_min",
        "_reject_ratio",
        "_walk_pct",
    )

    def __init__(self, settings: AnomalySettings | None = None) -> None:
        s = self.settings = settings or AnomalySettings()
        self.flows: dict[str, _Flow] = {}
        self.sizes: dict[tuple[str, str], _Sizes] = {}
        self.walks: dict[tuple[str, str, str], _Walk] = {}
        self.hits: dict[tuple, _Hits] = {}
        r = s.order_rate
        self._rate_bucket_ns = max(1, int(r.window_s * _NS) // _STEPS)
        self._rate_n = -(-int(r.baseline_s * _NS) // self._rate_bucket_ns)
        self._cancel_bucket_ns = max(1, int(s.cancel_ratio.window_s * _NS) // _STEPS)
        self._reject_bucket_ns = max(1, int(s.reject_ratio.window_s * _NS) // _STEPS)
        # recent / window >= factor x (total - recent) / (baseline - window), in whole buckets.
        self._rate_min = r.min_rate * r.window_s
        self._rate_span = self._rate_n - _STEPS
        self._rate_factor = r.factor * _STEPS
        self._on = (s.cancel_ratio.enabled, s.reject_ratio.enabled)
        self._fat_on = s.fat_finger.enabled
        self._cancel_min, self._cancel_ratio = s.cancel_ratio.min_count, s.cancel_ratio.max_ratio
        self._reject_min, self._reject_ratio = s.reject_ratio.min_count, s.reject_ratio.max_ratio
        self._fat_factor = Decimal(str(s.fat_finger.factor))
        self._walk_pct = Decimal(str(s.price_walk.move_pct))

    def attach(self, core: ProxyCore, dispatch: dict[type, Callable[[Any], list[ev.Action]]]) -> None:
        """Watch the order messages ``dispatch`` hands to ``core`` (nothing changes with every detector off)."""
        if not self.settings.any_enabled:
            return
        for kind in (ev.NewOrder, ev.ReplaceOrder, ev.CancelOrder, ev.InvalidMessage):
            dispatch[kind] = partial(self.watch, core, dispatch[kind])

    # ------------------------------------------------------------ snapshot

    def export(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "flows": self.flows,
            "sizes": self.sizes,
            "walks": self.walks,
            "hits": self.hits,
        }

    def load(self, state: dict[str, Any] | None) -> None:
        """Take over a snapshot's state; one made under other settings is dropped (the counts would not fit)."""
        if state is None or state.get("settings") != self.settings:
            return
        self.flows, self.sizes, self.walks, self.hits = state["flows"], state["sizes"], state["walks"], state["hits"]

    # ------------------------------------------------------------ around the core's handlers

    def watch(self, core: ProxyCore, handler: Callable[[Any], list[ev.Action]], e: Any) -> list[ev.Action]:
        """``handler(e)`` with the detectors' alerts (and kill-switch moves) around its actions."""
        if e.session not in core.sessions:
            return handler(e)
        before: list[ev.Action] = []
        if (type(e) is ev.NewOrder or type(e) is ev.ReplaceOrder) and not e.poss_dup:
            self._judge_order(core, e.session, e.order, e.now_ns, before)
        actions = handler(e)
        decision = next((a for a in actions if type(a) is ev.Decision), None)
        if decision is None:
            return before + actions if before else actions
        after: list[ev.Action] = []
        self._count(core, e, decision, after)
        if before:
            actions = before + actions
        if after:
            actions += after
        return actions

    def _judge_order(self, core: ProxyCore, session: str, order: OrderRequest, now_ns: int, out: list) -> None:
        """Fat finger and price walk: judged on the order itself, before the rules see it."""
        s = self.settings
        scope = f"account:{order.account}" if order.account else f"session:{session}"
        if s.fat_finger.enabled:
            sizes = self.sizes.get((scope, order.symbol))
            if sizes is not None and sizes.bound is not None:
                if order.order_qty > sizes.bound:
                    if not sizes.alerted:
                        sizes.alerted = True
                        self._raise(
                            core,
                            "fat_finger",
                            s.fat_finger.action,
                            scope,
                            plain(order.order_qty),
                            plain(sizes.bound),
                            f"order {order.cl_ord_id} of {plain(order.order_qty)} {order.symbol} is more than "
                            f"{s.fat_finger.factor:g} times the median {plain(sizes.median)} of the last "
                            f"{s.fat_finger.history} accepted orders of {scope}",
                            now_ns,
                            out,
                            session,
                            order,
                        )
                else:
                    sizes.alerted = False
        if s.price_walk.enabled and order.price is not None:
            self._walk(core, session, scope, order, now_ns, out)

    def _walk(self, core: ProxyCore, session: str, scope: str, order: OrderRequest, now_ns: int, out: list) -> None:
        cfg = self.settings.price_walk
        walk = _bounded_get(self.walks, (scope, order.symbol, order.side.value), _Walk)
        run, price = walk.run, order.price
        assert price is not None
        if run:
            last = run[-1][1]
            if price == last:
                return  # no step
            direction = 1 if price > last else -1
            if direction != walk.direction:
                run.clear()
                run.append((now_ns, last))
                walk.direction = direction
        run.append((now_ns, price))
        horizon = now_ns - int(cfg.window_s * _NS)
        while len(run) > 1 and run[0][0] < horizon:
            run.popleft()
        start = run[0][1]
        steps = len(run) - 1
        moved = abs(price - start) * 100 / start if start else Decimal(0)
        if steps >= cfg.min_steps and moved >= self._walk_pct:
            if not walk.alerted:
                walk.alerted = True
                self._raise(
                    core,
                    "price_walk",
                    cfg.action,
                    scope,
                    f"{moved:.2f}%",
                    f"{cfg.move_pct:g}%",
                    f"{scope} walked the {order.side.name.lower()} price of {order.symbol} from {plain(start)} to "
                    f"{plain(price)} ({moved:.2f}%) in {steps} steps within {cfg.window_s:g} s",
                    now_ns,
                    out,
                    session,
                    order,
                )
        else:
            walk.alerted = False

    def _count(self, core: ProxyCore, e: Any, d: ev.Decision, out: list) -> None:
        """The decided message in its session's and account's counts, then each rolling detector judged
        (``_episode`` is called only when a statistic is high or was: the usual order costs a few compares)."""
        cancel_on, reject_on = self._on
        now, msg_type, refused = e.now_ns, d.msg_type, not d.accepted
        flows = self.flows
        for scope in (f"session:{d.session}", f"account:{d.account}") if d.account else (f"session:{d.session}",):
            flow = flows.get(scope)
            if flow is None:
                if len(flows) >= MAX_KEYS:
                    del flows[next(iter(flows))]
                flow = flows[scope] = _Flow(self._rate_n if self.settings.order_rate.enabled else 0)
            alerted = flow.alerted
            rate = flow.rate
            if rate is not None:
                bucket = now // self._rate_bucket_ns
                rate.add(bucket)
                recent = rate.recent
                high = (
                    recent >= self._rate_min
                    and bucket - rate.first >= self._rate_n
                    and recent * self._rate_span >= self._rate_factor * (rate.total - recent)
                )
                if high or alerted:
                    self._episode(core, flow, "order_rate", high, scope, d, now, out)
            if cancel_on:
                ring = flow.cancels
                ring.add(now // self._cancel_bucket_ns, msg_type == "F", msg_type == "D")
                high = ring.total_a >= self._cancel_min and ring.total_a >= self._cancel_ratio * max(ring.total_b, 1)
                if high or alerted:
                    self._episode(core, flow, "cancel_ratio", high, scope, d, now, out)
            if reject_on:
                ring = flow.rejects
                ring.add(now // self._reject_bucket_ns, refused, 1)
                high = ring.total_b >= self._reject_min and ring.total_a >= self._reject_ratio * ring.total_b
                if high or alerted:
                    self._episode(core, flow, "reject_ratio", high, scope, d, now, out)
        if msg_type == "F":
            return
        if refused:
            if self.settings.repeated_rejects.enabled:
                self._repeated(core, e, d, out)
        elif self._fat_on:  # accepted, not a cancel: an order or a replace
            self._remember_size(e.session, e.order)

    def _episode(
        self,
        core: ProxyCore,
        flow: _Flow,
        name: str,
        high: bool,
        scope: str,
        d: ev.Decision,
        now: int,
        out: list,
    ) -> None:
        if not high:
            flow.alerted.discard(name)
            return
        if name in flow.alerted:
            return
        flow.alerted.add(name)
        s = self.settings
        if name == "order_rate":
            r, counted = s.order_rate, flow.rate
            assert counted is not None
            rate = counted.recent / r.window_s
            base = (counted.total - counted.recent) / (r.baseline_s - r.window_s)
            observed, threshold = f"{rate:.1f}/s", f"{max(r.min_rate, r.factor * base):.1f}/s"
            text = (
                f"{scope} sent {rate:.1f} order messages a second over the last {r.window_s:g} s, "
                f"{r.factor:g} times or more its {base:.1f}/s of the {r.baseline_s:g} s before"
            )
        elif name == "cancel_ratio":
            c, ring = s.cancel_ratio, flow.cancels
            observed, threshold = f"{ring.total_a / max(ring.total_b, 1):.2f}", f"{c.max_ratio:g}"
            text = (
                f"{scope} sent {ring.total_a} cancels for {ring.total_b} new orders over the last "
                f"{c.window_s:g} s (ratio {observed}, threshold {threshold})"
            )
        else:
            j, ring = s.reject_ratio, flow.rejects
            observed, threshold = f"{ring.total_a / ring.total_b:.2f}", f"{j.max_ratio:g}"
            text = (
                f"{ring.total_a} of {ring.total_b} order messages of {scope} refused over the last "
                f"{j.window_s:g} s (ratio {observed}, threshold {threshold})"
            )
        action = getattr(s, name).action
        out.append(ev.AnomalyAlert(name, scope, observed, threshold, now, text, action, d.session, d.account, d.symbol))
        self._act(core, name, action, scope, text, now, out)

    def _repeated(self, core: ProxyCore, e: Any, d: ev.Decision, out: list) -> None:
        cfg = self.settings.repeated_rejects
        now = e.now_ns
        horizon = now - int(cfg.window_s * _NS)
        keys: list[tuple] = [("id", d.session, d.cl_ord_id)]
        order = getattr(e, "order", None)
        if order is not None:
            keys.append(
                ("order", d.session, order.account, order.symbol, order.side.value, order.order_qty, order.price)
            )
        hits_table = self.hits
        while hits_table:  # forget keys whose last refusal left the window (the oldest touched first)
            oldest = next(iter(hits_table))
            if hits_table[oldest].times[-1] >= horizon:
                break
            del hits_table[oldest]
        crossed: tuple | None = None
        for key in keys:
            hits = hits_table.pop(key, None) or _Hits()
            if len(hits_table) >= MAX_KEYS:
                del hits_table[next(iter(hits_table))]
            hits_table[key] = hits  # last touched goes last
            times = hits.times
            times.append(now)
            while times[0] < horizon:
                times.popleft()
            if len(times) > cfg.count:
                times.popleft()
            if len(times) < cfg.count:
                hits.alerted = False
            elif not hits.alerted:
                hits.alerted = True
                crossed = crossed or key  # one alert for one refusal, even if both keys crossed
        if crossed is None:
            return
        scope = f"account:{d.account}" if d.account else f"session:{d.session}"
        if crossed[0] == "id" or order is None:
            what = f"ClOrdID {d.cl_ord_id}"
        else:
            price = f" at {plain(order.price)}" if order.price is not None else ""
            what = f"the order to {order.side.name.lower()} {plain(order.order_qty)} {order.symbol}{price}"
        text = f"{what} of {d.session} refused {cfg.count} times within {cfg.window_s:g} s (last: {d.code})"
        out.append(
            ev.AnomalyAlert(
                "repeated_rejects",
                scope,
                str(cfg.count),
                str(cfg.count),
                now,
                text,
                cfg.action,
                d.session,
                d.account,
                d.symbol,
            )
        )
        self._act(core, "repeated_rejects", cfg.action, scope, text, now, out)

    def _remember_size(self, session: str, order: OrderRequest) -> None:
        scope = f"account:{order.account}" if order.account else f"session:{session}"
        sizes = _bounded_get(self.sizes, (scope, order.symbol), _Sizes)
        qty, history = order.order_qty, self.settings.fat_finger.history
        sizes.order.append(qty)
        insort(sizes.sorted, qty)
        if len(sizes.order) > history:
            old = sizes.order.popleft()
            del sizes.sorted[bisect_left(sizes.sorted, old)]
        if len(sizes.order) == history:
            srt, mid = sizes.sorted, history // 2
            sizes.median = srt[mid] if history % 2 else (srt[mid - 1] + srt[mid]) / 2
            sizes.bound = sizes.median * self._fat_factor

    # ------------------------------------------------------------ alerts and actions

    def _raise(
        self,
        core: ProxyCore,
        name: str,
        action: str,
        scope: str,
        observed: str,
        threshold: str,
        text: str,
        now: int,
        out: list,
        session: str,
        order: OrderRequest,
    ) -> None:
        out.append(
            ev.AnomalyAlert(name, scope, observed, threshold, now, text, action, session, order.account, order.symbol)
        )
        self._act(core, name, action, scope, text, now, out)

    @staticmethod
    def _act(core: ProxyCore, name: str, action: str, scope: str, text: str, now: int, out: list) -> None:
        """Set ``scope`` REDUCING or HALTED as a desk user would, unless it is that or stricter already."""
        if action == "alert":
            return
        kill = KillAction.HALT if action == "halt" else KillAction.REDUCING
        try:
            parse_scope(scope)
        except ValueError:
            return  # a name the kill switch cannot hold (the alert still says what happened)
        if _SEVERITY[core.kill.get(scope).state] >= _SEVERITY[TARGET[kill]]:
            return
        operator = f"anomaly:{name}"
        before, after = core.kill.apply(scope, kill, text, operator, now)
        out.append(
            ev.AdminResult(
                "kill",
                True,
                scope,
                operator,
                text,
                now,
                before.state.value,
                after.state.value,
                f"{kill.value}: set by the anomaly detector {name}",
            )
        )
