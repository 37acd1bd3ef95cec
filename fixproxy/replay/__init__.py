"""Compliance replay: re-run a day's logs through the risk engine and compare the decisions.

- ``readers``: quickfix FileLog message logs, raw FIX files (SOH or ``|``), the audit store;
- ``replayer``: feeds them to a core built like the proxy's, clocked by the log's timestamps;
- ``report``: terminal summary, CSV, JSON and a self-contained HTML page;
- ``synth``: a generated day of logs (tests and the replay speed measurement).
"""

from .readers import ReplayError, open_sources
from .replayer import Result, Row, replay

__all__ = ["ReplayError", "Result", "Row", "open_sources", "replay"]
