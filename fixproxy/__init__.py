"""fixproxy: an inline FIX pre-trade risk proxy."""

__version__ = "0.1.0"
