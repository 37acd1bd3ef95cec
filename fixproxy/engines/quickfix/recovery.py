"""What the proxy sent to venues, read back from quickfix's own FileStore.

quickfix writes every outgoing message to the store before it goes on the wire, so the store
knows about an order even when the proxy was killed before its state store saved it. On
start-up the proxy reads today's NewOrderSingles, replaces and cancels from there: each
ClOrdID counts as used (a resent possible duplicate is not forwarded again) and an order the
state lost is rebuilt as pending, its venue reports then bring it up to date.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ... import codec
from ...timefmt import fix_time_ns

_DAY_NS = 86_400 * 1_000_000_000


def stored_messages(store_dir: Path, session_file_prefix: str) -> Iterator[str]:
    """Messages of one session's FileStore (``<prefix>.header`` indexes ``<prefix>.body``), oldest first."""
    header, body = store_dir / f"{session_file_prefix}.header", store_dir / f"{session_file_prefix}.body"
    if not header.exists() or not body.exists():
        return
    data = body.read_bytes()
    for entry in header.read_text().split():
        try:
            _, offset, size = (int(x) for x in entry.split(","))
        except ValueError:
            continue
        yield data[offset: offset + size].decode("latin-1")


def sent_today(store_dir: Path, session_file_prefix: str, now_ns: int) -> Iterator[dict[int, str]]:
    """Today's (UTC) D, G and F messages the proxy sent on one venue session, as tag -> value."""
    today = now_ns // _DAY_NS
    for raw in stored_messages(store_dir, session_file_prefix):
        fields = codec.parse(raw)
        if fields.get(35) not in ("D", "G", "F"):
            continue
        try:
            if fix_time_ns(fields.get(52, "")) // _DAY_NS != today:
                continue
        except ValueError:
            continue
        yield fields


def store_prefix(begin_string: str, sender: str, target: str) -> str:
    """The file name prefix quickfix's FileStore uses for a session."""
    return f"{begin_string}-{sender}-{target}"


def recover(core, store_dir: Path, venues, now_ns: int) -> int:
    """Feed ``core.recover_sent`` with today's orders from every venue session's store; returns how
    many were unknown to the state store (orders sent just before a crash)."""
    unknown = 0
    for v in venues:
        for fields in sent_today(store_dir, store_prefix(v.fix_version, v.our_comp_id, v.comp_id), now_ns):
            try:
                request = codec.decode_order(fields) if fields[35] == "D" else None
            except codec.Invalid:
                request = None
            unknown += core.recover_sent(v.name, fields[35], fields.get(11, ""), request, now_ns)
    return unknown
