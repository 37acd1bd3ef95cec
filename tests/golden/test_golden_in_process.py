"""The golden scripts in process: the native engine's sans-IO sessions, the real core and journal,
fake transports (tests/conformance/inprocess.py); one in-process proxy per script, its cases in
order. Run once, not once per engine: in process means the native engine."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from ..conformance.fixscript import load
from ..conformance.inprocess import InProcessRunner, InProcessStack, load_config
from .test_golden import MORE_SESSIONS, SCRIPTS


@pytest.fixture(autouse=True)
def _on_engine() -> str:
    """The in-process stack is the native engine's."""
    return "native"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script_in_process(script: Path, tmp_path: Path) -> None:
    """The script's messages come out exactly as written from the in-process native engine."""
    cases = load(script)
    loaded = load_config(tmp_path / "config", extra=MORE_SESSIONS)

    async def run() -> None:  # connections need a running loop, never a socket
        with tempfile.TemporaryDirectory(prefix="golden-") as folder:
            stack = InProcessStack(loaded, Path(folder))
            try:
                for index, case in enumerate(cases):
                    try:
                        InProcessRunner(stack, index).run(case)
                    except AssertionError as exc:
                        raise AssertionError(f"{case.name}: {exc}") from None
            finally:
                stack.close()

    asyncio.run(run())
