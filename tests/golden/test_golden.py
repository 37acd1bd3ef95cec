"""Golden files: the exact bytes the proxy puts on the wire, from its own quickfix message logs.

Fields that change run to run are masked: SendingTime (52), TransactTime (60), BodyLength (9)
and CheckSum (10). Set UPDATE_GOLDEN=1 to rewrite the files after a deliberate change.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.integration.harness import Stack, messages

HERE = Path(__file__).parent
MASKED = re.compile(r"(?<=\|)(52|60|9|10)=[^|]*")


def mask(raw: str) -> str:
    return MASKED.sub(lambda m: f"{m.group(1)}=*", "|" + raw.replace("\x01", "|"))[1:]


def outbound(log: str, **tags: str) -> str:
    """The first message in a quickfix message log sent by the proxy that carries ``tags``."""
    for line in log.splitlines():
        raw = line.split(" : ", 1)[-1]
        fields = dict(p.split("=", 1) for p in raw.split("\x01") if "=" in p)
        if fields.get("49") == "FIXPROXY" and all(fields.get(k) == v for k, v in tags.items()):
            return mask(raw)
    raise AssertionError(f"no outbound message with {tags} in the log")


def check(name: str, actual: str) -> None:
    path = HERE / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual + "\n")
    assert actual == path.read_text().rstrip("\n"), f"{name} differs from the golden file"


@pytest.fixture
def golden_stack(tmp_path):
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_accepted_order_bytes_match_golden(golden_stack):
    """The NewOrderSingle to the venue and the ack to the OMS, byte for byte."""
    oms = golden_stack.connect("oms1")
    oms.send_line("35=D|11=GOLD-1|55=AAPL|54=1|38=100|40=2|44=190|1=ACC1|59=0")
    oms.wait_for(messages(oms)(**{"35": "8", "11": "GOLD-1", "39": "2"}))
    check("accept_to_venue.fix", outbound(golden_stack.message_log("venue"), **{"35": "D"}))
    check("accept_ack_to_oms.fix", outbound(golden_stack.message_log("oms"), **{"35": "8", "39": "0"}))


def test_rejected_order_bytes_match_golden(golden_stack):
    """The BusinessMessageReject for a restricted symbol, byte for byte."""
    oms = golden_stack.connect("oms1")
    oms.send_line("35=D|11=GOLD-2|55=RSTR|54=2|38=10|40=2|44=40|1=ACC1")
    oms.wait_for(messages(oms)(**{"35": "j", "379": "GOLD-2"}))
    check("reject_to_oms.fix", outbound(golden_stack.message_log("oms"), **{"35": "j"}))
