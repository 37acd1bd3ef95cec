"""An instance's HA role and copy lag on a running proxy's surfaces (both engines), its HA node a
stand-in moved through a JSON file (ha_stub.py): /healthz's ``ha`` part and the status it sets (503
once fenced), GET /api/v1/ha, the ``fixproxy_ha_*`` metrics and ``fixproxy status``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .ha_stub import VIEW, proxy_env, write
from .harness import TOKENS, Stack
from .test_admin_http import api, cli
from .test_metrics import at, scrape


@pytest.fixture(scope="module")
def paired(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[tuple[Stack, Path]]:
    """A proxy whose HA node is the stand-in (active, standby b in sync copy), oms1 connected."""
    root = tmp_path_factory.mktemp("ha")
    env, state = proxy_env(root)
    s = Stack(root / "proxy", proxy_env=env)
    try:
        s.connect("oms1")
        yield s, state
    finally:
        write(state, VIEW)
        s.close()


def healthz(stack: Stack) -> tuple[int, dict]:
    url = stack.api_url.removesuffix("/api/v1") + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_active_in_copy_is_healthy_and_shows_its_standby_and_lag(paired):
    """/healthz 200 ok with ha {ok, active}; GET /ha is the node's view; the metrics and `fixproxy status`
    show role, token, partner and lag."""
    stack, state = paired
    view = VIEW | {"partner": VIEW["partner"] | {"lag_bytes": 2048, "lag_ms": 1.5}}
    write(state, view)
    code, health = healthz(stack)
    assert (code, health["status"], health["ha"]) == (200, "ok", {"state": "ok", "reason": "", "role": "active"})
    assert api(stack, "GET", "/ha", role="viewer") == (200, view)
    m = scrape(stack)
    assert at(m, "fixproxy_ha_role", role="active") == 1 and at(m, "fixproxy_ha_role", role="standby") == 0
    assert at(m, "fixproxy_ha_token") == 7
    assert at(m, "fixproxy_ha_copy_lag_bytes") == 2048 and at(m, "fixproxy_ha_copy_lag_seconds") == 0.0015
    assert at(m, "fixproxy_ha_partner_connected") == 1
    out = cli(stack, "status", token=TOKENS["viewer"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "High availability: this instance a is ACTIVE in pair gw" in lines
    assert "  standby: b, connected; copy lag: 2,048 bytes, 1.5 ms" in lines


def test_active_alone_is_degraded_and_status_says_a_failover_would_lose_state(paired):
    """No standby in copy: /healthz 200 degraded with the reason; metrics copy state alone; status says so."""
    stack, state = paired
    write(state, VIEW | {"copy_state": "alone", "partner": None}, "degraded", "no standby in copy")
    code, health = healthz(stack)
    assert (code, health["status"], health["ha"]["reason"]) == (200, "degraded", "no standby in copy")
    m = scrape(stack)
    assert at(m, "fixproxy_ha_copy_state", state="alone") == 1 and at(m, "fixproxy_ha_copy_lag_bytes") == -1
    out = cli(stack, "status", token=TOKENS["viewer"])
    assert "  NO STANDBY HAS THE COPY: a failover now would start from an older state" in out.stdout.splitlines()


def test_fenced_instance_fails_healthz_and_status_says_fenced(paired):
    """Fenced: /healthz 503 failed with ha {failed, reason, fenced}; metrics role fenced; status's FENCED line."""
    stack, state = paired
    why = "the leadership could not be renewed before the deadline"
    write(state, VIEW | {"role": "fenced", "database": "lost"}, "failed", why)
    code, health = healthz(stack)
    assert (code, health["status"], health["ha"]) == (
        503,
        "failed",
        {"state": "failed", "reason": why, "role": "fenced"},
    )
    assert at(scrape(stack), "fixproxy_ha_role", role="fenced") == 1
    out = cli(stack, "status", token=TOKENS["viewer"])
    assert out.returncode == 0, out.stderr
    assert any(
        line.startswith(f"  FENCED: {why}: this instance writes to no socket") for line in out.stdout.splitlines()
    )
