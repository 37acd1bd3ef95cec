"""The proxy's state on disk: orders, fills, reference prices and ClOrdIDs used, in SQLite.

The core hands over what changed after each event (:meth:`ProxyCore.take_changes`); the edge
turns that into plain rows under the core lock (:func:`snapshot`) and a single writer thread
saves them in batches, off the order path. On start-up :meth:`StateStore.load` gives the core
back what it had. Loss window on a crash: the rows not yet written, at most ``flush_ms`` old.
"""

from __future__ import annotations

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


class Rows(msgspec.Struct):
    """One batch of plain rows, safe to hand to another thread."""

    orders: list[dict]
    aliases: list[dict]
    fills: list[dict]
    references: list[dict]
    used_ids: list[dict]
    kill_states: list[dict]
    limit_changes: list[dict]
    exec_ids: list[dict]


def snapshot(changes: Changes, instruments) -> Rows:
    """Copy what changed into rows (under the core lock: the core's objects are not shared)."""
    orders = []
    for o in changes.orders.values():
        pending = None
        if o.pending is not None:
            pending = msgspec.json.encode([o.pending[0], o.pending[1], o.pending[2]]).decode()
        orders.append({
            "key": o.key, "session": o.session, "venue": o.venue, "cl_ord_id": o.cl_ord_id,
            "venue_cl_ord_id": o.venue_cl_ord_id, "order_id": o.order_id,
            "request": _request_encoder.encode(o.request).decode(), "status": o.status.value,
            "leaves_qty": str(o.leaves_qty), "cum_qty": str(o.cum_qty), "avg_px": str(o.avg_px), "pending": pending,
        })
    aliases = [{"venue_cl_ord_id": v, "key": k, "cl_ord_id": c} for k, c, v in changes.aliases]
    fills = [{"exec_id": f.exec_id, "session": f.session, "account": f.account, "symbol": f.symbol,
              "qty": str(f.qty), "price": str(f.price), "now_ns": f.now_ns, "active": int(f.active)}
             for f in changes.fills if f.exec_id]
    references = []
    for symbol in changes.references:
        inst = instruments.get(symbol)
        if inst is not None and inst.reference_price is not None:
            references.append({"symbol": symbol, "price": str(inst.reference_price), "time_ns": inst.reference_time_ns})
    used = [{"day": d, "session": s, "cl_ord_id": c} for d, s, c in changes.used_ids]
    kills = [{"scope": k.scope, "state": k.state.value, "reason": k.reason, "operator": k.operator,
              "since_ns": k.since_ns} for k in changes.kill_states]
    base = time.time_ns()
    limit_changes = [{"id": base + i, "layer": layer, "field": name, "value": msgspec.json.encode(value).decode()}
                     for i, (layer, name, value) in enumerate(changes.limit_changes)]
    exec_ids = [{"exec_id": x, "day": base // _DAY_NS} for x in changes.exec_ids]
    return Rows(orders, aliases, fills, references, used, kills, limit_changes, exec_ids)


_PKS = {"orders": "key", "aliases": "venue_cl_ord_id", "fills": "exec_id", "references": "symbol",
        "used_ids": ("day", "session", "cl_ord_id"), "kill_states": "scope", "limit_changes": "id",
        "exec_ids": "exec_id"}


class StateStore:
    """SQLite file of the proxy's state, with one writer thread."""

    def __init__(self, path: Path, flush_ms: int = 20):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_s = flush_ms / 1000
        self._queue: queue.SimpleQueue[Rows | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
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

    def put(self, rows: Rows) -> None:
        self._idle.clear()
        self._queue.put(rows)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything put so far is written."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        db = self._open()
        stop = False
        while not stop:
            batch = [self._queue.get()]
            deadline_rows = 1000
            try:
                while len(batch) < deadline_rows:
                    batch.append(self._queue.get(timeout=self.flush_s))
            except queue.Empty:
                pass
            if None in batch:
                stop = True
                batch = [b for b in batch if b is not None]
            self._write(db, batch)
            if self._queue.empty():
                self._idle.set()
        db.conn.close()

    def _write(self, db: sqlite_utils.Database, batch: list[Rows]) -> None:
        merged: dict[str, dict] = {t: {} for t in _PKS}
        for rows in batch:
            for table, pk in _PKS.items():
                for row in getattr(rows, table):
                    key = tuple(row[k] for k in pk) if isinstance(pk, tuple) else row[pk]
                    merged[table][key] = row  # the latest state of a row wins
        with db.conn:
            for table, pk in _PKS.items():
                if merged[table]:
                    db[table].upsert_all(merged[table].values(), pk=pk)


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
