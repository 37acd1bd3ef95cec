"""Username (553) / Password (554) checks of the sessions' Logons, from the config, for either engine."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from ..config import Config, DropCopySession, OmsSession, RiskDeskSection

#: ``check(username, password)``: True when the Logon may proceed.
LogonCheck = Callable[[str, str], bool]


def logon_check(logon: OmsSession | RiskDeskSection | DropCopySession) -> LogonCheck | None:
    """Username/Password check for a session's Logon (constant time), or None when none is configured."""
    if not logon.username:
        return None
    password = logon.password or os.environ.get(logon.password_env, "")  # load() checked it is set
    user, secret = logon.username.encode(), password.encode()

    def check(username: str, given: str) -> bool:
        ok_user = hmac.compare_digest(username.encode(), user)
        ok_password = hmac.compare_digest(given.encode(), secret)
        return ok_user and ok_password

    return check


def logon_checks(cfg: Config) -> dict[str, LogonCheck]:
    """The check of each OMS, risk-desk and drop-copy session that has one, by session name."""
    checks = [(s.name, logon_check(s)) for s in cfg.oms] + [(cfg.risk_desk.name, logon_check(cfg.risk_desk))]
    checks += [(d.name, logon_check(d)) for d in cfg.drop_copy]
    return {name: check for name, check in checks if check is not None}
