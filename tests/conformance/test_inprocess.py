"""The conformance table (cases.fixscript) in process, against the native engine with no socket.

The same cases as test_conformance.py, on fake transports (inprocess.py): each case on a fresh
proxy, in milliseconds. Every case runs here too: a step the in-process runner cannot take
(an admin request other than the kill switch) fails, so the runner grows with the table.
"""

from __future__ import annotations

import pytest

from fixproxy.config import LoadedConfig

from .fixscript import FIXT_OMS
from .inprocess import load_config, run_case
from .test_conformance import CASES


@pytest.fixture(autouse=True)
def _on_engine() -> str:
    """The in-process stack is the native engine's: these tests run once, not once per engine."""
    return "native"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedConfig:
    return load_config(tmp_path_factory.mktemp("inprocess"), extra=FIXT_OMS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_in_process(loaded: LoadedConfig, case) -> None:
    """Send the case's bytes to the in-process native engine; it answers as the table says."""
    run_case(loaded, case, CASES.index(case))  # a step it cannot run (Unsupported) fails the case
