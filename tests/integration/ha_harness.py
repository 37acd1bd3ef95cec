"""An active/passive pair of proxies (issue 22) over real FIX sessions, for tests and scripts.

Two instances, "a" and "b", of the pair "gw": each a Stack (harness.py) of its own in its own folder
(own config, state_dir, FIX acceptor, admin HTTP and copy ports), both with the same venue sessions
to one venue simulator (connections tracked: each venue message line says which connection, and so
which proxy process, it came on), and ``[ha]`` pointing at one PostgreSQL database. OMS simulators
are given both proxies' addresses (``--failover``), so they log on to whichever is active.

    pair = Pair(tmp_path, pg_url, copy="sync")       # a active, b standby in copy, oms1 logged on
    pair.kill(pair.active())                         # SIGKILL
    pair.wait_role("b", "active", timeout=10)
    pair.restart("a")                                # comes back as the standby
    pair.wait_copy()

The roles are read from each instance's admin HTTP (GET /api/v1/ha, else the ``ha`` block of
GET /healthz), which the standby serves too.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fixproxy.sim.process import NoMatch, Proc, free_port

from .harness import TOKENS, Stack

INSTANCES = ("a", "b")
PAIR = "gw"


def ha_section(
    url: str,
    instance: str,
    copy_port: int,
    *,
    copy: str = "sync",
    pair: str = PAIR,
    lease_ttl_ms: int | None = None,
    renew_ms: int | None = None,
    extra: str = "",
) -> str:
    """The ``[ha]`` section of one instance of the pair (the lease's timing: the config's defaults
    unless given)."""
    timing = "".join(
        f"{key} = {value}\n" for key, value in (("lease_ttl_ms", lease_ttl_ms), ("renew_ms", renew_ms)) if value
    )
    return (
        f'[ha]\nurl = "{url}"\npair = "{pair}"\ninstance = "{instance}"\n'
        f'copy_listen = "127.0.0.1:{copy_port}"\ncopy = "{copy}"\n{timing}{extra}\n'
    )


class SplitBrain(AssertionError):
    """Both instances say they are active."""


class Pair:
    """Two proxies of one pair, their venue simulator and OMS simulators, under ``root``.

    ``copy``: "sync" or "async"; ``sessions``: OMS sessions to log on once the pair is up; ``start``:
    False writes the configs and starts the venue simulator only (then ``start``, ``wait_role``,
    ``connect`` at will). Other keywords go to each instance's config (harness.config_text).
    """

    def __init__(
        self,
        root: Path,
        url: str,
        *,
        copy: str = "sync",
        lease_ttl_ms: int | None = None,
        renew_ms: int | None = None,
        ha_extra: str = "",
        behaviours: dict[str, str] | None = None,
        sessions: Iterable[str] = ("oms1",),
        start: bool = True,
        timeout: float = 30.0,
        **config: Any,
    ) -> None:
        self.root = root
        self.url = url
        self.copy = copy
        self.timeout = timeout
        self.venue_port = free_port()
        self.copy_ports = {name: free_port() for name in INSTANCES}
        self.nodes: dict[str, Stack] = {}
        self.oms: dict[str, Proc] = {}
        self.pids: dict[int, str] = {}  # every proxy process started, to its instance
        sections = config.pop("sections", "")
        try:
            for name in INSTANCES:
                section = ha_section(
                    url,
                    name,
                    self.copy_ports[name],
                    copy=copy,
                    lease_ttl_ms=lease_ttl_ms,
                    renew_ms=renew_ms,
                    extra=ha_extra,
                )
                self.nodes[name] = Stack(
                    root / name,
                    behaviours=behaviours,
                    venue=False,
                    proxy=False,
                    venue_port=self.venue_port,
                    sections=sections + "\n" + section,
                    **config,
                )
            self.venue = self.nodes["a"].start_venue("--track-connections")
            if start:
                self.start("a")
                self.wait_role("a", "active")
                self.start("b")
                self.wait_role("b", "standby")
                self.wait_copy()
                for session in sessions:
                    self.connect(session)
        except BaseException:
            self.close()  # a pair that failed to start leaves nothing running
            raise

    # processes

    def start(self, instance: str) -> Proc:
        """Start the instance's proxy (it finds its role itself)."""
        stack = self.nodes[instance]
        stack.proxy = stack._proc(f"proxy-{instance}", ["run", "--config", str(stack.config)])
        self.pids[stack.proxy.pid] = instance
        return stack.proxy

    def restart(self, instance: str, timeout: float | None = None) -> Proc:
        """Start a stopped instance again; returns once it says standby or active."""
        proc = self.start(instance)
        self.wait_role(instance, ("standby", "active"), timeout)
        return proc

    def kill(self, instance: str, sig: int = signal.SIGKILL) -> int | None:
        """Signal the instance's proxy (by its pid) and wait for it to end; its exit status."""
        proc = self.proxy(instance)
        return proc.stop(sig)

    def pause(self, instance: str) -> None:
        """SIGSTOP: the process holds its sockets and its lease row but does nothing (a hung host)."""
        os.kill(self.proxy(instance).pid, signal.SIGSTOP)

    def resume(self, instance: str) -> None:
        os.kill(self.proxy(instance).pid, signal.SIGCONT)

    def proxy(self, instance: str) -> Proc:
        proc = self.nodes[instance].proxy
        assert proc is not None, f"{instance} was never started"
        return proc

    def connect(self, session: str) -> Proc:
        """An OMS simulator logged on as ``session`` to a's address, with b's as its failover."""
        a, b = self.nodes["a"], self.nodes["b"]
        oms = a.connect(session, "--failover", f"127.0.0.1:{b.acceptor_port}")
        self.oms[session] = oms
        return oms

    def other(self, instance: str) -> str:
        return INSTANCES[1 - INSTANCES.index(instance)]

    # what each instance says

    def view(self, instance: str) -> dict | None:
        """The instance's HA view (GET /api/v1/ha, else /healthz's ``ha`` block); None if its admin
        HTTP does not answer."""
        stack = self.nodes[instance]
        base = f"http://127.0.0.1:{stack.http_port}"
        try:
            body = _get(f"{base}/api/v1/ha", TOKENS["viewer"])
            if isinstance(body, dict) and "role" in body:
                return body
        except urllib.error.HTTPError as exc:
            if exc.code not in (404, 405):
                raise
        except OSError:
            return None
        try:
            block = self.health(instance).get("ha")
        except OSError:
            return None
        return block if isinstance(block, dict) else None

    def health(self, instance: str) -> dict:
        """GET /healthz of the instance (raises OSError if it does not answer)."""
        try:
            body = _get(f"http://127.0.0.1:{self.nodes[instance].http_port}/healthz", None)
        except urllib.error.HTTPError as exc:  # 503 still carries the body
            body = json.loads(exc.read() or b"{}")
        return body if isinstance(body, dict) else {}

    def role(self, instance: str) -> str | None:
        proc = self.nodes[instance].proxy
        if proc is None or not proc.alive():
            return None
        view = self.view(instance)
        return view.get("role") if view else None

    def roles(self) -> dict[str, str | None]:
        return {name: self.role(name) for name in INSTANCES}

    def active(self) -> str | None:
        """The instance that says it is active, None if neither; SplitBrain if both do."""
        active = [name for name, role in self.roles().items() if role == "active"]
        if len(active) > 1:
            raise SplitBrain(f"both instances say active: {[self.view(n) for n in active]}")
        return active[0] if active else None

    def wait_role(self, instance: str, role: str | Iterable[str], timeout: float | None = None) -> dict:
        """The instance's view once its role is ``role`` (or one of them); NoMatch after ``timeout``
        or if its process ended."""
        wanted = {role} if isinstance(role, str) else set(role)
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        proc = self.proxy(instance)
        view = None
        while True:
            if not proc.alive():
                raise NoMatch(f"{instance} ended (exit status {proc.popen.poll()}) before {wanted}:\n{proc.tail()}")
            view = self.view(instance)
            if view is not None and view.get("role") in wanted:
                return view
            if time.monotonic() > deadline:
                raise NoMatch(f"{instance} not {wanted} within {timeout}s; it says {view}:\n{proc.tail()}")
            time.sleep(0.02)

    def wait_copy(self, state: str | None = None, timeout: float | None = None) -> dict:
        """The active's view once its copy to the standby is ``state`` (default: the pair's copy
        mode, "sync" or "async": the standby in copy)."""
        state = state or self.copy
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        view = None
        while True:
            active = self.active()
            view = self.view(active) if active else None
            if view is not None and view.get("copy_state") == state:
                return view
            if time.monotonic() > deadline:
                raise NoMatch(f"the copy not {state!r} within {timeout}s; the active ({active}) says {view}")
            time.sleep(0.02)

    # what the venue saw

    def venue_conns(self) -> dict[int, str | None]:
        """Each venue connection so far, to the instance whose process made it (None: not known)."""
        return {
            rec["conn"]: self.pids.get(rec.get("peer_pid") or 0)
            for rec in list(self.venue.lines)
            if rec.get("event") == "connect"
        }

    def venue_instance(self, conn: int) -> str | None:
        """The instance whose process made the venue connection ``conn``."""
        return self.venue_conns().get(conn)

    def venue_received(self, instance: str | None = None) -> list[dict]:
        """The venue's lines of the messages it received; with ``instance``: through that one only."""
        conns = self.venue_conns()
        return [
            rec
            for rec in list(self.venue.lines)
            if rec.get("dir") == "in" and (instance is None or conns.get(rec.get("conn") or 0) == instance)
        ]

    def close(self) -> None:
        for oms in self.oms.values():
            oms.stop()
        for name in reversed(INSTANCES):
            if name in self.nodes:
                self.nodes[name].close()


@contextmanager
def pair(root: Path, url: str, **kw: Any) -> Iterator[Pair]:
    """A started Pair (keywords as Pair's), closed after: ``with pair(tmp_path, pg_url) as p: ...``."""
    made = Pair(root, url, **kw)
    try:
        yield made
    finally:
        made.close()


def _get(url: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
        return json.loads(response.read())
