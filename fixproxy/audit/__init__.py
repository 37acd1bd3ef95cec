"""Audit trail: an append-only, hash-chained SQLite store of every message, decision, notice and admin action.

- ``store.AuditWriter``: the single writer thread the proxy feeds (enqueue only on the order path);
- ``verify.verify``: checks the chain and names the first altered, inserted or deleted record;
- ``query``: ``fixproxy audit show``; ``report``: ``fixproxy report``.
"""

from .records import GENESIS, Record, digest
from .store import AuditError, AuditWriter, open_for_reading
from .verify import Verdict, verify

__all__ = ["GENESIS", "AuditError", "AuditWriter", "Record", "Verdict", "digest", "open_for_reading", "verify"]
