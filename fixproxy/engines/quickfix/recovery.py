"""What a session sent, read back from quickfix's FileStore files (the native engine writes the same).

Both engines write an outgoing message to the store before it goes on the wire, so the store is
the truth about what was sent: recovery checks the last journaled input's outputs against it
(journal/recovery.py), and ``audit verify`` checks that every stored message has its audit record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


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


def store_prefix(begin_string: str, sender: str, target: str) -> str:
    """The file name prefix quickfix's FileStore uses for a session."""
    return f"{begin_string}-{sender}-{target}"
