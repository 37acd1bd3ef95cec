import itertools

import pytest

from .harness import Stack

_ids = itertools.count(1)


@pytest.fixture
def cl_ord_id(request):
    """A ClOrdID unique within the test run."""
    return f"T{next(_ids)}-{request.node.name[:20]}".replace("[", "-").replace("]", "")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One proxy, venue simulator (MSFT orders rest, NVDA partially fills, XOM is rejected) and both OMS sessions."""
    s = Stack(tmp_path_factory.mktemp("stack"), behaviours={"MSFT": "ack", "NVDA": "partial", "XOM": "reject"})
    try:
        s.connect("oms1")
        s.connect("oms2")
        yield s
    finally:
        s.close()


@pytest.fixture
def fresh_stack(tmp_path):
    """A stack of its own for tests that stop parts of it or need exact sequence numbers."""
    made: list[Stack] = []

    def make(**kw) -> Stack:
        made.append(Stack(tmp_path / f"s{len(made)}", **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()
