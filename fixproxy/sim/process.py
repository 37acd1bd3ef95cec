"""Child processes on loopback for tests, the soak and the benchmark: a free port, and a process whose
output lines are read as they come.

Every process starts in its own session (a ^C in the terminal reaches the parent only) and is stopped
by its own process id.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Record = dict[str, Any]


#: Ports handed out by ``free_port`` in this process.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, and not handed out before by this process: a stack's ports
    are all chosen before anything binds them, and two asked for in a row can be the same port."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def fixproxy_command(*args: str) -> list[str]:
    """``python -m fixproxy ARGS`` with this interpreter."""
    return [sys.executable, "-m", "fixproxy", *args]


class NoMatch(AssertionError):
    """No output line matched in time (an AssertionError, so a test reads it as a failure)."""


class Proc:
    """A child process whose stdout and stderr lines are read as they come.

    By default each line that is a JSON object is collected (``lines``, ``wait_for``). With
    ``on_line`` every line goes to that callable instead; with ``save`` every line is also copied
    to that file; with ``log`` stderr goes to that file unread (``wait_log`` polls it), so a chatty
    child costs the parent nothing. ``keep`` bounds the raw lines kept for a failure report.
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        cwd: Path,
        *,
        stdin: bool = False,
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        save: Path | None = None,
        log: Path | None = None,
        keep: int | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.lines: list[Record] = []
        self.text: list[str] = []
        self.keep = keep
        self.on_line = on_line
        self.log = log
        self._new = threading.Condition()
        self._write = threading.Lock()
        # every line, for a run kept for reading afterwards
        self._save = open(save, "a", buffering=1 << 20) if save is not None else None  # noqa: SIM115 - open for the child's life, closed in stop()
        self._log = log.open("wb") if log is not None else None
        self.popen = subprocess.Popen(
            command,
            cwd=cwd,
            text=True,
            bufsize=1,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log if self._log is not None else subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.started = time.monotonic()
        self.pid = self.popen.pid
        streams = [self.popen.stdout] if self._log is not None else [self.popen.stdout, self.popen.stderr]
        self._readers = [
            threading.Thread(target=self._read, args=(s,), name=f"read-{name}", daemon=True) for s in streams
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str]) -> None:
        for raw in stream:
            if self._save is not None:
                self._save.write(raw)
            line = raw.rstrip("\n")
            record = None
            if self.on_line is not None:
                try:
                    self.on_line(line)
                except Exception as exc:  # noqa: BLE001 - a bug in the caller's handler: say so, keep reading
                    print(f"{self.name}: line handler failed: {exc!r} on {line[:200]}", file=sys.stderr)
            elif line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    pass
            with self._new:
                if isinstance(record, dict):
                    self.lines.append(record)
                self.text.append(line)
                if self.keep is not None and len(self.text) > 2 * self.keep:
                    del self.text[: -self.keep]
                self._new.notify_all()

    def wait_index(self, predicate: Callable[[Record], bool], timeout: float = 20.0, start: int = 0) -> int:
        """The index in ``lines`` of the first record from ``start`` on that matches; NoMatch after
        ``timeout``, or once the process has ended and every line read so far has been looked at."""
        deadline = time.monotonic() + timeout
        with self._new:
            i = start
            while True:
                while i < len(self.lines):
                    if predicate(self.lines[i]):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and i >= len(self.lines)):
                    raise NoMatch(
                        f"{self.name}: no matching line within {timeout}s (exit status "
                        f"{self.popen.poll()}); last output:\n{self.tail()}"
                    )
                self._new.wait(min(left, 0.2))

    def wait_for(self, predicate: Callable[[Record], bool], timeout: float = 20.0, start: int = 0) -> Record:
        """The first record (from index ``start``) that matches; NoMatch as ``wait_index``."""
        return self.lines[self.wait_index(predicate, timeout, start)]

    def wait_log(self, event: str, timeout: float, **fields: str) -> Record:
        """Poll the ``log`` file for a JSON line with ``event`` and ``fields``; NoMatch otherwise."""
        assert self.log is not None, "wait_log reads the file given as log="
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if (
                    isinstance(record, dict)
                    and record.get("event") == event
                    and all(record.get(k) == v for k, v in fields.items())
                ):
                    return record
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise NoMatch(
            f"{self.name} (pid {self.pid}): no {event!r} log line within {timeout:.0f}s; "
            f"exit status {self.popen.poll()}; last output:\n{self.tail()}"
        )

    def mark(self) -> int:
        """How many records so far: a ``start`` for ``wait_for`` that skips them."""
        with self._new:
            return len(self.lines)

    def snapshot(self) -> list[Record]:
        with self._new:
            return list(self.lines)

    def tail(self, n: int = 30) -> str:
        """The last ``n`` lines of output (of the ``log`` file where stderr goes there)."""
        if self.log is not None:
            try:
                return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
            except OSError:
                return ""
        with self._new:
            return "\n".join(self.text[-n:])

    def send_line(self, line: str) -> None:
        """Write one line to stdin."""
        self.send_lines([line])

    def send_lines(self, lines: list[str]) -> None:
        """Write lines to stdin in one write."""
        assert self.popen.stdin is not None, "started without stdin=True"
        with self._write:
            self.popen.stdin.write("".join(x + "\n" for x in lines))
            self.popen.stdin.flush()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the process by its pid, SIGKILL after ``timeout``; its exit status."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        if self._save is not None:  # every line read before the file closes
            for reader in self._readers:
                reader.join(5)
            self._save.close()
        if self._log is not None:
            self._log.close()
        return self.popen.returncode
