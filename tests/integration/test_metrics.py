"""GET /metrics over a running proxy (both engines): scraped, parsed with prometheus_client's text parser,
orders sent (two forwarded and left working, one refused), scraped again: the values moved by what
happened."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import TOKENS, Stack, messages
from .test_order_path import order

METRICS_LIMITS = """
[limits.accounts.MET]
max_open_orders = 4
max_gross_exposure = 100000
"""


@pytest.fixture(scope="module")
def metered(tmp_path_factory, engine):
    """A proxy whose venue rests MSFT orders (ack only), account MET with aggregate limits, oms1 connected."""
    s = Stack(tmp_path_factory.mktemp("metrics"), behaviours={"MSFT": "ack"}, extra=METRICS_LIMITS)
    try:
        s.connect("oms1")
        yield s
    finally:
        s.close()


def get(stack: Stack, token: str | None = TOKENS["viewer"]) -> tuple[int, str, str]:
    """(status, Content-Type, body) of GET /metrics."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{stack.http_port}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(stack: Stack) -> dict[tuple, float]:
    """{(sample name, sorted label items): value} of one scrape, read by the Prometheus text parser."""
    status, content_type, body = get(stack)
    assert status == 200 and content_type.startswith("text/plain"), (status, body)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def at(samples: dict, name: str, /, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_a_token_by_default(metered):
    """Without a token /metrics is 401 (it names sessions and accounts); a viewer's token is enough."""
    assert get(metered, token=None)[0] == 401
    assert get(metered)[0] == 200


def test_values_move_with_orders_forwarded_and_refused(metered, engine):
    """Two MSFT orders forwarded and acknowledged, one refused MAX_ORDER_QTY: orders received, forwarded
    and refused by code, the latency histogram's count, messages each way, sessions up and the account's
    open-order utilisation all move by exactly that."""
    oms = metered.oms["oms1"]
    before = scrape(metered)
    assert at(before, "fixproxy_info", engine=engine) == 1
    assert at(before, "fixproxy_session_up", session="oms1", kind="oms") == 1
    assert at(before, "fixproxy_session_up", session="sim", kind="venue") == 1
    assert at(before, "process_resident_memory_bytes") > 0
    assert at(before, "fixproxy_recording_failed", reason="") == 0

    m = messages(oms)
    start = oms.mark()
    for cl in ("M1", "M2"):
        oms.send_line(order(cl, symbol="MSFT", price="410", qty="10", account="MET"))
    oms.send_line(order("M3", qty="20000", account="MET"))
    for cl in ("M1", "M2"):
        oms.wait_for(m(**{"35": "8", "11": cl, "39": "0"}), start=start)
    assert oms.wait_for(m(**{"35": "j", "379": "M3"}), start=start)["fields"]["58"].startswith("MAX_ORDER_QTY")
    after = scrape(metered)

    def moved(name: str, **labels: str) -> float:
        return at(after, name, **labels) - at(before, name, **labels)

    assert moved("fixproxy_orders_received_total", session="oms1", msg_type="D") == 3
    assert moved("fixproxy_orders_forwarded_total", session="oms1", msg_type="D") == 2
    assert moved("fixproxy_orders_refused_total", session="oms1", msg_type="D", code="MAX_ORDER_QTY") == 1
    assert moved("fixproxy_decision_latency_seconds_count") == 3
    assert moved("fixproxy_decision_latency_seconds_bucket", le="+Inf") == 3
    assert moved("fixproxy_decision_latency_seconds_sum") > 0
    assert moved("fixproxy_messages_total", session="oms1", kind="oms", direction="in") == 3
    assert moved("fixproxy_messages_total", session="oms1", kind="oms", direction="out") == 3  # two acks, a reject
    assert moved("fixproxy_messages_total", session="sim", kind="venue", direction="out") == 2
    assert moved("fixproxy_messages_total", session="sim", kind="venue", direction="in") == 2
    assert at(after, "fixproxy_limit_observed", scope="account:MET", limit="max_open_orders") == 2
    assert at(after, "fixproxy_limit_utilization_ratio", scope="account:MET", limit="max_open_orders") == 0.5
    assert at(after, "fixproxy_limit_utilization_ratio", scope="account:MET", limit="max_gross_exposure") == (
        pytest.approx(2 * 10 * 410 / 100_000)
    )
    assert at(after, "fixproxy_session_up", session="oms1", kind="oms") == 1
    assert at(after, "fixproxy_health_status", status="ok") == 1
    assert at(after, "fixproxy_journal_segment_bytes") > at(before, "fixproxy_journal_segment_bytes")
    assert at(after, "process_cpu_seconds_total") >= at(before, "process_cpu_seconds_total")
