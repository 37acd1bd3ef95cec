"""Audit trail: an append-only, hash-chained SQLite store of every message, decision, notice and admin action.

- ``follower``: the store as a follower of the journal (the proxy runs ``AuditFollowerProcess``),
  with keyed checkpoints;
- ``store.AuditWriter``: a writer thread fed directly (the store's format without a journal: tests, tools);
- ``verify.verify``: checks the chain and names the first altered, inserted or deleted record;
  ``crosscheck``: the store against the journal, the FIX session stores, the checkpoints, a noted head;
- ``query``: ``fixproxy audit show``; ``report``: ``fixproxy report``.
"""

from .records import GENESIS, Record, digest
from .store import AuditError, AuditWriter, open_for_reading
from .verify import Verdict, verify

__all__ = ["GENESIS", "AuditError", "AuditWriter", "Record", "Verdict", "digest", "open_for_reading", "verify"]
