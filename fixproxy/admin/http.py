"""The HTTP admin API of the risk desk: aiohttp on the proxy's own asyncio (uvloop) loop, JSON via msgspec.

Reads copy views of the core out under the core lock; commands go through :class:`Control`, i.e. the
same lock and ``ProxyCore.handle`` as orders. Both run in a thread executor so the loop never waits
on the lock. Every route except ``/healthz``, the OpenAPI document and the dashboard's files (``/``,
``/dashboard/<file>``, from ``static/``; they hold no data) needs ``Authorization: Bearer <token>``;
the token's name is recorded as the operator of a command.

``python -m fixproxy.admin.http`` prints the OpenAPI document (``spec/admin-api.openapi.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from decimal import Decimal
from importlib import resources
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import msgspec
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from ..core import events as ev, views
from ..core.killswitch import parse_scope
from ..core.risk.limits import LIMIT_FIELDS, MONITORABLE, LimitSet
from ..core.risk.rules import RULES
from .control import Control, Feed, item as feed_item
from .metrics import HA_COPY_STATES, HA_ROLES, render as render_metrics

PREFIX = "/api/v1"

T = TypeVar("T")

#: What each role may do; a higher role may do everything a lower one may.
ROLES = {"viewer": 0, "risk": 1, "admin": 2}

HEARTBEAT_S = 15.0
MAX_STREAM_CLIENTS = 50  # [admin] max_stream_clients
STREAM_QUEUE = 1000  # [admin] stream_queue
STREAM_BATCH_S = 0.05  # the event stream's fan-out writes at most this often (what arrived meanwhile, at once)
STREAM_BUFFER = 64 * 1024  # a client's unsent bytes in the proxy (and its socket's send buffer, each) beyond
# which its items wait in its queue
STREAM_YIELD_EVERY = 32  # clients written between two turns of the loop (orders in between)
STREAM_CLOSE_GRACE_S = 5.0  # a dropped client's final event may be read this long before the socket is reset
STREAM_SWEEP_S = 1.0  # clients that went away are noticed at least this often (and when the cap is reached)
MAX_ORDER_PAGE = 1000
MAX_RECENT = 500
DEFAULT_RECENT = 100
HISTORY_SAMPLE_S = 5.0  # how often the firm's exposure is sampled for the dashboard's chart
HISTORY_SIZE = 20_000  # points kept (one only when gross or net changed)


# ---------------------------------------------------------------- auth (pure)


class Identity(NamedTuple):
    """Who is calling: the token's configured name and role."""

    name: str
    role: str


class Denied(NamedTuple):
    status: int  # 401 or 403
    reason: str  # for the log: "missing token", "unknown token", "role too low"
    message: str  # for the caller


def denied_response(verdict: Denied) -> web.Response:
    """The answer to a request a token does not allow: 401 (with the challenge) or 403, and why."""
    headers = {"WWW-Authenticate": 'Bearer realm="fixproxy"'} if verdict.status == 401 else None
    return web.Response(
        body=msgspec.json.encode({"error": verdict.message}),
        status=verdict.status,
        content_type="application/json",
        headers=headers,
    )


class Auth:
    """Bearer tokens and roles. A token is compared in constant time against every configured token."""

    def __init__(self, tokens: Iterable[Any]):
        # ``tokens``: objects with name, role and secret (config.ApiToken).
        self._tokens = [(t.secret.encode(), Identity(t.name, t.role)) for t in tokens]

    def __len__(self) -> int:
        return len(self._tokens)

    def identify(self, authorization: str | None) -> Identity | None:
        """The identity an ``Authorization`` header value proves, or None."""
        scheme, _, given = (authorization or "").strip().partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return None
        presented = given.encode("utf-8", "replace")
        found = None
        for secret, identity in self._tokens:  # no early exit: the time does not tell which token matched
            if hmac.compare_digest(secret, presented) and found is None:
                found = identity
        return found

    def check(self, authorization: str | None, required: str) -> Identity | Denied:
        """The caller's identity if its role is at least ``required``; otherwise why not (401 or 403)."""
        if not (authorization or "").strip():
            return Denied(401, "missing token", "missing bearer token (Authorization: Bearer <token>)")
        identity = self.identify(authorization)
        if identity is None:
            return Denied(401, "unknown token", "unknown bearer token")
        if not allows(identity.role, required):
            return Denied(
                403, "role too low", f"token {identity.name!r} has role {identity.role}; this needs {required} or above"
            )
        return identity


def allows(role: str, required: str) -> bool:
    """Does ``role`` include what ``required`` may do?"""
    return ROLES.get(role, -1) >= ROLES[required]


# ---------------------------------------------------------------- requests (pure)

Reason = msgspec.Meta(description="Why: recorded with the action in the log and the audit trail (required).")


def _reason(reason: str) -> None:
    if not reason.strip():
        raise ValueError("reason must not be empty")


class KillRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Halt, halt and cancel, reducing or resume for one scope."""

    scope: Annotated[
        str,
        msgspec.Meta(
            description="firm, session:<name>, account:<Account> or symbol:<Symbol>", examples=["account:ACC1"]
        ),
    ]
    action: Literal["halt", "halt_and_cancel", "reducing", "resume"]
    reason: Annotated[str, Reason]

    def __post_init__(self) -> None:
        parse_scope(self.scope)
        _reason(self.reason)


class LimitRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Set one limit of one layer (null clears it), effective from the next order."""

    layer: Annotated[
        str, msgspec.Meta(description="firm, session:<name>, account:<Account> or symbol:<Symbol>", examples=["firm"])
    ]
    field: Annotated[str, msgspec.Meta(description="a limit name: " + ", ".join(LIMIT_FIELDS))]
    value: Annotated[
        Any,
        msgspec.Meta(
            description="the new value (a number, or a decimal as a string; a list of symbols for "
            "restricted_symbols), or null to clear the limit in this layer"
        ),
    ]
    reason: Annotated[str, Reason]

    def __post_init__(self) -> None:
        try:
            parse_scope(self.layer)
        except ValueError:
            raise ValueError(f"layer must be 'firm' or session:/account:/symbol:<name>, got {self.layer!r}") from None
        if self.field not in LIMIT_FIELDS:
            raise ValueError(f"field {self.field!r} is not a limit (limits: {', '.join(LIMIT_FIELDS)})")
        v = self.value
        ok = (
            v is None
            or (isinstance(v, (int, Decimal, str)) and not isinstance(v, bool))
            or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        )
        if not ok:
            raise ValueError("value must be a number, a string, a list of strings or null")
        _reason(self.reason)


class ModeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Put a rule, or one limit of one layer, in enforce or monitor mode, from the next order. In
    monitor mode an order it would refuse goes on, and a would-have-refused decision is recorded."""

    mode: Literal["enforce", "monitor"]
    reason: Annotated[str, Reason]
    rule: Annotated[
        str, msgspec.Meta(description="a rule name: " + ", ".join(RULES) + " (or give layer and field)")
    ] = ""
    layer: Annotated[
        str, msgspec.Meta(description="with field: firm, session:<name>, account:<Account> or symbol:<Symbol>")
    ] = ""
    field: Annotated[str, msgspec.Meta(description="with layer: a limit name: " + ", ".join(MONITORABLE))] = ""

    def __post_init__(self) -> None:
        if bool(self.rule) == bool(self.layer or self.field):
            raise ValueError("give either rule, or layer and field")
        if self.rule and self.rule not in RULES:
            raise ValueError(f"rule {self.rule!r} is not a rule (rules: {', '.join(RULES)})")
        if not self.rule:
            if not (self.layer and self.field):
                raise ValueError("give both layer and field")
            try:
                parse_scope(self.layer)
            except ValueError:
                raise ValueError(
                    f"layer must be 'firm' or session:/account:/symbol:<name>, got {self.layer!r}"
                ) from None
            if self.field not in MONITORABLE:
                raise ValueError(f"field {self.field!r} is not a limit to monitor (limits: {', '.join(MONITORABLE)})")
        _reason(self.reason)


class ResumeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Resume taking new orders after a recording failure."""

    reason: Annotated[str, Reason]


class ReferenceRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Set a symbol's reference price (the collar and notional rules use it)."""

    symbol: Annotated[str, msgspec.Meta(min_length=1, examples=["AAPL"])]
    price: Annotated[Decimal, msgspec.Meta(description="a number, or a decimal as a string", examples=["190.25"])]
    reason: Annotated[str, Reason]
    force: Annotated[
        bool,
        msgspec.Meta(
            description="set a price further from the current reference than "
            "[risk] reference_change_max_pct allows (recorded)"
        ),
    ] = False

    def __post_init__(self) -> None:
        if any(c.isspace() for c in self.symbol):
            raise ValueError(f"symbol must not contain spaces, got {self.symbol[:80]!a}")
        try:  # the name rule of the scope symbol:<Symbol>: no control characters, ASCII, at most 64
            parse_scope(f"symbol:{self.symbol}")
        except ValueError:
            raise ValueError(
                f"symbol must be 1 to 64 printable ASCII characters without spaces, got {self.symbol[:80]!a}"
            ) from None
        _reason(self.reason)


class BadRequest(Exception):
    """A request the API cannot act on (HTTP 400); the message says why."""


_DECODERS: dict[type, msgspec.json.Decoder] = {
    t: msgspec.json.Decoder(t, float_hook=Decimal)
    for t in (KillRequest, LimitRequest, ReferenceRequest, ResumeRequest, ModeRequest)
}


def parse_body(body: bytes, kind: type[T]) -> T:
    """Decode and check a command's JSON body; BadRequest with a readable message otherwise."""
    if not body.strip():
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        return _DECODERS[kind].decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequest(_readable(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"request body is not valid JSON ({exc})") from None


def _parse_count(text: str | None, default: int, most: int) -> int:
    """A ``limit`` query parameter: ``default`` when absent, else a whole number from 1 to ``most``."""
    if text is None or text == "":
        return default
    try:
        n = int(text)
    except ValueError:
        raise BadRequest(f"limit must be a whole number, got {text!r}") from None
    if not 1 <= n <= most:
        raise BadRequest(f"limit must be between 1 and {most}, got {n}")
    return n


def parse_limit(text: str | None) -> int:
    """The ``limit`` query parameter of the recent-item reads."""
    return _parse_count(text, DEFAULT_RECENT, MAX_RECENT)


def parse_page(text: str | None) -> int:
    """The ``limit`` query parameter of GET /orders (a page of open orders)."""
    return _parse_count(text, views.ORDER_PAGE, MAX_ORDER_PAGE)


def parse_since(text: str | None) -> int:
    """The ``since_ns`` query parameter of the exposure history."""
    if text is None or text == "":
        return 0
    try:
        n = int(text)
    except ValueError:
        raise BadRequest(f"since_ns must be a whole number, got {text!r}") from None
    if n < 0:
        raise BadRequest(f"since_ns must not be negative, got {n}")
    return n


def _readable(message: str) -> str:
    """msgspec says '... - at `$.reason`'; say 'reason: ...' instead."""
    text, sep, where = message.rpartition(" - at `$")
    if not sep:
        return message
    where = where.rstrip("`").lstrip(".")
    return f"{where}: {text}" if where else text


def result_body(result: ev.AdminResult) -> dict:
    """An AdminResult as the API answers it (200 when ok, 422 with ``error`` when not)."""
    body = msgspec.to_builtins(result)
    body.pop("type", None)
    if not result.ok:
        body["error"] = result.detail
    return body


# ---------------------------------------------------------------- the dashboard's data


class ExposureHistory:
    """The firm's gross and net exposure over the proxy's life, for the dashboard's chart.

    A point is kept only when gross or net changed since the last one, at most ``size`` of them.
    """

    def __init__(self, size: int = HISTORY_SIZE):
        self._points: deque[tuple[int, str, str]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, now_ns: int, gross: str, net: str) -> None:
        with self._lock:
            if self._points and self._points[-1][1:] == (gross, net):
                return
            self._points.append((now_ns, gross, net))

    def since(self, since_ns: int = 0) -> list[dict]:
        with self._lock:
            points = list(self._points)
        return [{"t_ns": t, "gross": g, "net": n} for t, g, n in points if t > since_ns]


def firm_totals(exposure: list[dict]) -> tuple[str, str]:
    """(gross, net) of the firm row of the exposure view ("0", "0" when the book is empty)."""
    firm = next((row for row in exposure if row["scope"] == "firm"), None)
    return (firm["gross"], firm["net"]) if firm else ("0", "0")


def _assets() -> dict[str, tuple[bytes, str]]:
    """The dashboard's files (package data under fixproxy/admin/static), by name, with their content type."""
    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
    out = {}
    for entry in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in types:
            out[entry.name] = (entry.read_bytes(), types[suffix])
    return out


#: Served with the dashboard: everything comes from this server, nothing runs inline.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


# ---------------------------------------------------------------- the event stream's fan-out


class StreamClient:
    """One event-stream connection as the fan-out sees it."""

    __slots__ = ("name", "remote", "transport", "chunked", "queue", "queued", "done")

    def __init__(self, name: str, remote: str | None, done: asyncio.Future):
        self.name, self.remote = name, remote
        self.transport: asyncio.Transport | None = None  # None until its response's headers are out
        self.chunked = True
        self.queue: deque[tuple[bytes, bytes, int]] = deque()  # (plain, chunk-framed, items) not yet written
        self.queued = 0  # items in ``queue``
        self.done = done  # resolved (with why) when the stream ends


class StreamHub:
    """Server-sent events to every client, off the order path.

    The order path only appends to the feed's bounded outbox (``Feed.add``). One task on the admin loop
    takes what arrived, at most every ``batch_s``, encodes it once, and writes the same bytes to each
    client's socket. A client whose socket does not take them (its unsent bytes past ``STREAM_BUFFER``)
    has them queued, at most ``queue_size`` items; beyond that it is dropped with a last ``dropped``
    event, never waited for. At most ``max_clients`` clients: the next one is answered 503.
    """

    def __init__(
        self,
        feed: Feed,
        *,
        max_clients: int = MAX_STREAM_CLIENTS,
        queue_size: int = STREAM_QUEUE,
        heartbeat_s: float = HEARTBEAT_S,
        batch_s: float = STREAM_BATCH_S,
        log: FilteringBoundLogger | None = None,
    ):
        self.feed = feed
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.heartbeat_s = heartbeat_s
        self.batch_s = batch_s
        self.log = log or structlog.get_logger("fixproxy.admin")
        self.clients: list[StreamClient] = []  # connected (and those whose response is being prepared)
        self.dropped = 0  # clients dropped as too slow since start-up
        self._wake = asyncio.Event()
        self._lost_seen = 0

    # -- clients (the request handler)

    def open(self, name: str, remote: str | None) -> StreamClient | None:
        """A place for one more client, or None when ``max_clients`` are connected."""
        if len(self.clients) >= self.max_clients:
            self._sweep()
            if len(self.clients) >= self.max_clients:
                return None
        client = StreamClient(name, remote, asyncio.get_running_loop().create_future())
        self.clients.append(client)
        return client

    def start(self, client: StreamClient, transport: asyncio.Transport, chunked: bool) -> None:
        """The client's headers are out: it gets everything from the next batch on."""
        client.transport, client.chunked = transport, chunked
        sock = transport.get_extra_info("socket")
        if sock is not None:  # the kernel holds at most this much for a client that does not read
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_BUFFER)
        self.feed.streaming = True

    def close(self, client: StreamClient) -> None:
        if client in self.clients:
            self.clients.remove(client)
        if not client.done.done():
            client.done.set_result("closed")
        self.feed.streaming = any(c.transport is not None for c in self.clients)

    def _sweep(self) -> None:
        """End the streams of clients that went away (their handlers then close them)."""
        gone = [c for c in self.clients if c.transport is not None and c.transport.is_closing()]
        for client in gone:
            self.close(client)

    def end_all(self, why: str) -> None:
        for client in list(self.clients):
            if not client.done.done():
                client.done.set_result(why)

    # -- the fan-out task

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.feed.listen(loop, self._wake.set)
        beat_at = loop.time() + self.heartbeat_s
        while True:
            timeout = beat_at - loop.time()
            timeout = min(timeout, STREAM_SWEEP_S)
            if any(c.queue for c in self.clients):
                timeout = min(timeout, self.batch_s)  # look again soon whether their sockets take more
            if timeout > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            if self._wake.is_set():
                self._wake.clear()
                await asyncio.sleep(self.batch_s)  # what follows in this interval goes in the same write
            self._sweep()
            data, n = self._encode(self.feed.take())
            if loop.time() >= beat_at:
                beat_at = loop.time() + self.heartbeat_s
                if not data:
                    data = b": heartbeat\n\n"
            try:
                await self._send(data, n)
            except Exception as exc:  # noqa: BLE001 - one bad write must not end the stream for everyone
                self.log.error("event_stream_error", error=repr(exc), traceback=traceback.format_exc())

    def _encode(self, items: list) -> tuple[bytes, int]:
        parts = []
        lost = self.feed.lost
        if lost != self._lost_seen:
            gap = {
                "feed": "notice",
                "kind": "stream_gap",
                "now_ns": time.time_ns(),
                "detail": f"{lost - self._lost_seen} item(s) were not streamed: the fan-out fell behind",
            }
            self._lost_seen = lost
            parts.append(b"event: notice\ndata: " + msgspec.json.encode(gap) + b"\n\n")
        for kind, action in items:
            parts.append(
                b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode(feed_item(kind, action)) + b"\n\n"
            )
        return b"".join(parts), len(items)

    async def _send(self, data: bytes, n: int) -> None:
        framed = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        for i, client in enumerate(list(self.clients)):
            if i % STREAM_YIELD_EVERY == STREAM_YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let orders in between
            t = client.transport
            if t is None or client.done.done():
                continue
            if t.is_closing():
                client.done.set_result("gone")  # the client went away
                continue
            if data:
                client.queue.append((data, framed, n))
                client.queued += n
            while client.queue and t.get_write_buffer_size() <= STREAM_BUFFER:
                plain, chunk, k = client.queue.popleft()
                client.queued -= k
                t.write(chunk if client.chunked else plain)
            if client.queued > self.queue_size:
                self._drop(client, t)

    def _drop(self, client: StreamClient, t: asyncio.Transport) -> None:
        """Too slow: a last event saying so (read if the client ever reads again), then the connection ends."""
        self.dropped += 1
        queued = client.queued
        client.queue.clear()
        client.queued = 0
        note = msgspec.json.encode(
            {
                "feed": "notice",
                "kind": "dropped",
                "now_ns": time.time_ns(),
                "detail": f"dropped: too slow ({queued} items waiting, at most "
                f"{self.queue_size}; [admin] stream_queue)",
            }
        )
        body = b"event: dropped\ndata: " + note + b"\n\n"
        t.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if client.chunked else body)
        t.close()
        asyncio.get_running_loop().call_later(STREAM_CLOSE_GRACE_S, t.abort)
        self.log.warning(
            "event_stream_client_dropped",
            token_name=client.name,
            remote=client.remote,
            queued=queued,
            stream_queue=self.queue_size,
        )
        client.done.set_result("dropped")


# ---------------------------------------------------------------- the application


class Route(NamedTuple):
    method: str
    path: str  # under PREFIX, or absolute when it starts with "//"
    role: str | None  # None: no token needed
    handler: str  # method name of AdminApi
    summary: str
    request: type | None = None
    response: str = ""  # a schema name in components
    query_limit: bool = False
    query_since: bool = False
    query_page: bool = False

    @property
    def url(self) -> str:
        return self.path[1:] if self.path.startswith("//") else PREFIX + self.path


ROUTES: tuple[Route, ...] = (
    Route("GET", "//", None, "dashboard", "The risk dashboard, a web page that asks for a token (no token needed)"),
    Route("GET", "//dashboard/{asset}", None, "asset", "The dashboard's script and style sheet (no token needed)"),
    Route(
        "GET",
        "//healthz",
        None,
        "healthz",
        "Health (no token needed): 200 while the proxy records everything (status ok, or degraded when the audit "
        "follower is dead, stuck or behind: nothing is lost, the audit store catches up; or the cluster's database "
        "is lost: cluster says why and whether this instance is fenced; or, in an active/passive pair, no "
        "standby has the copy: ha says so); 503 while it cannot record (status failed: new orders are refused) "
        "or, in a pair, while this instance is fenced (it writes to no socket)",
        response="Health",
    ),
    Route("GET", "/openapi.json", None, "openapi", "This document (no token needed)"),
    Route(
        "GET",
        "//metrics",
        "viewer",
        "metrics",
        "Prometheus metrics in the text exposition format (OpenMetrics when the Accept header asks for it), "
        "listed in docs/metrics.md; no token needed when [admin] metrics_public = true",
    ),
    Route(
        "GET",
        "/whoami",
        "viewer",
        "whoami",
        "The caller's token name and role, and the alert levels (what the dashboard needs to start)",
        response="Whoami",
    ),
    Route(
        "GET",
        "/sessions",
        "viewer",
        "sessions",
        "OMS sessions and venues, and whether each is logged on",
        response="Sessions",
    ),
    Route(
        "GET",
        "/trading-states",
        "viewer",
        "trading_states",
        "Scopes that are not ACTIVE (a scope not listed is ACTIVE)",
        response="TradingStates",
    ),
    Route(
        "GET",
        "/limits",
        "viewer",
        "limits",
        "The limits in force: configured layers with live changes applied",
        response="LimitSet",
    ),
    Route("GET", "/positions", "viewer", "positions", "Positions per account and symbol", response="Positions"),
    Route(
        "GET",
        "/exposure",
        "viewer",
        "exposure",
        "Exposure per scope (firm, sessions, accounts) and the utilization of aggregate limits",
        response="Exposure",
    ),
    Route(
        "GET",
        "/position-limits",
        "viewer",
        "position_limits",
        "Each account's position in a symbol, working orders included, against max_long_position and "
        "max_short_position (lines with such a limit only)",
        response="PositionLimits",
    ),
    Route(
        "GET",
        "/orders",
        "viewer",
        "orders",
        "Open orders in key order, one page at a time: the next page starts after the last key of this one "
        "(fewer than limit orders: the last page); summary's orders.open says how many there are",
        response="Orders",
        query_page=True,
    ),
    Route(
        "GET",
        "/decisions",
        "viewer",
        "decisions",
        "Recent risk decisions, newest first",
        response="FeedItems",
        query_limit=True,
    ),
    Route(
        "GET",
        "/alerts",
        "viewer",
        "alerts",
        "Recent limit utilization alerts and anomaly detectors' alerts, newest first",
        response="FeedItems",
        query_limit=True,
    ),
    Route(
        "GET",
        "/admin-actions",
        "viewer",
        "admin_actions",
        "Recent admin actions (who, what, scope, reason, before/after), newest first",
        response="FeedItems",
        query_limit=True,
    ),
    Route(
        "GET",
        "/summary",
        "viewer",
        "summary",
        "Everything the risk desk looks at, in one value: the orders as running counts (GET /orders lists them)",
        response="Summary",
    ),
    Route(
        "GET",
        "/cluster",
        "viewer",
        "cluster",
        "The firm-wide picture of a cluster of proxies ([cluster]): every instance's sessions, usage of the "
        "shared limits and positions, and each shared limit with every instance's share, as this instance "
        'last read them from the database; {"cluster": "disabled"} for a proxy running alone',
        response="Cluster",
    ),
    Route(
        "GET",
        "/ha",
        "viewer",
        "ha",
        "This instance's part in an active/passive pair ([ha]): its role (active, standby, fenced), the "
        "fencing token, the copy's mode and state, and its partner with the copy's lag; 404 without [ha]",
        response="Ha",
    ),
    Route(
        "GET",
        "/exposure-history",
        "viewer",
        "exposure_history",
        f"The firm's gross and net exposure since start-up, sampled every {HISTORY_SAMPLE_S:g} s (a point "
        "only when either changed), oldest first",
        response="ExposureHistory",
        query_since=True,
    ),
    Route(
        "GET",
        "/events",
        "viewer",
        "events",
        "Server-sent events: every new decision, alert, admin action and notice (event: <kind>, "
        "data: JSON), with a comment line as heartbeat every 15 s",
    ),
    Route(
        "POST",
        "/kill-switch",
        "risk",
        "kill",
        "Halt, halt and cancel, reducing, or resume a scope",
        KillRequest,
        "AdminResult",
    ),
    Route(
        "POST",
        "/limits",
        "risk",
        "set_limit",
        "Set or clear one limit of one layer, from the next order",
        LimitRequest,
        "AdminResult",
    ),
    Route(
        "GET",
        "/modes",
        "viewer",
        "modes",
        "Each rule's mode (enforce or monitor), and the limits of each layer in monitor mode",
        response="Modes",
    ),
    Route(
        "POST",
        "/modes",
        "risk",
        "set_mode",
        "Put a rule, or one limit of one layer, in enforce or monitor mode, from the next order",
        ModeRequest,
        "AdminResult",
    ),
    Route(
        "POST",
        "/reference-prices",
        "risk",
        "set_reference",
        "Set a symbol's reference price",
        ReferenceRequest,
        "AdminResult",
    ),
    Route(
        "POST",
        "/recording/resume",
        "risk",
        "resume_recording",
        "After a recording failure (the journal's disk full): take new orders again, once the journal can grow",
        ResumeRequest,
        "AdminResult",
    ),
)


HA_NOT_CONFIGURED = "high availability is not configured: this proxy has no [ha] section (it runs alone)"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status, content_type="application/json")


class AdminApi:
    """The aiohttp application over one proxy's :class:`Control`."""

    def __init__(
        self,
        control: Control,
        tokens: Iterable[Any],
        *,
        sessions: Iterable[str] = (),
        heartbeat_s: float = HEARTBEAT_S,
        max_stream_clients: int = MAX_STREAM_CLIENTS,
        stream_queue: int = STREAM_QUEUE,
        stream_batch_s: float = STREAM_BATCH_S,
        metrics: CollectorRegistry | None = None,
        metrics_public: bool = False,
    ):
        self.control = control
        #: GET /metrics: the proxy's registry (None: 404), and whether it needs no token.
        self.metrics_registry = metrics
        self.metrics_public = metrics_public
        self.feed = control.feed
        self.auth = Auth(tokens)
        self.session_names = frozenset(sessions)  # configured OMS sessions: a session scope must name one
        self.heartbeat_s = heartbeat_s
        self.log = structlog.get_logger("fixproxy.admin")
        self.hub = StreamHub(
            self.feed,
            max_clients=max_stream_clients,
            queue_size=stream_queue,
            heartbeat_s=heartbeat_s,
            batch_s=stream_batch_s,
            log=self.log,
        )
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.history = ExposureHistory()
        self._assets = _assets()

    # -- wiring

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=64 * 1024)
        for route in ROUTES:
            app.router.add_route(route.method, route.url, self._guard(route))
        app.on_shutdown.append(self._end_streams)
        app.cleanup_ctx.append(self._sampling)
        app.cleanup_ctx.append(self._fan_out)
        return app

    async def _sampling(self, app: web.Application) -> AsyncIterator[None]:
        """Sample the firm's exposure for the history while the application runs."""

        async def every() -> None:
            while True:
                try:
                    await self._sample()
                except Exception as exc:  # noqa: BLE001 - a missed sample is no reason to stop sampling
                    self.log.warning("exposure_sample_failed", error=repr(exc))
                await asyncio.sleep(HISTORY_SAMPLE_S)

        task = asyncio.create_task(every())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _fan_out(self, app: web.Application) -> AsyncIterator[None]:
        """The event stream's fan-out task, while the application runs."""
        task = asyncio.create_task(self.hub.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _sample(self) -> None:
        gross, net = firm_totals(await self._run(self.control.view, "exposure"))
        self.history.add(self.control.clock(), gross, net)

    async def start(self, host: str, port: int) -> str:
        """Listen on ``host:port`` (OSError if it cannot); returns the API's base URL."""
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0][:2] if runner.addresses else (host, port)
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        self.url = f"http://{shown}:{bound[1]}{PREFIX}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _guard(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        handler = getattr(self, route.handler)
        if route.handler == "metrics" and self.metrics_public:
            route = route._replace(role=None)  # [admin] metrics_public: a scraper without credentials

        async def guarded(request: web.Request) -> web.StreamResponse:
            if route.role is None:
                return await handler(request, None)
            verdict = self.auth.check(request.headers.get("Authorization"), route.role)
            if isinstance(verdict, Denied):
                # Never the token: who (if known), what and from where.
                fields = {
                    "status": verdict.status,
                    "reason": verdict.reason,
                    "method": request.method,
                    "path": request.path,
                    "remote": request.remote,
                    "required_role": route.role,
                }
                identity = self.auth.identify(request.headers.get("Authorization")) if verdict.status == 403 else None
                if identity is not None:  # a 403 names the token it refused
                    fields.update(token_name=identity.name, role=identity.role)
                self.log.warning("admin_auth_failed", **fields)
                return denied_response(verdict)
            return await handler(request, verdict)

        guarded.__name__ = route.handler
        return guarded

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every error as JSON ``{"error": "..."}``."""
        try:
            return await handler(request)
        except BadRequest as exc:
            return _json({"error": str(exc)}, 400)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _json({"error": exc.reason}, exc.status)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # noqa: BLE001 - answer 500 and keep serving
            self.log.error(
                "admin_api_error",
                method=request.method,
                path=request.path,
                error=repr(exc),
                traceback=traceback.format_exc(),
            )
            return _json({"error": "internal error; see the proxy's log"}, 500)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """Call ``fn`` in the default executor: it takes the core lock, which the loop must not wait on."""
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

    async def _view(self, name: str) -> web.Response:
        return _json(await self._run(self.control.view, name))

    # -- open

    async def healthz(self, request: web.Request, who: Identity | None) -> web.Response:
        health = await self._run(self.control.health)
        return _json(health, 503 if health["status"] == "failed" else 200)

    async def dashboard(self, request: web.Request, who: Identity | None) -> web.Response:
        body, content_type = self._assets["index.html"]
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_PAGE_HEADERS)

    async def asset(self, request: web.Request, who: Identity | None) -> web.Response:
        found = self._assets.get(request.match_info["asset"])
        if found is None or found[1] == "text/html":
            raise web.HTTPNotFound(reason="no such dashboard file")
        return web.Response(body=found[0], content_type=found[1], charset="utf-8", headers=_PAGE_HEADERS)

    async def whoami(self, request: web.Request, who: Identity) -> web.Response:
        return _json({"name": who.name, "role": who.role, "alert_levels": self.control.alert_levels()})

    async def exposure_history(self, request: web.Request, who: Identity | None) -> web.Response:
        since = parse_since(request.query.get("since_ns"))
        await self._sample()  # so the chart ends at the present
        return _json({"now_ns": self.control.clock(), "points": self.history.since(since)})

    async def openapi(self, request: web.Request, who: Identity | None) -> web.Response:
        return _json(openapi_document())

    async def metrics(self, request: web.Request, who: Identity | None) -> web.Response:
        if self.metrics_registry is None:
            raise web.HTTPNotFound(reason="this server has no metrics")
        body, content_type = await self._run(render_metrics, self.metrics_registry, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})

    # -- reads

    async def sessions(self, request: web.Request, who: Identity | None) -> web.Response:
        return await self._view("sessions")

    async def trading_states(self, request: web.Request, who: Identity | None) -> web.Response:
        return await self._view("trading_states")

    async def limits(self, request: web.Request, who: Identity | None) -> web.Response:
        return await self._view("limits")

    async def positions(self, request: web.Request, who: Identity | None) -> web.Response:
        return await self._view("positions")

    async def exposure(self, request: web.Request, who: Identity | None) -> web.Response:
        return await self._view("exposure")

    async def position_limits(self, request: web.Request, who: Identity | None) -> web.Response:
        return await self._view("position_limits")

    async def orders(self, request: web.Request, who: Identity | None) -> web.Response:
        limit = parse_page(request.query.get("limit"))
        after = request.query.get("after", "")
        return _json(await self._run(self.control.view, "open_orders", limit, after))

    async def summary(self, request: web.Request, who: Identity | None) -> web.Response:
        summary = await self._run(self.control.view, "summary")
        summary["health"] = await self._run(self.control.health)
        return _json(summary)

    async def cluster(self, request: web.Request, who: Identity | None) -> web.Response:
        return _json(await self._run(self.control.cluster))

    async def ha(self, request: web.Request, who: Identity | None) -> web.Response:
        view = await self._run(self.control.ha)
        if view is None:
            raise web.HTTPNotFound(reason=HA_NOT_CONFIGURED)
        return _json(view)

    async def decisions(self, request: web.Request, who: Identity | None) -> web.Response:
        return _json(self.feed.recent("decision", parse_limit(request.query.get("limit"))))

    async def alerts(self, request: web.Request, who: Identity | None) -> web.Response:
        return _json(self.feed.recent("alert", parse_limit(request.query.get("limit"))))

    async def admin_actions(self, request: web.Request, who: Identity | None) -> web.Response:
        return _json(self.feed.recent("admin", parse_limit(request.query.get("limit"))))

    async def events(self, request: web.Request, who: Identity) -> web.StreamResponse:
        client = self.hub.open(who.name, request.remote)
        if client is None:
            self.log.warning(
                "event_stream_refused",
                token_name=who.name,
                remote=request.remote,
                max_stream_clients=self.hub.max_clients,
            )
            return web.Response(
                body=msgspec.json.encode(
                    {
                        "error": f"too many event-stream clients: {self.hub.max_clients} are "
                        "connected, the most [admin] max_stream_clients allows; try "
                        "again later"
                    }
                ),
                status=503,
                content_type="application/json",
                headers={"Retry-After": "5"},
            )
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            )
            chunked = request.version >= (1, 1)  # HTTP/1.0: no chunks, the stream ends with the connection
            if chunked:
                response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b": connected\n\n")  # sends the headers too; the fan-out writes the rest
            if request.transport is None:
                return response
            self.hub.start(client, request.transport, chunked)
            await client.done
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away
        finally:
            self.hub.close(client)
        return response

    async def _end_streams(self, app: web.Application) -> None:
        self.hub.end_all("shutting down")

    # -- commands

    def _check_scope(self, scope: str) -> None:
        kind, _, name = scope.partition(":")
        if kind == "session" and self.session_names and name not in self.session_names:
            raise BadRequest(f"no OMS session named {name!r} (sessions: {', '.join(sorted(self.session_names))})")

    async def kill(self, request: web.Request, who: Identity) -> web.Response:
        body = parse_body(await request.read(), KillRequest)
        self._check_scope(body.scope)
        result = await self._run(self.control.kill, body.scope, body.action, body.reason, who.name)
        return _json(result_body(result), 200 if result.ok else 422)

    async def set_limit(self, request: web.Request, who: Identity) -> web.Response:
        body = parse_body(await request.read(), LimitRequest)
        self._check_scope(body.layer)
        result = await self._run(self.control.set_limit, body.layer, body.field, body.value, body.reason, who.name)
        return _json(result_body(result), 200 if result.ok else 422)

    async def modes(self, request: web.Request, who: Identity | None) -> web.Response:
        return _json(await self._run(self.control.modes))

    async def set_mode(self, request: web.Request, who: Identity) -> web.Response:
        body = parse_body(await request.read(), ModeRequest)
        if body.layer:
            self._check_scope(body.layer)
        result = await self._run(
            self.control.set_mode, body.rule, body.layer, body.field, body.mode, body.reason, who.name
        )
        return _json(result_body(result), 200 if result.ok else 422)

    async def resume_recording(self, request: web.Request, who: Identity) -> web.Response:
        body = parse_body(await request.read(), ResumeRequest)
        result = await self._run(self.control.resume_recording, who.name, body.reason)
        return _json(result_body(result), 200 if result.ok else 422)

    async def set_reference(self, request: web.Request, who: Identity) -> web.Response:
        body = parse_body(await request.read(), ReferenceRequest)
        result = await self._run(
            self.control.set_reference, body.symbol, str(body.price), body.reason, who.name, body.force
        )
        return _json(result_body(result), 200 if result.ok else 422)


# ---------------------------------------------------------------- OpenAPI 3.1


def _obj(props: dict[str, Any], description: str = "") -> dict:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if description:
        out["description"] = description
    return out


def _arr(items: dict, description: str = "") -> dict:
    out: dict[str, Any] = {"type": "array", "items": items}
    if description:
        out["description"] = description
    return out


_S = {"type": "string"}
_DEC = {"type": "string", "description": "a decimal number as a string (never a binary float)"}
_I = {"type": "integer"}
_B = {"type": "boolean"}


def _schemas() -> dict[str, Any]:
    ref = "#/components/schemas/{name}"
    _, generated = msgspec.json.schema_components(
        [KillRequest, LimitRequest, ReferenceRequest, ModeRequest, LimitSet], ref_template=ref
    )
    result = dict(msgspec.json.schema_components([ev.AdminResult], ref_template=ref)[1]["AdminResult"])
    result["properties"] = {k: v for k, v in result["properties"].items() if k != "type"}
    result["properties"]["error"] = {"type": "string", "description": "when ok is false: why (same as detail)"}
    result["required"] = [k for k in result["required"] if k != "type"]
    result["description"] = (
        "What an admin action did. kind: kill, limit, reference, mode; before/after: the state or "
        "value before and after; orders_cancelled: cancels sent by halt_and_cancel."
    )
    states = _arr(
        _obj(
            {
                "scope": _S,
                "state": {"enum": ["ACTIVE", "REDUCING", "HALTED"]},
                "reason": _S,
                "operator": _S,
                "since_ns": _I,
            }
        )
    )
    positions = _arr(
        _obj(
            {k: _S for k in ("account", "symbol", "sector")}
            | {
                k: _DEC
                for k in (
                    "qty",
                    "avg_cost",
                    "mark",
                    "market_value",
                    "realized_pnl",
                    "unrealized_pnl",
                    "bought_qty",
                    "sold_qty",
                    "traded_notional",
                )
            }
        )
    )
    exposure = _arr(
        _obj(
            {
                "scope": _S,
                "gross": _DEC,
                "net": _DEC,
                "net_long": _DEC,
                "net_short": _DEC,
                "open_orders": _I,
                "sectors": {"type": "object", "additionalProperties": _DEC},
                "limits": {
                    "type": "object",
                    "additionalProperties": _obj({"limit": _DEC, "observed": _DEC, "utilization_pct": _DEC}),
                },
            }
        )
    )
    orders = _arr(
        _obj(
            {
                k: _S
                for k in (
                    "key",
                    "session",
                    "cl_ord_id",
                    "venue",
                    "order_id",
                    "account",
                    "symbol",
                    "side",
                    "ord_type",
                    "status",
                    "pending_replace",
                )
            }
            | {k: _DEC for k in ("order_qty", "price", "leaves_qty", "cum_qty", "avg_px")}
        )
    )
    sessions = _obj(
        {
            "oms": _arr(
                _obj({"name": _S, "up": _B, "default_venue": _S, "reject_with": _S, "cancel_on_disconnect": _B})
            ),
            "venues": _arr(_obj({"name": _S, "up": _B})),
            "drop_copies": _arr(_obj({"name": _S, "up": _B, "copy_refusals": _B})),
        }
    )
    return {
        **generated,
        "AdminResult": result,
        "Error": _obj({"error": _S}, "What went wrong, in one sentence."),
        "Health": _obj(
            {
                "status": {"enum": ["ok", "degraded", "failed"]},
                "journal": _obj(
                    {
                        "state": {"enum": ["ok", "failed"]},
                        "reason": _S,
                        "segment": _I,
                        "bytes": _I,
                        "lost_records": _I,
                        "sync": {"enum": ["none", "interval", "always"]},
                    },
                    "The write-ahead journal: failed while it cannot grow (new orders refused)",
                ),
                "audit": _obj(
                    {"state": {"enum": ["ok", "behind", "stuck", "dead", "disabled"]}},
                    "The audit follower (more fields: its position, lag and restarts)",
                ),
                "engine": _obj(
                    {"state": {"enum": ["ok", "failed"]}, "reason": _S},
                    "The FIX engine: failed once a thread of it has ended (quickfix's acceptor or "
                    "initiator, the proxy's control thread)",
                ),
                "trading_day": _obj(
                    {"day": _S, "roll": _S},
                    "The trading day the proxy is in ([proxy] day_roll): its date and when the next begins",
                ),
                "cluster": {"$ref": ref.format(name="ClusterHealth")},
                "ha": {"$ref": ref.format(name="HaHealth")},
            }
        ),
        "Sessions": sessions,
        "TradingStates": states,
        "Positions": positions,
        "Exposure": exposure,
        "PositionLimits": _arr(
            _obj(
                {"account": _S, "symbol": _S, "position": _DEC, "working_buy": _DEC, "working_sell": _DEC}
                | {
                    side: {
                        "oneOf": [
                            _obj({"observed": _DEC, "limit": _DEC, "scope": _S, "utilization_pct": _DEC}),
                            {"type": "null"},
                        ],
                        "description": f"position + working {way} against max_{side}_position (null: none set)",
                    }
                    for side, way in (("long", "buys"), ("short", "sells, as a short quantity"))
                }
            )
        ),
        "Orders": orders,
        "FeedItems": _arr(
            _obj(
                {"feed": {"enum": ["decision", "alert", "admin", "notice"]}, "now_ns": _I},
                "A Decision, Alert, AdminResult or Notice with its fields, plus feed naming which it is. "
                "A would-have-refused decision (monitor mode: the order went on) is in the decision feed "
                "with would_refuse true, code, observed, limit, scope and rule. An anomaly detector's "
                "alert is in the alert feed with detector, scope, observed, threshold, text and action.",
            )
        ),
        "Modes": _obj(
            {
                "rules": {
                    "type": "object",
                    "additionalProperties": {"enum": ["enforce", "monitor"]},
                    "description": "every rule the proxy runs, in order, and its mode",
                },
                "limits": _arr(
                    _obj({"layer": _S, "field": _S, "mode": {"enum": ["monitor"]}}),
                    "limits in monitor mode, per layer (a limit not listed is enforced)",
                ),
            }
        ),
        "Whoami": _obj(
            {
                "name": _S,
                "role": {"enum": list(ROLES)},
                "alert_levels": _arr(
                    _DEC, "[risk] alert_levels: utilization (percent) that raises an alert, lowest first"
                ),
            }
        ),
        "OrderCounts": _obj(
            {
                "open": {"type": "integer", "description": "open orders (GET /orders pages through them)"},
                "open_by_session": {"type": "object", "additionalProperties": _I},
                "by_status": {
                    "type": "object",
                    "additionalProperties": _I,
                    "description": "orders in each status (open and finished), e.g. new, filled",
                },
                "decisions": _obj(
                    {
                        "accepted": _I,
                        "rejected": _I,
                        "by_session": {
                            "type": "object",
                            "additionalProperties": _obj({"accepted": _I, "rejected": _I}),
                        },
                        "rejects_by_code": {"type": "object", "additionalProperties": _I},
                    },
                    "risk decisions (new orders, replaces, cancels, refused messages)",
                ),
            },
            "Running counts kept by the core as orders change: reading them never walks the orders.",
        ),
        "ExposureHistory": _obj({"now_ns": _I, "points": _arr(_obj({"t_ns": _I, "gross": _DEC, "net": _DEC}))}),
        "ClusterHealth": _obj(
            {
                "state": {"enum": ["ok", "degraded", "disabled"]},
                "instance": _S,
                "database": {"enum": ["up", "lost"]},
                "reason": {"type": "string", "description": "why the database is lost (empty while it is up)"},
                "lost_since": {"type": ["number", "null"], "description": "when it was lost (seconds since the epoch)"},
                "fenced": {
                    "type": "string",
                    "description": "why this instance takes no new headroom of the shared limits (empty: it may)",
                },
                "leases_expire_in_s": {"type": ["number", "null"]},
                "listener": {"type": "string", "description": "ok, or why the other instances' commands are not heard"},
                "commands_applied": _I,
                "commands_published": _I,
            },
            "This instance's part in a cluster of proxies ({state: disabled} alone)",
        ),
        "HaHealth": _obj(
            {
                "state": {"enum": ["ok", "degraded", "failed", "disabled"]},
                "reason": {"type": "string", "description": "why degraded or failed (empty while ok)"},
                "role": {"enum": list(HA_ROLES)},
            },
            "This instance's part in an active/passive pair ({state: disabled} without [ha]): degraded for an "
            "active with no standby in copy or a standby not in copy, failed while fenced (status failed)",
        ),
        "Ha": _obj(
            {
                "pair": _S,
                "instance": {"type": "string", "description": "this instance's name in the pair"},
                "role": {
                    "enum": list(HA_ROLES),
                    "description": "active: the proxy trading; standby: receiving the copy; fenced: an active that "
                    "could not renew its leadership in time and writes to no socket; starting: not decided yet; "
                    "superseded: another instance holds the lease (this one restarts as a standby)",
                },
                "token": {
                    "type": ["integer", "null"],
                    "description": "the fencing token: one more at every takeover (null: no lease seen yet)",
                },
                "took_over_at": {
                    "type": "number",
                    "description": "on the active: when it took the lease (seconds since the epoch; 0: at start)",
                },
                "waiting": {"type": "string", "description": "on a standby: why it would not take over now"},
                "copy": {"enum": ["sync", "async"], "description": "[ha] copy"},
                "database": {"enum": ["ok", "lost"]},
                "lease_left_ms": {
                    "type": ["number", "null"],
                    "description": "time left before the leadership lease lapses unless renewed",
                },
                "copy_state": {
                    "enum": list(HA_COPY_STATES),
                    "description": "sync or async: the standby is in copy; catching_up: it is receiving what it "
                    "missed; alone or none: no standby has the copy (a failover now would start from an older state)",
                },
                "partner": {
                    "oneOf": [
                        _obj(
                            {
                                "instance": _S,
                                "connected": _B,
                                "lag_bytes": {
                                    "type": ["integer", "null"],
                                    "description": "journal bytes the standby has not acknowledged (null: unknown)",
                                },
                                "lag_ms": {"type": ["number", "null"], "description": "how far behind, in time"},
                                "position": _arr(_I, "[journal segment, offset] the standby has acknowledged"),
                                "round_trip_ms": {
                                    "type": "number",
                                    "description": "on the active: the last copy round trip to the standby",
                                },
                                "address": {"type": "string", "description": "on a standby: the active's copy address"},
                                "problem": {
                                    "type": "string",
                                    "description": "why the copy connection is refused or failing",
                                },
                            }
                        ),
                        {"type": "null"},
                    ],
                    "description": "on the active: its standby; on a standby: its active (null: none known)",
                },
            }
        ),
        "Cluster": _obj(
            {
                "cluster": {"enum": ["disabled"], "description": "only for a proxy running alone (no other field)"},
                "instance": {"type": "string", "description": "this instance's name"},
                "health": {"$ref": ref.format(name="ClusterHealth")},
                "instances": _arr(
                    _obj(
                        {
                            "instance": _S,
                            "started_at": _S,
                            "heartbeat": _S,
                            "alive": {"type": "boolean", "description": "its heartbeat is within the lease time"},
                            "status": _obj(
                                {
                                    "sessions": _arr(_obj({"name": _S, "role": _S, "up": _B})),
                                    "usage": {
                                        "type": "object",
                                        "additionalProperties": _obj({"used": _DEC, "allowance": _DEC}),
                                        "description": "per shared limit's key (<field>|<scope>)",
                                    },
                                    "fenced": _S,
                                    "health": _S,
                                    "engine": _S,
                                    "open_orders": _I,
                                    "admin": _S,
                                },
                                "what the instance wrote of itself at its last heartbeat",
                            ),
                            "positions": _arr(_obj({"account": _S, "symbol": _S, "qty": _DEC, "avg_cost": _DEC})),
                        }
                    )
                ),
                "limits": _arr(
                    _obj(
                        {
                            "key": _S,
                            "field": _S,
                            "scope": _S,
                            "limit": _DEC,
                            "shares": _arr(
                                _obj(
                                    {
                                        "instance": _S,
                                        "allowance": _DEC,
                                        "reserve": _DEC,
                                        "used": _DEC,
                                        "lease_live": _B,
                                    }
                                )
                            ),
                        }
                    )
                ),
            }
        ),
        "Summary": _obj(
            {
                "health": {"$ref": ref.format(name="Health")},
                "sessions": {"$ref": ref.format(name="Sessions")},
                "trading_states": {"$ref": ref.format(name="TradingStates")},
                "limits": {"$ref": ref.format(name="LimitSet")},
                "positions": {"$ref": ref.format(name="Positions")},
                "exposure": {"$ref": ref.format(name="Exposure")},
                "position_limits": {"$ref": ref.format(name="PositionLimits")},
                "orders": {"$ref": ref.format(name="OrderCounts")},
                "kill_cancels_pending": {
                    "type": "integer",
                    "description": "cancels the proxy sent (halt and cancel, cancel on "
                    "disconnect) still awaiting the venue",
                },
            }
        ),
    }


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


@functools.cache
def openapi_document() -> dict:
    """The OpenAPI 3.1 document of this API (also kept in spec/admin-api.openapi.json)."""
    paths: dict[str, dict] = {}
    for r in ROUTES:
        op: dict[str, Any] = {"operationId": r.handler, "summary": r.summary, "responses": {}}
        if r.role is None:
            op["security"] = []
        else:
            op["x-required-role"] = r.role
            op["description"] = f"Needs a token with role {r.role} or above."
        if r.query_limit:
            op["parameters"] = [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": f"at most this many items (1 to {MAX_RECENT})",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RECENT, "default": DEFAULT_RECENT},
                }
            ]
        if r.query_page:
            op["parameters"] = [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": f"at most this many orders (1 to {MAX_ORDER_PAGE})",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ORDER_PAGE, "default": views.ORDER_PAGE},
                },
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "start after the order with this key (the key of the previous page's last order)",
                    "schema": {"type": "string"},
                },
            ]
        if r.query_since:
            op["parameters"] = [
                {
                    "name": "since_ns",
                    "in": "query",
                    "required": False,
                    "description": "only points after this time (nanoseconds since the epoch)",
                    "schema": {"type": "integer", "minimum": 0, "default": 0},
                }
            ]
        if "{asset}" in r.path:
            op["parameters"] = [
                {
                    "name": "asset",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "a file name, e.g. dashboard.js",
                }
            ]
        if r.request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.request.__name__}"}}},
            }
        if r.handler == "events":
            ok = {
                "description": "a stream of server-sent events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        elif r.handler == "dashboard":
            ok = {"description": "the dashboard's page", "content": {"text/html": {"schema": {"type": "string"}}}}
        elif r.handler == "asset":
            ok = {
                "description": "the file",
                "content": {
                    "text/javascript": {"schema": {"type": "string"}},
                    "text/css": {"schema": {"type": "string"}},
                },
            }
        elif r.handler == "metrics":
            ok = {
                "description": "the metrics (docs/metrics.md)",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        elif r.handler == "openapi":
            ok = {
                "description": "the OpenAPI document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        else:
            ok = {
                "description": "the action was applied" if r.request else "OK",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.response}"}}},
            }
        op["responses"]["200"] = ok
        if r.handler == "asset":
            op["responses"]["404"] = _error("no such file")
        if r.handler == "ha":
            op["responses"]["404"] = _error("high availability is not configured (no [ha] section)")
        if r.request is not None or r.query_limit or r.query_since or r.query_page:
            op["responses"]["400"] = _error("bad JSON, a missing or malformed field, or a bad query parameter")
        if r.role is not None:
            op["responses"]["401"] = _error("missing or unknown bearer token")
            op["responses"]["403"] = _error("the token's role is too low")
        if r.request is not None:
            op["responses"]["422"] = {
                "description": "the proxy refused the action (ok is false; error says why)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AdminResult"}}},
            }
        paths.setdefault(r.url, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fixproxy risk-desk API",
            "version": "1",
            "description": (
                "Read the proxy's sessions, trading states, limits, positions, exposure, open orders "
                "and recent decisions; halt and resume trading; change limits and reference prices. "
                "Roles: viewer (reads), risk (reads, kill switch, limits, reference prices), admin "
                "(everything). Money and quantities are decimal strings."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:9880"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from [[admin.tokens]] in the proxy's config",
                }
            },
            "schemas": _schemas(),
        },
    }


def openapi_text() -> str:
    """The document as the spec file holds it: indented, keys in order, one newline at the end."""
    return json.dumps(openapi_document(), indent=2) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(openapi_text())
