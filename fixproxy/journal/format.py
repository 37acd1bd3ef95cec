"""The journal's record format: framing, kinds and payload encodings. No I/O.

A segment file starts with ``MAGIC`` and holds records back to back::

    <u32 payload length> <u32 crc32 of kind + payload> <1 byte kind> <payload>

Zeros follow the last record (the file is allocated ahead of the writer); a reader stops at a
zero length or at a record whose checksum does not match (a record torn by a power loss, or one
the writer was copying in when it was killed: the proxy acts on a record only after it is whole).

Kinds (spec/journal.md describes each):
- ``S`` a segment's start: the process that wrote it, its id prefix, the snapshot it began from;
- ``I`` an application message received (session, receive time, raw FIX) - before the core sees it;
- ``E`` any other input of the core (admin commands, sessions up and down, send failures, the
  recording state), a tagged ``core.events`` value - before the core sees it;
- ``O`` an application message sent (session, time, raw FIX as it went on the wire);
- ``A`` what the core decided that is not a message (decisions, notices, alerts, admin results).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgspec

from ..core import events as ev

MAGIC = b"FXJRNL01"
HEADER = struct.Struct("<IIc")

START, INBOUND, EVENT, OUTBOUND, ACTION = b"S", b"I", b"E", b"O", b"A"
KINDS = {START: "start", INBOUND: "in", EVENT: "event", OUTBOUND: "out", ACTION: "action"}


class Start(msgspec.Struct, frozen=True):
    """The first record of a segment."""

    segment: int
    start_ns: int  # the writing process's start: its ExecID prefix comes from it (assemble.exec_id_generator)
    pid: int
    note: str = ""


_encoder = msgspec.msgpack.Encoder(decimal_format="string")
encode = _encoder.encode
_tagged = msgspec.msgpack.Decoder(ev.Event | ev.Action)
_event = msgspec.msgpack.Decoder(ev.Event)
_message = msgspec.msgpack.Decoder(tuple[str, int, str])
_start = msgspec.msgpack.Decoder(Start)


def frame(kind: bytes, payload: bytes) -> bytes:
    """One record, ready to append."""
    return HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(kind)), kind) + payload


def message_payload(session: str, now_ns: int, raw: str) -> bytes:
    return encode((session, now_ns, raw))


def decode_start(payload: bytes) -> Start:
    """The value of an S record."""
    return _start.decode(payload)


def decode_message(payload: bytes) -> tuple[str, int, str]:
    """The value of an I or O record: (session, now_ns, raw FIX)."""
    return _message.decode(payload)


def decode_event(payload: bytes) -> ev.Event:
    """The value of an E record: an input of the core."""
    return _event.decode(payload)


def decode(kind: bytes, payload: bytes) -> Any:
    """A record's value: ``Start``, ``(session, now_ns, raw)`` for I and O, a tagged struct for E and A
    (typed as Any: a reader that knows the kind calls ``decode_start``, ``decode_message`` or ``decode_event``)."""
    if kind in (INBOUND, OUTBOUND):
        return _message.decode(payload)
    if kind in (EVENT, ACTION):
        return _tagged.decode(payload)
    if kind == START:
        return _start.decode(payload)
    raise ValueError(f"unknown journal record kind {kind!r}")


def unframe(buf: bytes, offset: int) -> tuple[bytes, bytes, int] | None:
    """(kind, payload, next offset) of the record at ``offset``, or None at the end of what is whole."""
    end_header = offset + HEADER.size
    if end_header > len(buf):
        return None
    length, crc, kind = HEADER.unpack_from(buf, offset)
    if length == 0 and crc == 0:
        return None
    end = end_header + length
    if end > len(buf):
        return None
    payload = bytes(buf[end_header:end])
    if zlib.crc32(payload, zlib.crc32(kind)) != crc or kind not in KINDS:
        return None
    return kind, payload, end
