"""Each instance's fills and positions in PostgreSQL (fp_fill, fp_position), from its journal.

``Mirror`` follows the journal as the audit follower does (segments in order, a recovery's new
segment after a crash included) and saves the position it reached in fp_mirror, in the same
transaction as what it wrote, so a restart goes on from there.

What moved the book is read from what the journal holds of a venue's execution report: the inbound
report (I) gives the fill, bust or correction; the order it belongs to (session, account, symbol,
side, as the core books it) comes from the order the proxy sent the venue (an O record 35=D or 35=G,
or the snapshot's orders); the core's own outputs for that input tell whether it booked it (a
``duplicate_fill``, ``unknown_fill``, ``illegal_transition``... notice or a ``fill_adjustment`` alert
says it did not). The positions are the core's own ``Book`` run over those fills, from the
snapshot the mirror starts from (the journal's first, or the newest one before the saved position),
and written as absolute values: a re-read of part of the journal writes the same rows again, and a
fill is inserted once per (instance, ExecID).

The input whose outputs are not all written yet (the proxy is between the two) is read again on
the next pass: the saved position stays before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import structlog

from ..audit.follower import lag_bytes
from ..core import events as ev
from ..core.book import Book, Fill
from ..core.model import ExecReport, ExecType, Side
from ..core.rebuild import order_from_report
from ..fix import codec
from ..fix.parse import last_value, parse
from ..journal import format as fmt
from ..journal.reader import Tail, segments
from ..journal.recovery import load_snapshot, snapshots
from ..journal.writer import JournalError
from . import schema

if TYPE_CHECKING:
    from ..config import LoadedConfig, StartPosition

#: Outputs of a venue report saying the core did not move the book with it (core/booking.py, proxy.py).
_NOT_BOOKED = frozenset(
    {"duplicate_fill", "unknown_fill", "illegal_transition", "possdup_report_ignored", "unknown_order_report"}
)
#: Outputs after which the core has nothing more to say about the report (it returns early, or relays it).
_LAST_WORD = frozenset({"possdup_report_ignored", "unknown_order_report", "send_failed"})
_BOOKING = (ExecType.TRADE, ExecType.TRADE_CANCEL, ExecType.TRADE_CORRECT)

_UPSERT_POSITION = (
    "INSERT INTO fp_position (instance, account, symbol, qty, avg_cost, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (instance, account, symbol) "
    "DO UPDATE SET qty = EXCLUDED.qty, avg_cost = EXCLUDED.avg_cost, updated_at = now()"
)
#: A batch's fills in one statement (a column an array), not one statement a fill.
_INSERT_FILLS = (
    "INSERT INTO fp_fill (instance, exec_id, session, account, symbol, side, qty, price, ts_ns) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::numeric[], %s::numeric[], %s::bigint[]) ON CONFLICT (instance, exec_id) DO NOTHING"
)
_SAVE_POSITION = (
    'INSERT INTO fp_mirror (instance, segment, "offset", updated_at) VALUES (%s, %s, %s, now()) '
    'ON CONFLICT (instance) DO UPDATE SET segment = EXCLUDED.segment, "offset" = EXCLUDED."offset", '
    "updated_at = now()"
)

#: Venue ClOrdID -> (OMS session, account, symbol, side) of the order the core books its fills to.
OrderKey = tuple[str, str, str, Side]


_NEW = "\x01150=0\x01"


def health_of(
    journal_dir: Path, committed: tuple[int, int], journal_position: Callable[[], tuple[int, int]] | None, error: str
) -> dict[str, Any]:
    """A mirror's health: failed with its last error, and how many journal bytes it has yet to mirror."""
    lag = -1
    if journal_position is not None:
        try:
            lag = lag_bytes(journal_dir, committed, journal_position())
        except Exception:  # noqa: BLE001 - a journal closing meanwhile
            lag = -1
    return {"state": "failed" if error else "ok", "lag_bytes": lag, "error": error}


def _of_type(raw: str, msg_type: str) -> bool:
    """Whether ``raw`` is a message of this MsgType (35), without parsing it."""
    field = f"35={msg_type}\x01"
    return raw.startswith(field) or f"\x01{field}" in raw


@dataclass
class _Pending:
    """A venue report that may move the book, waiting for the core's outputs that follow it."""

    venue: str
    report: ExecReport
    now_ns: int
    start: tuple[int, int]  # where its record begins: the position to save while it waits
    booked: bool = True
    recovered: bool = False  # the core rebuilt the order from this report (order_recovered)


@dataclass
class _Batch:
    """What one pass writes, in one transaction."""

    fills: list[tuple[Any, ...]] = field(default_factory=list)
    busts: list[str] = field(default_factory=list)
    corrections: list[tuple[Decimal, Decimal, str]] = field(default_factory=list)
    touched: set[tuple[str, str]] = field(default_factory=set)


class Mirror:
    """Follows one instance's journal into fp_fill and fp_position.

    ``connect`` makes a psycopg connection in autocommit mode (cluster/manager.py ``connect``);
    ``venues``: the names of the venue sessions; ``start_positions``: the start-of-day file's
    positions, used only when the journal has no readable snapshot to start from;
    ``journal_position``: the writer's (segment, offset), for ``health``'s lag.
    """

    def __init__(
        self,
        journal_dir: Path,
        instance: str,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        venues: Collection[str],
        start_positions: Iterable[StartPosition] = (),
        journal_position: Callable[[], tuple[int, int]] | None = None,
        interval_s: float = 0.5,
    ) -> None:
        self.journal_dir = Path(journal_dir)
        self.instance = instance
        self.connect = connect
        self.venues = frozenset(venues)
        self.start_positions = tuple(start_positions)
        self.journal_position = journal_position
        self.interval_s = interval_s
        self.error = ""
        self.failures = 0
        self.fills_written = 0  # fills inserted (not counting those already there)
        self.unmatched = 0  # booked fills of an order the mirror could not name (should stay 0)
        self.committed: tuple[int, int] = (0, 0)
        self._read_to: tuple[int, int] = (0, 0)
        self._conn: psycopg.Connection[Any] | None = None
        self._tail: Tail | None = None
        self._book = Book({})
        self._orders: dict[str, OrderKey] = {}
        self._done: set[str] = set()  # venue ClOrdIDs of finished orders, let go at the day roll
        self._pending: _Pending | None = None
        self._rewrite = False  # the first pass after (re)starting writes every position
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = structlog.get_logger("fixproxy.cluster.mirror")

    @classmethod
    def for_config(
        cls,
        loaded: LoadedConfig,
        connect: Callable[[], psycopg.Connection[Any]],
        journal_position: Callable[[], tuple[int, int]] | None = None,
    ) -> Mirror:
        """The mirror of the proxy ``loaded`` configures (``[cluster]`` names the instance)."""
        cluster = loaded.config.cluster
        if cluster is None:
            raise ValueError(f"{loaded.path}: no [cluster] section: nothing to mirror to")
        return cls(
            loaded.journal_dir,
            cluster.instance,
            connect,
            venues=[v.name for v in loaded.config.venues],
            start_positions=loaded.positions,
            journal_position=journal_position,
        )

    # ------------------------------------------------------------ the thread

    def start(self) -> None:
        """Mirror every ``interval_s`` on a thread of its own until ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fixproxy-cluster-mirror", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after a last pass, and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close()

    def _run(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - a mirror problem must never reach the proxy
                self._failed(f"{type(exc).__name__}: {exc}")
            if self._stop.wait(self.interval_s if not self.error else max(self.interval_s, 1.0)):
                break
        try:
            self.run_once()  # what the proxy wrote last
        except Exception as exc:  # noqa: BLE001
            self._failed(f"{type(exc).__name__}: {exc}")

    def health(self) -> dict[str, Any]:
        """{"state": "ok" | "failed", "lag_bytes": journal bytes not yet mirrored (-1: unknown), "error"}."""
        return health_of(self.journal_dir, self.committed, self.journal_position, self.error)

    # ------------------------------------------------------------ one pass

    def run_once(self) -> int:
        """Mirror what the journal holds now; how many journal records were read. A database or
        journal error is kept for ``health`` (the next pass starts again from the saved position)."""
        try:
            conn = self._connection()
            if self._tail is None:
                self._begin(conn)
            assert self._tail is not None
            items = self._tail.poll()
            batch = _Batch()
            position = self._read(items, batch)
            self._write(conn, batch, position)
        except (psycopg.Error, OSError, JournalError) as exc:
            self._failed(str(exc).strip() or type(exc).__name__)
            return 0
        self.committed = position
        if self.error:
            self._log.info("cluster_mirror_recovered", instance=self.instance)
        self.error = ""
        return len(items)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = self.connect()
            schema.ensure(conn)
            self._conn = conn
        return self._conn

    def _begin(self, conn: psycopg.Connection[Any]) -> None:
        """The state to go on from: the newest snapshot at or before the saved position (the first
        snapshot when this instance never mirrored), the journal read again from there."""
        row = conn.execute('SELECT segment, "offset" FROM fp_mirror WHERE instance = %s', (self.instance,)).fetchone()
        saved = (int(row[0]), int(row[1])) if row else None
        found = snapshots(self.journal_dir)
        if saved is not None:  # newest first up to the saved position, then (deleted ones?) the later
            candidates = [s for s in reversed(found) if s <= saved] + [s for s in found if s > saved]
        else:
            candidates = found
        state = None
        start = (0, 0)
        for at in candidates:
            state = load_snapshot(self.journal_dir, *at)
            if state is not None:
                start = at
                break
        book = Book({})
        orders: dict[str, OrderKey] = {}
        if state is not None:
            book = state["book"]
            book.instruments = {}  # the mirror values nothing: positions only
            for venue_id, (order, _) in state["orders"]._by_venue.items():
                req = order.request
                orders[venue_id] = (order.session, req.account, req.symbol, req.side)
        else:
            first = segments(self.journal_dir)
            start = (first[0], 0) if first else (0, 0)
            for p in self.start_positions:
                book.load_position(p.account, p.symbol, p.qty, p.avg_cost)
        self._book, self._orders, self._done, self._pending = book, orders, set(), None
        self._tail = Tail(self.journal_dir, *start)
        self.committed = self._read_to = start
        self._rewrite = True
        self._log.info("cluster_mirror_start", instance=self.instance, saved=saved, snapshot=start)

    def _read(self, items: list[tuple[int, int, bytes, bytes]], batch: _Batch) -> tuple[int, int]:
        """Move the in-memory state by ``items``; the journal position the batch can be saved at."""
        end = self._read_to  # where the record being read begins
        for segment, offset, kind, payload in items:
            pending = self._pending
            if pending is not None and self._settles(pending, kind, payload):
                self._pending = None
                self._apply(pending, batch)
            if kind == fmt.INBOUND:
                session, now_ns, raw = fmt.decode_message(payload)
                # An acknowledgement (150=0) neither moves a position nor ends an order: not decoded.
                if session in self.venues and _of_type(raw, "8") and _NEW not in raw:
                    self._venue_report(session, now_ns, raw, end if end[0] == segment else (segment, 0))
            elif kind == fmt.OUTBOUND:
                session, _, raw = fmt.decode_message(payload)
                if session in self.venues and (_of_type(raw, "D") or _of_type(raw, "G")):
                    self._sent(raw)
            elif kind == fmt.EVENT and isinstance(fmt.decode_event(payload), ev.DayRoll):
                self._day_roll(batch)
            end = (segment, offset)
        self._read_to = end
        return self._pending.start if self._pending is not None else end

    def _sent(self, raw: str) -> None:
        """An order or replace the proxy sent a venue: whose fills its reports will be (four fields
        read from the text as ``parse`` would give them, without parsing the whole message)."""
        venue_id = last_value(raw, 11)
        try:
            self._orders[venue_id] = (
                venue_id.partition(".")[0],
                last_value(raw, 1),
                last_value(raw, 55),
                Side(last_value(raw, 54)),
            )
        except ValueError:
            pass

    def _venue_report(self, venue: str, now_ns: int, raw: str, start: tuple[int, int]) -> None:
        try:
            event = codec.venue_to_event(parse(raw), venue, now_ns)
        except codec.Invalid:
            return
        if not isinstance(event, ev.VenueReport):
            return
        r = event.report
        if r.ord_status.is_terminal:
            self._done.add(r.cl_ord_id)
        if r.exec_type not in _BOOKING or (r.exec_type is ExecType.TRADE and r.last_qty <= 0):
            return
        self._pending = _Pending(venue, r, now_ns, start)

    def _settles(self, pending: _Pending, kind: bytes, payload: bytes) -> bool:
        """Whether this record ends the outputs of the pending report (noting what they say of it)."""
        if kind == fmt.ACTION:
            action = fmt.decode(kind, payload)
            if isinstance(action, ev.Notice):
                if action.kind in _NOT_BOOKED:
                    pending.booked = False
                elif action.kind == "order_recovered":
                    pending.recovered = True
                return action.kind in _LAST_WORD
            if isinstance(action, ev.Alert) and action.limit_name == "fill_adjustment":
                pending.booked = False
            return False
        if kind == fmt.OUTBOUND:
            session, _, _ = fmt.decode_message(payload)
            return session not in self.venues  # the report relayed to its OMS: the core's last word on it
        return True  # the next input (or a new segment): the pending one's outputs are all written

    def _apply(self, p: _Pending, batch: _Batch) -> None:
        """Move the book as the core did (core/booking.py ``apply_report``) and note the rows to write."""
        if not p.booked:
            return
        r = p.report
        key = self._orders.get(r.cl_ord_id) or (self._orders.get(r.orig_cl_ord_id) if r.orig_cl_ord_id else None)
        if key is None and p.recovered:
            session = r.cl_ord_id.partition(".")[0]
            order = order_from_report(p.venue, r, (session,))
            if order is not None:
                req = order.request
                key = self._orders[r.cl_ord_id] = (order.session, req.account, req.symbol, req.side)
        if key is None:
            self.unmatched += 1
            self._log.error(
                "cluster_mirror_unknown_order",
                instance=self.instance,
                venue=p.venue,
                cl_ord_id=r.cl_ord_id,
                exec_id=r.exec_id,
                detail="the proxy booked a report of an order the mirror cannot name; fp_position may differ",
            )
            return
        session, account, symbol, side = key
        book = self._book
        if r.exec_type is ExecType.TRADE:
            fill = Fill(r.exec_id, session, account, symbol, r.last_qty * Book.sign(side), r.last_px, p.now_ns)
            if book.fill(fill):
                batch.fills.append(
                    (
                        self.instance,
                        r.exec_id,
                        session,
                        account,
                        symbol,
                        side.name.lower(),
                        r.last_qty,
                        r.last_px,
                        p.now_ns,
                    )
                )
                batch.touched.add((account, symbol))
        elif r.exec_type is ExecType.TRADE_CANCEL:
            done = book.bust(r.exec_ref_id)
            if done is not None:
                batch.busts.append(r.exec_ref_id)
                batch.touched.add((done.account, done.symbol))
        else:
            done = book.correct(r.exec_ref_id, r.last_qty, r.last_px)
            if done is not None:
                batch.corrections.append((r.last_qty, r.last_px, r.exec_ref_id))
                batch.touched.add((done.account, done.symbol))

    def _day_roll(self, batch: _Batch) -> None:
        """A new trading day, as the core's book takes it: positions carry over, flat ones go."""
        batch.touched.update(self._book.positions)
        self._book.new_day()
        for venue_id in self._done:
            self._orders.pop(venue_id, None)
        self._done.clear()

    def _write(self, conn: psycopg.Connection[Any], batch: _Batch, position: tuple[int, int]) -> None:
        positions = self._book.positions
        with conn.transaction(), conn.cursor() as cur:
            if self._rewrite:
                cur.execute("DELETE FROM fp_position WHERE instance = %s", (self.instance,))
                batch.touched.update(positions)
            if batch.fills:
                before = self.fills_written
                cur.execute(_INSERT_FILLS, [list(column) for column in zip(*batch.fills, strict=True)])
                self.fills_written = before + max(cur.rowcount, 0)
            for ref in batch.busts:
                cur.execute(
                    "UPDATE fp_fill SET active = false WHERE instance = %s AND exec_id = %s", (self.instance, ref)
                )
            for qty, price, ref in batch.corrections:
                cur.execute(
                    "UPDATE fp_fill SET qty = %s, price = %s WHERE instance = %s AND exec_id = %s",
                    (qty, price, self.instance, ref),
                )
            upserts = []
            for account, symbol in sorted(batch.touched):
                pos = positions.get((account, symbol))
                if pos is None:
                    cur.execute(
                        "DELETE FROM fp_position WHERE instance = %s AND account = %s AND symbol = %s",
                        (self.instance, account, symbol),
                    )
                else:
                    upserts.append((self.instance, account, symbol, pos.qty, pos.avg_cost))
            if upserts:
                cur.executemany(_UPSERT_POSITION, upserts)
            cur.execute(_SAVE_POSITION, (self.instance, position[0], position[1]))
        self._rewrite = False

    # ------------------------------------------------------------ failures

    def _failed(self, error: str) -> None:
        """Forget the in-memory state (the next pass starts again from the saved position) and the connection."""
        if error != self.error:
            self._log.error("cluster_mirror_failed", instance=self.instance, error=error)
        self.error = error
        self.failures += 1
        self._close()

    def _close(self) -> None:
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass


def firm_positions(
    conn: psycopg.Connection[Any], instance: str | None = None
) -> list[tuple[str, str, Decimal, Decimal]]:
    """(account, symbol, qty, avg_cost) from fp_position: one instance's, or (None) the firm's summed per
    account and symbol (average cost weighted by quantity when the instances are on the same side; the
    cost of the instances on the net's side when they are not)."""
    if instance is not None:
        rows = conn.execute(
            "SELECT account, symbol, qty, avg_cost FROM fp_position WHERE instance = %s AND qty <> 0 "
            "ORDER BY account, symbol",
            (instance,),
        ).fetchall()
        return [(a, s, Decimal(q), Decimal(c)) for a, s, q, c in rows]
    rows = conn.execute(
        "SELECT account, symbol, qty, avg_cost FROM fp_position WHERE qty <> 0 ORDER BY account, symbol, instance"
    ).fetchall()
    summed: dict[tuple[str, str], list[tuple[Decimal, Decimal]]] = {}
    for a, s, q, c in rows:
        summed.setdefault((a, s), []).append((Decimal(q), Decimal(c)))
    out = []
    for (a, s), parts in summed.items():
        qty = sum((q for q, _ in parts), Decimal(0))
        if not qty:
            continue
        side = [(q, c) for q, c in parts if (q > 0) == (qty > 0)]
        held = sum((q for q, _ in side), Decimal(0))
        cost = sum((q * c for q, c in side), Decimal(0)) / held
        out.append((a, s, qty, cost))
    return out


__all__ = ["Mirror", "firm_positions"]
