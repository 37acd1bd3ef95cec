"""Real processes on loopback: the proxy, the venue simulator and OMS simulators.

Every process is started in its own session and stopped by its own process id when the
test ends. quickfix engines never run inside the test runner (a crash there would take
the runner down).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from fixproxy.sim.process import Proc, fixproxy_command, free_port

REPO = Path(__file__).resolve().parents[2]


def messages(proc: Proc, direction: str = "in") -> Callable[..., Callable[[dict], bool]]:
    """Predicate builder: ``match(**{"35": "8", "11": "A1"})`` on a simulator's message lines."""

    def match(**tags: str) -> Callable[[dict], bool]:
        def pred(rec: dict) -> bool:
            f = rec.get("fields")
            return rec.get("dir") == direction and f is not None and all(f.get(k) == v for k, v in tags.items())

        return pred

    return match


#: The proxy's FIX engines, the default first; every integration test module runs on each
#: (conftest.py), unless FIXPROXY_TEST_ENGINE names one. Stacks made outside those modules get
#: the first.
ENGINES = (
    tuple(os.environ["FIXPROXY_TEST_ENGINE"].split(","))
    if os.environ.get("FIXPROXY_TEST_ENGINE")
    else ("native", "quickfix")
)
#: The engine of the configs generated now (set per module by conftest.py's ``engine`` fixture).
current_engine = {"name": ENGINES[0]}

#: Admin API tokens of every generated config, by role (the token's name is "desk-<role>").
TOKENS = {role: f"{role}-token-for-tests-0123456789" for role in ("viewer", "risk", "admin")}


def config_text(
    acceptor_port: int,
    venue_port: int,
    *,
    rules: list[str] | None = None,
    extra: str = "",
    oms2_reject_with: str = "execution_report",
    venue_version: str = "FIX.4.4",
    oms1_version: str = "FIX.4.4",
    http_port: int = 0,
    cancel_on_disconnect: tuple[str, ...] = (),
    oms1_extra: str = "",
    proxy_extra: str = "",
    engine: str = "",
    acceptor_extra: str = "",
    venue_extra: str = "",
    admin_extra: str = "",
    firm_extra: str = "",
    sections: str = "",
    heartbeat_s: int = 30,
) -> str:
    rules_line = "" if rules is None else "rules = [" + ", ".join(f'"{r}"' for r in rules) + "]"
    cod = {
        name: f"cancel_on_disconnect = {'true' if name in cancel_on_disconnect else 'false'}"
        for name in ("oms1", "oms2")
    }
    tokens = "".join(
        f'\n[[admin.tokens]]\nname = "desk-{role}"\nrole = "{role}"\ntoken = "{token}"\n'
        for role, token in TOKENS.items()
    )
    return f"""
[proxy]
state_dir = "var"
log_level = "info"
engine = "{engine or current_engine["name"]}"
{proxy_extra}

[acceptor]
port = {acceptor_port}
comp_id = "FIXPROXY"
heartbeat_s = {heartbeat_s}
{acceptor_extra}

[[oms]]
name = "oms1"
comp_id = "OMS1"
fix_version = "{oms1_version}"
default_venue = "sim"
{cod["oms1"]}
{oms1_extra}

[[oms]]
name = "oms2"
comp_id = "OMS2"
fix_version = "FIX.4.2"
default_venue = "sim"
reject_with = "{oms2_reject_with}"
{cod["oms2"]}

[[venues]]
name = "sim"
port = {venue_port}
comp_id = "VENUE"
our_comp_id = "FIXPROXY"
fix_version = "{venue_version}"
{venue_extra}

[risk]
{rules_line}
instruments = "instruments.csv"

[limits.firm]
max_order_qty = 10000
max_order_notional = 1000000
price_collar_pct = 5
reference_max_age_s = 86400
{firm_extra}

[limits.accounts.SMALL]
max_order_qty = 50
{extra}

[admin]
http_port = {http_port}
{admin_extra}
{tokens}
{sections}"""


class Stack:
    """A proxy with its venue simulator and OMS simulators, in one temporary folder."""

    def __init__(
        self,
        root: Path,
        *,
        behaviours: dict[str, str] | None = None,
        venue: bool = True,
        proxy_env: dict | None = None,
        proxy_prefix: list[str] | None = None,
        venue_port: int | None = None,
        proxy: bool = True,
        **config,
    ):
        """``venue_port``: a venue simulator's port shared with other stacks (default: a free one);
        ``proxy``: start the proxy now (else the caller starts it)."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "cfg" / "instruments.csv", root / "instruments.csv")
        self.acceptor_port = free_port()
        self.venue_port = venue_port or free_port()
        self.http_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.http_port}/api/v1"
        self.config = root / "fixproxy.toml"
        self.config.write_text(config_text(self.acceptor_port, self.venue_port, http_port=self.http_port, **config))
        self.behaviours = behaviours or {}
        self.procs: list[Proc] = []
        self.venue: Proc | None = None
        self.proxy: Proc | None = None
        self.oms: dict[str, Proc] = {}
        try:
            if venue:
                self.start_venue()
            if proxy:
                self.start_proxy(wait_venue=venue, env=proxy_env, prefix=proxy_prefix)
        except BaseException:
            self.close()  # a stack that failed to start leaves no simulator or proxy running
            raise

    def _proc(
        self, name: str, args: list[str], stdin: bool = False, env: dict | None = None, prefix: list[str] | None = None
    ) -> Proc:
        """``fixproxy ARGS`` in the stack's folder; ``prefix``: a wrapper whose last word is a shell
        script ending in ``exec {}`` (given the quoted command, so the pid stays the proxy's)."""
        command = fixproxy_command(*args)
        if prefix:
            command = [*prefix[:-1], prefix[-1].replace("{}", " ".join(f"'{c}'" for c in command))]
        proc = Proc(name, command, self.root, stdin=stdin, env=env)
        self.procs.append(proc)
        return proc

    def start_venue(self, *extra: str) -> Proc:
        """Start the venue simulator; ``extra``: more of its arguments."""
        args = ["sim", "venue", "--config", str(self.config), "--state-dir", str(self.root / "venue-sim"), *extra]
        for symbol, behaviour in self.behaviours.items():
            args += ["--behaviour", f"{symbol}={behaviour}"]
        self.venue = self._proc("venue", args)
        self.venue.wait_for(lambda r: r.get("event") == "listening")
        return self.venue

    def start_proxy(self, wait_venue: bool = True, env: dict | None = None, prefix: list[str] | None = None) -> Proc:
        """Start (again) the proxy; ``env`` adds environment variables, ``prefix`` wraps the command
        (a shell snippet ending in ``exec``, given the quoted command)."""
        self.proxy = self._proc("proxy", ["run", "--config", str(self.config)], env=env, prefix=prefix)
        self.proxy.wait_for(lambda r: r.get("event") == "started")
        if wait_venue:
            self.wait_venue_up()
        return self.proxy

    def wait_venue_up(self, start: int = 0) -> None:
        self.proxy.wait_for(lambda r: r.get("event") == "session_up" and r.get("detail") == "sim", start=start)

    def connect(self, session: str, *extra: str) -> Proc:
        """An OMS simulator logged on as ``session``, sending the lines given to it; ``extra``: more
        of its arguments (``--failover HOST:PORT``)."""
        oms = self._proc(
            session,
            [
                "sim",
                "oms",
                "--config",
                str(self.config),
                "--session",
                session,
                "--stdin",
                "--state-dir",
                str(self.root / f"oms-sim-{session}"),
                *extra,
            ],
            stdin=True,
        )
        oms.wait_for(lambda r: r.get("event") == "logon")
        self.oms[session] = oms
        return oms

    def message_log(self, role: str) -> str:
        """The proxy's quickfix message logs (exact wire bytes) for ``oms`` or ``venue`` sessions."""
        return "".join(p.read_text() for p in sorted((self.root / "var" / "log" / role).glob("*.messages.current.log")))

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
