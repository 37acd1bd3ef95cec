"""Check an audit store's hash chain and name the first record where it breaks."""

from __future__ import annotations

import msgspec
import sqlite_utils

from .records import GENESIS, digest
from .store import iter_records


class ChainBreak(msgspec.Struct, frozen=True):
    """Where the chain first breaks: the record's seq, what happened to it, and a sentence."""

    seq: int
    problem: str  # "altered", "deleted" or "inserted"
    detail: str


class Verdict(msgspec.Struct, frozen=True):
    """The outcome: how many records chain correctly, the last good one, and the break if any."""

    records: int
    head_seq: int
    head_hash: str
    broken: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def sentence(self) -> str:
        if self.broken is None:
            return (
                f"audit chain intact: {self.records} records, head #{self.head_seq} {self.head_hash}"
                if self.records
                else "audit chain intact: the store is empty"
            )
        b = self.broken
        return f"audit chain BROKEN at record {b.seq} ({b.problem}): {b.detail}"


def verify(db: sqlite_utils.Database) -> Verdict:
    """Walk every record in seq order, recomputing each hash and its link to the one before.

    - altered: a record's columns no longer give its stored hash;
    - deleted: seq numbers jump (the missing ones are named);
    - inserted: a record whose own hash is right but that does not chain to its predecessor
      (a row added in between, or the predecessor rewritten together with its hash).
    Removing the newest records leaves a shorter, valid chain: compare the head hash printed
    here with one noted earlier (the end-of-day report prints it) to see that.
    """
    count, prev_seq, prev_hash = 0, 0, GENESIS
    for record, stored in iter_records(db):
        count += 1
        if type(record.seq) is not int or record.seq <= prev_seq:
            return Verdict(
                count - 1,
                prev_seq,
                prev_hash,
                ChainBreak(prev_seq + 1, "altered", f"seq {record.seq!r} where {prev_seq + 1} was expected"),
            )
        if record.seq != prev_seq + 1:
            missing = (
                f"record {prev_seq + 1} is"
                if record.seq == prev_seq + 2
                else f"records {prev_seq + 1} to {record.seq - 1} are"
            )
            return Verdict(
                count - 1,
                prev_seq,
                prev_hash,
                ChainBreak(
                    prev_seq + 1, "deleted", f"{missing} missing (the chain jumps from {prev_seq} to {record.seq})"
                ),
            )
        if digest(record) != stored:
            return Verdict(
                count - 1,
                prev_seq,
                prev_hash,
                ChainBreak(record.seq, "altered", "its content no longer matches its hash"),
            )
        if record.prev_hash != prev_hash:
            return Verdict(
                count - 1,
                prev_seq,
                prev_hash,
                ChainBreak(
                    record.seq,
                    "inserted",
                    f"it does not chain to record {prev_seq} "
                    f"(inserted, or record {prev_seq} was rewritten with a new hash)",
                ),
            )
        prev_seq, prev_hash = record.seq, stored
    return Verdict(count, prev_seq, prev_hash)
