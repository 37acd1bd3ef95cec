"""The state store: what the core changed, written to a real SQLite file and loaded into a new core."""

from __future__ import annotations

from fixproxy.core import events as ev
from fixproxy.core.killswitch import TradingState
from fixproxy.core.model import ExecType, OrdStatus, Side
from fixproxy.state import ChangeCollector, StateStore, snapshot

from .conftest import D, Harness, order

E, S = ExecType, OrdStatus


def test_state_written_and_loaded_gives_the_same_book_orders_and_states(tmp_path):
    """Orders (with replace history), fills, references, used ClOrdIDs, trading states and limit
    changes survive a write to SQLite and a load into a fresh core."""
    h = Harness(rules=[])
    h.live("W1", qty=100, account="A1", price=100)
    h.replace("W1", order("W1-R", qty=150, account="A1", price=101))
    h.report("oms1.W1-R", E.REPLACED, S.NEW, orig="oms1.W1", leaves=150, exec_id="X-R")
    h.live("F1", qty=50, account="A1", side=Side.SELL, order_id="V2")
    h.report("oms1.F1", E.TRADE, S.FILLED, exec_id="X-F", last_qty=50, last_px=99, cum=50, leaves=0)
    h.handle(ev.AdminKill("account:A2", "halt", "why", "alice", h.now))
    h.handle(ev.AdminSetLimit("firm", "max_order_qty", "77", "tight", "bob", h.now))

    store = StateStore(tmp_path / "state.sqlite", flush_ms=1)
    store.start()
    store.put(snapshot(h.core.take_changes(), h.core.instruments))
    assert store.flush(10)
    store.close()

    fresh = Harness(rules=["max_order_qty"])
    fresh.core.restore(**StateStore(tmp_path / "state.sqlite").load(h.now))
    core, old = fresh.core, h.core
    assert core.book.positions[("A1", "AAPL")].qty == old.book.positions[("A1", "AAPL")].qty == -50
    assert core.book.gross("account:A1") == old.book.gross("account:A1")
    assert core.instruments["AAPL"].reference_price == D(99)
    replaced = core.orders.by_oms("oms1", "W1-R")
    assert replaced is not None and replaced.request.order_qty == 150 and replaced.status is OrdStatus.NEW
    assert core.orders.by_oms("oms1", "W1") is replaced  # the old ClOrdID still finds it
    assert core.kill.get("account:A2").state is TradingState.HALTED
    assert core.limits.limits.firm.max_order_qty == 77
    refused = fresh.new(order("W1", qty=1))  # used before the restart
    assert refused[0].code == "DUPLICATE_CLORDID"
    assert fresh.new(order("N1", qty=78))[0].code == "MAX_ORDER_QTY"  # the live limit change came back


def test_changes_collected_and_copied_once_restore_the_same_state(tmp_path):
    """As the proxy saves: a ChangeCollector takes what the core changed over several events in one
    capture (an order touched by several events copied once, in its latest state); loading it gives
    the same orders, positions and used ClOrdIDs as the core that made them."""
    import threading

    h = Harness(rules=[])
    collector = ChangeCollector(threading.Lock(), h.core)
    h.live("W1", qty=100, account="A1", price=100)
    h.replace("W1", order("W1-R", qty=150, account="A1", price=101))
    h.report("oms1.W1-R", E.REPLACED, S.NEW, orig="oms1.W1", leaves=150, exec_id="X-R")
    h.live("F1", qty=50, account="A1", side=Side.SELL, order_id="V2")
    h.report("oms1.F1", E.TRADE, S.PARTIALLY_FILLED, exec_id="X-F1", last_qty=20, last_px=99, cum=20, leaves=30)
    h.report("oms1.F1", E.TRADE, S.FILLED, exec_id="X-F2", last_qty=30, last_px=98, cum=50, leaves=0)
    capture = collector.take()
    assert collector.take() is None  # nothing new since
    assert len([o for o in capture.orders if o[0] == capture.orders[-1][0]]) == 1  # one copy per order

    store = StateStore(tmp_path / "state.sqlite", flush_ms=1)
    store.start()
    store.put(capture)
    assert store.flush(10)
    store.close()
    fresh = Harness(rules=[])
    fresh.core.restore(**StateStore(tmp_path / "state.sqlite").load(h.now))
    assert fresh.core.book.positions[("A1", "AAPL")].qty == h.core.book.positions[("A1", "AAPL")].qty == -50
    assert fresh.core.instruments["AAPL"].reference_price == D(98)
    filled = fresh.core.orders.by_oms("oms1", "F1")
    assert filled is not None and filled.status is OrdStatus.FILLED and filled.cum_qty == 50
    assert fresh.core.orders.by_oms("oms1", "W1") is fresh.core.orders.by_oms("oms1", "W1-R")
    assert fresh.new(order("W1", qty=1))[0].code == "DUPLICATE_CLORDID"
