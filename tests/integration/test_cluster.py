"""Several proxies sharing one firm through PostgreSQL (issue 21), over real FIX sessions.

Three instances (each its own venue and OMS simulators) with a firm gross limit they can only reach
together never take the firm above it, and reach it; so too when one is killed -9 mid-flow, whose
reserve returns after its lease expires. A halt or a limit change made on one reaches the others.
An instance whose database goes away trades within its leases, then refuses what needs new headroom,
and resumes by itself when the database is back.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import psycopg

from fixproxy.cli import main
from fixproxy.journal import format as fmt
from fixproxy.journal.reader import read_segment, segments

from .flows import Flow, run, until, until_all_refuse
from .harness import REPO, Stack, messages
from .test_admin_http import api, kill
from .test_anomaly import audit_rows
from .test_order_path import order

QTY = 100
PRICE = Decimal(190)  # AAPL's reference price: its fills at it leave the reference where it is
ORDER = QTY * PRICE
LIMIT = 3 * 40 * ORDER  # 40 orders' worth per instance: reached by the three together only
STEP_PCT = 5
STEP = LIMIT * STEP_PCT / 100
REFERENCE = {
    row["symbol"]: Decimal(row["reference_price"])
    for row in csv.DictReader((REPO / "cfg" / "instruments.csv").open())
    if row["reference_price"]
}


def cluster_section(url: str, name: str, *, ttl_ms: int = 1500, renew_ms: int = 100) -> str:
    return (
        f'[cluster]\nurl = "{url}"\ninstance = "{name}"\nlease_ttl_ms = {ttl_ms}\n'
        f"renew_ms = {renew_ms}\nstep_pct = {STEP_PCT}\n"
    )


@contextmanager
def cluster(
    root: Path, url: str, names: str = "abc", *, firm_extra: str = "", **section: int
) -> Iterator[dict[str, Stack]]:
    """Instances named by the letters of ``names`` sharing ``url``, oms1 logged on to each; all stopped after."""
    stacks: dict[str, Stack] = {}
    try:
        for name in names:
            stacks[name] = Stack(root / name, firm_extra=firm_extra, sections=cluster_section(url, name, **section))
            stacks[name].connect("oms1")
        yield stacks
    finally:
        for s in stacks.values():
            s.close()


def query(url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def lease(url: str, instance: str, key: str = "max_gross_exposure|firm") -> dict:
    """One instance's row of fp_lease: bound, reserve, used, and whether the lease is live."""
    rows = query(
        url,
        "SELECT bound, reserve, used, expires_at > now() FROM fp_lease WHERE key = %s AND instance = %s",
        key,
        instance,
    )
    assert rows, f"no lease of {instance} on {key}"
    bound, reserve, used, live = rows[0]
    return {"bound": bound, "reserve": reserve, "used": used, "live": live}


def mirrored_qty(url: str, instance: str) -> Decimal:
    """The instance's net position in AAPL as its mirror wrote it to fp_position."""
    rows = query(url, "SELECT coalesce(sum(qty), 0) FROM fp_position WHERE instance = %s AND symbol = 'AAPL'", instance)
    return Decimal(rows[0][0])


def health(stack: Stack) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.http_port}/healthz", timeout=10) as response:
        return json.loads(response.read())


def venue_gross(stack: Stack) -> Decimal:
    """The gross exposure one venue simulator saw: per symbol, the worst case of its fills and the
    orders it holds working (an order it received and did not answer counts as working whole), valued
    at the instrument file's reference price, as the proxy values it."""
    orders: dict[str, tuple[str, str, Decimal]] = {}
    last: dict[str, dict] = {}
    for rec in list(stack.venue.lines):
        f = rec.get("fields") or {}
        if rec.get("dir") == "in" and f.get("35") == "D":
            orders[f["11"]] = (f["55"], f["54"], Decimal(f["38"]))
        elif rec.get("dir") == "out" and f.get("35") == "8":
            last[f["11"]] = f
    pos: dict[str, Decimal] = {}
    buy: dict[str, Decimal] = {}
    sell: dict[str, Decimal] = {}
    for cl, (symbol, side, qty) in orders.items():
        sign = 1 if side == "1" else -1
        report = last.get(cl)
        cum = Decimal(report["14"]) if report else Decimal(0)
        working = Decimal(0) if report and report["39"] in ("2", "4", "8") else qty - cum
        pos[symbol] = pos.get(symbol, Decimal(0)) + sign * cum
        book = buy if sign > 0 else sell
        book[symbol] = book.get(symbol, Decimal(0)) + working
    gross = Decimal(0)
    for symbol in pos:
        p = pos[symbol]
        worst = max(abs(p + buy.get(symbol, 0)), abs(p - sell.get(symbol, 0)))
        gross += worst * REFERENCE[symbol]
    return gross


def test_three_instances_reach_the_firm_gross_limit_together_and_never_above(tmp_path, pg_url):
    """Three OMSs, each on its own instance, buy as fast as they can against a firm gross limit of 120
    orders' worth until every instance refuses: what the venues hold never exceeds the limit, comes
    within one order per instance of it, and each instance's last refusals are GROSS_EXPOSURE."""
    firm = f"max_gross_exposure = {LIMIT}"
    with cluster(tmp_path, pg_url, firm_extra=firm, ttl_ms=1500, renew_ms=100) as stacks:
        flows = [Flow(n, s) for n, s in stacks.items()]
        run(flows, until_all_refuse(flows, quiet_s=0.6))

        gross = sum((venue_gross(s) for s in stacks.values()), Decimal(0))
        assert LIMIT - 3 * ORDER < gross <= LIMIT, (gross, {f.name: f.accepted for f in flows})
        assert sum(f.accepted for f in flows) * ORDER == gross
        for f in flows:
            assert f.accepted > 0
            assert {code for code, _ in f.refusals} == {"GROSS_EXPOSURE"}, f.refusals
            assert [code for code, _ in f.refusals[-3:]] == ["GROSS_EXPOSURE"] * 3
            assert f"of the limit {LIMIT} the cluster shares" in f.refusals[-1][1]
        allowances = {r[0]: r[1] for r in query(pg_url, "SELECT instance, bound FROM fp_lease")}
        assert sorted(allowances) == ["a", "b", "c"] and sum(allowances.values()) <= LIMIT

        # Each instance's fills reached PostgreSQL from its journal: its positions there are what its venue filled.
        for name, st in stacks.items():
            until(
                lambda n=name, st=st: mirrored_qty(pg_url, n) * PRICE == venue_gross(st), f"{name}'s positions mirrored"
            )

        # A replay of an instance's journal checks against the shares it held, as journaled: the
        # same decisions, share refusals included.
        a = stacks["a"]
        a.proxy.stop()
        out = tmp_path / "replay.json"
        main(
            ["replay", str(a.root / "var" / "journal"), "--config", str(a.config), "--no-progress", "--json", str(out)]
        )
        doc = json.loads(out.read_text())
        assert doc["summary"]["differences"] == 0, doc["summary"]
        codes = [r["replayed_code"] for r in doc["rows"] if r["replayed_code"]]
        assert len(codes) == len(flows[0].refusals) and set(codes) == {"GROSS_EXPOSURE"}


def test_burst_far_below_the_limit_is_refused_nothing_the_shares_grow_ahead_of_it(tmp_path, pg_url):
    """300 orders sent at once to one instance whose firm limit holds 1,000: its share (a step of 50
    orders) is topped up ahead of the burst, or the orders wait for the top-up, and none is refused."""
    firm = f"max_gross_exposure = {1000 * ORDER}"
    with cluster(tmp_path, pg_url, "a", firm_extra=firm, ttl_ms=1500, renew_ms=100) as stacks:
        oms = stacks["a"].oms["oms1"]
        start = oms.mark()
        for i in range(300):
            oms.send_line(order(f"burst{i}", qty=str(QTY), price=str(PRICE)))
        answers: dict[str, str] = {}

        def answered() -> bool:
            for r in list(oms.lines)[start:]:
                f = r.get("fields") or {}
                if r.get("dir") == "in" and (f.get("35") == "j" or (f.get("35") == "8" and f.get("39") in ("0", "8"))):
                    answers.setdefault(f.get("11") or f.get("379", ""), f.get("58", "accepted"))
            return len(answers) == 300

        until(answered, "an answer to each of the 300 orders", timeout=60)
        assert [text for text in answers.values() if text != "accepted"] == []
        assert lease(pg_url, "a")["bound"] >= 300 * ORDER


def test_kill9_of_one_instance_mid_flow_never_exceeds_and_its_reserve_returns_after_expiry(tmp_path, pg_url):
    """c is killed -9 mid-flow holding a reserve: a and b go on until refused, never taking the firm
    above the limit nor into c's reserve while its lease lives; once it expired (fp_lease: not live,
    so its reserve counts 0) they are accepted again into it. c restarted recovers its book and gives
    back its slack to the others, who then reach the limit with it."""
    firm = f"max_gross_exposure = {LIMIT}"
    ttl_ms, renew_ms = 5000, 150
    with cluster(tmp_path, pg_url, firm_extra=firm, ttl_ms=ttl_ms, renew_ms=renew_ms) as stacks:
        flows = {n: Flow(n, s) for n, s in stacks.items()}
        run(list(flows.values()), lambda: flows["c"].accepted >= 5)
        # c's OMS pauses (a's and b's go on) until c holds more than it uses and a reserve: then kill -9.
        flows["c"].paused = True

        def c_holds_slack() -> bool:
            row = lease(pg_url, "c")
            return row["reserve"] > 0 and row["bound"] - row["used"] > STEP / 2 and not flows["c"].pending

        run(list(flows.values()), c_holds_slack)
        stacks["c"].proxy.stop(signal.SIGKILL)
        c = lease(pg_url, "c")
        assert c["live"] and c["reserve"] > 0 and c["bound"] - c["used"] > STEP / 2, c

        ab = [flows["a"], flows["b"]]
        run(ab, until_all_refuse(ab, quiet_s=8 * renew_ms / 1000))
        assert lease(pg_url, "c")["live"], "a and b were to be refused before c's lease expired"
        held = lease(pg_url, "a")["bound"] + lease(pg_url, "b")["bound"]
        before = venue_gross(stacks["a"]) + venue_gross(stacks["b"])
        # c's allowance and its live reserve are out of a's and b's reach, and nothing went above the limit.
        assert before <= held <= LIMIT - c["bound"] - c["reserve"]
        assert venue_gross(stacks["c"]) <= c["bound"]
        accepted_before = sum(f.accepted for f in ab)

        until(lambda: not lease(pg_url, "c")["live"], "c's lease expiring", timeout=3 * ttl_ms / 1000)
        for f in ab:
            f.again()
        run(ab, until_all_refuse(ab, quiet_s=8 * renew_ms / 1000))
        after = venue_gross(stacks["a"]) + venue_gross(stacks["b"])
        assert sum(f.accepted for f in ab) > accepted_before
        assert after > LIMIT - c["bound"] - c["reserve"]  # orders that could not fit before the expiry
        assert after + c["bound"] <= LIMIT  # c's allowance stays counted: it may hold orders we do not know of
        assert lease(pg_url, "a")["bound"] + lease(pg_url, "b")["bound"] + c["bound"] <= LIMIT

        c_gross = venue_gross(stacks["c"])
        stacks["c"].start_proxy()
        until(lambda: lease(pg_url, "c")["live"], "c's lease renewed after its restart")
        assert until(lambda: Decimal(lease(pg_url, "c")["used"]) == c_gross, "c's usage recovered from its journal")
        assert health(stacks["c"])["cluster"]["state"] == "ok"

        accepted_restart = sum(f.accepted for f in ab)
        for f in ab:
            f.again()
        run(ab, until_all_refuse(ab, quiet_s=8 * renew_ms / 1000))
        assert sum(f.accepted for f in ab) > accepted_restart  # c gave back what it did not use
        assert lease(pg_url, "c")["bound"] < c["bound"]
        total = sum((venue_gross(s) for s in stacks.values()), Decimal(0))
        assert LIMIT - 2 * ORDER - STEP / 2 < total <= LIMIT, total
        for f in ab:
            assert {code for code, _ in f.refusals} == {"GROSS_EXPOSURE"}, f.refusals


def test_kill9_of_a_random_instance_at_a_random_moment_never_exceeds(tmp_path, pg_url):
    """A random instance killed -9 after a random number of its orders, orders still in flight: the
    others go on until refused, before and after its lease expired, and the venues never hold more
    than the limit; restarted, it recovers what its venue holds and the limit still holds."""
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    victim, after = rng.choice("abc"), rng.randint(1, 30)
    firm = f"max_gross_exposure = {LIMIT}"
    ttl_ms, renew_ms = 2000, 100
    with cluster(tmp_path, pg_url, firm_extra=firm, ttl_ms=ttl_ms, renew_ms=renew_ms) as stacks:
        flows = {n: Flow(n, s) for n, s in stacks.items()}
        run(list(flows.values()), lambda: flows[victim].accepted >= after or flows[victim].refused_since_accept > 0)
        for _ in range(3):  # a few more sends, so that some of the victim's orders are in flight
            flows[victim].pump(sending=True)
        stacks[victim].proxy.stop(signal.SIGKILL)
        others = [f for n, f in flows.items() if n != victim]
        flows[victim].pending.clear()
        where = f"seed {seed}: {victim} killed after {after} orders"

        def firm_gross() -> Decimal:
            return sum((venue_gross(s) for s in stacks.values()), Decimal(0))

        run(others, until_all_refuse(others, quiet_s=8 * renew_ms / 1000))
        assert firm_gross() <= LIMIT, where
        until(lambda: not lease(pg_url, victim)["live"], "the victim's lease expiring", timeout=3 * ttl_ms / 1000)
        for f in others:
            f.again()
        run(others, until_all_refuse(others, quiet_s=8 * renew_ms / 1000))
        assert firm_gross() <= LIMIT, where
        bounds = sum(r[0] for r in query(pg_url, "SELECT bound FROM fp_lease"))
        assert bounds <= LIMIT, where

        victim_gross = venue_gross(stacks[victim])
        assert victim_gross <= lease(pg_url, victim)["bound"], where  # its allowance covered what it sent
        stacks[victim].start_proxy()
        until(
            lambda: Decimal(lease(pg_url, victim)["used"]) == venue_gross(stacks[victim]),
            f"{where}: its usage recovered from its journal",
        )
        assert firm_gross() <= LIMIT, where
        # Its fills reached PostgreSQL from its journal through the kill and the restart.
        until(
            lambda: mirrored_qty(pg_url, victim) * PRICE == venue_gross(stacks[victim]),
            f"{where}: its positions mirrored",
        )
        for f in others:
            assert {code for code, _ in f.refusals} == {"GROSS_EXPOSURE"}, (where, f.refusals)


def test_mirror_process_killed_is_started_again_and_catches_up(tmp_path, pg_url):
    """The positions mirror's own process killed -9: the proxy trades on, starts it again, and the
    fills made meanwhile reach PostgreSQL."""
    with cluster(tmp_path, pg_url, "a", firm_extra=f"max_gross_exposure = {LIMIT}") as stacks:
        a = stacks["a"]
        oms = a.oms["oms1"]
        mirror = until(lambda: health(a)["cluster"]["mirror"], "the mirror's health")
        os.kill(mirror["pid"], signal.SIGKILL)
        for i in range(5):
            start = oms.mark()
            oms.send_line(order(f"M{i}", qty=str(QTY), price=str(PRICE)))
            filled(oms, f"M{i}", start)
        again = until(
            lambda: health(a)["cluster"]["mirror"]["restarts"] >= 1 and health(a)["cluster"]["mirror"], "a restart"
        )
        assert again["pid"] != mirror["pid"]
        until(lambda: mirrored_qty(pg_url, "a") == 5 * QTY, "the fills made while it was down mirrored")
        assert health(a)["cluster"]["mirror"]["state"] == "ok"


def journal_events(stack: Stack) -> list:
    """Every event the instance's journal holds, in order."""
    directory = stack.root / "var" / "journal"
    out = []
    for n in segments(directory):
        for _, kind, payload in read_segment(directory / f"{n:08d}.journal"):
            if kind == fmt.EVENT:
                out.append(fmt.decode_event(payload))
    return out


def firm_state(stack: Stack) -> str:
    states = api(stack, "GET", "/trading-states", role="viewer")[1]
    return next((s["state"] for s in states if s["scope"] == "firm"), "ACTIVE")


def refusal(oms, cl: str, start: int) -> str:
    """The text (58) of the refusal of order ``cl``; fails if it was accepted."""
    rec = oms.wait_for(
        lambda r: r.get("dir") == "in" and (r["fields"].get("379") == cl or r["fields"].get("11") == cl), start=start
    )
    assert rec["fields"]["35"] == "j", rec["fields"]
    return rec["fields"]["58"]


def filled(oms, cl: str, start: int) -> None:
    oms.wait_for(messages(oms)(**{"35": "8", "11": cl, "39": "2"}), start=start)


def test_halt_on_one_instance_refuses_the_next_order_on_the_others_and_resume_on_another_lifts_it(tmp_path, pg_url):
    """A firm halt made over HTTP on a refuses the next order on b and c with HALTED naming
    desk-risk@a, and is in b's and c's audit trail and journal; a resume made on b lets a and c trade.
    A firm gross limit set on a reaches b and c (GET /limits) and fp_limit."""
    with cluster(tmp_path, pg_url, firm_extra=f"max_gross_exposure = {LIMIT}") as stacks:
        a, b, c = stacks["a"], stacks["b"], stacks["c"]
        assert kill(a, "firm", "halt", "cluster halt test")["after"] == "HALTED"
        for name, s in (("b", b), ("c", c)):
            until(lambda s=s: firm_state(s) == "HALTED", f"the halt applied on {name}")
            oms = s.oms["oms1"]
            start = oms.mark()
            oms.send_line(order(f"H-{name}", qty="10"))
            assert refusal(oms, f"H-{name}", start) == (
                "HALTED: trading is halted for firm by desk-risk@a: cluster halt test"
            )
            commands = audit_rows(s, "kind = 'command' AND code = 'kill'")
            assert [(r["scope"], r["action"], r["operator"]) for r in commands] == [("firm", "halt", "desk-risk@a")]
            results = audit_rows(s, "kind = 'admin' AND code = 'kill'")
            assert [(r["who"], r["ok"], r["after"]) for r in results] == [("desk-risk@a", True, "HALTED")]
            kills = [e for e in journal_events(s) if type(e).__name__ == "AdminKill"]
            assert [(e.scope, e.action, e.operator) for e in kills] == [("firm", "halt", "desk-risk@a")]

        assert kill(b, "firm", "resume", "cluster resume test")["after"] == "ACTIVE"
        for name, s in (("a", a), ("c", c)):
            until(lambda s=s: firm_state(s) == "ACTIVE", f"the resume applied on {name}")
            oms = s.oms["oms1"]
            start = oms.mark()
            oms.send_line(order(f"R-{name}", qty="10"))
            filled(oms, f"R-{name}", start)
        assert [r["who"] for r in audit_rows(a, "kind = 'admin' AND code = 'kill'", want=2)] == [
            "desk-risk",
            "desk-risk@b",
        ]

        body = {"layer": "firm", "field": "max_gross_exposure", "value": 1000000, "reason": "cluster limit test"}
        status, result = api(a, "POST", "/limits", body)
        assert status == 200 and result["after"] == "1000000", result
        for name, s in (("b", b), ("c", c)):
            until(
                lambda s=s: api(s, "GET", "/limits", role="viewer")[1]["firm"].get("max_gross_exposure") == "1000000",
                f"the limit change applied on {name}",
            )
        assert query(pg_url, "SELECT value, set_by FROM fp_limit WHERE key = 'max_gross_exposure|firm'") == [
            (Decimal(1000000), "a")
        ]


def test_database_outage_trades_within_leases_then_refuses_new_headroom_and_resumes_when_back(tmp_path, own_pg):
    """With its database stopped an instance still accepts an order within the allowance it holds;
    once its leases expired it refuses orders that need new headroom (GROSS_EXPOSURE, naming the
    unreachable database) but passes a sell that reduces its long position, and /healthz says lost and
    fenced; with the database started again it lifts the fence and trades by itself."""
    firm = f"max_gross_exposure = {LIMIT}"
    with cluster(tmp_path, own_pg.url(), "a", firm_extra=firm, ttl_ms=4000, renew_ms=100) as stacks:
        a = stacks["a"]
        oms = a.oms["oms1"]
        start = oms.mark()
        for i in range(3):
            oms.send_line(order(f"O-{i}"))
            filled(oms, f"O-{i}", start)
        until(lambda: lease(own_pg.url(), "a")["bound"] >= 3 * ORDER + ORDER, "an allowance beyond the position")

        own_pg.stop()
        oms.send_line(order("O-held", qty="10"))
        filled(oms, "O-held", start)  # within the allowance held: no database needed

        until(lambda: health(a)["cluster"]["fenced"], "the fence once the leases expired")
        body = health(a)
        assert (body["status"], body["cluster"]["state"], body["cluster"]["database"]) == (
            "degraded",
            "degraded",
            "lost",
        )
        assert "the cluster database is unreachable" in body["cluster"]["fenced"]
        oms.send_line(order("O-new", qty="10"))
        text = refusal(oms, "O-new", start)
        assert text.startswith("GROSS_EXPOSURE: ") and "the cluster database is unreachable" in text, text
        oms.send_line(order("O-sell", qty="50", side="2"))
        filled(oms, "O-sell", start)  # reduces the long position: no new headroom needed

        own_pg.start()
        until(lambda: health(a)["cluster"]["state"] == "ok" and not health(a)["cluster"]["fenced"], "the fence lifted")
        assert health(a)["status"] == "ok"
        oms.send_line(order("O-back", qty="10"))
        filled(oms, "O-back", start)
        fences = [e.reason for e in journal_events(a) if type(e).__name__ == "ClusterFence"]
        assert len(fences) == 2 and "the cluster database is unreachable" in fences[0] and fences[1] == ""
