"""Venue simulator: a quickfix acceptor that acks, fills, replaces, cancels and rejects orders.

Behaviour per symbol: ``fill`` (ack, then fill fully), ``partial`` (ack, fill half, leave the rest
working), ``ack`` (ack and leave working), ``reject`` (reject the order).

Each logon of a session is a connection with a number (``conn``): the ``logon`` and ``logout`` lines
and every message line received on it carry it, so a test can tell which of two proxies (an
active/passive pair) sent what. By default the number counts logons; with ``--track-connections`` a
relay (relay.py) owns the port and numbers TCP connections, printing ``connect``, ``refused`` (a
Logon quickfix would not take, such as a second one for a session already logged on) and
``disconnect`` lines with the peer's address and process.
"""

from __future__ import annotations

import itertools
import threading
from decimal import Decimal
from pathlib import Path

import quickfix as fix

from ..config import LoadedConfig
from ..engines.quickfix.settings import session_block
from .common import build_message, emit, fields_of, leave, logout_all, start_engine, wait_for_signal
from .process import free_port
from .relay import Relay


def _d(x: Decimal) -> str:
    text = f"{x:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class _Order:
    __slots__ = ("cl_ord_id", "order_id", "symbol", "side", "qty", "price", "cum", "account", "status", "avg_px")

    def __init__(
        self, cl_ord_id: str, order_id: str, symbol: str, side: str, qty: Decimal, price: Decimal | None, account: str
    ):
        self.cl_ord_id, self.order_id, self.symbol, self.side = cl_ord_id, order_id, symbol, side
        self.qty, self.price, self.account = qty, price, account
        self.cum = Decimal(0)
        self.avg_px = Decimal(0)
        self.status = "0"

    @property
    def leaves(self) -> Decimal:
        return Decimal(0) if self.status in ("2", "4", "8") else self.qty - self.cum


class VenueSim(fix.Application):
    def __init__(
        self,
        default: str = "fill",
        per_symbol: dict[str, str] | None = None,
        fill_price: str = "order",
        quiet: bool = False,
    ):
        super().__init__()
        self.default = default
        self.per_symbol = per_symbol or {}
        self.fill_price = fill_price
        self.quiet = quiet
        self.orders: dict[str, _Order] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.fix42 = False
        self.relay: Relay | None = None
        self.logons = itertools.count(1)
        self.conns: dict[str, int | None] = {}  # session -> the connection logged on for it

    def _conn(self, sid: fix.SessionID) -> int | None:
        return self.conns.get(sid.toString())

    # quickfix callbacks
    def onCreate(self, sid: fix.SessionID) -> None:
        pass

    def onLogon(self, sid: fix.SessionID) -> None:
        key = sid.toString()
        # the relay knows the connection once its answer to the Logon went through (just now)
        conn = self.relay.session_conn(key, wait_s=1.0) if self.relay is not None else next(self.logons)
        self.conns[key] = conn
        emit({"event": "logon", "session": key, "conn": conn})

    def onLogout(self, sid: fix.SessionID) -> None:
        emit({"event": "logout", "session": sid.toString(), "conn": self.conns.pop(sid.toString(), None)})

    def toAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        pass

    def fromAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        pass

    def toApp(self, message: fix.Message, sid: fix.SessionID) -> None:
        if not self.quiet:
            raw = message.toString().replace("\x01", "|")
            emit({"dir": "out", "fields": fields_of(message), "raw": raw, "conn": self._conn(sid)})

    def fromApp(self, message: fix.Message, sid: fix.SessionID) -> None:
        f = fields_of(message)
        if not self.quiet:
            emit({"dir": "in", "fields": f, "raw": message.toString().replace("\x01", "|"), "conn": self._conn(sid)})
        with self.lock:
            self.fix42 = sid.getBeginString().getValue() == "FIX.4.2"
            handler = {"D": self._new, "G": self._replace, "F": self._cancel}.get(f.get("35", ""))
            if handler is None:
                raise fix.UnsupportedMessageType()
            for fields in handler(f):
                fix.Session.sendToTarget(build_message(sid.getBeginString().getValue(), fields), sid)

    # order handling; each returns the messages to send
    def _report(
        self,
        o: _Order,
        exec_type: str,
        cl_ord_id: str,
        orig: str = "",
        last_qty: Decimal | None = None,
        last_px: Decimal | None = None,
        text: str = "",
    ) -> list[tuple[int, str]]:
        out = [(35, "8"), (37, o.order_id), (17, f"E{next(self.ids)}"), (11, cl_ord_id)]
        if orig:
            out.append((41, orig))
        if self.fix42:  # FIX 4.2 has ExecTransType and reports fills as 1/2
            out.append((20, "0"))
            exec_type = {"F": o.status}.get(exec_type, exec_type)
        out += [(150, exec_type), (39, o.status), (55, o.symbol), (54, o.side), (38, _d(o.qty))]
        if o.price is not None:
            out.append((44, _d(o.price)))
        if o.account:
            out.append((1, o.account))
        if last_qty is not None and last_px is not None:
            out += [(32, _d(last_qty)), (31, _d(last_px))]
        out += [(151, _d(o.leaves)), (14, _d(o.cum)), (6, _d(o.avg_px))]
        if text:
            out.append((58, text))
        return out

    def _fill(self, o: _Order, qty: Decimal) -> list[tuple[int, str]]:
        px = o.price if o.price is not None else Decimal(100)
        o.avg_px = (o.avg_px * o.cum + px * qty) / (o.cum + qty)
        o.cum += qty
        o.status = "2" if o.cum >= o.qty else "1"
        return self._report(o, "F", o.cl_ord_id, last_qty=qty, last_px=px)

    def _new(self, f: dict[str, str]) -> list[list[tuple[int, str]]]:
        price = Decimal(f["44"]) if f.get("44") else None
        o = _Order(
            f["11"], f"V{next(self.ids)}", f.get("55", ""), f.get("54", "1"), Decimal(f["38"]), price, f.get("1", "")
        )
        behaviour = self.per_symbol.get(o.symbol, self.default)
        if behaviour == "reject":
            o.status = "8"
            return [self._report(o, "8", o.cl_ord_id, text="venue simulator rejects this symbol")]
        self.orders[o.cl_ord_id] = o
        out = [self._report(o, "0", o.cl_ord_id)]
        if behaviour == "fill":
            out.append(self._fill(o, o.qty))
        elif behaviour == "partial":
            out.append(self._fill(o, (o.qty / 2).to_integral_value() or o.qty))
        return out

    def _amend(self, f: dict[str, str], response_to: str) -> tuple[_Order | None, list[list[tuple[int, str]]]]:
        """The working order a cancel (434=1) or replace (434=2) refers to, re-keyed under its new
        ClOrdID; or None and the OrderCancelReject to send."""
        o = self.orders.get(f.get("41", ""))
        if o is None or o.leaves <= 0:
            unknown = o is None
            return None, [
                [
                    (35, "9"),
                    (37, f.get("37", "NONE")),
                    (11, f["11"]),
                    (41, f.get("41", "")),
                    (39, "8" if o is None else o.status),
                    (434, response_to),
                    (102, "1" if unknown else "0"),
                    (58, "unknown order" if unknown else "order is done"),
                ]
            ]
        del self.orders[o.cl_ord_id]
        o.cl_ord_id = f["11"]
        self.orders[o.cl_ord_id] = o
        return o, []

    def _replace(self, f: dict[str, str]) -> list[list[tuple[int, str]]]:
        orig = f.get("41", "")
        o, refused = self._amend(f, "2")
        if o is None:
            return refused
        o.qty = Decimal(f["38"])
        o.price = Decimal(f["44"]) if f.get("44") else None
        o.status = "2" if o.cum >= o.qty else ("1" if o.cum else "0")
        return [self._report(o, "5", o.cl_ord_id, orig)]

    def _cancel(self, f: dict[str, str]) -> list[list[tuple[int, str]]]:
        orig = f.get("41", "")
        o, refused = self._amend(f, "1")
        if o is None:
            return refused
        o.status = "4"
        return [self._report(o, "4", o.cl_ord_id, orig)]


def run_venue(
    loaded: LoadedConfig,
    venue_name: str,
    default: str,
    per_symbol: dict[str, str],
    quiet: bool,
    state_dir: Path | None = None,
    track_connections: bool = False,
) -> None:
    cfg = loaded.config
    venue = next((v for v in cfg.venues if v.name == venue_name), None)
    if venue is None:
        raise SystemExit(f"no venue named {venue_name!r} in {loaded.path}")
    app = VenueSim(default, per_symbol, quiet=quiet)
    state = state_dir or loaded.state_dir / "sim" / f"venue-{venue.name}"
    block = session_block(venue.fix_version, venue.comp_id, venue.our_comp_id)
    # with a relay in front, quickfix listens on a private port and the relay on the venue's
    acceptor_port = free_port() if track_connections else venue.port
    _engine = start_engine(  # kept alive until the process ends
        "acceptor",
        app,
        state,
        "venue-sim",
        {"SocketAcceptPort": acceptor_port, "AllowedRemoteAddresses": "127.0.0.1"},
        [block],
    )
    if track_connections:
        app.relay = Relay(venue.port, acceptor_port, emit)
    emit({"event": "listening", "venue": venue.name, "port": venue.port})
    wait_for_signal()
    logout_all([fix.SessionID(venue.begin_string, venue.comp_id, venue.our_comp_id)])
    leave()
