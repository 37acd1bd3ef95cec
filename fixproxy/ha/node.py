"""One instance of an active/passive pair: standby until it leads, then the active proxy.

- **Standby** (``standby_until_leader``): no FIX listener, no venue session. It copies the active's
  folder (copy.Receiver) from the address in the lease row, and watches the row. When the active's
  lease lapses and the row names this instance as its standby with a copy in "sync" or "async", it
  takes the lease (the token goes up by one), repairs its stores from the journal (takeover.py),
  and returns: the caller starts the proxy on the copy exactly as after a kill -9.
- **Active** (``activate``): the lease is renewed on a thread (lease.Leadership), the copy is
  served to the standby (copy.Shipper), and every byte the FIX engines write passes ``gate()``:
  nothing goes out once the lease may have lapsed, and in sync copy nothing before the standby has
  the journal up to it.
- **Superseded**: an active that finds another holder ends its process image without sending a
  byte (``os.execv`` of the same command): it comes back as a standby, its old folder set aside.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ..config import LoadedConfig
from . import lease as leases
from .copy import Receiver, Shipper, load_seqs
from .takeover import read_lineage, repair_stores, set_aside, write_lineage

if TYPE_CHECKING:
    from ..app import Proxy

#: Exit code of a process image that lost its leadership and could not be executed again.
EXIT_SUPERSEDED = 75
#: A write finding the lease's deadline passed waits this long for a late renewal before it is
#: dropped (a slow database statement should not cost every session its connection).
GATE_WAIT_S = 0.1


class HaNode:
    """This instance in its pair (``[ha]``)."""

    def __init__(self, loaded: LoadedConfig) -> None:
        assert loaded.config.ha is not None
        self.loaded = loaded
        self.settings = loaded.config.ha
        self.state_dir = loaded.state_dir
        self.password = os.environ.get(self.settings.password_env, "") if self.settings.password_env else ""
        self.role = "starting"
        self.token: int | None = None
        self.lease: leases.Leadership | None = None
        self.shipper: Shipper | None = None
        self.receiver: Receiver | None = None
        self.row: leases.Row | None = None
        self.database = "ok"
        self.waiting = ""  # why a standby does not take over a lapsed lease
        self.took_over_at = 0.0
        self.takeover: dict[str, Any] = {}
        self._proxy: Proxy | None = None
        self._stopping = threading.Event()
        self.history: list[int] = []
        #: The active's sessions' next outgoing numbers, as last copied (copy.Receiver keeps it).
        self.seqs: dict[str, int] = load_seqs(self.state_dir)
        self._log = structlog.get_logger("fixproxy.ha")

    # ------------------------------------------------------------ standby

    async def standby_until_leader(self) -> bool:
        """Copy from the active until this instance may lead: True holding the lease, False when
        stopped (SIGINT, SIGTERM) first."""
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        http = await self._standby_http()
        try:
            return await loop.run_in_executor(None, self._standby_loop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if http is not None:
                await http.cleanup()

    async def _standby_http(self) -> Any:
        admin = self.loaded.config.admin
        if not admin.http_port:
            return None
        try:
            from .standby_http import serve_standby_http
        except ImportError:
            return None
        try:
            return await serve_standby_http(
                admin.http_host,
                admin.http_port,
                self.view,
                self.health,
                tokens=self.loaded.api_tokens,
                metrics_public=admin.metrics_public,
            )
        except OSError as exc:
            raise SystemExit(
                f"fixproxy: the admin HTTP API cannot listen on {admin.http_host}:{admin.http_port}: {exc.strerror or exc}"
            ) from None

    def _warm(self) -> None:
        """Import now what a takeover would import then (quickfix's binding, the audit store, the
        HTTP API: about 0.3 s of a takeover's start)."""
        importlib.import_module(f"fixproxy.engines.{self.loaded.config.proxy.engine}.engine")
        if self.loaded.config.audit.enabled:
            from ..audit import follower  # noqa: F401
        from ..admin import http  # noqa: F401

    def _standby_loop(self) -> bool:
        s = self.settings
        self._warm()
        conn: Any = None
        stop_copy = threading.Event()
        copier: threading.Thread | None = None
        lineage = read_lineage(self.state_dir)
        self.role = "standby"
        while not self._stopping.is_set():
            try:
                if conn is None or conn.closed:
                    conn = leases.connect(s, self.password)
                    leases.ensure(conn)
                row = leases.read(conn, s.pair)
                if self.database != "ok":
                    self._log.info("ha_database_back")
                self.database = "ok"
            except Exception as exc:  # noqa: BLE001 - no database: no takeover, keep copying
                if self.database == "ok":
                    self._log.error("ha_database_lost", error=str(exc))
                self.database = "lost"
                conn = None
                self._stopping.wait(s.renew_ms / 1000)
                continue
            self.row = row
            # An active of an older token that finds a newer one: its folder is not a prefix of the
            # line any more (the new active repaired its copy and went on): set it aside.
            if lineage["writer"] and row is not None and row.token != lineage["token"]:
                set_aside(
                    self.state_dir,
                    f"superseded: wrote as active under token {lineage['token']}, the pair is at {row.token}",
                )
                lineage = {"token": None, "writer": False, "history": []}
                write_lineage(self.state_dir, None, False, [])
                self.seqs.clear()
            receiver = self.receiver
            if receiver is not None and receiver.token is not None and receiver.token != lineage["token"]:
                lineage = {"token": receiver.token, "writer": False, "history": receiver.history}
                write_lineage(self.state_dir, receiver.token, False, receiver.history)
            token = None
            if row is None:
                token = leases.acquire(conn, s.pair, s.instance, s.copy_listen, s.lease_ttl_ms, None)
            elif row.expired:
                if row.holder == s.instance and lineage["writer"] and lineage["token"] == row.token:
                    token = leases.acquire(conn, s.pair, s.instance, s.copy_listen, s.lease_ttl_ms, row.token)
                elif row.standby == s.instance and row.copy_state in leases.TAKEOVER_STATES:
                    # The lapsed active sends nothing any more (its own deadline passed before the
                    # lease did): what it still ships may be copied until the copy is closed below.
                    if lineage["token"] == row.token:
                        token = leases.acquire(conn, s.pair, s.instance, s.copy_listen, s.lease_ttl_ms, row.token)
                    else:
                        self.waiting = f"the copy here is of token {lineage['token']}, the lapsed lease of {row.token}"
                else:
                    self.waiting = (
                        f"the lapsed lease of {row.holder} (token {row.token}) names standby {row.standby!r} "
                        f"with copy {row.copy_state!r}: this instance's copy may be older than what the peers saw"
                    )
            if token is not None:
                stop_copy.set()
                if receiver is not None:
                    receiver.close()
                if copier is not None:
                    copier.join(5)
                history = [*lineage["history"], token] if lineage["token"] is not None else [token]
                self._lead(token, history, receiver)
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                return True
            # Copy from the active in the row.
            if row is not None and not row.expired and row.holder != s.instance:
                self.waiting = ""
                if copier is None or not copier.is_alive():
                    if receiver is not None and receiver.refused:
                        set_aside(self.state_dir, f"refused by the active: {receiver.refused}")
                        lineage = {"token": None, "writer": False, "history": []}
                        write_lineage(self.state_dir, None, False, [])
                        self.seqs.clear()
                    host, _, port = row.copy_addr.rpartition(":")
                    stop_copy = threading.Event()
                    receiver = Receiver(self.state_dir, s.instance, lineage["token"], lineage["writer"], self.seqs)
                    self.receiver = receiver
                    copier = threading.Thread(
                        target=receiver.run, args=(host, int(port), stop_copy), name="fixproxy-ha-copy", daemon=True
                    )
                    copier.start()
            pause = min(s.renew_ms, 100) / 1000
            if row is not None and not row.expired and row.holder != s.instance:
                # Wake just after the lease would lapse (the row's time left, by the database's clock).
                pause = min(pause, max(0.005, row.left_ms / 1000 + 0.005))
            self._stopping.wait(pause)
        stop_copy.set()
        if self.receiver is not None:
            self.receiver.close()
        self._log.info("ha_standby_stopped")
        return False

    def _lead(self, token: int, history: list[int], receiver: Receiver | None) -> None:
        """This instance holds the lease now: renew it at once, bring the copy's stores up to its journal."""
        s = self.settings
        self.token = token
        write_lineage(self.state_dir, token, True, history)
        self.history = history
        self.lease = leases.Leadership(
            s,
            self.password,
            token,
            time.monotonic() + s.lease_ttl_ms * 0.9 / 1000,
            self._copy_report,
            self._lost,
        )
        self.lease.start()
        seqs = dict(self.seqs)
        self.takeover = {"token": token, "from": self.row.holder if self.row else "", "stores": {}}
        if receiver is not None or (self.row is not None and self.row.holder != s.instance):
            self.takeover["stores"] = repair_stores(self.state_dir, self.loaded.config, seqs, time.time_ns())
        self.took_over_at = time.time()
        self.role = "active"
        self._log.info("ha_leading", token=token, previous=self.takeover["from"], stores=self.takeover["stores"])

    # ------------------------------------------------------------ active

    def activate(self, proxy: Proxy) -> None:
        """Serve the copy and put the wire gate in the engine (before the engine starts)."""
        s = self.settings
        assert self.lease is not None and self.token is not None
        self._proxy = proxy
        bridge = proxy.bridge
        self.shipper = Shipper(
            self.state_dir,
            s.copy_address,
            s.copy,
            self.token,
            self.history or [self.token],
            s.instance,
            journal_position=lambda: proxy.journal.position,
            journal_path=lambda: proxy.journal.path,
            seqs=bridge.sent_seqs,
            on_state=self._copy_state_changed,
            sync_timeout_s=s.sync_timeout_ms / 1000,
        )
        bridge.set_ha_gate(self.gate)
        lease = self.lease
        if hasattr(bridge, "ha_wait"):
            bridge.ha_wait = lease.wait_valid
        self.shipper.start()

    def gate(self) -> bool:
        """May bytes go on a socket now? (Called by the engines before each write.)"""
        lease = self.lease
        if lease is None:
            return False
        if not lease.valid() and not lease.wait_valid(GATE_WAIT_S):
            return False  # the lease may have lapsed: nothing goes out
        shipper = self.shipper
        if shipper is None:
            return True
        state = shipper.state
        if state == "sync":
            return shipper.sync()
        if state == "sync_lost":
            return shipper.retry_alone()
        return True

    def wait_gate(self, timeout_s: float) -> bool:
        """For an engine that cannot drop a message (quickfix's admin messages): wait for the lease."""
        lease = self.lease
        if lease is None:
            return False
        if not lease.valid() and not lease.wait_valid(timeout_s):
            return False
        return self.gate()

    def _copy_report(self) -> tuple[str, str]:
        shipper = self.shipper
        if shipper is None:
            return ("alone", "")
        link = shipper.link
        state = shipper.row_state
        return (state, link.instance if link is not None and state != "alone" else "")

    def _copy_state_changed(self, state: str, standby: str) -> bool:
        self._log.info("ha_copy_state", state=state, standby=standby)
        lease = self.lease
        return lease is not None and lease.set_copy_state(state, standby)

    def _lost(self, reason: str) -> None:
        """Another instance leads now: end this process image without a byte more, come back as standby."""
        self.role = "superseded"
        self._log.error("ha_superseded", token=self.token, reason=reason, detail="restarting as standby")
        reexec()

    def stop(self) -> None:
        """A clean stop of the active: the last of the journal to the standby, the lease given up."""
        if self.shipper is not None:
            self.shipper.flush()
            self.shipper.stop()
        if self.lease is not None:
            self.lease.stop(release_lease=True)

    # ------------------------------------------------------------ surfaces

    def view(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {
            "pair": s.pair,
            "instance": s.instance,
            "role": self.role,
            "copy": s.copy,
            "database": self.database,
        }
        if self.role in ("active", "superseded") and self.lease is not None:
            out["role"] = "fenced" if not self.lease.valid() and self.role == "active" else self.role
            out["token"] = self.token
            out["database"] = self.lease.database
            out["lease_left_ms"] = round(self.lease.left_ms())
            if self.shipper is not None:
                out.update(self.shipper.view())
            else:
                out.update({"copy_state": "none", "partner": {"instance": "", "connected": False}})
            out["took_over_at"] = self.took_over_at
            return out
        row = self.row
        out["token"] = row.token if row is not None else None
        out["lease_left_ms"] = round(row.left_ms) if row is not None else None
        r = self.receiver
        if r is not None:
            since = (time.monotonic() - r.last_mark) * 1000 if r.last_mark else None
            out["copy_state"] = (
                ("sync" if s.copy == "sync" else "async")
                if r.connected and r.marks
                else ("catching_up" if r.connected else "none")
            )
            out["partner"] = {
                "instance": r.active or (row.holder if row else ""),
                "connected": r.connected,
                "lag_bytes": 0 if r.connected else None,
                "lag_ms": round(since, 1) if since is not None else None,
                "position": list(r.position),
                "address": r.address,
            }
            if r.refused or r.error:
                out["partner"]["problem"] = r.refused or r.error
        else:
            out["copy_state"] = "none"
            out["partner"] = {"instance": row.holder if row else "", "connected": False}
        if self.waiting:
            out["waiting"] = self.waiting
        return out

    def health(self) -> dict[str, Any]:
        view = self.view()
        role = view["role"]
        if role == "fenced":
            return {
                "state": "failed",
                "role": role,
                "reason": "the leadership lease could not be renewed: nothing is sent",
            }
        if role == "active" and view.get("copy_state") not in ("sync", "async"):
            return {
                "state": "degraded",
                "role": role,
                "reason": f"no standby has the copy ({view.get('copy_state')}): a failover now would start from an older state",
            }
        if role == "standby" and view.get("copy_state") not in ("sync", "async"):
            return {"state": "degraded", "role": role, "reason": view.get("waiting") or "not copying from the active"}
        return {"state": "ok", "role": role, "reason": ""}


def reexec() -> None:
    """Replace this process image by the same command (no byte written; every socket closed by exec).
    Children (the audit follower, the mirror) are killed first: the new image starts its own."""
    import signal

    try:
        for task in Path("/proc/self/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
    except OSError:
        pass
    # Every descriptor closes at exec (quickfix opens its sockets without close-on-exec).
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", "fixproxy", *sys.argv[1:]])
    except OSError:
        os._exit(EXIT_SUPERSEDED)
