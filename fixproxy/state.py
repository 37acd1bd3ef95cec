"""The proxy's state on disk: orders, fills, reference prices and ClOrdIDs used, in SQLite.

The core gathers what changed (:meth:`ProxyCore.take_changes` hands it over); every few
milliseconds the edge copies the few mutable values out under the core lock (:func:`snapshot`) and a single writer
thread turns them into rows and saves them in batches, off the order path. On start-up :meth:`StateStore.load` gives the core
back what it had. Loss window on a crash: the rows not yet written, at most ``flush_ms`` old.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from decimal import Decimal
from pathlib import Path

import msgspec
import sqlite_utils

from .core.book import Fill
from .core.killswitch import ScopeState, TradingState
from .core.model import OrderRequest, OrdStatus
from .core.orders import Order
from .core.proxy import Changes

_DAY_NS = 86_400 * 1_000_000_000
_request_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(OrderRequest)


class Capture(msgspec.Struct):
    """What changed in one event, copied out of the core cheaply (under its lock): immutable values
    only, turned into rows on the writer thread."""

    orders: list[tuple]
    fills: list[tuple]
    references: list[tuple]
    changes: Changes  # taken from the core, so no longer touched by it: its lists are handed over as they are


def snapshot(changes: Changes, instruments) -> Capture:
    """Copy what changed out of the core (called under the core lock; kept to a few tuples)."""
    orders = [(o.key, o.session, o.venue, o.cl_ord_id, o.venue_cl_ord_id, o.order_id, o.request, o.status,
               o.leaves_qty, o.cum_qty, o.avg_px, o.pending) for o in changes.orders.values()]
    fills = [(f.exec_id, f.session, f.account, f.symbol, f.qty, f.price, f.now_ns, f.active)
             for f in changes.fills if f.exec_id]
    references = []
    for symbol in changes.references:
        inst = instruments.get(symbol)
        if inst is not None and inst.reference_price is not None:
            references.append((symbol, inst.reference_price, inst.reference_time_ns))
    # Copied above: the live objects need not travel with the capture (to a writer process).
    changes.orders, changes.fills, changes.references = {}, [], set()
    return Capture(orders, fills, references, changes)


class ChangeCollector:
    """What the core changed since the last capture, copied out in one go.

    The core gathers its changes as it handles events (an order touched by several events is one
    entry, in its latest state). The state writer's sender calls ``take`` every few milliseconds:
    under the core lock, so between two events and after the first one's messages were sent, it
    takes the core's changes and copies each changed order's state once (an order is sent, acked
    and filled within milliseconds: one copy instead of three, one capture to ship instead of one
    per event, and nothing allocated per event on the order path).
    """

    def __init__(self, lock, core) -> None:
        self._lock = lock
        self._core = core

    def take(self) -> Capture | None:
        with self._lock:
            core = self._core
            return snapshot(core.take_changes(), core.instruments) if core.changes else None


def _rows(c: Capture, now_ns: int, order_states: list | None = None) -> dict[str, list[dict]]:
    """A capture as table rows (on the writer thread); ``order_states``: the capture's orders to write."""
    ch = c.changes
    orders = []
    for key, session, venue, cl, venue_cl, order_id, request, status, leaves, cum, avg, pending in (
            c.orders if order_states is None else order_states):
        orders.append({
            "key": key, "session": session, "venue": venue, "cl_ord_id": cl, "venue_cl_ord_id": venue_cl,
            "order_id": order_id, "request": _request_encoder.encode(request).decode(), "status": status.value,
            "leaves_qty": str(leaves), "cum_qty": str(cum), "avg_px": str(avg),
            "pending": msgspec.json.encode(list(pending)).decode() if pending is not None else None,
        })
    return {
        "orders": orders,
        "aliases": [{"venue_cl_ord_id": v, "key": k, "cl_ord_id": cl} for k, cl, v in ch.aliases],
        "fills": [{"exec_id": x, "session": s, "account": a, "symbol": y, "qty": str(q), "price": str(p),
                   "now_ns": t, "active": int(active)} for x, s, a, y, q, p, t, active in c.fills],
        "references": [{"symbol": y, "price": str(p), "time_ns": t} for y, p, t in c.references],
        "used_ids": [{"day": d, "session": s, "cl_ord_id": cl} for d, s, cl in ch.used_ids],
        "kill_states": [{"scope": k.scope, "state": k.state.value, "reason": k.reason, "operator": k.operator,
                         "since_ns": k.since_ns} for k in ch.kill_states],
        "limit_changes": [{"id": now_ns + i, "layer": layer, "field": name, "value": msgspec.json.encode(value).decode()}
                          for i, (layer, name, value) in enumerate(ch.limit_changes)],
        "exec_ids": [{"exec_id": x, "day": now_ns // _DAY_NS} for x in ch.exec_ids],
    }


_PKS = {"orders": "key", "aliases": "venue_cl_ord_id", "fills": "exec_id", "references": "symbol",
        "used_ids": ("day", "session", "cl_ord_id"), "kill_states": "scope", "limit_changes": "id",
        "exec_ids": "exec_id"}


class StateStore:
    """SQLite file of the proxy's state, with one writer thread."""

    def __init__(self, path: Path, flush_ms: int = 20):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_s = flush_ms / 1000
        self._queue: queue.SimpleQueue[Capture | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()  # set by flush and close only
        # put() only counts (an Event.clear() per capture cost the order path a lock); flush() waits
        # until the writer has written as many as were put.
        self._put = 0
        self._written = 0
        self._written_changed = threading.Condition()
        #: Called after each cycle with how much later than ``flush_ms`` it ended, in seconds.
        self.on_cycle = None
        db = self._open()
        for table, pk in _PKS.items():
            if not db[table].exists():
                db[table].create(_COLUMNS[table], pk=pk)
        db.conn.close()

    def _open(self) -> sqlite_utils.Database:
        db = sqlite_utils.Database(self.path)
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # ------------------------------------------------------------ reading (start-up)

    def load(self, now_ns: int) -> dict:
        """Everything saved, as the arguments of :meth:`ProxyCore.restore`. ClOrdIDs of days before
        yesterday are left out; so are fills of earlier days (the start-of-day file carries them)."""
        db = self._open()
        today = now_ns // _DAY_NS
        orders = []
        for row in db["orders"].rows:
            request = _request_decoder.decode(row["request"])
            order = Order(row["session"], row["venue"], request, row["key"])
            order.cl_ord_id, order.venue_cl_ord_id, order.order_id = row["cl_ord_id"], row["venue_cl_ord_id"], row["order_id"]
            order.status = OrdStatus(row["status"])
            order.leaves_qty, order.cum_qty, order.avg_px = (Decimal(row[k]) for k in ("leaves_qty", "cum_qty", "avg_px"))
            if row["pending"]:
                cl, venue_id, req = msgspec.json.decode(row["pending"])
                order.pending = (cl, venue_id, msgspec.convert(req, OrderRequest))
            orders.append(order)
        aliases = [(r["key"], r["cl_ord_id"], r["venue_cl_ord_id"]) for r in db["aliases"].rows]
        fills = [Fill(r["exec_id"], r["session"], r["account"], r["symbol"], Decimal(r["qty"]), Decimal(r["price"]),
                      r["now_ns"], bool(r["active"]))
                 for r in db["fills"].rows_where(order_by="rowid") if r["now_ns"] // _DAY_NS == today]
        refs = [(r["symbol"], Decimal(r["price"]), r["time_ns"]) for r in db["references"].rows]
        used = [(r["day"], r["session"], r["cl_ord_id"]) for r in db["used_ids"].rows_where("day >= ?", [today - 1])]
        kills = [ScopeState(r["scope"], TradingState(r["state"]), r["reason"], r["operator"], r["since_ns"])
                 for r in db["kill_states"].rows]
        limit_changes = [(r["layer"], r["field"], msgspec.json.decode(r["value"]))
                         for r in db["limit_changes"].rows_where(order_by="id")]
        exec_ids = [r["exec_id"] for r in db["exec_ids"].rows_where("day >= ?", [today - 1])]
        db.conn.close()
        return {"orders": orders, "aliases": aliases, "fills": fills, "references": refs, "used_ids": used,
                "kill_states": kills, "limit_changes": limit_changes, "exec_ids": exec_ids}

    # ------------------------------------------------------------ writing

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fixproxy-state", daemon=True)
        self._thread.start()

    def put(self, capture: Capture) -> None:
        """Queue a capture; it never wakes the writer (which drains every ``flush_ms``)."""
        self._put += 1
        self._queue.put(capture)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything put so far is written."""
        target = self._put
        self._wake.set()
        with self._written_changed:
            return self._written_changed.wait_for(lambda: self._written >= target, timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._wake.set()
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        db = self._open()
        stop = False
        while not stop:
            started = time.monotonic()
            self._wake.wait(self.flush_s)
            self._wake.clear()
            batch = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                try:
                    self._write(db, batch)
                finally:
                    with self._written_changed:
                        self._written += len(batch)
                        self._written_changed.notify_all()
            if self.on_cycle is not None:
                self.on_cycle(time.monotonic() - started - self.flush_s)
        db.conn.close()

    def _write(self, db: sqlite_utils.Database, batch: list[Capture]) -> None:
        merged: dict[str, dict] = {t: {} for t in _PKS}
        now = time.time_ns()
        # An order changes several times within a batch (sent, acked, filled): only its latest
        # state becomes a row.
        seen: set[str] = set()
        latest: list[list] = []
        for capture in reversed(batch):
            latest.append([o for o in capture.orders if o[0] not in seen])
            seen.update(o[0] for o in capture.orders)
        latest.reverse()
        for capture, orders in zip(batch, latest):
            for table, rows in _rows(capture, now, orders).items():
                pk = _PKS[table]
                for row in rows:
                    key = tuple(row[k] for k in pk) if isinstance(pk, tuple) else row[pk]
                    merged[table][key] = row  # the latest state of a row wins
            now += len(capture.changes.limit_changes)
        with db.conn:
            for table in _PKS:
                rows = merged[table]
                if rows:
                    # Every row carries every column: one prepared upsert per table
                    # (sqlite-utils' upsert_all re-derives columns and checks values row by row).
                    columns = tuple(_COLUMNS[table])
                    db.conn.executemany(_upsert_sql(table, columns), [tuple(r[c] for c in columns) for r in rows.values()])


@functools.cache
def _upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    """An upsert that keeps the row in place (its rowid: fills are read back in rowid order)."""
    pk = _PKS[table]
    keys = pk if isinstance(pk, tuple) else (pk,)
    updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in columns if c not in keys)
    return (f"INSERT INTO [{table}] ({', '.join(f'[{c}]' for c in columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(f'[{k}]' for k in keys)}) DO " + (f"UPDATE SET {updates}" if updates else "NOTHING"))


_COLUMNS = {
    "orders": {"key": str, "session": str, "venue": str, "cl_ord_id": str, "venue_cl_ord_id": str, "order_id": str,
               "request": str, "status": str, "leaves_qty": str, "cum_qty": str, "avg_px": str, "pending": str},
    "aliases": {"venue_cl_ord_id": str, "key": str, "cl_ord_id": str},
    "fills": {"exec_id": str, "session": str, "account": str, "symbol": str, "qty": str, "price": str, "now_ns": int,
              "active": int},
    "references": {"symbol": str, "price": str, "time_ns": int},
    "used_ids": {"day": int, "session": str, "cl_ord_id": str},
    "kill_states": {"scope": str, "state": str, "reason": str, "operator": str, "since_ns": int},
    "limit_changes": {"id": int, "layer": str, "field": str, "value": str},
    "exec_ids": {"exec_id": str, "day": int},
}
