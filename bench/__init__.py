"""fixproxy's benchmark: ``python -m bench <command>`` from the repository (see bench/README.md)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

#: The checkout: child processes run from here, so they import its fixproxy and bench.
REPO = Path(__file__).resolve().parents[1]

# The shipped config's risk-desk session reads its password from this variable (as `make run` fills
# it); benchmark proxies take one made for the run. Nothing logs on to the desk session here.
os.environ.setdefault("FIXPROXY_DESK_PASSWORD", secrets.token_urlsafe(18))
