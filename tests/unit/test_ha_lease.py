"""The pair's leadership row (ha/lease.py) against a real PostgreSQL: one holder at a time, a new
token at each taking, a lapsed lease taken only by the instance it names, a superseded holder told."""

from __future__ import annotations

import threading
import time

import pytest

from fixproxy.config import HaSection
from fixproxy.ha import lease


def settings(url: str, instance: str, **kw: object) -> HaSection:
    return HaSection(url=url, pair="gw", instance=instance, copy_listen="127.0.0.1:1", **kw)  # type: ignore[arg-type]


@pytest.fixture
def conn(pg_url: str):
    c = lease.connect(settings(pg_url, "a"), "")
    lease.ensure(c)
    yield c
    c.close()


def test_first_instance_takes_the_lease_token_1_and_the_other_cannot(conn) -> None:
    """With no row the first taker gets token 1; a second cannot take an unexpired lease."""
    assert lease.acquire(conn, "gw", "a", "127.0.0.1:1", 5000, None) == 1
    assert lease.acquire(conn, "gw", "b", "127.0.0.1:2", 5000, None) is None
    row = lease.read(conn, "gw")
    assert row is not None and row.holder == "a" and row.token == 1 and not row.expired
    assert row.copy_state == "alone" and row.standby == ""


def test_lapsed_lease_is_taken_with_the_next_token_and_the_old_holder_cannot_renew(conn) -> None:
    """After expiry b takes token 2; a's renewal under token 1 fails (it learns it lost)."""
    assert lease.acquire(conn, "gw", "a", "x:1", 200, None) == 1
    time.sleep(0.3)
    assert lease.read(conn, "gw").expired  # type: ignore[union-attr]
    assert lease.acquire(conn, "gw", "b", "x:2", 5000, 1) == 2
    assert not lease.renew(conn, "gw", "a", 1, 5000, "sync", "b")
    assert lease.renew(conn, "gw", "b", 2, 5000, "sync", "a")
    row = lease.read(conn, "gw")
    assert row is not None and (row.holder, row.token, row.copy_state, row.standby) == ("b", 2, "sync", "a")


def test_takeover_of_a_token_that_moved_on_is_refused(conn) -> None:
    """A standby copying under token 1 cannot take the lease once another took token 2 and let it lapse."""
    lease.acquire(conn, "gw", "a", "x:1", 100, None)
    time.sleep(0.15)
    assert lease.acquire(conn, "gw", "c", "x:3", 100, 1) == 2
    time.sleep(0.15)
    assert lease.acquire(conn, "gw", "b", "x:2", 5000, 1) is None
    assert lease.acquire(conn, "gw", "b", "x:2", 5000, 2) == 3


def test_release_lets_the_standby_take_over_at_once(conn) -> None:
    """A clean stop gives the lease up: it is lapsed at once."""
    lease.acquire(conn, "gw", "a", "x:1", 60_000, None)
    lease.release(conn, "gw", "a", 1)
    assert lease.read(conn, "gw").expired  # type: ignore[union-attr]
    assert lease.acquire(conn, "gw", "b", "x:2", 5000, 1) == 2


def test_leadership_thread_renews_and_reports_loss_once(pg_url: str, conn) -> None:
    """The renewal thread keeps the lease valid, writes the copy state, and calls on_lost once when
    another holder took the lease; valid() is False from then on."""
    s = settings(pg_url, "a", lease_ttl_ms=600, renew_ms=100)
    token = lease.acquire(conn, "gw", "a", "x:1", s.lease_ttl_ms, None)
    assert token == 1
    lost: list[str] = []
    done = threading.Event()

    def on_lost(reason: str) -> None:
        lost.append(reason)
        done.set()

    leader = lease.Leadership(s, "", token, time.monotonic() + 0.5, lambda: ("sync", "b"), on_lost)
    leader.start()
    try:
        time.sleep(1.0)  # beyond the TTL: only renewals keep it
        assert leader.valid() and leader.renewals >= 3
        row = lease.read(conn, "gw")
        assert row is not None and row.copy_state == "sync" and row.standby == "b" and not row.expired
        # Someone takes it over (as if a had been cut off long enough): force the row.
        conn.execute("UPDATE fp_ha_leader SET holder = 'b', token = 2 WHERE pair = 'gw'")
        assert done.wait(3)
        assert len(lost) == 1 and not leader.valid()
    finally:
        leader.stop(release_lease=False)


def test_leadership_copy_state_change_is_written_at_once(pg_url: str, conn) -> None:
    """set_copy_state goes to the row before it returns (the active going on alone must be recorded first)."""
    s = settings(pg_url, "a", lease_ttl_ms=3000, renew_ms=1000)
    token = lease.acquire(conn, "gw", "a", "x:1", s.lease_ttl_ms, None)
    assert token is not None
    leader = lease.Leadership(s, "", token, time.monotonic() + 2, lambda: ("sync", "b"), lambda r: None)
    assert leader.set_copy_state("alone", "")
    row = lease.read(conn, "gw")
    assert row is not None and row.copy_state == "alone" and row.standby == ""


def test_database_unreachable_lets_the_deadline_pass(pg_url: str) -> None:
    """No database: renewals fail, the local deadline passes, valid() turns False (the gate closes)."""
    s = HaSection(
        url="postgresql://nobody@127.0.0.1:1/none",
        pair="gw",
        instance="a",
        copy_listen="127.0.0.1:1",
        lease_ttl_ms=300,
        renew_ms=100,
        db_timeout_ms=100,
    )
    leader = lease.Leadership(s, "", 1, time.monotonic() + 0.25, lambda: ("alone", ""), lambda r: None)
    leader.start()
    try:
        time.sleep(0.6)
        assert not leader.valid() and leader.database == "lost" and not leader.lost
    finally:
        leader.stop(release_lease=False)
