"""Venue, OMS and risk-desk simulators (quickfix sessions), and the child-process wrapper tests and tools share."""

#: What the venue simulator does with an order. Here, not in venue.py, so the CLI reads it without loading quickfix.
BEHAVIOURS = ("fill", "partial", "ack", "reject")
