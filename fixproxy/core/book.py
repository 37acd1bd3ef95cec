"""Positions and exposure. Fills move positions; working orders count as in-flight exposure.

Exposure is kept per scope: ``firm``, ``account:<Account>`` and ``session:<name>``, as running
totals updated on every change, so a check reads a number instead of summing the book.
Positions are valued at the instrument's reference price (which fills update).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from decimal import Decimal

import msgspec

from .model import Instrument, Side

ZERO = Decimal(0)
FIRM = "firm"


class Position(msgspec.Struct, gc=False):
    """One account's position in one symbol. Mutable; derived from fills (and the start-of-day file)."""

    account: str
    symbol: str
    qty: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    bought_qty: Decimal = ZERO
    sold_qty: Decimal = ZERO
    traded_notional: Decimal = ZERO


class Fill(msgspec.Struct, gc=False):
    exec_id: str
    session: str
    account: str
    symbol: str
    qty: Decimal  # signed: positive bought, negative sold
    price: Decimal
    now_ns: int
    active: bool = True


def apply_fill(pos: Position, qty: Decimal, price: Decimal) -> None:
    """Move ``pos`` by a signed fill: average cost on the growing side, realized P&L on the closing side."""
    old = pos.qty
    if qty > 0:
        pos.bought_qty += qty
    else:
        pos.sold_qty -= qty
    pos.traded_notional += abs(qty) * price
    new = old + qty
    if old == 0 or (old > 0) == (qty > 0):
        pos.avg_cost = (pos.avg_cost * abs(old) + price * abs(qty)) / abs(new)
    else:
        closed = min(abs(qty), abs(old))
        pos.realized_pnl += (price - pos.avg_cost) * closed * (1 if old > 0 else -1)
        if new == 0:
            pos.avg_cost = ZERO
        elif (new > 0) != (old > 0):
            pos.avg_cost = price  # crossed through zero: the remainder opens at the fill price
    pos.qty = new


class Working(msgspec.Struct, gc=False):
    """What one open order adds to exposure: its leaves quantity on its side."""

    session: str
    account: str
    symbol: str
    sign: int  # +1 buy, -1 sell
    qty: Decimal
    price: Decimal | None  # limit price (None: market), for self-match checks


class _Line:
    """One scope's state in one symbol, and what it adds to the scope's totals."""

    __slots__ = ("pos", "buy", "sell", "gross", "long", "short", "net")

    def __init__(self) -> None:
        self.pos = ZERO  # signed position
        self.buy = ZERO  # working buy quantity
        self.sell = ZERO  # working sell quantity
        self.gross = ZERO  # worst-case |position| x mark
        self.long = ZERO  # (position + working buys) x mark
        self.short = ZERO  # (position - working sells) x mark
        self.net = ZERO  # position x mark


def worst_case(pos: Decimal, buy: Decimal, sell: Decimal) -> Decimal:
    """The largest |position| reachable if every working order on either side fills."""
    return max(abs(pos + buy), abs(pos - sell))


class Totals:
    """Running exposure totals of one scope (notional at reference prices)."""

    __slots__ = ("lines", "gross", "long", "short", "net", "sector", "open_orders")

    def __init__(self) -> None:
        self.lines: dict[str, _Line] = {}
        self.gross = ZERO  # sum of worst-case gross per symbol (includes working orders)
        self.long = ZERO  # net exposure if every working buy fills
        self.short = ZERO  # net exposure if every working sell fills
        self.net = ZERO  # net exposure of positions alone
        self.sector: dict[str, Decimal] = {}  # sector -> gross
        self.open_orders = 0


def _add(d: dict[str, Decimal], key: str, delta: Decimal) -> None:
    if not delta:
        return
    value = d.get(key, ZERO) + delta
    if value:
        d[key] = value
    else:
        d.pop(key, None)


class Book:
    """The live position book. Owned by the core; rules only call its reading methods."""

    def __init__(self, instruments: dict[str, Instrument]):
        self.instruments = instruments  # shared with the core: reference prices move with fills
        self.positions: dict[tuple[str, str], Position] = {}
        self._fills: dict[tuple[str, str], deque[Fill]] = {}  # fills held (not folded yet), oldest first
        self._by_exec: dict[str, Fill] = {}
        self._sod: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}  # start-of-day (qty, avg cost)
        # Positions with the fills folded into them (``fold``, ``new_day``): where a rebuild starts.
        self._base: dict[tuple[str, str], Position] = {}
        self._fill_order: deque[Fill] = deque()  # held fills in the order they came (``fold``)
        self._totals: dict[str, Totals] = {}
        self._holders: dict[str, set[str]] = {}  # symbol -> scopes holding a position in it
        self._working: dict[str, Working] = {}
        self._resting: dict[str, dict[str, Working]] = {}  # symbol -> order key -> working order
        # (symbol, side sign, owner) -> {limit price (None: market): how many working orders}; owner ""
        # is the whole firm. The self-match check reads the best price here instead of every order.
        self._prices: dict[tuple[str, int, str], dict[Decimal | None, int]] = {}
        # While held (``hold``/``settle``): lines whose totals are out of date, each recomputed once
        # by ``settle`` however many changes (a fill's working order, position and price) touched it.
        self._dirty: dict[tuple[str, str], tuple[Totals, _Line]] | None = None

    # ------------------------------------------------------------ reading

    def totals(self, scope: str) -> Totals:
        found = self._totals.get(scope)
        if found is None:
            found = self._totals[scope] = Totals()
        return found

    def peek(self, scope: str) -> Totals:
        """The scope's totals without adding the scope (an empty Totals when it has none; do not change it)."""
        return self._totals.get(scope) or _EMPTY_TOTALS

    def line(self, scope: str, symbol: str) -> _Line:
        t = self._totals.get(scope)
        found = t.lines.get(symbol) if t is not None else None
        return found if found is not None else _EMPTY

    def gross(self, scope: str) -> Decimal:
        t = self._totals.get(scope)
        return t.gross if t else ZERO

    def sector_gross(self, scope: str, sector: str) -> Decimal:
        t = self._totals.get(scope)
        return t.sector.get(sector, ZERO) if t else ZERO

    def open_orders(self, scope: str) -> int:
        t = self._totals.get(scope)
        return t.open_orders if t else 0

    def working(self, key: str) -> Working | None:
        return self._working.get(key)

    def resting(self, symbol: str) -> Iterable[tuple[str, Working]]:
        return self._resting.get(symbol, {}).items()

    @staticmethod
    def owner(account: str, session: str) -> str:
        """Whose orders may not meet: the account's, or (orders without one) the session's."""
        return account if account else f"\x00{session}"

    def resting_prices(self, symbol: str, sign: int, owner: str = "") -> dict[Decimal | None, int]:
        """Prices of the working orders on one side (``sign``) of ``symbol``: of one owner, or ("") the firm."""
        return self._prices.get((symbol, sign, owner)) or {}

    def _index(self, w: Working, delta: int) -> None:
        for owner in ("", self.owner(w.account, w.session)):
            key = (w.symbol, w.sign, owner)
            prices = self._prices.setdefault(key, {})
            n = prices.get(w.price, 0) + delta
            if n > 0:
                prices[w.price] = n
            else:
                prices.pop(w.price, None)
                if not prices:
                    del self._prices[key]

    def mark(self, symbol: str) -> Decimal:
        inst = self.instruments.get(symbol)
        return (inst.reference_price or ZERO) if inst is not None else ZERO

    def sector(self, symbol: str) -> str:
        inst = self.instruments.get(symbol)
        return inst.sector if inst is not None else ""

    def scope_names(self) -> list[str]:
        return list(self._totals)

    def what_if(
        self, scope: str, symbol: str, buy: Decimal, sell: Decimal
    ) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """(gross, long, short, sector gross) of ``scope`` if its working buys/sells in ``symbol`` grew by these."""
        t = self._totals.get(scope) or _EMPTY_TOTALS
        ln = t.lines.get(symbol) or _EMPTY
        mark = self.mark(symbol)
        gross_delta = worst_case(ln.pos, ln.buy + buy, ln.sell + sell) * mark - ln.gross
        return (
            t.gross + gross_delta,
            t.long + buy * mark,
            t.short - sell * mark,
            t.sector.get(self.sector(symbol), ZERO) + gross_delta,
        )

    # ------------------------------------------------------------ scopes of a change

    @staticmethod
    def scopes_of(session: str, account: str) -> tuple[str, ...]:
        """The aggregate scopes a fill or working order counts in."""
        out = [FIRM]
        if session:
            out.append(f"session:{session}")
        if account:
            out.append(f"account:{account}")
        return tuple(out)

    # ------------------------------------------------------------ working orders

    def set_working(self, key: str, entry: Working | None) -> None:
        """Replace the working contribution of order ``key`` (None: the order no longer works)."""
        if entry is not None and entry.qty <= 0:
            entry = None
        old = self._working.get(key)
        if (
            old is not None
            and entry is not None
            and (old.session, old.account, old.symbol, old.sign)
            == (entry.session, entry.account, entry.symbol, entry.sign)
        ):
            # The same order on the same line (acked, partly filled, replaced): move by the difference.
            self._working[key] = entry
            self._resting.setdefault(entry.symbol, {})[key] = entry
            if entry.price != old.price:
                self._index(old, -1)
                self._index(entry, +1)
            if entry.qty != old.qty:
                self._apply_working(entry, 0, entry.qty - old.qty)
            return
        old = self._working.pop(key, None)
        if old is not None:
            self._apply_working(old, -1)
            self._resting.get(old.symbol, {}).pop(key, None)
            self._index(old, -1)
        if entry is not None and entry.qty > 0:
            self._working[key] = entry
            self._apply_working(entry, +1)
            self._resting.setdefault(entry.symbol, {})[key] = entry
            self._index(entry, +1)

    def _apply_working(self, w: Working, direction: int, qty: Decimal | None = None) -> None:
        """Add (direction +1) or take away (-1) an order's working quantity; direction 0 moves the
        line by ``qty`` without changing the count of open orders."""
        if qty is None:
            qty = w.qty * direction
        for scope in self.scopes_of(w.session, w.account):
            t = self.totals(scope)
            ln = self._line(t, scope, w.symbol)
            if w.sign > 0:
                ln.buy += qty
            else:
                ln.sell += qty
            t.open_orders += direction
            self._touch(t, scope, w.symbol, ln)

    # ------------------------------------------------------------ fills

    def fill(self, f: Fill, known: bool = False) -> bool:
        """Apply a fill; False if its ExecID was already applied (a resent report), or ``known``: the
        caller saw its ExecID before on a report whose fill may have been folded already."""
        if f.exec_id:
            if known or f.exec_id in self._by_exec:
                return False
            self._by_exec[f.exec_id] = f
        found = self._fills.get((f.account, f.symbol))
        if found is None:
            found = self._fills[(f.account, f.symbol)] = deque()
        found.append(f)
        self._fill_order.append(f)
        apply_fill(self._position(f.account, f.symbol), f.qty, f.price)
        self._move(f.session, f.account, f.symbol, f.qty)
        return True

    def bust(self, exec_id: str) -> Fill | None:
        """Undo a fill (ExecType H); the position is rebuilt from the remaining fills."""
        f = self._by_exec.get(exec_id)
        if f is None or not f.active:
            return None
        f.active = False
        self._rebuild(f.account, f.symbol)
        self._move(f.session, f.account, f.symbol, -f.qty)
        return f

    def correct(self, exec_id: str, qty: Decimal, price: Decimal) -> Fill | None:
        """Change a fill's quantity and price (ExecType G); ``qty`` is unsigned, as on the wire."""
        f = self._by_exec.get(exec_id)
        if f is None or not f.active:
            return None
        signed = qty if f.qty > 0 else -qty
        delta = signed - f.qty
        f.qty, f.price = signed, price
        self._rebuild(f.account, f.symbol)
        self._move(f.session, f.account, f.symbol, delta)
        return f

    def fills(self) -> list[Fill]:
        """The fills held in memory (not folded into their positions yet)."""
        return [f for fs in self._fills.values() for f in fs]

    def fold(self, before_ns: int | None = None) -> int:
        """Fold the fills applied before ``before_ns`` (None: all) into their positions' base and
        forget them (their ExecIDs stay with the core, hashed); returns how many. A bust or a
        correction of a folded fill can no longer be applied (the core alerts the desk)."""
        q = self._fill_order
        n = 0
        while q and (before_ns is None or q[0].now_ns < before_ns):
            f = q.popleft()
            key = (f.account, f.symbol)
            held = self._fills[key]
            held.popleft()  # fills of one line come in the same order as all fills
            if not held:
                del self._fills[key]
            base = self._base.get(key)
            if base is None:
                base = self._base[key] = self._start(f.account, f.symbol)
            if f.active:
                apply_fill(base, f.qty, f.price)
            if f.exec_id:
                self._by_exec.pop(f.exec_id, None)
            n += 1
        return n

    def next_fold_ns(self) -> int | None:
        return self._fill_order[0].now_ns if self._fill_order else None

    def new_day(self) -> int:
        """A new trading day: every fill is folded and forgotten, each position carries over as the new
        day's start (quantity and average cost; the day's bought, sold, traded and realized figures
        start again at zero). Returns how many fills were forgotten."""
        n = self.fold()
        self._sod = {}
        self._base = {}
        for key, pos in list(self.positions.items()):
            if pos.qty:
                start = Position(pos.account, pos.symbol, pos.qty, pos.avg_cost)
                self.positions[key] = start
                self._base[key] = msgspec.structs.replace(start)
                self._sod[key] = (pos.qty, pos.avg_cost)
            else:
                del self.positions[key]
        return n

    def load_position(self, account: str, symbol: str, qty: Decimal, avg_cost: Decimal) -> None:
        """A start-of-day position: it belongs to the account and the firm, not to a session."""
        self._sod[(account, symbol)] = (qty, avg_cost)
        before = self._position(account, symbol).qty
        self._rebuild(account, symbol)
        self._move("", account, symbol, self.positions[(account, symbol)].qty - before)

    def _position(self, account: str, symbol: str) -> Position:
        pos = self.positions.get((account, symbol))
        if pos is None:
            pos = self.positions[(account, symbol)] = Position(account, symbol)
        return pos

    def _start(self, account: str, symbol: str) -> Position:
        """The position before the held fills: the folded base, or the start of the day."""
        base = self._base.get((account, symbol))
        if base is not None:
            return msgspec.structs.replace(base)
        pos = Position(account, symbol)
        sod = self._sod.get((account, symbol))
        if sod is not None:
            pos.qty, pos.avg_cost = sod
        return pos

    def _rebuild(self, account: str, symbol: str) -> None:
        pos = self._start(account, symbol)
        for f in self._fills.get((account, symbol), ()):
            if f.active:
                apply_fill(pos, f.qty, f.price)
        self.positions[(account, symbol)] = pos

    def _move(self, session: str, account: str, symbol: str, qty: Decimal) -> None:
        """Add a signed quantity to the symbol's position in every scope the fill counts in."""
        for scope in self.scopes_of(session, account):
            t = self.totals(scope)
            ln = self._line(t, scope, symbol)
            ln.pos += qty
            self._touch(t, scope, symbol, ln)

    def _line(self, t: Totals, scope: str, symbol: str) -> _Line:
        ln = t.lines.get(symbol)
        if ln is None:
            ln = t.lines[symbol] = _Line()
            self._holders.setdefault(symbol, set()).add(scope)
        return ln

    def hold(self) -> None:
        """Defer recomputing totals until ``settle`` (no reading in between: totals are stale)."""
        self._dirty = {}

    def settle(self) -> None:
        """Recompute the totals of every line changed since ``hold``, once each; stop deferring."""
        dirty, self._dirty = self._dirty, None
        if dirty:
            for (scope, symbol), (t, ln) in dirty.items():
                self._refresh(t, scope, symbol, ln)

    def _touch(self, t: Totals, scope: str, symbol: str, ln: _Line) -> None:
        if self._dirty is None:
            self._refresh(t, scope, symbol, ln)
        else:
            self._dirty[(scope, symbol)] = (t, ln)

    def _refresh(self, t: Totals, scope: str, symbol: str, ln: _Line) -> None:
        """Recompute what one line adds to its scope's totals."""
        inst = self.instruments.get(symbol)
        mark = (inst.reference_price or ZERO) if inst is not None else ZERO
        pos, buy, sell = ln.pos, ln.buy, ln.sell
        long, short = pos + buy, pos - sell
        gross = max(abs(long), abs(short)) * mark  # worst_case(pos, buy, sell) x mark
        long, short, net = long * mark, short * mark, pos * mark
        delta = gross - ln.gross
        if delta:
            _add(t.sector, inst.sector if inst is not None else "", delta)
            t.gross += delta
        t.long += long - ln.long
        t.short += short - ln.short
        t.net += net - ln.net
        ln.gross, ln.long, ln.short, ln.net = gross, long, short, net
        if not (pos or buy or sell):
            del t.lines[symbol]
            self._holders.get(symbol, set()).discard(scope)

    # ------------------------------------------------------------ reference prices

    def set_reference(self, symbol: str, price: Decimal, now_ns: int) -> None:
        """Move a reference price and revalue every line in that symbol."""
        inst = self.instruments.get(symbol) or Instrument(symbol)
        self.instruments[symbol] = msgspec.structs.replace(inst, reference_price=price, reference_time_ns=now_ns)
        if price == (inst.reference_price or ZERO):
            return
        for scope in list(self._holders.get(symbol, ())):
            t = self._totals[scope]
            ln = t.lines.get(symbol)
            if ln is not None:
                self._touch(t, scope, symbol, ln)

    @staticmethod
    def sign(side: Side) -> int:
        return 1 if side.is_buy else -1


_EMPTY = _Line()
_EMPTY_TOTALS = Totals()
