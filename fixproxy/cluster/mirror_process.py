"""The journal's mirror into PostgreSQL (mirror.py) in a child process of its own.

In the proxy's process the mirror's passes took the core from the orders in bursts (measured in
docs/benchmarks.md, "A cluster instance against a single one"). In a process of its own, at the
proxy's writer priority (``[proxy] writer_priority``: idle while it keeps up), it reads the journal
the proxy writes without holding up an order. The proxy watches it: a process that ended is started
again (after 1 s, then 2, 4 ... at most 30 s), and ``health`` tells how far behind it is.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import SynchronizedArray, SynchronizedString
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import structlog

if TYPE_CHECKING:
    from ..config import ClusterSection, LoadedConfig, StartPosition

# The child's progress: journal segment and offset committed, passes, failures; then its last error.
_SEGMENT, _OFFSET, _PASSES, _FAILURES = range(4)
_ERROR_BYTES = 480


class MirrorProcess:
    """Runs ``Mirror`` for one instance in a spawned child (never a fork of a process with engine threads)."""

    def __init__(
        self,
        loaded: LoadedConfig,
        password: str = "",
        *,
        journal_position: Callable[[], tuple[int, int]] | None = None,
        interval_s: float = 0.1,
    ) -> None:
        settings = loaded.config.cluster
        if settings is None:
            raise ValueError(f"{loaded.path}: no [cluster] section: nothing to mirror to")
        self.journal_dir = loaded.journal_dir
        self._args = (
            str(loaded.journal_dir),
            settings,
            password,
            [v.name for v in loaded.config.venues],
            list(loaded.positions),
            interval_s,
            loaded.config.proxy.writer_priority,
            loaded.config.proxy.log_level,
        )
        self.journal_position = journal_position
        self._ctx = multiprocessing.get_context("spawn")
        self._progress: SynchronizedArray[int] = self._ctx.Array("q", 4)
        self._error = cast(SynchronizedString, self._ctx.Array("c", _ERROR_BYTES))
        self._stop = self._ctx.Event()
        self._process: BaseProcess | None = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self.restarts = 0
        self._log = structlog.get_logger("fixproxy.cluster.mirror")

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="cluster-mirror-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        process = self._ctx.Process(
            target=_child,
            args=(*self._args, self._progress, self._error, self._stop, os.getpid()),
            name="fixproxy-cluster-mirror",
            daemon=True,
        )
        process.start()
        self._process = process

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.wait(1.0):
            process = self._process
            if process is not None and not process.is_alive() and not self._stop.is_set():
                self._log.warning("cluster_mirror_ended", exitcode=process.exitcode, restart_in_s=backoff)
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)
                self.restarts += 1
                self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the child mirror what the journal holds and end (killed after ``timeout``)."""
        self._stopping.set()
        self._stop.set()
        process = self._process
        if process is not None:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(1.0)

    @property
    def committed(self) -> tuple[int, int]:
        with self._progress.get_lock():
            return self._progress[_SEGMENT], self._progress[_OFFSET]

    def health(self) -> dict[str, Any]:
        """{"state": "ok" | "failed", "lag_bytes": journal bytes not yet mirrored (-1: unknown), "error"}."""
        from .mirror import health_of

        process = self._process
        error = self._error.value.decode("utf-8", "replace")
        if process is not None and not process.is_alive() and not self._stop.is_set():
            error = error or f"the mirror process ended (exit code {process.exitcode}); started again shortly"
        return {
            **health_of(self.journal_dir, self.committed, self.journal_position, error),
            "restarts": self.restarts,
            "pid": process.pid if process is not None else None,
        }


def _child(
    journal_dir: str,
    settings: ClusterSection,
    password: str,
    venues: Sequence[str],
    positions: Sequence[StartPosition],
    interval_s: float,
    priority: str,
    log_level: str,
    progress: SynchronizedArray[int],
    error: SynchronizedString,
    stop: ProcessEvent,
    parent: int,
) -> None:
    """Mirror every ``interval_s`` until told to stop (then once more) or the proxy is gone."""
    from ..logs import configure_logging
    from ..offload import WriterPriority
    from .manager import connect
    from .mirror import Mirror

    configure_logging(log_level)
    # ^C and a service manager's SIGTERM reach the whole process group: the proxy says when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pacer = WriterPriority() if priority == "idle" and WriterPriority.available() else None
    if pacer is not None:
        pacer.lower()
    mirror = Mirror(
        Path(journal_dir),
        settings.instance,
        lambda: connect(settings, password),
        venues=venues,
        start_positions=positions,
        interval_s=interval_s,
    )

    def publish() -> None:
        with progress.get_lock():
            progress[_SEGMENT], progress[_OFFSET] = mirror.committed
            progress[_PASSES] += 1
            progress[_FAILURES] = mirror.failures
        error.value = mirror.error.encode("utf-8", "replace")[: _ERROR_BYTES - 1]

    while True:
        due = time.monotonic() + interval_s
        stopping = stop.wait(interval_s) or os.getppid() != parent
        mirror.run_once()
        publish()
        if stopping:
            break
        if pacer is not None:
            # Back to normal priority for a while if idle priority left it far behind its cadence.
            pacer.cycle(max(0.0, time.monotonic() - due - interval_s))
