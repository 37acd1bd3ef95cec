"""The position book over real FIX sessions: fills move it, it gates orders, and it survives a restart."""

from __future__ import annotations

from .harness import messages
from .test_order_path import order

GROSS = """
[limits.accounts.GROSS]
max_gross_exposure = 50000
"""


def fill_of(oms, cl: str, start: int = 0) -> dict:
    return oms.wait_for(messages(oms)(**{"35": "8", "11": cl, "39": "2"}), start=start)["fields"]


def test_fills_push_account_to_gross_limit_and_reducing_fill_frees_it(fresh_stack):
    """Two fills take GROSS to 38,000 of 50,000; the next 19,000 buy is refused; a sell fill makes room again."""
    s = fresh_stack(extra=GROSS)
    oms = s.connect("oms1")
    m = messages(oms)
    for cl in ("G1", "G2"):
        oms.send_line(order(cl, account="GROSS"))
        fill_of(oms, cl)
    oms.send_line(order("G3", account="GROSS"))
    bmr = oms.wait_for(m(**{"35": "j", "379": "G3"}))["fields"]
    assert bmr["58"] == (
        "GROSS_EXPOSURE: gross exposure of account:GROSS would reach 57000 with working orders, above the limit 50000"
    )
    oms.send_line(order("S1", account="GROSS", side="2"))
    fill_of(oms, "S1")
    oms.send_line(order("G4", account="GROSS"))
    fill_of(oms, "G4")
    # Another account is not held back by GROSS's limit.
    oms.send_line(order("O1", account="OTHER", qty="300"))
    fill_of(oms, "O1")


def test_restart_keeps_positions_open_orders_and_used_clordids(fresh_stack):
    """Stop the proxy, start it again: the filled position still counts, the resting order can be cancelled,
    and a ClOrdID used before the restart is still a duplicate."""
    s = fresh_stack(extra=GROSS, behaviours={"MSFT": "ack"})
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("P1", account="GROSS", qty="100"))  # 19,000 filled
    fill_of(oms, "P1")
    oms.send_line(order("W1", symbol="MSFT", price="410", qty="50", account="GROSS"))  # 20,500 working
    oms.wait_for(m(**{"35": "8", "11": "W1", "39": "0"}))

    assert s.proxy.stop() == 0
    mark = oms.mark()
    s.start_proxy()
    oms.wait_for(lambda r: r.get("event") == "logon", start=mark)

    # 19,000 + 20,500 + 19,000 = 58,500 > 50,000: refused only if both survived the restart.
    oms.send_line(order("P2", account="GROSS", qty="100"))
    text = oms.wait_for(m(**{"35": "j", "379": "P2"}))["fields"]["58"]
    assert text.startswith("GROSS_EXPOSURE: gross exposure of account:GROSS would reach 58500")
    oms.send_line(order("P1", account="GROSS", qty="1"))
    assert oms.wait_for(m(**{"35": "j", "379": "P1"}))["fields"]["58"].startswith("DUPLICATE_CLORDID: ")
    oms.send_line("35=F|11=W1-C|41=W1|55=MSFT|54=1|38=50")
    done = oms.wait_for(m(**{"35": "8", "11": "W1-C"}))["fields"]
    assert (done["39"], done["41"]) == ("4", "W1")
    # With the working order gone, 19,000 + 19,000 fits.
    oms.send_line(order("P3", account="GROSS", qty="100"))
    fill_of(oms, "P3")
