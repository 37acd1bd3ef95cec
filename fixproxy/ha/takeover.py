"""What a standby does to its copy before it starts as the active, and what a superseded active
does to its own folder before it becomes a standby.

The copy's journal is always at least as new as its stores (copy.py), and in sync copy it holds
every message that went on a socket. Before the normal recovery runs, each session store gets the
outbound messages the journal has and the store copy lacks, and its next outgoing number moves past
them and past the numbers the active reported sending (admin messages included), so the venue and
the OMSs see the sequence go on where the active left it, and a resend request is answered from
the store as the active would have answered it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import structlog

from ..config import Config
from ..engines.native.store import FileStore
from ..engines.quickfix.recovery import store_prefix
from ..fix.parse import first_value
from ..journal import format as fmt
from ..journal.reader import read_segment, segments

_DAY_NS = 86_400 * 1_000_000_000
#: Segments scanned for outbound records (the store copy lags by milliseconds, never a whole run).
SCAN_SEGMENTS = 2


def session_stores(config: Config) -> dict[str, tuple[str, str]]:
    """Session name -> (store side folder, file prefix), as both engines name their stores."""
    acc = config.acceptor.comp_id
    out = {s.name: ("oms", store_prefix(s.begin_string, acc, s.comp_id)) for s in config.oms}
    out.update({d.name: ("oms", store_prefix(d.begin_string, acc, d.comp_id)) for d in config.drop_copy})
    if config.risk_desk.comp_id:
        out[config.risk_desk.name] = ("oms", store_prefix("FIX.4.4", acc, config.risk_desk.comp_id))
    out.update({v.name: ("venue", store_prefix(v.begin_string, v.our_comp_id, v.comp_id)) for v in config.venues})
    return out


def repair_stores(state_dir: Path, config: Config, seqs: dict[str, int], now_ns: int) -> dict[str, dict[str, int]]:
    """Bring each session store of the copy up to the journal's outbound records and ``seqs``.
    Returns, per session, what was added (``messages``) and the next outgoing number (``next``)."""
    state_dir = Path(state_dir)
    journal_dir = state_dir / "journal"
    stores = session_stores(config)
    outbound: dict[str, dict[int, tuple[int, str]]] = {}
    for seg in segments(journal_dir)[-SCAN_SEGMENTS:]:
        for _, kind, payload in read_segment(journal_dir / f"{seg:08d}.journal"):
            if kind != fmt.OUTBOUND:
                continue
            session, sent_ns, raw = fmt.decode_message(payload)
            if session not in stores or first_value(raw, 43) == "Y":
                continue  # a resend reuses its number
            number = first_value(raw, 34)
            if number.isdigit():
                outbound.setdefault(session, {})[int(number)] = (sent_ns, raw)
    # A message log copied while a line was being written ends in half a line: cut it back to the
    # last whole line, so the new active's lines start on their own.
    for log in (state_dir / "log").rglob("*.log") if (state_dir / "log").is_dir() else ():
        data = log.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(log, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    report: dict[str, dict[str, int]] = {}
    for name, (side, prefix) in stores.items():
        store = FileStore(state_dir / "store" / side, prefix, now_ns)
        try:
            day_start = store.created_day * _DAY_NS
            added = 0
            for seq, (sent_ns, raw) in sorted(outbound.get(name, {}).items()):
                if seq >= store.next_sender and sent_ns >= day_start:
                    store.sent(seq, raw.encode("latin-1"))
                    added += 1
            if seqs.get(name, 0) > store.next_sender:
                store.next_sender = seqs[name]
            if seqs.get(name + "/in", 0) > store.next_target:
                store.next_target = seqs[name + "/in"]
            store.save_seqnums()
            report[name] = {"messages": added, "next": store.next_sender, "next_in": store.next_target}
        finally:
            store.close()
    return report


# ------------------------------------------------------------ this instance's place in the pair


def ha_file(state_dir: Path) -> Path:
    return Path(state_dir) / "ha.json"


def read_lineage(state_dir: Path) -> dict[str, Any]:
    """{"token": the token this folder's state is of (None: none yet), "writer": whether this instance
    wrote it as the active, "history": the tokens of its line}."""
    try:
        data = json.loads(ha_file(state_dir).read_text())
        return {
            "token": data.get("token"),
            "writer": bool(data.get("writer")),
            "history": list(data.get("history", [])),
        }
    except (OSError, ValueError):
        return {"token": None, "writer": False, "history": []}


def write_lineage(state_dir: Path, token: int | None, writer: bool, history: list[int]) -> None:
    path = ha_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump({"token": token, "writer": writer, "history": history}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def set_aside(state_dir: Path, why: str) -> Path | None:
    """Move the journal, stores, logs and audit store of a superseded or diverged state aside
    (``<state_dir>/superseded/<UTC time>/``), for inspection: the copy starts afresh."""
    state_dir = Path(state_dir)
    moved = [p for p in (state_dir / n for n in ("journal", "store", "log", "ha.json", "ha-seqs.json")) if p.exists()]
    moved += list(state_dir.glob("audit.sqlite*"))
    if not moved:
        return None
    target = state_dir / "superseded" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    n = 0
    while target.exists():
        n += 1
        target = target.with_name(target.name.split(".")[0] + f".{n}")
    target.mkdir(parents=True)
    for p in moved:
        shutil.move(str(p), str(target / p.name))
    (target / "WHY").write_text(why + "\n")
    structlog.get_logger("fixproxy.ha").warning("ha_state_set_aside", path=str(target), reason=why)
    return target
