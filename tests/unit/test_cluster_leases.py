"""Leases on shares of shared limits (cluster/manager.py, cluster/schema.py) against a real PostgreSQL:
the database holds the invariant, the manager keeps each core's share ahead of its usage."""

from __future__ import annotations

import time
from decimal import Decimal

import msgspec
import psycopg
import pytest

from fixproxy.cluster import schema
from fixproxy.cluster.manager import ClusterManager, plan, step_of
from fixproxy.config import ClusterSection
from fixproxy.core import cluster, events as ev
from fixproxy.engines.bridge import CoreBridge

from .conftest import LIMITS, Harness, order

D = Decimal
GROSS_FIRM = cluster.key(cluster.GROSS, "firm")


# ---------------------------------------------------------------- the plan, pure


@pytest.mark.parametrize(
    ("usage", "allowance", "bound", "avail", "wanted", "expected"),
    [
        ("0", "0", "0", "1000", "0", ("100", "400")),  # nothing held: a step, and a reserve of four
        ("60", "150", "150", "1000", "0", ("150", "400")),  # 90 left: enough, nothing moves
        ("60", "100", "100", "1000", "0", ("160", "400")),  # 40 left, under half a step: topped up
        ("60", "150", "150", "170", "0", ("150", "20")),  # the reserve takes only what is free
        ("60", "100", "100", "120", "0", ("120", "0")),  # a top-up takes what is free, no more
        ("960", "1000", "1000", "1000", "0", ("1000", "0")),  # short of half a step, nothing to give
        ("0", "500", "500", "1000", "0", ("100", "400")),  # five steps unused: given back to one
        ("50", "100", "100", "1000", "230", ("280", "400")),  # a refused order wanted 230: it fits now
        ("0", "0", "0", "-50", "0", ("0", "0")),  # over the limit already (lowered): nothing
    ],
)
def test_plan_tops_up_gives_back_and_never_takes_more_than_is_free(usage, allowance, bound, avail, wanted, expected):
    """One step is 100; what a share becomes, and the reserve beside it."""
    new, reserve = plan(D(usage), D(allowance), D(bound), D(avail), D(100), 4, D(wanted))
    assert (new, reserve) == (D(expected[0]), D(expected[1]))


def test_step_of_open_orders_is_whole_orders():
    assert step_of("max_open_orders|firm", D(30), 2.0) == D(1)
    assert step_of("max_gross_exposure|firm", D(1_000_000), 2.0) == D(20_000)


# ---------------------------------------------------------------- the database's invariant


def _db(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    schema.ensure(conn)
    return conn


def _lease(conn, instance: str, bound: int, reserve: int = 0, ttl_s: float = 60) -> None:
    conn.execute(
        "INSERT INTO fp_lease (key, instance, bound, reserve, expires_at) "
        "VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s)) ON CONFLICT (key, instance) "
        "DO UPDATE SET bound = EXCLUDED.bound, reserve = EXCLUDED.reserve, expires_at = EXCLUDED.expires_at",
        (GROSS_FIRM, instance, bound, reserve, ttl_s),
    )


def test_database_refuses_shares_above_the_limit(pg_url):
    """Allowances plus live reserves may not pass the limit, whoever writes them."""
    with _db(pg_url) as conn:
        conn.execute("INSERT INTO fp_limit (key, value, set_by) VALUES (%s, 1000, 'test')", (GROSS_FIRM,))
        _lease(conn, "a", 600, 100)
        _lease(conn, "b", 300)
        with pytest.raises(psycopg.errors.CheckViolation, match="above its limit 1000"):
            _lease(conn, "b", 301)
        _lease(conn, "a", 500, 0)  # giving back is allowed
        _lease(conn, "b", 500)


def test_expired_reserve_returns_to_the_pool_but_an_allowance_stays_counted(pg_url):
    """A dead instance's reserve is free once its lease lapsed; its allowance (an upper bound of its
    orders) is not."""
    with _db(pg_url) as conn:
        conn.execute("INSERT INTO fp_limit (key, value, set_by) VALUES (%s, 1000, 'test')", (GROSS_FIRM,))
        _lease(conn, "a", 400, 500, ttl_s=0.2)
        with pytest.raises(psycopg.errors.CheckViolation):
            _lease(conn, "b", 200)
        time.sleep(0.3)
        _lease(conn, "b", 600)
        with pytest.raises(psycopg.errors.CheckViolation):
            _lease(conn, "b", 601)


def test_lowered_limit_lets_shares_shrink_but_not_grow(pg_url):
    """A limit lowered below what is held: nobody may take more, everyone may give back."""
    with _db(pg_url) as conn:
        conn.execute("INSERT INTO fp_limit (key, value, set_by) VALUES (%s, 1000, 'test')", (GROSS_FIRM,))
        _lease(conn, "a", 800)
        conn.execute("UPDATE fp_limit SET value = 500 WHERE key = %s", (GROSS_FIRM,))
        _lease(conn, "a", 700)
        with pytest.raises(psycopg.errors.CheckViolation):
            _lease(conn, "a", 701)


# ---------------------------------------------------------------- managers of two instances, one database


def _instance(url: str, name: str, limit: int, tmp_path) -> tuple[Harness, ClusterManager]:
    h = Harness(
        limits=msgspec.structs.replace(LIMITS, firm=msgspec.structs.replace(LIMITS.firm, max_gross_exposure=D(limit)))
    )
    h.core.shares.enabled = True
    bridge = CoreBridge(h.core, [], lambda a: None)
    settings = ClusterSection(url=url, instance=name, step_pct=10, reserve_steps=2, lease_ttl_ms=400, renew_ms=100)
    (tmp_path / name).mkdir()
    return h, ClusterManager(settings, bridge, tmp_path / name, lambda: {})


def _fill_up(h: Harness, m: ClusterManager, conn, prefix: str, rounds: int = 40) -> list[ev.Decision]:
    """Orders of 10,000 one after another, the manager taking a turn between them."""
    out = []
    for i in range(rounds):
        out.append(next(a for a in h.new(order(f"{prefix}{i}", qty=100, price=100)) if isinstance(a, ev.Decision)))
        m._leases(conn)
    return out


def test_two_instances_reach_the_limit_together_and_never_pass_it(pg_url, tmp_path):
    """Two cores each sending 10,000 orders against one firm limit of 200,000: together they hold at
    most the limit, reach it, and each one's last refusal is GROSS_EXPOSURE."""
    a, ma = _instance(pg_url, "a", 200_000, tmp_path)
    b, mb = _instance(pg_url, "b", 200_000, tmp_path)
    with _db(pg_url) as conn:
        ma._leases(conn)
        mb._leases(conn)
        decided = []
        for i in range(20):
            decided += _fill_up(a, ma, conn, f"A{i}-", 1) + _fill_up(b, mb, conn, f"B{i}-", 1)
            bounds = conn.execute("SELECT coalesce(sum(bound), 0) FROM fp_lease").fetchone()[0]
            assert bounds <= 200_000
        used = a.core.book.gross("firm") + b.core.book.gross("firm")
        assert used <= 200_000
        assert used >= 180_000  # within one order of the limit: they reached it together
        assert decided[-1].code == decided[-2].code == "GROSS_EXPOSURE"
        assert all(d.accepted or d.code == "GROSS_EXPOSURE" for d in decided)


def test_desk_command_made_on_one_instance_is_applied_on_the_other(pg_url, tmp_path):
    """A halt on a is published (fp_command, NOTIFY) and b applies it as a@'s operator."""
    a, ma = _instance(pg_url, "a", 200_000, tmp_path)
    b, mb = _instance(pg_url, "b", 200_000, tmp_path)
    halt = ev.AdminKill("firm", "halt", "test", "alice", a.now)
    ma.command_done(halt, a.handle(halt))
    with _db(pg_url) as conn:
        ma._publish(conn)
        assert mb._catch_up(conn, 0) == 1
    d = next(x for x in b.new(order("B1")) if isinstance(x, ev.Decision))
    assert (d.code, "alice@a" in d.text) == ("HALTED", True)
    assert mb._cursor() == 1  # kept across a restart: a command is applied once


def test_limit_change_moves_the_shared_limit_in_the_database(pg_url, tmp_path):
    """The firm's gross limit lowered on a: fp_limit carries the new value every share is held within."""
    a, ma = _instance(pg_url, "a", 200_000, tmp_path)
    with _db(pg_url) as conn:
        ma._leases(conn)
        change = ev.AdminSetLimit("firm", "max_gross_exposure", "50000", "test", "alice", a.now)
        ma.command_done(change, a.handle(change))
        ma._publish(conn)
        assert conn.execute("SELECT value FROM fp_limit WHERE key = %s", (GROSS_FIRM,)).fetchone()[0] == 50_000
        change = ev.AdminSetLimit("firm", "max_gross_exposure", None, "test", "alice", a.now)
        ma.command_done(change, a.handle(change))
        ma._publish(conn)
        assert conn.execute("SELECT count(*) FROM fp_limit").fetchone()[0] == 0
    assert cluster.shared_limits(a.core.limits.limits) == {}
