"""A small client of the HTTP admin API for the command line (standard library only), and the
readable rendering of ``fixproxy status``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

PREFIX = "/api/v1"  # as in admin/http.py (not imported from there: the CLI need not load aiohttp)

TOKEN_ENV = "FIXPROXY_TOKEN"


class ApiError(Exception):
    """The API refused (4xx/5xx, with its message) or could not be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        #: The HTTP status of a refusal; 0 when the API could not be reached.
        self.status = status


def base_url(host: str, port: int) -> str:
    """The API's base URL for a configured bind address (a wildcard address is reached on loopback)."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{PREFIX}"


class Client:
    def __init__(self, url: str, token: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        if not self.url.endswith(PREFIX):
            self.url += PREFIX
        self.token = token
        self.timeout = timeout

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, body: dict) -> Any:
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw).get("error") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace").strip() or exc.reason
            raise ApiError(f"HTTP {exc.code}: {message}", exc.code) from None
        except urllib.error.URLError as exc:
            raise ApiError(f"cannot reach the proxy's admin API at {self.url}: {exc.reason}") from None
        except (TimeoutError, ConnectionError) as exc:
            raise ApiError(f"cannot reach the proxy's admin API at {self.url}: {exc}") from None


# ---------------------------------------------------------------- rendering


def table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    return "\n".join(
        indent + "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def _when(ns: int) -> str:
    if not ns:
        return ""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_status(summary: dict) -> str:
    """``fixproxy status``: recording health, trading states, sessions up/down, exposure, open orders."""
    out = []
    health = summary.get("health")
    if health is not None:
        journal, audit = health.get("journal", {}), health.get("audit", {})
        if journal.get("state") == "failed":
            out.append(
                f"RECORDING FAILED: {journal.get('reason')}: new orders are refused (cancels pass); "
                "free space, then `fixproxy resume-recording --reason ...`"
            )
        else:
            out.append(
                f"Recording: ok (journal segment {journal.get('segment')}, {journal.get('bytes', 0):,} bytes, "
                f"sync {journal.get('sync')})"
            )
        state = audit.get("state", "disabled")
        line = f"Audit follower: {state}"
        if state not in ("ok", "disabled"):
            line += f" ({audit.get('detail') or 'see the proxy log'}; nothing is lost: it catches up from the journal)"
        out.append(line)
        day = health.get("trading_day")
        if day:
            out.append(f"Trading day: {day.get('day') or '(none yet)'} (a new day begins at {day.get('roll')})")
        out.append("")
    out.append("Trading states (every scope not listed is ACTIVE)")
    states = summary.get("trading_states", [])
    if states:
        out.append(
            table(
                ["scope", "state", "since (UTC)", "by", "reason"],
                [[s["scope"], s["state"], _when(s["since_ns"]), s["operator"], s["reason"]] for s in states],
            )
        )
    else:
        out.append("  all ACTIVE")
    sessions = summary.get("sessions", {})
    rows = [
        [s["name"], "OMS", "up" if s["up"] else "DOWN", "cancel on disconnect" if s.get("cancel_on_disconnect") else ""]
        for s in sessions.get("oms", [])
    ]
    rows += [[v["name"], "venue", "up" if v["up"] else "DOWN", ""] for v in sessions.get("venues", [])]
    out += ["", "Sessions", table(["name", "kind", "status", ""], rows)]
    exposure = summary.get("exposure", [])
    out += ["", "Exposure"]
    if exposure:
        rows = []
        for e in exposure:
            used = ", ".join(f"{name} {u['utilization_pct']}%" for name, u in e.get("limits", {}).items())
            rows.append([e["scope"], e["gross"], e["net"], e["net_long"], e["net_short"], str(e["open_orders"]), used])
        out.append(table(["scope", "gross", "net", "net long", "net short", "open orders", "limits used"], rows))
    else:
        out.append("  none")
    counts = summary.get("orders") or {}
    open_orders = counts.get("open", len(summary.get("open_orders", [])))  # "open_orders": a proxy before the counts
    out += [
        "",
        f"Open orders: {open_orders}; cancels sent by the proxy still awaiting the venue: "
        f"{summary.get('kill_cancels_pending', 0)}",
    ]
    decisions = counts.get("decisions")
    if decisions:
        codes = ", ".join(f"{code} {n}" for code, n in decisions.get("rejects_by_code", {}).items())
        out.append(
            f"Decisions: {decisions['accepted']} accepted, {decisions['rejected']} rejected"
            + (f" ({codes})" if codes else "")
        )
    modes = summary.get("modes")
    if modes is not None:
        watched = [f"rule {name}" for name, mode in modes.get("rules", {}).items() if mode == "monitor"]
        watched += [f"{w['layer']} {w['field']}" for w in modes.get("limits", [])]
        out.append("Monitor mode: " + (", ".join(watched) if watched else "none (every rule and limit enforced)"))
    cluster = summary.get("cluster")
    if cluster and cluster.get("cluster") != "disabled":
        out += ["", *render_cluster(cluster)]
    ha = summary.get("ha")
    if ha:
        out += ["", *render_ha(ha, (summary.get("health") or {}).get("ha"))]
    return "\n".join(out) + "\n"


#: Copy states in which no standby holds the copy (ha/node.py ``view``).
HA_NO_COPY = ("alone", "none")


def _ms(value: Any) -> str:
    return f"{value:,.1f} ms" if isinstance(value, int | float) else "?"


def render_ha(view: dict, health: dict | None = None) -> list[str]:
    """The "High availability" part of ``fixproxy status`` from GET /ha (and /healthz's ``ha`` part, for
    the reason): role, pair, fencing token, the copy's mode and state, the partner and the copy's lag,
    the lease left; a line of its own when fenced or when no standby has the copy."""
    role = str(view.get("role", "?"))
    health = health or {}
    me, pair = view.get("instance", "?"), view.get("pair", "?")
    out = [f"High availability: this instance {me} is {role.upper()} in pair {pair}"]
    token = view.get("token")
    out.append(f"  fencing token: {token if token is not None else 'none seen yet'}")
    out.append(f"  copy: {view.get('copy', '?')} (state: {view.get('copy_state', '?')})")
    database = view.get("database", "?")
    out.append(
        f"  database: {database if database != 'lost' else 'LOST'}; lease left: {_ms(view.get('lease_left_ms'))}"
    )
    partner = view.get("partner") or {}
    whose = "active" if role == "standby" else "standby"
    if partner.get("instance"):
        link = "connected" if partner.get("connected") else "NOT CONNECTED"
        lag_bytes = partner.get("lag_bytes")
        size = f"{lag_bytes:,} bytes" if isinstance(lag_bytes, int) else "? bytes"
        out.append(f"  {whose}: {partner['instance']}, {link}; copy lag: {size}, {_ms(partner.get('lag_ms'))}")
    else:
        out.append(f"  {whose}: none")
    if partner.get("problem"):
        out.append(f"  copy connection: {partner['problem']}")
    if role == "fenced":
        why = health.get("reason") or "the leadership lease could not be renewed in time"
        out.append(
            f"  FENCED: {why}: this instance writes to no socket (OMS or venue); the standby takes over once the "
            "lease lapses"
        )
    elif role == "active" and view.get("copy_state") in HA_NO_COPY:
        out.append("  NO STANDBY HAS THE COPY: a failover now would start from an older state")
    elif role == "standby" and view.get("copy_state") not in ("sync", "async"):
        why = view.get("waiting") or health.get("reason") or view.get("copy_state")
        out.append(f"  NOT IN COPY ({why}): this standby would not take over now")
    return out


#: Positions listed per instance in ``fixproxy status`` (the count is always shown).
CLUSTER_POSITIONS = 5


def _age(iso_time: str, now: datetime) -> str:
    try:
        seconds = (now - datetime.fromisoformat(iso_time)).total_seconds()
    except (TypeError, ValueError):
        return "?"
    return f"{max(seconds, 0.0):.1f} s"


def render_cluster(view: dict, now: datetime | None = None) -> list[str]:
    """The "Cluster" part of ``fixproxy status`` from GET /cluster: this instance's database and fence,
    one line per instance, each shared limit with every instance's share, and positions per instance."""
    now = now or datetime.now(UTC)
    health = view.get("health", {})
    me = view.get("instance", "")
    out = [f"Cluster: this instance is {me}"]
    if health.get("database") == "up":
        expire = health.get("leases_expire_in_s")
        out.append(
            "  database: up"
            + (f" (leases renewed, expire in {expire:.1f} s unless renewed)" if expire is not None else "")
        )
    else:
        since = health.get("lost_since")
        when = _when(int(since * 1e9)) + " UTC" if since else "?"
        out.append(
            f"  DATABASE LOST since {when}: {health.get('reason') or 'unknown'}; this instance trades within the "
            "leases it holds until they expire"
        )
    fence = health.get("fenced")
    out.append(
        f"  FENCED: {fence}: orders that need new headroom of a shared limit are refused" if fence else "  fenced: no"
    )
    listener = health.get("listener", "ok")
    out.append(
        f"  desk commands: {health.get('commands_applied', 0)} applied from other instances, "
        f"{health.get('commands_published', 0)} published; listener {listener}"
    )
    keys = [limit["key"] for limit in view.get("limits", [])]
    rows = []
    for inst in view.get("instances", []):
        status = inst.get("status") or {}
        sessions = status.get("sessions", [])
        usage = status.get("usage", {})
        name = inst["instance"] + (" (this)" if inst["instance"] == me else "")
        rows.append(
            [
                name,
                "alive" if inst.get("alive") else "GONE",
                _age(inst.get("heartbeat", ""), now),
                f"{sum(1 for x in sessions if x.get('up'))}/{len(sessions)}",
                str(status.get("open_orders", "")),
                "FENCED" if status.get("fenced") else (status.get("health") or ""),
                *[f"{usage[k]['used']}/{usage[k]['allowance']}" if k in usage else "-" for k in keys],
            ]
        )
    out += ["", "Instances (usage of each shared limit: used/allowance)"]
    out.append(
        table(["instance", "state", "heartbeat age", "sessions up", "open orders", "health", *keys], rows)
        if rows
        else "  none yet"
    )
    out += ["", "Shared limits (allowances: what the instances hold, within the limit)"]
    rows = []
    for limit in view.get("limits", []):
        shares = limit.get("shares", [])
        held = sum((Decimal(x["allowance"]) for x in shares), Decimal(0))
        used = sum((Decimal(x["used"]) for x in shares), Decimal(0))
        each = ", ".join(
            f"{x['instance']} {x['used']}/{x['allowance']}" + ("" if x.get("lease_live") else " (lease expired)")
            for x in shares
        )
        rows.append([limit["field"], limit["scope"], limit["limit"], f"{held:f}", f"{used:f}", each or "none"])
    out.append(
        table(["limit", "scope", "limit value", "allowances", "used", "each instance (used/allowance)"], rows)
        if rows
        else "  none (no aggregate limit on the firm or an account)"
    )
    out += ["", "Positions per instance"]
    for inst in view.get("instances", []):
        positions = inst.get("positions", [])
        first = ", ".join(f"{p['account'] or '-'} {p['symbol']} {p['qty']}" for p in positions[:CLUSTER_POSITIONS])
        more = f", and {len(positions) - CLUSTER_POSITIONS} more" if len(positions) > CLUSTER_POSITIONS else ""
        out.append(f"  {inst['instance']}: {len(positions)} position(s)" + (f": {first}{more}" if first else ""))
    return out


def render_modes(modes: dict) -> str:
    """GET /modes as text: each rule's mode, then the limits in monitor mode."""
    rules = modes.get("rules", {})
    width = max((len(name) for name in rules), default=0)
    out = ["Rule modes:"] + [f"  {name.ljust(width)}  {mode}" for name, mode in rules.items()]
    watched = modes.get("limits", [])
    out.append("Limits in monitor mode:" + ("" if watched else " none"))
    out += [f"  {w['layer']} {w['field']}" for w in watched]
    return "\n".join(out) + "\n"


def render_result(result: dict) -> str:
    """One line for an admin action's result."""
    kind = result.get("kind")
    if kind == "kill":
        line = f"{result['scope']}: {result['before']} -> {result['after']}"
        if result.get("orders_cancelled"):
            line += f"; {result['orders_cancelled']} working order(s) cancelled at the venues"
    elif kind == "limit":
        line = (
            f"{result['scope']} {result['detail']}: {result['before'] or '(unset)'} -> {result['after'] or '(unset)'}"
        )
    elif kind == "recording":
        line = f"recording: {result.get('before') or '-'} -> {result.get('after') or '-'}; {result.get('detail', '')}"
    elif kind == "reference":
        line = f"{result['scope']} reference price: {result['before'] or '(none)'} -> {result['after']}"
    elif kind == "mode" and result.get("ok"):
        line = f"{result['scope']} {result['detail']}: {result['before']} -> {result['after']}"
    else:
        line = json.dumps(result)
    return f"{line} (by {result.get('operator', '')}: {result.get('reason', '')})"
