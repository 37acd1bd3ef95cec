import itertools

import pytest

from . import harness
from .harness import Stack
from .rawfix import RawFix

_ids = itertools.count(1)


def pytest_generate_tests(metafunc):
    """Every integration test runs on each FIX engine (one module's stack per engine)."""
    if "engine" in metafunc.fixturenames:
        quickfix_only = metafunc.definition.get_closest_marker("quickfix_only") is not None
        engines = [e for e in harness.ENGINES if e == "quickfix" or not quickfix_only]
        metafunc.parametrize("engine", engines, scope="module", indirect=True)


@pytest.fixture(scope="module")
def engine(request):
    """The proxy's FIX engine for this module's stacks ("quickfix" or "native")."""
    harness.current_engine["name"] = request.param
    yield request.param
    harness.current_engine["name"] = harness.ENGINES[0]  # stacks made outside these modules get the default


@pytest.fixture(autouse=True)
def _on_engine(engine):
    return engine


@pytest.fixture
def cl_ord_id(request):
    """A ClOrdID unique within the test run."""
    return f"T{next(_ids)}-{request.node.name[:20]}".replace("[", "-").replace("]", "")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine):
    """One proxy, venue simulator (MSFT orders rest, NVDA partially fills, XOM is rejected) and both OMS sessions."""
    s = Stack(tmp_path_factory.mktemp("stack"), behaviours={"MSFT": "ack", "NVDA": "partial", "XOM": "reject"})
    try:
        s.connect("oms1")
        s.connect("oms2")
        yield s
    finally:
        s.close()


@pytest.fixture
def client(stack):
    """A raw FIX client (rawfix.py) logged on as OMS1 to the module's stack."""
    c = RawFix(stack.acceptor_port, "OMS1")
    c.logon()
    yield c
    c.close()


@pytest.fixture
def fresh_stack(tmp_path, engine):
    """A stack of its own for tests that stop parts of it or need exact sequence numbers."""
    made: list[Stack] = []

    def make(**kw) -> Stack:
        made.append(Stack(tmp_path / f"s{len(made)}", **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()
