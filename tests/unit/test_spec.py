"""spec/reject-codes.md stays true to the code."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_spec_lists_every_reject_code_the_proxy_emits():
    """Every Reject("<CODE>", ...) in the source has a row in spec/reject-codes.md, and no row is stale."""
    emitted = set()
    for path in (ROOT / "fixproxy").rglob("*.py"):
        emitted |= set(re.findall(r'Reject\(\s*"([A-Z_]+)"', path.read_text()))
    listed = set(re.findall(r"^\| `([A-Z_]+)` \|", (ROOT / "spec" / "reject-codes.md").read_text(), re.M))
    assert emitted, "no reject codes found in the source"
    assert emitted - listed == set(), "codes missing from spec/reject-codes.md"
    assert listed - emitted == set(), "codes listed in the spec that the proxy never emits"
