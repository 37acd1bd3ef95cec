"""The firm-wide picture of a cluster on every surface (issue 21), both engines: two instances sharing one
PostgreSQL database; GET /api/v1/cluster on either lists both with their sessions, usage and shares;
`fixproxy status` prints the Cluster section; /healthz and /metrics say the database is up."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.pg import fresh_database

from .harness import TOKENS, Stack, messages
from .test_admin_http import api, cli
from .test_cluster import until
from .test_order_path import order

GROSS = "max_gross_exposure|firm"


def cluster_section(url: str, name: str) -> str:
    return f'[cluster]\nurl = "{url}"\ninstance = "{name}"\nlease_ttl_ms = 1500\nrenew_ms = 100\nstep_pct = 5\n'


@pytest.fixture(scope="module")
def pair(tmp_path_factory, pg_server, engine) -> Iterator[dict[str, Stack]]:
    """Instances a and b on one fresh database, a firm gross limit they share, oms1 logged on to each
    (oms2 is not: each instance has 2 of its 3 sessions up)."""
    root: Path = tmp_path_factory.mktemp("cluster-surfaces")
    stacks: dict[str, Stack] = {}
    with fresh_database(pg_server, f"surfaces_{engine}") as url:
        try:
            for name in "ab":
                stacks[name] = Stack(
                    root / name,
                    behaviours={"MSFT": "ack"},
                    firm_extra="max_gross_exposure = 2000000",
                    sections=cluster_section(url, name),
                )
                stacks[name].connect("oms1")
            yield stacks
        finally:
            for s in stacks.values():
                s.close()


def view(stack: Stack) -> dict:
    status, body = api(stack, "GET", "/cluster", role="viewer")
    assert status == 200, body
    return body


def rest(stack: Stack, cl: str) -> None:
    """An MSFT order of 10 at 410 that the venue acknowledges and leaves working (4,100 of gross)."""
    oms = stack.oms["oms1"]
    start = oms.mark()
    oms.send_line(order(cl, symbol="MSFT", price="410", qty="10", account="CLU"))
    oms.wait_for(messages(oms)(**{"35": "8", "11": cl, "39": "0"}), start=start)


def test_cluster_view_on_either_instance_lists_both_with_sessions_usage_and_shares(pair):
    """An order working on a: /cluster on a and on b both list a and b alive with oms1 and the venue up
    and oms2 down, a's usage of the firm's gross at 4,100 within its allowance, and the shared limit with
    both instances' shares within it."""
    rest(pair["a"], "SURF-1")

    def seen(stack: Stack) -> dict | None:
        v = view(stack)
        by = {i["instance"]: i for i in v["instances"]}
        a = by.get("a", {}).get("status", {}).get("usage", {}).get(GROSS)
        if set(by) != {"a", "b"} or a is None or Decimal(a["used"]) != 4100:
            return None
        # Each instance writes its status every renew_ms: wait for the rows written after both logons.
        if not all({s["name"]: s["up"] for s in i["status"]["sessions"]}.get("oms1") for i in by.values()):
            return None
        return v

    for name in "ab":
        v = until(lambda s=pair[name]: seen(s), f"instance {name} sees both and a's order")
        assert v["instance"] == name
        assert v["health"]["database"] == "up" and v["health"]["fenced"] == ""
        by = {i["instance"]: i for i in v["instances"]}
        for inst in by.values():
            assert inst["alive"] is True
            sessions = {s["name"]: s["up"] for s in inst["status"]["sessions"]}
            assert sessions == {"oms1": True, "oms2": False, "sim": True}
        usage = by["a"]["status"]["usage"][GROSS]
        assert 4100 <= Decimal(usage["allowance"]) <= 2_000_000
        limit = next(lim for lim in v["limits"] if lim["key"] == GROSS)
        assert Decimal(limit["limit"]) == 2_000_000
        shares = {s["instance"]: s for s in limit["shares"]}
        assert set(shares) == {"a", "b"}
        assert sum(Decimal(s["allowance"]) + Decimal(s["reserve"]) for s in shares.values()) <= 2_000_000


def test_status_prints_the_cluster_section_with_both_instances(pair):
    """`fixproxy status` on b: the Cluster section names b as this instance, the database up, a line per
    instance, and the firm's gross among the shared limits with both shares."""
    until(lambda: len(view(pair["b"])["instances"]) == 2, "b sees both instances")
    done = cli(pair["b"], "status", token=TOKENS["viewer"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "Cluster: this instance is b" in lines
    assert any(line.startswith("  database: up") for line in lines)
    assert "  fenced: no" in lines
    start = lines.index("Instances (usage of each shared limit: used/allowance)")
    rows = {line.split()[0]: line.split() for line in lines[start + 2 : start + 4]}
    assert rows["a"][1] == "alive" and rows["b"][1:3] == ["(this)", "alive"]
    limits = lines[lines.index("Shared limits (allowances: what the instances hold, within the limit)") + 2]
    assert limits.split()[:3] == ["max_gross_exposure", "firm", "2000000"]
    assert " a " in f" {limits} " and " b " in f" {limits} "
    raw = json.loads(cli(pair["b"], "status", "--json", token=TOKENS["viewer"]).stdout)
    assert {i["instance"] for i in raw["cluster"]["instances"]} == {"a", "b"}


def test_healthz_and_metrics_say_the_database_is_up(pair):
    """/healthz carries cluster.database "up" (status ok); /metrics says up, not fenced, two instances
    alive and a's allowance of the firm's gross at least its usage."""
    with urllib.request.urlopen(f"http://127.0.0.1:{pair['a'].http_port}/healthz", timeout=10) as response:
        health = json.loads(response.read())
    assert health["cluster"]["database"] == "up" and health["cluster"]["state"] == "ok"
    assert health["status"] == "ok"

    def scrape() -> dict[tuple, float]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{pair['a'].http_port}/metrics", headers={"Authorization": f"Bearer {TOKENS['viewer']}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }

    s = until(lambda: (m := scrape()).get(("fixproxy_cluster_instances_alive", ())) == 2 and m, "two alive")
    assert isinstance(s, dict)
    labels = (("limit", "max_gross_exposure"), ("scope", "firm"))
    assert s[("fixproxy_cluster_up", (("reason", ""),))] == 1
    assert s[("fixproxy_cluster_fenced", (("reason", ""),))] == 0
    assert s[("fixproxy_cluster_allowance", labels)] >= s[("fixproxy_cluster_usage", labels)]
