"""Typed configuration: cfg/*.toml decoded once into frozen msgspec Structs.

A bad file stops start-up with a ConfigError that names the file and the path of the bad key.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from .core.anomaly import AnomalySettings
from .core.model import Instrument
from .core.proxy import SessionPolicy
from .core.risk.limits import Limits, LimitSet
from .core.risk.rules import RULES, RiskSettings
from .fix.codec import IdentifierLimits
from .fix.versions import begin_string

Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,24}$")]
CompID = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
#: "FIX.5.0SP2" travels over FIXT.1.1 (BeginString 8=FIXT.1.1, DefaultApplVerID 1137=9 on Logon).
FixVersion = Literal["FIX.4.2", "FIX.4.4", "FIX.5.0SP2"]


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and the key."""


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Subclasses inherit both options; they repeat ``frozen=True`` so that type checkers see it too."""


class ProxySection(_Strict, frozen=True):
    #: Where quickfix stores (sequence numbers, messages) and logs go; relative to the config file.
    state_dir: str = "../var"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Write the quickfix FileLog of every session (message logs used by compliance replay).
    message_log: bool = True
    #: CPython's thread switch interval (sys.setswitchinterval), in milliseconds: how long a busy
    #: thread may keep the GIL from a quickfix callback carrying an order. CPython's default is 5.
    switch_interval_ms: Annotated[float, msgspec.Meta(gt=0, le=100)] = 5.0
    #: quickfix's threaded socket classes (a thread per session) instead of one thread per engine.
    threaded_sockets: bool = False
    #: Validate every message against the FIX dictionary (quickfix's session Reject for bad fields).
    #: Off only to measure what it costs: malformed fields then reach the proxy's own checks alone.
    validate_messages: bool = True
    #: quickfix store of the OMS sessions: "file" (survives restarts: resends after a crash need it)
    #: or "memory" (only to measure what the file store costs).
    oms_store: Literal["file", "memory"] = "file"
    #: The FIX engine: "native" (the proxy's own asyncio session layer, every session on one thread)
    #: or "quickfix" (the quickfix library, its own threads); same stores and logs on disk.
    engine: Literal["quickfix", "native"] = "native"
    #: The audit and state writer processes: "idle" (they yield the CPU to the order path while they
    #: keep up, and go back to normal priority when they fall behind) or "normal".
    writer_priority: Literal["idle", "normal"] = "idle"
    #: When a new trading day begins ("HH:MM" or "HH:MM:SS", local time in ``timezone``): finished orders, fills and
    #: the day's ClOrdIDs and ExecIDs leave memory, working orders and positions carry over.
    day_roll: Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")] = "00:00"
    #: The IANA time zone of ``day_roll`` (e.g. "America/New_York").
    timezone: str = "UTC"
    #: Seconds a finished order (filled, cancelled, rejected) and an applied fill stay in memory before
    #: they leave it (they stay in the journal and the audit store); a bust or correction of a fill
    #: after that alerts the desk instead of moving the position. 0: at once; -1: only at the day roll.
    finished_grace_s: Annotated[float, msgspec.Meta(ge=-1)] = 30.0

    def __post_init__(self) -> None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone: unknown time zone {self.timezone!r} (an IANA name such as 'America/New_York' or 'UTC')"
            ) from None


class AcceptorSection(_Strict, frozen=True):
    #: The address the native engine listens on (quickfix binds every interface whatever this says).
    host: str = "127.0.0.1"
    port: Port = 9878
    #: The CompID OMS sessions address (their TargetCompID).
    comp_id: CompID = "FIXPROXY"
    #: quickfix binds every interface; only these addresses may connect.
    allowed_remote_addresses: tuple[str, ...] = ("127.0.0.1",)
    heartbeat_s: Annotated[int, msgspec.Meta(ge=1)] = 30
    #: A connection that has not logged on within this many seconds is closed.
    logon_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 5.0
    #: Bytes a connection may send before its Logon is complete (a longer Logon closes it).
    max_logon_bytes: Annotated[int, msgspec.Meta(ge=256, le=1 << 20)] = 4096
    #: Connections not yet logged on, in total and from one address: past either bound the oldest
    #: such connection (of the busiest address) is closed to make room, so a flood of idle sockets
    #: cannot keep a configured session from logging on.
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 512
    max_connections_per_address: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 64
    #: quickfix engine only: quickfix's own acceptor cannot enforce the bounds above, so the proxy
    #: accepts on ``host``:``port`` itself and relays each connection, once its Logon is read, to
    #: quickfix listening on loopback at ``quickfix_port`` (0: a free port chosen at start).
    #: ``quickfix_relay = false`` (quickfix accepts on ``port`` itself, every interface, unbounded)
    #: only to measure what the relay costs.
    quickfix_relay: bool = True
    quickfix_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0


class _Logon(_Strict, frozen=True, kw_only=True):
    """Optional Username (553) / Password (554) a session's Logon must carry."""

    username: str = ""
    password: str = ""
    #: Or the name of an environment variable holding the password.
    password_env: str = ""

    def __post_init__(self) -> None:
        if self.username and not (self.password or self.password_env):
            raise ValueError("username is set: give password or password_env too")
        if (self.password or self.password_env) and not self.username:
            raise ValueError("a password is set: give the username it goes with too")
        if self.password and self.password_env:
            raise ValueError("give password or password_env, not both")


class OmsSession(_Logon, frozen=True):
    name: Name
    #: The OMS's SenderCompID.
    comp_id: CompID
    fix_version: FixVersion = "FIX.4.4"
    default_venue: str = ""
    reject_with: Literal["business_reject", "execution_report"] = "business_reject"
    #: Cancel this session's working orders at the venues when it logs out or drops.
    cancel_on_disconnect: bool = False

    @property
    def begin_string(self) -> str:
        """BeginString (8) of the session: ``fix_version``, or FIXT.1.1 for FIX.5.0SP2."""
        return begin_string(self.fix_version)


class DropCopySession(_Logon, frozen=True):
    """A drop-copy session (spec/drop-copy.md): an acceptor session that receives a copy of every
    ExecutionReport the proxy sends an OMS, and sends no orders."""

    name: Name
    #: The drop-copy client's SenderCompID.
    comp_id: CompID
    fix_version: FixVersion = "FIX.4.4"
    #: Also copy the proxy's own refusals of new orders, as ExecutionReports (150=8), whatever the
    #: OMS session's ``reject_with``.
    copy_refusals: bool = True

    @property
    def begin_string(self) -> str:
        """BeginString (8) of the session: ``fix_version``, or FIXT.1.1 for FIX.5.0SP2."""
        return begin_string(self.fix_version)


class Venue(_Strict, frozen=True):
    name: Name
    host: str = "127.0.0.1"
    port: Port = 9879
    #: The venue's CompID (our TargetCompID).
    comp_id: CompID = "VENUE"
    #: Our CompID towards the venue.
    our_comp_id: CompID = "FIXPROXY"
    fix_version: FixVersion = "FIX.4.4"
    heartbeat_s: Annotated[int, msgspec.Meta(ge=1)] = 30
    reconnect_s: Annotated[int, msgspec.Meta(ge=1)] = 1
    #: Bytes the proxy has sent towards the venue that its TCP has not yet acknowledged (the
    #: proxy's buffers and its socket's send queue): past this the venue is marked down and new
    #: orders for it are refused (VENUE_UNAVAILABLE) until it has taken them.
    max_unsent_kb: Annotated[int, msgspec.Meta(ge=1, le=1 << 20)] = 256
    #: No order leaves for the venue later than this after the proxy accepted it: orders still
    #: unsent at that age are refused to the OMS and the connection is reset.
    max_order_age_ms: Annotated[int, msgspec.Meta(ge=50, le=600_000)] = 1000
    #: The venue has sent nothing this long after an order went to it: it is sent a TestRequest,
    #: and marked down while that stays unanswered this long again.
    answer_timeout_ms: Annotated[int, msgspec.Meta(ge=50, le=600_000)] = 1000

    @property
    def begin_string(self) -> str:
        """BeginString (8) of the session: ``fix_version``, or FIXT.1.1 for FIX.5.0SP2."""
        return begin_string(self.fix_version)


class RiskSection(_Strict, frozen=True):
    #: Rules in the order they run; default every rule. An empty list forwards everything.
    rules: tuple[str, ...] | None = None
    #: What to do with a symbol missing from the instrument file.
    unknown_symbol: Literal["reject", "allow"] = "reject"
    #: CSV of instruments (symbol, sector, reference_price, lot_size, restricted); relative to the config file.
    instruments: str = "instruments.csv"
    #: CSV of start-of-day positions (account, symbol, qty, avg_cost); "" for none.
    positions: str = ""
    #: Block orders that could trade against a working order of the same account, the firm, or not at all.
    self_match: Literal["account", "firm", "off"] = "account"
    #: A plain sell that would take the account below a flat position needs a locate too.
    sell_below_zero_is_short: bool = True
    #: Utilization levels (percent of a limit) that raise an alert once per upward crossing.
    alert_levels: tuple[Annotated[int, msgspec.Meta(gt=0, le=100)], ...] = (70, 90)
    #: Let fills move a symbol's reference price, only within the price collar around the reference
    #: the instrument file or the desk last set. Off: only the file and the desk set references.
    reference_from_fills: bool = False
    #: Largest move of a reference price the desk may make without ``force`` (percent of the current one).
    reference_change_max_pct: Annotated[int, msgspec.Meta(gt=0)] = 20
    #: Rules in monitor (shadow) mode, ``{ max_order_qty = "monitor" }``: an order such a rule would
    #: refuse goes on, with a would-have-refused record. A rule not named is enforced.
    modes: dict[str, str] = {}


class AuditSection(_Strict, frozen=True):
    #: Record every application message, decision and notice in the audit store.
    enabled: bool = True
    #: The SQLite file, relative to the config file; empty: ``<state_dir>/audit.sqlite``.
    path: str = ""
    #: The writer commits when it holds this many records ...
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    #: ... or this long after the first uncommitted record arrived (the loss window on a crash).
    flush_interval_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 200
    #: The key of the keyed checkpoints (HMAC-SHA256 of the chain's head) the follower writes into
    #: the chain: from this environment variable ...
    key_env: str = "FIXPROXY_AUDIT_KEY"
    #: ... or from this file (relative to the config file; never inside the state dir), which wins.
    #: No key: no checkpoints (``audit verify`` says they were not checked).
    key_file: str = ""
    #: A checkpoint at least this often while records come (by their times), and when the follower stops.
    checkpoint_interval_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 5.0


Role = Literal["viewer", "risk", "admin"]


class JournalSection(_Strict, frozen=True):
    """The write-ahead journal (``<state_dir>/journal``): every input of the core, before it acts."""

    #: fsync policy: "none" (the page cache: survives kill -9, not a power loss), "interval" (synced
    #: every ``sync_interval_ms``: a power loss loses at most that much), "always" (synced before the
    #: core acts on each input).
    sync: Literal["none", "interval", "always"] = "none"
    sync_interval_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 100
    #: The segment file grows by this much at a time, allocated ahead of the writer (a full disk shows
    #: as a failed allocation, never as a write the file system cannot back).
    preallocate_kb: Annotated[int, msgspec.Meta(ge=16, le=1 << 20)] = 4096
    #: Room kept for what the proxy records once an allocation failed (refusals, cancels, reports):
    #: new orders are refused from the failed allocation on, while this much is still free.
    reserve_kb: Annotated[int, msgspec.Meta(ge=8, le=1 << 20)] = 1024


class ClusterSection(_Strict, frozen=True):
    """Several proxies sharing the firm's limits and kill switch through PostgreSQL (docs/cluster.md).
    Without it the proxy runs alone."""

    #: The database, as a libpq URL without a password: ``postgresql://user@host:port/dbname``.
    url: str
    #: This instance's name, unique in the cluster (letters, digits, ``-``, ``_``, ``.``).
    instance: str
    #: The environment variable holding the database password; "" for none (trust, peer, ~/.pgpass).
    password_env: str = ""
    #: A lease on a share of a limit lasts this long unless renewed: an instance that stops renewing
    #: (dead, or cut off from the database) gives its unused reserve back to the others after it.
    lease_ttl_ms: Annotated[int, msgspec.Meta(ge=200, le=600_000)] = 3000
    #: Leases are renewed, usage reported and this instance's status written this often.
    renew_ms: Annotated[int, msgspec.Meta(ge=20, le=60_000)] = 500
    #: An allowance grows (and is given back) in steps of this percentage of its limit.
    step_pct: Annotated[float, msgspec.Meta(gt=0, le=100)] = 2.0
    #: Headroom held in reserve beyond the allowance, in steps: others cannot take it while the lease lives.
    reserve_steps: Annotated[int, msgspec.Meta(ge=0, le=100)] = 4
    #: An order that arrives while a top-up is under way waits for it this long at most (0: never waits).
    topup_wait_ms: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 20
    #: A database connection or statement taking longer than this counts as the database lost.
    db_timeout_ms: Annotated[int, msgspec.Meta(ge=50, le=60_000)] = 1000

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.instance):
            raise ValueError(f"instance: {self.instance!r} is not a name (letters, digits, -, _, ., at most 64)")
        if not re.match(r"postgres(ql)?://", self.url):
            raise ValueError(f"url: {self.url!r} is not a libpq URL (postgresql://user@host:port/dbname)")
        userinfo = self.url.split("://", 1)[1].split("@", 1)[0] if "@" in self.url else ""
        if ":" in userinfo or "password=" in self.url:
            raise ValueError("url: holds a password; give it in the variable password_env names instead")
        if self.renew_ms * 2 > self.lease_ttl_ms:
            raise ValueError(f"renew_ms: {self.renew_ms} must be at most half of lease_ttl_ms ({self.lease_ttl_ms})")


class HaSection(_Strict, frozen=True):
    """An active/passive pair (docs/high-availability.md): one instance of the pair is active, the
    other keeps a copy of its journal and FIX session stores and takes over when the active's
    leadership lease in PostgreSQL lapses. Without it the proxy runs alone."""

    #: The database holding the leadership lease, as a libpq URL without a password.
    url: str
    #: The pair's name: the two instances of a pair share it (the lease is the pair's).
    pair: str
    #: This instance's name, unique in the pair.
    instance: str
    #: Where this instance, while active, serves the copy to its standby (``host:port``); the
    #: standby finds it in the lease row.
    copy_listen: str
    #: ``"sync"``: nothing goes on the wire before the standby has the journal up to it (a dead
    #: active's host loses nothing); ``"async"``: the copy follows a few milliseconds behind (a dead
    #: host loses what had not reached the standby yet).
    copy: Literal["sync", "async"] = "sync"
    #: The environment variable holding the database password; "" for none.
    password_env: str = ""
    #: The leadership lasts this long unless renewed; the standby takes over once it lapsed.
    lease_ttl_ms: Annotated[int, msgspec.Meta(ge=200, le=60_000)] = 600
    #: The active renews its leadership this often (at most a third of ``lease_ttl_ms``).
    renew_ms: Annotated[int, msgspec.Meta(ge=20, le=20_000)] = 150
    #: A sync copy not acknowledged by the standby within this long: the active goes on alone (said
    #: on every surface) rather than stop trading, until the standby has caught up again.
    sync_timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 250
    #: A database connection or statement taking longer than this counts as the database lost.
    db_timeout_ms: Annotated[int, msgspec.Meta(ge=50, le=60_000)] = 300

    def __post_init__(self) -> None:
        for key in ("pair", "instance"):
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", getattr(self, key)):
                raise ValueError(f"{key}: {getattr(self, key)!r} is not a name (letters, digits, -, _, ., at most 64)")
        if not re.match(r"postgres(ql)?://", self.url):
            raise ValueError(f"url: {self.url!r} is not a libpq URL (postgresql://user@host:port/dbname)")
        userinfo = self.url.split("://", 1)[1].split("@", 1)[0] if "@" in self.url else ""
        if ":" in userinfo or "password=" in self.url:
            raise ValueError("url: holds a password; give it in the variable password_env names instead")
        host, sep, port = self.copy_listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"copy_listen: {self.copy_listen!r} is not host:port")
        if self.renew_ms * 3 > self.lease_ttl_ms:
            raise ValueError(f"renew_ms: {self.renew_ms} must be at most a third of lease_ttl_ms ({self.lease_ttl_ms})")

    @property
    def copy_address(self) -> tuple[str, int]:
        host, _, port = self.copy_listen.rpartition(":")
        return host, int(port)


class IdentifiersSection(_Strict, frozen=True):
    """Longest identifier accepted from an OMS (characters; every identifier is printable ASCII,
    not blank, without leading or trailing spaces: spec/reject-codes.md, INVALID_ORDER)."""

    #: ClOrdID (11) and OrigClOrdID (41).
    max_clordid: Annotated[int, msgspec.Meta(gt=0, le=1024)] = 64
    #: Account (1).
    max_account: Annotated[int, msgspec.Meta(gt=0, le=1024)] = 32
    #: Symbol (55).
    max_symbol: Annotated[int, msgspec.Meta(gt=0, le=1024)] = 32
    #: ExDestination (100).
    max_ex_destination: Annotated[int, msgspec.Meta(gt=0, le=1024)] = 32

    def limits(self) -> IdentifierLimits:
        return IdentifierLimits(self.max_clordid, self.max_account, self.max_symbol, self.max_ex_destination)


class AdminToken(_Strict, frozen=True):
    """One bearer token of the HTTP admin API: who (``name``, recorded as the operator) and what it may do."""

    name: Name
    role: Role
    #: The token itself ...
    token: str = ""
    #: ... or the name of an environment variable holding it (keeps it out of the file).
    token_env: str = ""

    def __post_init__(self) -> None:
        if bool(self.token) == bool(self.token_env):
            raise ValueError(f"token {self.name!r}: give exactly one of token or token_env")
        if self.token:
            _check_secret(self.token, f"token {self.name!r}")


class AdminSection(_Strict, frozen=True):
    """The HTTP admin API (risk-desk controls)."""

    #: The address the API binds; keep it on loopback unless something in front of it does TLS.
    http_host: str = "127.0.0.1"
    #: 0 disables the HTTP API.
    http_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9880
    tokens: tuple[AdminToken, ...] = ()
    #: Event-stream (GET /api/v1/events) clients at once; the next is answered 503. 0 turns the stream off.
    max_stream_clients: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 50
    #: Items that may wait for one slow event-stream client; past this it is dropped, never waited for.
    stream_queue: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    #: GET /metrics (Prometheus) without a token; false (the default): a token of any role, viewer included.
    metrics_public: bool = False

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for i, t in enumerate(self.tokens):
            if t.name in seen:
                raise ValueError(f"tokens[{i}].name: {t.name!r} is used twice")
            seen.add(t.name)


MIN_TOKEN_LENGTH = 16


def _check_secret(secret: str, what: str) -> None:
    if len(secret) < MIN_TOKEN_LENGTH or not secret.isascii() or any(c.isspace() for c in secret):
        raise ValueError(f"{what}: a token must be at least {MIN_TOKEN_LENGTH} ASCII characters without spaces")


class ApiToken:
    """A configured token with its secret resolved (from the file or the environment). Never printed."""

    __slots__ = ("name", "role", "secret")

    def __init__(self, name: str, role: str, secret: str):
        self.name, self.role, self.secret = name, role, secret

    def __repr__(self) -> str:
        return f"ApiToken(name={self.name!r}, role={self.role!r}, secret=<hidden>)"


def resolve_tokens(admin: AdminSection, environ: Mapping[str, str] = os.environ) -> tuple[ApiToken, ...]:
    """The API tokens with their secrets; ValueError naming the token (and variable) if one is missing."""
    out: list[ApiToken] = []
    for i, t in enumerate(admin.tokens):
        where = f"admin.tokens[{i}]"
        secret = t.token
        if t.token_env:
            secret = environ.get(t.token_env, "")
            if not secret:
                raise ValueError(f"{where}: environment variable {t.token_env} (token {t.name!r}) is not set")
            _check_secret(secret, f"{where}: environment variable {t.token_env}")
        if any(secret == other.secret for other in out):
            raise ValueError(f"{where}: token {t.name!r} has the same secret as another token")
        out.append(ApiToken(t.name, t.role, secret))
    return tuple(out)


class RiskDeskSection(_Logon, frozen=True):
    """The risk-desk FIX session (spec/admin-messages.md): a FIX 4.4 acceptor session beside the OMS ones."""

    #: The desk's SenderCompID; "" turns the session off.
    comp_id: CompID | Literal[""] = ""
    #: A short name for logs and the audit trail.
    name: Name = "riskdesk"
    #: Let the desk session log on without Username/Password (its requests are then recorded as
    #: made by ``name``). Off: a desk session with no username and password is a config error.
    allow_unauthenticated: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.comp_id and not self.username and not self.allow_unauthenticated:
            raise ValueError(
                "the risk-desk session needs username and password_env (or password), or allow_unauthenticated = true"
            )


class Config(_Strict, frozen=True):
    proxy: ProxySection = ProxySection()
    acceptor: AcceptorSection = AcceptorSection()
    oms: tuple[OmsSession, ...] = ()
    venues: tuple[Venue, ...] = ()
    risk: RiskSection = RiskSection()
    limits: LimitSet = LimitSet()
    #: Shares located for short sales: ``[locates.<Account>] <Symbol> = <quantity>``.
    locates: dict[str, dict[str, Annotated[int, msgspec.Meta(ge=0)]]] = {}
    audit: AuditSection = AuditSection()
    journal: JournalSection = JournalSection()
    identifiers: IdentifiersSection = IdentifiersSection()
    admin: AdminSection = AdminSection()
    risk_desk: RiskDeskSection = RiskDeskSection()
    #: Anomaly detectors on order flow (core/anomaly.py), each off unless enabled.
    anomaly: AnomalySettings = AnomalySettings()
    drop_copy: tuple[DropCopySession, ...] = ()
    #: Several proxies sharing limits and the kill switch through PostgreSQL; None: this one alone.
    cluster: ClusterSection | None = None
    ha: HaSection | None = None

    def __post_init__(self) -> None:
        if not self.oms:
            raise ValueError("at least one [[oms]] session is required")
        if not self.venues:
            raise ValueError("at least one [[venues]] entry is required")
        _unique("oms", [s.name for s in self.oms])
        _unique("oms", [s.comp_id for s in self.oms], "comp_id")
        _unique("venues", [v.name for v in self.venues])
        venue_names = {v.name for v in self.venues}
        for i, s in enumerate(self.oms):
            if s.default_venue and s.default_venue not in venue_names:
                raise ValueError(f"oms[{i}].default_venue: no venue named {s.default_venue!r}")
        if self.risk.rules is not None:
            for i, rule in enumerate(self.risk.rules):
                if rule not in RULES:
                    raise ValueError(f"risk.rules[{i}]: unknown rule {rule!r} (known: {', '.join(RULES)})")
        for rule, mode in self.risk.modes.items():
            if rule not in RULES:
                raise ValueError(f"risk.modes.{rule}: unknown rule {rule!r} (known: {', '.join(RULES)})")
            if mode not in ("enforce", "monitor"):
                raise ValueError(f"risk.modes.{rule}: mode must be enforce or monitor, got {mode!r}")
        if self.ha is not None and self.cluster is not None:
            raise ValueError(
                "ha: [ha] and [cluster] together are not supported yet (a pair cannot be a cluster instance)"
            )
        if self.ha is not None and self.proxy.oms_store != "file":
            raise ValueError(
                'proxy.oms_store: [ha] needs "file" (the standby answers the OMSs\' resend requests from the copied stores)'
            )
        if self.risk_desk.comp_id and self.risk_desk.comp_id in {s.comp_id for s in self.oms}:
            raise ValueError(f"risk_desk.comp_id: {self.risk_desk.comp_id!r} is also an OMS session's comp_id")
        if self.risk_desk.comp_id and self.risk_desk.name in {s.name for s in self.oms}:
            raise ValueError(f"risk_desk.name: {self.risk_desk.name!r} is also an OMS session's name")
        oms_names = {s.name for s in self.oms}
        _drop_copies_apart(self)
        for key in self.limits.sessions:
            if key not in oms_names:
                raise ValueError(f"limits.sessions.{key}: no OMS session named {key!r}")

    # -- what the core needs

    def session_policies(self) -> dict[str, SessionPolicy]:
        return {s.name: SessionPolicy(s.default_venue, s.reject_with, s.cancel_on_disconnect) for s in self.oms}

    def risk_settings(self) -> RiskSettings:
        r = self.risk
        return RiskSettings(
            r.self_match,
            r.sell_below_zero_is_short,
            tuple(Decimal(x) for x in r.alert_levels),
            r.reference_from_fills,
            Decimal(r.reference_change_max_pct),
        )

    def locate_table(self) -> dict[tuple[str, str], Decimal]:
        return {(acct, sym): Decimal(qty) for acct, table in self.locates.items() for sym, qty in table.items()}

    def monitored_rules(self) -> list[str]:
        """The rules ``[risk] modes`` puts in monitor mode."""
        return [rule for rule, mode in self.risk.modes.items() if mode == "monitor"]

    def rule_names(self) -> list[str]:
        names = list(RULES) if self.risk.rules is None else list(self.risk.rules)
        if self.risk.unknown_symbol == "allow" and "unknown_symbol" in names:
            names.remove("unknown_symbol")
        return names


def _drop_copies_apart(cfg: Config) -> None:
    """Drop-copy sessions have names and CompIDs of their own (not an OMS's, nor the desk's)."""
    _unique("drop_copy", [d.name for d in cfg.drop_copy])
    _unique("drop_copy", [d.comp_id for d in cfg.drop_copy], "comp_id")
    names = {s.name for s in cfg.oms} | ({cfg.risk_desk.name} if cfg.risk_desk.comp_id else set())
    comp_ids = {s.comp_id for s in cfg.oms} | {cfg.risk_desk.comp_id}
    for i, d in enumerate(cfg.drop_copy):
        if d.name in names:
            raise ValueError(f"drop_copy[{i}].name: {d.name!r} is also an OMS or risk-desk session's name")
        if d.comp_id in comp_ids:
            raise ValueError(f"drop_copy[{i}].comp_id: {d.comp_id!r} is also an OMS or risk-desk session's comp_id")


def _unique(section: str, values: list[str], key: str = "name") -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ValueError(f"{section}[{i}].{key}: {v!r} is used twice")
        seen.add(v)


class StartPosition(msgspec.Struct, frozen=True):
    account: str
    symbol: str
    qty: Decimal
    avg_cost: Decimal


class LoadedConfig(msgspec.Struct, frozen=True):
    """A config with its file location and the instruments and positions it points to."""

    path: Path
    config: Config
    instruments: dict[str, Instrument]
    positions: tuple[StartPosition, ...] = ()
    #: The admin API's tokens, secrets resolved (empty when loaded with ``secrets=False``).
    api_tokens: tuple = ()
    #: The audit checkpoints' key (``[audit] key_file`` or ``key_env``); empty: none, or loaded
    #: with ``secrets=False`` (``read_audit_key()`` reads it then).
    audit_key: bytes = b""

    @property
    def state_dir(self) -> Path:
        return (self.path.parent / self.config.proxy.state_dir).resolve()

    @property
    def journal_dir(self) -> Path:
        return self.state_dir / "journal"

    @property
    def audit_path(self) -> Path:
        """The audit store: ``[audit] path`` relative to the config file, else ``<state_dir>/audit.sqlite``."""
        given = self.config.audit.path
        return (self.path.parent / given).resolve() if given else self.state_dir / "audit.sqlite"

    @property
    def audit_key_file(self) -> Path | None:
        given = self.config.audit.key_file
        return (self.path.parent / given).resolve() if given else None

    def read_audit_key(self) -> bytes:
        """The audit checkpoints' key: the file's bytes (``[audit] key_file``, surrounding
        whitespace stripped), else the variable ``[audit] key_env``; b"" when neither is set.
        ConfigError naming the key when the file cannot be read or the key is shorter than 16 bytes."""
        audit = self.config.audit
        key_file = self.audit_key_file
        if key_file is not None:
            try:
                key, where = key_file.read_bytes().strip(), f"audit.key_file: {key_file}"
            except OSError as exc:
                raise ConfigError(
                    f"{self.path}: audit.key_file: cannot read {key_file} ({exc.strerror or exc})"
                ) from None
        else:
            key, where = (
                os.environ.get(audit.key_env, "").encode() if audit.key_env else b"",
                f"audit.key_env: environment variable {audit.key_env}",
            )
        if key and len(key) < MIN_AUDIT_KEY:
            raise ConfigError(
                f"{self.path}: {where}: the audit key is {len(key)} bytes; it needs at least {MIN_AUDIT_KEY}"
            )
        return key


#: The shortest audit checkpoint key accepted, in bytes.
MIN_AUDIT_KEY = 16


def _check_audit_key_file(path: Path, config: Config) -> None:
    """``[audit] key_file`` must be outside the state dir (and the audit store's folder): whoever can
    rewrite the store must not be able to read the key that anchors it."""
    if not config.audit.key_file:
        return
    key_file = (path.parent / config.audit.key_file).resolve()
    state_dir = (path.parent / config.proxy.state_dir).resolve()
    store_dir = (path.parent / config.audit.path).resolve().parent if config.audit.path else state_dir
    for folder, what in ((state_dir, "the state dir"), (store_dir, "the audit store's folder")):
        if key_file == folder or key_file.is_relative_to(folder):
            raise ConfigError(
                f"{path}: audit.key_file: {key_file} is inside {what} {folder}; keep the key "
                "outside it (whoever can rewrite the audit store must not read its key)"
            )


def check_secrets(loaded: LoadedConfig, environ: Mapping[str, str] = os.environ) -> tuple[list[str], list[str]]:
    """What ``fixproxy run`` would find of the secrets the config names, without needing them:
    (missing, bad). Missing: an environment variable not set, an audit key file not there (normal on
    a box that only reads the audit trail); bad: a secret that is there but that ``run`` refuses
    (too short, shared by two tokens). Each is a sentence naming the key and the variable or file."""
    missing: list[str] = []
    bad: list[str] = []
    config = loaded.config
    seen: set[str] = set()
    for i, t in enumerate(config.admin.tokens):
        where = f"admin.tokens[{i}]"
        secret = t.token or environ.get(t.token_env, "")
        if not secret:
            missing.append(f"{where}.token_env: environment variable {t.token_env} (token {t.name!r}) is not set")
            continue
        if t.token_env:
            try:
                _check_secret(secret, f"{where}: environment variable {t.token_env}")
            except ValueError as exc:
                bad.append(str(exc))
        if secret in seen:
            bad.append(f"{where}: token {t.name!r} has the same secret as another token")
        seen.add(secret)
    logons: list[tuple[str, _Logon]] = [("risk_desk", config.risk_desk)]
    logons += [(f"oms[{i}]", s) for i, s in enumerate(config.oms)]
    logons += [(f"drop_copy[{i}]", d) for i, d in enumerate(config.drop_copy)]
    for where, logon in logons:
        if logon.password_env and not environ.get(logon.password_env):
            missing.append(f"{where}.password_env: environment variable {logon.password_env} is not set")
    cluster = config.cluster
    if cluster is not None and cluster.password_env and not environ.get(cluster.password_env):
        missing.append(f"cluster.password_env: environment variable {cluster.password_env} is not set")
    ha = config.ha
    if ha is not None and ha.password_env and not environ.get(ha.password_env):
        missing.append(f"ha.password_env: environment variable {ha.password_env} is not set")
    key_file = loaded.audit_key_file
    if key_file is not None and not key_file.is_file():
        missing.append(f"audit.key_file: {key_file} is not there (the proxy writes no keyed checkpoints without it)")
    else:
        try:
            loaded.read_audit_key()
        except ConfigError as exc:
            bad.append(str(exc).removeprefix(f"{loaded.path}: "))
    return missing, bad


def load(path: str | Path, *, secrets: bool = True) -> LoadedConfig:
    """Read and check a config file and its instrument file.

    ``secrets``: resolve the admin API tokens (a ``token_env`` variable that is not set is an error);
    clients of a running proxy (the CLI) load without them.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        config = msgspec.toml.decode(raw, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_locate(raw, str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for layer_name in ("sessions", "accounts", "symbols"):
        for key in getattr(config.limits, layer_name):
            if not key:
                raise ConfigError(f"{path}: limits.{layer_name}: empty key")
    instruments = load_instruments(path.parent / config.risk.instruments)
    positions = load_positions(path.parent / config.risk.positions) if config.risk.positions else ()
    try:
        tokens = resolve_tokens(config.admin) if secrets else ()
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    logons: list[tuple[str, _Logon]] = [("risk_desk", config.risk_desk)]
    logons += [(f"oms[{i}]", s) for i, s in enumerate(config.oms)]
    logons += [(f"drop_copy[{i}]", d) for i, d in enumerate(config.drop_copy)]
    for where, logon in logons:
        if secrets and logon.password_env and not os.environ.get(logon.password_env):
            raise ConfigError(f"{path}: {where}.password_env: environment variable {logon.password_env} is not set")
    cluster = config.cluster
    if secrets and cluster is not None and cluster.password_env and not os.environ.get(cluster.password_env):
        raise ConfigError(f"{path}: cluster.password_env: environment variable {cluster.password_env} is not set")
    ha = config.ha
    if secrets and ha is not None and ha.password_env and not os.environ.get(ha.password_env):
        raise ConfigError(f"{path}: ha.password_env: environment variable {ha.password_env} is not set")
    _check_audit_key_file(path, config)
    loaded = LoadedConfig(path.resolve(), config, instruments, positions, tokens)
    if secrets:
        loaded = msgspec.structs.replace(loaded, audit_key=loaded.read_audit_key())
    return loaded


class _LimitsFile(_Strict, frozen=True):
    limits: LimitSet = LimitSet()


def overlay_limits(base: LimitSet, given: LimitSet) -> LimitSet:
    """``base`` with each field ``given`` sets put over it, layer by layer: every field and layer
    ``given`` leaves out keeps its value in ``base`` (``restricted_symbols`` too is one field)."""

    def over(old: Limits | None, new: Limits) -> Limits:
        if old is None:
            return new
        fields = msgspec.structs.asdict(old)
        fields.update({k: v for k, v in msgspec.structs.asdict(new).items() if v is not None})
        return Limits(**fields)

    out = base.with_layer("firm", "", over(base.firm, given.firm))
    for attr, scope in (("sessions", "session"), ("accounts", "account"), ("symbols", "symbol")):
        for key, layer in getattr(given, attr).items():
            out = out.with_layer(scope, key, over(getattr(out, attr).get(key), layer))
    return out


def load_limits(path: str | Path, loaded: LoadedConfig) -> LoadedConfig:
    """``loaded`` with the limits of another file (TOML holding ``[limits.*]`` tables as in the
    config) laid over its own, field by field (``overlay_limits``).

    Compliance replay uses it to ask what other limits would have blocked.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the limits file ({exc.strerror})") from None
    try:
        limits = overlay_limits(loaded.config.limits, msgspec.toml.decode(raw, type=_LimitsFile).limits)
        config = msgspec.structs.replace(loaded.config, limits=limits)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_locate(raw, str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return msgspec.structs.replace(loaded, config=config)


def _locate(raw: bytes, message: str) -> str:
    """msgspec writes a table key as ``[...]``; find which limits layer it was."""
    if "[...]" in message:
        tables = msgspec.toml.decode(raw).get("limits", {})
        for layer in ("sessions", "accounts", "symbols"):
            for key, value in (tables.get(layer) or {}).items():
                try:
                    msgspec.convert(value, Limits)
                except msgspec.ValidationError as exc:
                    m = re.match(r"^(.*) - at `\$\.?(.*)`$", str(exc))
                    text, where = m.groups() if m else (str(exc), "")
                    return f"limits.{layer}.{key}{'.' + where if where else ''}: {text}"
    return _readable(message)


def _readable(message: str) -> str:
    """msgspec says '... - at `$.limits.firm`'; say 'limits.firm: ...' instead."""
    m = re.match(r"^(.*) - at `\$\.?(.*)`$", message)
    if not m:
        return message
    text, where = m.groups()
    return f"{where}: {text}" if where else text


_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"", "0", "false", "no", "n"}


def load_instruments(path: Path) -> dict[str, Instrument]:
    """Instruments from a CSV file with a header: symbol, sector, reference_price, lot_size, restricted.

    A reference price is as old as the file (its modification time): a week-old file read at a
    restart gives week-old prices, which the stale-reference rule refuses.
    """
    try:
        handle = path.open(newline="")
        now_ns = os.fstat(handle.fileno()).st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the instrument file ({exc.strerror})") from None
    known = {"symbol", "sector", "reference_price", "lot_size", "restricted"}
    out: dict[str, Instrument] = {}
    with handle:
        reader = csv.DictReader(line for line in handle if not line.lstrip().startswith("#"))
        extra = set(reader.fieldnames or ()) - known
        if not reader.fieldnames or "symbol" not in reader.fieldnames or extra:
            raise ConfigError(f"{path}: header must name symbol and only {sorted(known)}; found {reader.fieldnames}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            symbol = (row.get("symbol") or "").strip()
            if not symbol:
                raise ConfigError(f"{where}: symbol is empty")
            if symbol in out:
                raise ConfigError(f"{where}: symbol {symbol} is listed twice")
            try:
                ref = _decimal(row.get("reference_price"), "reference_price", allow_empty=True)
                lot = _decimal(row.get("lot_size"), "lot_size", allow_empty=True) or Decimal(1)
                flag = (row.get("restricted") or "").strip().lower()
                if flag not in _TRUE | _FALSE:
                    raise ValueError(f"restricted: expected true or false, got {flag!r}")
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            out[symbol] = Instrument(
                symbol=symbol,
                sector=(row.get("sector") or "").strip(),
                reference_price=ref,
                reference_time_ns=now_ns if ref is not None else None,
                lot_size=lot,
                restricted=flag in _TRUE,
            )
    return out


def _decimal(text: str | None, key: str, allow_empty: bool = False) -> Decimal | None:
    text = (text or "").strip()
    if not text and allow_empty:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{key}: {text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{key}: must be a positive number, got {text}")
    return value


def load_positions(path: Path) -> tuple[StartPosition, ...]:
    """Start-of-day positions from a CSV file with a header: account, symbol, qty, avg_cost."""
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the positions file ({exc.strerror})") from None
    out: list[StartPosition] = []
    seen: set[tuple[str, str]] = set()
    with handle:
        reader = csv.DictReader(line for line in handle if not line.lstrip().startswith("#"))
        if set(reader.fieldnames or ()) != {"account", "symbol", "qty", "avg_cost"}:
            raise ConfigError(f"{path}: header must be account,symbol,qty,avg_cost; found {reader.fieldnames}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            account, symbol = (row["account"] or "").strip(), (row["symbol"] or "").strip()
            if not account or not symbol:
                raise ConfigError(f"{where}: account and symbol are required")
            if (account, symbol) in seen:
                raise ConfigError(f"{where}: {account}/{symbol} is listed twice")
            seen.add((account, symbol))
            try:
                qty = Decimal((row["qty"] or "").strip())
                cost = Decimal((row["avg_cost"] or "0").strip() or "0")
            except ArithmeticError:
                raise ConfigError(f"{where}: qty and avg_cost must be numbers") from None
            if not qty.is_finite() or not cost.is_finite() or cost < 0:
                raise ConfigError(f"{where}: qty must be finite and avg_cost zero or more")
            out.append(StartPosition(account, symbol, qty, cost))
    return tuple(out)
