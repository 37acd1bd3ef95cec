"""The conformance table runs on each FIX engine, like the integration tests (one stack per engine)."""

from ..integration.conftest import _on_engine, engine, pytest_generate_tests  # noqa: F401 - the engine fixtures, shared
