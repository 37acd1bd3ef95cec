"""The standby's own small HTTP server, on its ``[admin]`` port while it is not the active proxy.

A standby has no core to show: it serves what it knows of the pair (ha/node.py ``view`` and ``health``).
``GET /healthz`` (no token): 200 with status ``standby`` while it is in copy, ``degraded`` while it is
not, 503 with ``failed``; ``GET /api/v1/ha`` (a viewer token, as on the active): the view;
``GET /metrics`` (a viewer token unless ``metrics_public``): the ``fixproxy_ha_*`` gauges and the
process's; ``GET /`` (no token, like ``/healthz``): one page that says whose standby this is and how far
behind its copy is, reloading itself every second. Anything else is a 404 that says why.
"""

from __future__ import annotations

import asyncio
import functools
import html
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import Metric

from ..admin.http import PREFIX, Auth, Denied, denied_response
from ..admin.metrics import ha_families, render as render_metrics

T = TypeVar("T")

#: /healthz's status by the HA node's health state.
STATUS = {"ok": "standby", "degraded": "degraded"}
ONLY_HERE = (
    "this is the standby of an active/passive pair: until it takes over it serves only /, /healthz, "
    f"{PREFIX}/ha and /metrics"
)


class HaCollector:
    """The ``fixproxy_ha_*`` metric families of the node's view, read at each scrape."""

    def __init__(self, view: Callable[[], dict]) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        return ha_families(self._view())


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status, content_type="application/json")


def standby_app(
    view: Callable[[], dict],
    health: Callable[[], dict],
    tokens: Iterable[Any] = (),
    *,
    metrics_public: bool = False,
) -> web.Application:
    """The application: ``tokens`` as AdminApi takes them (``[[admin.tokens]]``: name, role, secret)."""
    auth = Auth(tokens)
    reg = CollectorRegistry()
    reg.register(HaCollector(view))
    ProcessCollector(registry=reg)

    async def run(fn: Callable[..., T], *args: object) -> T:
        # The node's view may take a lock its own threads hold: never wait for it on the loop.
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

    def denied(request: web.Request, required: str | None) -> web.Response | None:
        if required is None:
            return None
        verdict = auth.check(request.headers.get("Authorization"), required)
        return denied_response(verdict) if isinstance(verdict, Denied) else None

    async def healthz(request: web.Request) -> web.Response:
        h, v = await run(health), await run(view)
        status = STATUS.get(h.get("state", ""), "failed")
        return _json({"status": status, "reason": h.get("reason", ""), "ha": v}, 503 if status == "failed" else 200)

    async def ha(request: web.Request) -> web.Response:
        return denied(request, "viewer") or _json(await run(view))

    async def metrics(request: web.Request) -> web.Response:
        refused = denied(request, None if metrics_public else "viewer")
        if refused is not None:
            return refused
        body, content_type = await run(render_metrics, reg, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text=status_page(await run(view)),
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    @web.middleware
    async def errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return _json({"error": ONLY_HERE}, 404)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _json({"error": exc.reason}, exc.status)

    app = web.Application(middlewares=[errors])
    app.router.add_get("/", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get(PREFIX + "/ha", ha)
    app.router.add_get("/metrics", metrics)
    return app


def status_page(view: dict) -> str:
    """The one page: whose standby this is, the copy's state and lag; it reloads itself every second."""
    e = html.escape
    partner = view.get("partner") or {}
    role = str(view.get("role", ""))
    active = partner.get("instance") or "(no active found yet)"
    link = "connected" if partner.get("connected") else "not connected"
    lag_bytes, lag_ms = partner.get("lag_bytes"), partner.get("lag_ms")
    lag = (
        f"{lag_bytes:,} bytes" if isinstance(lag_bytes, int) else "? bytes",
        f"{lag_ms:,.1f} ms" if isinstance(lag_ms, int | float) else "? ms",
    )
    left = view.get("lease_left_ms")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="1">
<title>fixproxy {e(role)}: {e(str(view.get("instance", "")))}</title>
<style>body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1f2937; }} td {{ padding: 2px 12px 2px 0; }}</style>
</head>
<body>
<h1 id="headline">{e(str(view.get("instance", "")))}: {e(role)} of {e(str(active))}, copy lag {e(lag[0])}, {e(lag[1])}</h1>
<table>
<tr><td>pair</td><td id="pair">{e(str(view.get("pair", "")))}</td></tr>
<tr><td>role</td><td id="role">{e(role)}</td></tr>
<tr><td>fencing token</td><td id="token">{e(str(view.get("token", "")))}</td></tr>
<tr><td>copy</td><td id="copy">{e(str(view.get("copy", "")))} (state: {e(str(view.get("copy_state", "")))})</td></tr>
<tr><td>active</td><td id="partner">{e(str(active))}, {link}</td></tr>
<tr><td>database</td><td id="database">{e(str(view.get("database", "")))}</td></tr>
<tr><td>lease left</td><td id="lease">{e(f"{left:,.0f} ms" if isinstance(left, int | float) else "?")}</td></tr>
</table>
{f'<p id="waiting">Would not take over now: {e(str(view["waiting"]))}</p>' if view.get("waiting") else ""}
{f'<p id="problem">Copy connection: {e(str(partner["problem"]))}</p>' if partner.get("problem") else ""}
<p>A standby in copy takes over when the active's leadership lease lapses.</p>
</body>
</html>
"""


async def serve_standby_http(
    host: str,
    port: int,
    view: Callable[[], dict],
    health: Callable[[], dict],
    tokens: Iterable[Any] = (),
    *,
    metrics_public: bool = False,
) -> web.AppRunner:
    """Listen on ``host:port`` only (OSError if it cannot); the caller stops it with ``runner.cleanup()``."""
    app = standby_app(view, health, tokens, metrics_public=metrics_public)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
