"""What a session sent, read back from quickfix's FileStore files (the native engine writes the same).

Both engines write an outgoing message to the store before it goes on the wire, so the store is
the truth about what was sent: recovery checks the last journaled input's outputs against it
(journal/recovery.py), and ``audit verify`` checks that every stored message has its audit record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...fix.parse import first_value


def stored_messages(store_dir: Path, session_file_prefix: str) -> Iterator[str]:
    """Messages of one session's FileStore (``<prefix>.header`` indexes ``<prefix>.body``), in the order stored."""
    header, body = store_dir / f"{session_file_prefix}.header", store_dir / f"{session_file_prefix}.body"
    if not header.exists() or not body.exists():
        return
    data = body.read_bytes()
    # A number stored twice (written, then the process killed before the next number was saved, and
    # the number used again): the later message is the one the store holds, as quickfix reads it.
    where: dict[int, tuple[int, int]] = {}
    for entry in header.read_text().split():
        try:
            seq, offset, size = (int(x) for x in entry.split(","))
        except ValueError:
            continue
        where.pop(seq, None)
        where[seq] = (offset, size)
    for offset, size in where.values():
        yield data[offset : offset + size].decode("latin-1")


def store_prefix(begin_string: str, sender: str, target: str) -> str:
    """The file name prefix quickfix's FileStore uses for a session."""
    return f"{begin_string}-{sender}-{target}"


def next_sender(store_dir: Path, session_file_prefix: str) -> int | None:
    """The next outgoing sequence number the store has saved (``<prefix>.seqnums``), None if unknown."""
    try:
        text = (store_dir / f"{session_file_prefix}.seqnums").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return None
    sender, sep, _ = text.partition(":")
    return int(sender) if sep and sender.strip().isdigit() else None


def sent_messages(store_dir: Path, session_file_prefix: str) -> Iterator[str]:
    """The stored messages the session really counted as sent: a message is written to the store,
    then the next sequence number is saved; killed in between, the message never went out and its
    number is used again by the next one (it is not sent, whatever the store's body holds)."""
    limit = next_sender(store_dir, session_file_prefix)
    for raw in stored_messages(store_dir, session_file_prefix):
        if limit is None:
            yield raw
            continue
        seq = first_value(raw, 34)
        if seq.isdigit() and int(seq) < limit:
            yield raw
