"""One way to open a PostgreSQL connection for the proxy's own threads ([cluster], [ha])."""

from __future__ import annotations

import math
from typing import Any


def connect(url: str, password: str, timeout_ms: int, application_name: str) -> Any:
    """A psycopg connection in autocommit mode whose connection and statements time out after
    ``timeout_ms`` (its locks too): a database that does not answer counts as lost, not as slow."""
    import psycopg

    kwargs: dict[str, Any] = {"password": password} if password else {}
    return psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=max(1, math.ceil(timeout_ms / 1000)),
        options=f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
        application_name=application_name,
        **kwargs,
    )
