"""Golden FIX scripts (``tests/golden/*.fixscript``): the exact messages of each flow, on each engine.

Each script runs on a proxy stack of its own, so sequence numbers and the venue simulator's ids
(OrderID V1, ExecID E2...) are the same on every run; its cases run in order on that stack. The
format is the conformance table's (docs/conformance.md); an ``E`` or ``V`` line starting ``8=`` is
exact. A failure prints the line as received, masked, ready to paste after a deliberate change.
The scripts also run in process against the native engine: test_golden_in_process.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ..conformance.fixscript import Case, Runner, load
from ..integration.harness import TOKENS, Stack

HERE = Path(__file__).parent
SCRIPTS = sorted(HERE.glob("*.fixscript"))
#: The golden stack's sessions beyond the harness's OMS1 (FIX.4.4, refusals as BusinessMessageReject)
#: and OMS2 (FIX.4.2, refusals as ExecutionReport): the other two combinations.
MORE_SESSIONS = """
[[oms]]
name = "oms3"
comp_id = "OMS3"
fix_version = "FIX.4.4"
default_venue = "sim"
reject_with = "execution_report"

[[oms]]
name = "oms4"
comp_id = "OMS4"
fix_version = "FIX.4.2"
default_venue = "sim"
"""


def golden_stack(root: Path) -> Stack:
    """A proxy whose venue simulator fills by default, rests MSFT orders (ack only) and rejects XOM."""
    return Stack(root, behaviours={"MSFT": "ack", "XOM": "reject"}, extra=MORE_SESSIONS)


def run_script(cases: list[Case], stack: Stack, engine: str) -> None:
    """Every case of one script, in order, on ``stack``."""
    for index, case in enumerate(cases):
        runner = Runner(
            stack.acceptor_port,
            stack.venue,
            index,
            engine,
            venue_log=stack.root / "var" / "log" / "venue",
            api=(stack.api_url, TOKENS["risk"]),
        )
        try:
            runner.run(case)
        except AssertionError as exc:
            raise AssertionError(f"{case.name}: {exc}") from None
        assert stack.proxy.popen.poll() is None, f"{case.name}: the proxy stopped"


def test_every_flow_has_a_script() -> None:
    """At least one script per flow the golden suite promises, each case saying what it shows."""
    names = {p.stem for p in SCRIPTS}
    assert len(names) >= 10, names
    for path in SCRIPTS:
        cases = load(path)
        assert cases and all(c.comment for c in cases), path.name


def test_engine_lines_differ_only_in_field_order() -> None:
    """Where a script gives each engine its own exact line, the two carry the same fields and values."""
    for path in SCRIPTS:
        for case in load(path):
            steps = case.steps
            for i, step in enumerate(steps):
                if step.engine != "quickfix" or not step.text.startswith("8="):
                    continue
                twin = steps[i + 1] if i + 1 < len(steps) else None
                assert twin is not None and twin.engine == "native" and twin.kind == step.kind, (
                    f"{path.name}:{step.line}: a [quickfix] exact line without its [native] twin after it"
                )
                assert Counter(step.text.split("|")) == Counter(twin.text.split("|")), (
                    f"{path.name}:{step.line}: the engines' lines differ in more than field order"
                )
            natives = [s for s in steps if s.engine == "native" and s.text.startswith("8=")]
            quickfixes = [s for s in steps if s.engine == "quickfix" and s.text.startswith("8=")]
            assert len(natives) == len(quickfixes), f"{path.name}: {case.name}: unpaired [native] exact lines"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script(script: Path, engine: str, tmp_path: Path) -> None:
    """The script's messages come out exactly as written, on this engine."""
    stack = golden_stack(tmp_path)
    try:
        run_script(load(script), stack, engine)
    finally:
        stack.close()
