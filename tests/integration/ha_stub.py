"""A stand-in HA node for a proxy running as a child process, to test the surfaces (/healthz, GET
/api/v1/ha, /metrics, ``fixproxy status``, the dashboard) before and apart from the real pair: a
``sitecustomize`` put on the proxy's PYTHONPATH attaches, to every Proxy it builds, a node whose
``view()`` and ``health()`` are what a JSON file says at that moment (``Proxy.ha`` set after
construction, as the real node is). The test rewrites the file to move the node's state."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SITECUSTOMIZE = '''
import json, os

_path = os.environ.get("FIXPROXY_TEST_HA_FILE")
if _path:
    import fixproxy.app as _app

    class _FileNode:
        """view() and health() as the test last wrote them."""

        def _read(self):
            with open(_path) as f:
                return json.load(f)

        def view(self):
            return self._read()["view"]

        def health(self):
            return self._read()["health"]

    _init = _app.Proxy.__init__

    def _with_node(self, loaded):
        _init(self, loaded)
        self.ha = _FileNode()

    _app.Proxy.__init__ = _with_node
'''

VIEW: dict[str, Any] = {
    "pair": "gw",
    "instance": "a",
    "role": "active",
    "token": 7,
    "copy": "sync",
    "database": "ok",
    "lease_left_ms": 812,
    "copy_state": "sync",
    "partner": {"instance": "b", "connected": True, "lag_bytes": 0, "lag_ms": 0.4, "position": [1, 100]},
}


def write(path: Path, view: dict[str, Any], state: str = "ok", reason: str = "") -> None:
    """Replace the file at once (the proxy may read it at any moment)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"view": view, "health": {"state": state, "reason": reason}}))
    os.replace(tmp, path)


def proxy_env(root: Path, view: dict[str, Any] = VIEW) -> tuple[dict[str, str], Path]:
    """(the proxy's extra environment, the state file) for a stand-in node starting at ``view``."""
    hook = root / "ha-hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    state = root / "ha.json"
    write(state, view)
    return {"PYTHONPATH": str(hook), "FIXPROXY_TEST_HA_FILE": str(state)}, state
