"""A generated trading day in quickfix FileLog format, for tests and for measuring replay speed.

The proxy's part is played by a core built like the proxy's (so the logs hold exactly the
decisions the proxy would have made) and the venue's part by a venue that acknowledges every
order, fills most of them at once and leaves the rest working until the OMS cancels them.
Seeded: the same arguments always write the same files.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from decimal import Decimal
from pathlib import Path

import msgspec

from ..assemble import build_core
from ..config import LoadedConfig
from ..core import events as ev
from ..fix import codec
from ..fix.build import build
from ..fix.parse import parse as parse_fields
from ..timefmt import fix_time_ns, iso

_VENUE_ACTIONS = (ev.VenueNewOrder, ev.VenueReplace, ev.VenueCancel)
_OMS_ACTIONS = (ev.OmsReport, ev.OmsCancelReject, ev.OmsBusinessReject)


def _stamp(ns: int, digits: int) -> str:
    """``20261125-12:28:04.277`` with ``digits`` fraction digits (9 in FileLog stamps, 3 in SendingTime)."""
    text = iso(ns, 9)
    return f"{text[0:4]}{text[5:7]}{text[8:10]}-{text[11:19]}.{text[20 : 20 + digits]}"


class _Session:
    """One FIX session's log file and sequence numbers, from the proxy's side."""

    def __init__(self, path: Path, begin: str, ours: str, theirs: str):
        self.file = path.open("w", encoding="utf-8", newline="\n")
        self.begin, self.ours, self.theirs = begin, ours, theirs
        self.seq = {"in": 0, "out": 0}

    def write(self, ts_ns: int, direction: str, msg_type: str, body: list[tuple[int, str]]) -> dict[int, str]:
        self.seq[direction] += 1
        sender, target = (self.theirs, self.ours) if direction == "in" else (self.ours, self.theirs)
        raw = build(self.begin, msg_type, self.seq[direction], sender, target, _stamp(ts_ns, 3), body).decode("latin-1")
        self.file.write(f"{_stamp(ts_ns, 9)} : {raw}\n")
        return parse_fields(raw)


def write_day(
    loaded: LoadedConfig,
    out_dir: Path,
    orders: int,
    *,
    seed: int = 1,
    start: str = "20261125-13:30:00",
    spacing_us: int = 200_000,
) -> list[Path]:
    """Write the message logs of ``orders`` orders spread over the OMS sessions; returns the files.

    Most orders are clean; a few breach the quantity limit or the price collar or name an unknown
    symbol; one in ten rests at the venue and is cancelled a few orders later.
    """
    cfg = loaded.config
    identifiers = cfg.identifiers.limits()
    rng = random.Random(seed)
    now = fix_time_ns(start)
    instruments = {
        k: msgspec.structs.replace(i, reference_time_ns=now) if i.reference_price is not None else i
        for k, i in loaded.instruments.items()
    }
    ids = itertools.count(1)
    core = build_core(msgspec.structs.replace(loaded, instruments=instruments), now, next_id=lambda: f"SX-{next(ids)}")
    (out_dir / "oms").mkdir(parents=True, exist_ok=True)
    (out_dir / "venue").mkdir(parents=True, exist_ok=True)
    acc = cfg.acceptor
    oms = {
        s.name: _Session(
            out_dir / "oms" / f"{s.begin_string}-{acc.comp_id}-{s.comp_id}.messages.current.log",
            s.begin_string,
            acc.comp_id,
            s.comp_id,
        )
        for s in cfg.oms
    }
    venues = {
        v.name: _Session(
            out_dir / "venue" / f"{v.begin_string}-{v.our_comp_id}-{v.comp_id}.messages.current.log",
            v.begin_string,
            v.our_comp_id,
            v.comp_id,
        )
        for v in cfg.venues
    }
    fix42 = {s.name: s.fix_version == "FIX.4.2" for s in cfg.oms} | {
        v.name: v.fix_version == "FIX.4.2" for v in cfg.venues
    }
    logon = [(98, "0"), (108, "30")]
    for name, session in venues.items():
        session.write(now, "out", "A", logon)
        session.write(now, "in", "A", logon)
        core.handle(ev.SessionUp(name, now))
    for session in oms.values():
        session.write(now, "in", "A", logon)
        session.write(now, "out", "A", logon)
    symbols = sorted(s for s, i in instruments.items() if i.reference_price is not None and not i.restricted)
    resting: deque[tuple[str, str, dict[int, str]]] = deque()
    order_ids = itertools.count(1)

    def perform(actions: list[ev.Action], ts: int) -> None:
        for action in actions:
            if isinstance(action, _VENUE_ACTIONS):
                msg_type, body = codec.action_to_message(action, fix42[action.venue], _stamp(ts, 3))
                sent = venues[action.venue].write(ts, "out", msg_type, body)
                venue_answers(action.venue, sent, ts)
            elif isinstance(action, _OMS_ACTIONS):
                msg_type, body = codec.action_to_message(action, fix42[action.session], _stamp(ts, 3))
                oms[action.session].write(ts, "out", msg_type, body)

    def venue_answers(venue: str, sent: dict[int, str], ts: int) -> None:
        """The venue acks (and fills, or leaves working) new orders and confirms cancels."""
        msg_type, cl = sent[35], sent[11]
        if msg_type == "D":
            qty, px = Decimal(sent[38]), sent.get(44) or str(instruments[sent[55]].reference_price)
            oid = f"V{next(order_ids)}"
            base = [(37, oid), (11, cl), (55, sent[55]), (54, sent[54]), (38, sent[38])]
            ack = [*base, (17, f"{oid}-0"), (150, "0"), (39, "0"), (151, sent[38]), (14, "0"), (6, "0")]
            ts = feed(venue, ts, ack)
            if rng.random() < 0.1:
                resting.append((venue, oid, sent))
                return
            feed(
                venue,
                ts,
                [
                    *base,
                    (17, f"{oid}-1"),
                    (150, "F"),
                    (39, "2"),
                    (32, sent[38]),
                    (31, px),
                    (151, "0"),
                    (14, str(qty)),
                    (6, px),
                ],
            )
        elif msg_type == "F":
            feed(
                venue,
                ts,
                [
                    (37, sent.get(37, "NONE")),
                    (11, cl),
                    (41, sent[41]),
                    (55, sent[55]),
                    (54, sent[54]),
                    (38, sent[38]),
                    (17, f"{cl}-X"),
                    (150, "4"),
                    (39, "4"),
                    (151, "0"),
                    (14, "0"),
                    (6, "0"),
                ],
            )

    def feed(venue: str, ts: int, body: list[tuple[int, str]]) -> int:
        ts += rng.randrange(200, 900) * 1000
        if fix42[venue]:
            body = [(20, "0"), *[(t, "2" if t == 150 and v == "F" else v) for t, v in body]]
        fields = venues[venue].write(ts, "in", "8", body)
        event = codec.venue_to_event(fields, venue, ts)
        assert event is not None, "an ExecutionReport is always the core's to handle"
        perform(core.handle(event), ts)
        return ts

    names = sorted(oms)
    for i in range(orders):
        now += rng.randrange(spacing_us // 2, spacing_us * 3 // 2) * 1000
        oms_name = names[i % len(names)]
        inst = instruments[rng.choice(symbols)]
        assert inst.reference_price is not None, "symbols holds priced instruments only"
        lot = int(inst.lot_size)
        qty = lot * rng.randrange(1, 10) * (100 // lot or 1)
        price = inst.reference_price * Decimal(rng.randrange(985, 1016)) / 1000
        roll = rng.random()
        if roll < 0.01:
            qty *= 1000  # breaches max_order_qty
        elif roll < 0.02:
            price *= Decimal("1.3")  # outside the price collar
        body = [
            (11, f"O{i}"),
            (55, inst.symbol if roll > 0.025 else "ZZZZ"),
            (54, rng.choice("12")),
            (38, str(qty)),
            (40, "2"),
            (44, f"{price:.2f}"),
        ]
        fields = oms[oms_name].write(now, "in", "D", body)
        perform(core.handle(codec.oms_to_event(fields, oms_name, now, identifiers)), now)
        if resting and rng.random() < 0.1:
            _, _, sent = resting.popleft()
            session_of, _, cl = sent[11].partition(".")
            now += 1000
            body = [(11, f"{cl}-C"), (41, cl), (55, sent[55]), (54, sent[54]), (38, sent[38])]
            fields = oms[session_of].write(now, "in", "F", body)
            perform(core.handle(codec.oms_to_event(fields, session_of, now, identifiers)), now)
    files = []
    for session in [*oms.values(), *venues.values()]:
        session.file.close()
        files.append(Path(session.file.name))
    return files
