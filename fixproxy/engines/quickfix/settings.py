"""quickfix SessionSettings built from the typed config (the TOML stays the one source of truth)."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import quickfix as fix

from ...config import ConfigError
from ...fix.versions import FIXT


@cache
def dictionary_dir() -> Path:
    """Where the installed quickfix package keeps its FIX data dictionaries."""
    dist = importlib.metadata.distribution("quickfix")
    for f in dist.files or ():
        if str(f).endswith("FIX44.xml"):
            return Path(str(dist.locate_file(f))).resolve().parent
    raise ConfigError("the installed quickfix package ships no FIX44.xml data dictionary")


def dictionary(begin_string: str) -> Path:
    return dictionary_dir() / (begin_string.replace(".", "") + ".xml")


def session_block(fix_version: str, sender: str, target: str, **extra: object) -> dict[str, object]:
    """A [SESSION] block; ``fix_version`` as configured ("FIX.5.0SP2": a FIXT.1.1 session whose
    application messages are FIX 5.0SP2, DefaultApplVerID 1137=9 on its Logon)."""
    if fix_version == "FIX.5.0SP2":
        return {
            "BeginString": FIXT,
            "SenderCompID": sender,
            "TargetCompID": target,
            "DefaultApplVerID": fix_version,
            "TransportDataDictionary": dictionary(FIXT),
            "AppDataDictionary": dictionary(fix_version),
            **extra,
        }
    return {
        "BeginString": fix_version,
        "SenderCompID": sender,
        "TargetCompID": target,
        "DataDictionary": dictionary(fix_version),
        **extra,
    }


def write_settings(path: Path, defaults: dict[str, object], sessions: list[dict[str, object]]) -> fix.SessionSettings:
    """Write a quickfix settings file (kept beside the stores, for people to read) and load it."""
    lines = ["[DEFAULT]"] + [f"{k}={v}" for k, v in defaults.items()]
    for block in sessions:
        lines += ["", "[SESSION]"] + [f"{k}={v}" for k, v in block.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return fix.SessionSettings(str(path))


def log_out(session_ids: Iterable[fix.SessionID], reason: str, timeout_s: float = 3.0) -> None:
    """Send Logout on every logged-on session and wait (bounded) until each has logged out."""
    sessions = [fix.Session.lookupSession(sid) for sid in session_ids]
    for session in sessions:
        if session is not None and session.isLoggedOn():
            session.logout(reason)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(s is not None and s.isLoggedOn() for s in sessions):
        time.sleep(0.05)


def common_defaults(state_dir: Path, role: str) -> dict[str, object]:
    return {
        "StartTime": "00:00:00",
        "EndTime": "00:00:00",
        "UseDataDictionary": "Y",
        "ValidateUserDefinedFields": "N",
        "AllowUnknownMsgFields": "Y",
        "FileStorePath": state_dir / "store" / role,
        "FileLogPath": state_dir / "log" / role,
        "ResetOnLogon": "N",
        "ResetOnDisconnect": "N",
        "PersistMessages": "Y",
        "SocketNodelay": "Y",
    }
