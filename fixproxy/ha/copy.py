"""The standby's copy: the active's journal, snapshots, FIX session stores and message logs,
streamed over one TCP connection as they are written.

Frames are ``<u32 little-endian length><MessagePack list>``. The standby opens with
``["hello", instance, lineage token, was it the writer, {path: size}]``; the active answers
``["welcome", token, history, instance]`` or ``["refuse", reason]`` and then sends batches, each
ending with a mark the standby acknowledges once it has written everything before it:

- ``["data", path, offset, bytes]``: bytes at an offset of a file (appends, in practice);
- ``["replace", path, bytes]``: a whole small file (sequence numbers, a snapshot), written atomically;
- ``["truncate", path, size]``: a file cut back (a session store reset for a new day);
- ``["seqs", {session: next outgoing number, "<session>/in": next inbound number}]``: what the
  sessions have sent and received, admin messages
  included (the stores on the standby may lag; the takeover starts each session past these);
- ``["mark", n, segment, offset, sent_ns]`` -> ``["ack", n, segment, offset]``.

In a batch the journal's bytes come first and the stores' after, and the stores are read *before*
the journal's length: every message in a store copy has its journal records in the copy too (the
engines journal before they store), so the standby's folder is always one the active itself could
have been left with by a kill -9, which the journal's recovery handles.

Sync copy (``[ha] copy = "sync"``): the wire gate (``Shipper.sync``) sends the journal's new bytes
and waits for the acknowledgement before any byte goes on a socket, so whatever an OMS or a venue
has seen, the standby has the record of. Async: the shipper's thread sends a batch every
``ASYNC_EVERY_S``; the standby can be that much behind.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import structlog

_LEN = struct.Struct("<I")
_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder()

#: Async copy: a batch this often. Sync copy: the stores and logs (the journal goes with each send).
ASYNC_EVERY_S = 0.002
FILES_EVERY_S = 0.05
#: A mark is sent this often even when nothing changed: the standby's sign of life.
IDLE_MARK_S = 0.1
#: Largest piece of a file in one frame (a catch-up goes in pieces, the gate can slip in between).
PIECE = 1 << 20
#: Files rewritten in place, sent whole when they change.
_WHOLE = (".seqnums", ".session", ".snapshot", ".json")


class CopyError(Exception):
    """The copy connection failed (closed, timed out, or a frame that makes no sense)."""


def send_frame(sock: socket.socket, frame: list) -> None:
    data = _ENC.encode(frame)
    sock.sendall(_LEN.pack(len(data)) + data)


def send_frames(sock: socket.socket, frames: list[list]) -> None:
    parts = []
    for frame in frames:
        data = _ENC.encode(frame)
        parts.append(_LEN.pack(len(data)))
        parts.append(data)
    sock.sendall(b"".join(parts))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise CopyError("the connection closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> list:
    (size,) = _LEN.unpack(_recv_exact(sock, 4))
    frame = _DEC.decode(_recv_exact(sock, size))
    if not isinstance(frame, list) or not frame:
        raise CopyError(f"not a frame: {frame!r:.80}")
    return frame


def seqs_path(state_dir: Path) -> Path:
    return Path(state_dir) / "ha-seqs.json"


def load_seqs(state_dir: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(seqs_path(state_dir).read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _next_frame(link: Link) -> list:
    """The next frame from the standby, read in as few system calls as it arrived in (an ack is one)."""
    inbox = link.inbox
    while True:
        if len(inbox) >= 4:
            (size,) = _LEN.unpack_from(inbox)
            if len(inbox) >= 4 + size:
                frame = _DEC.decode(bytes(inbox[4 : 4 + size]))
                del inbox[: 4 + size]
                if not isinstance(frame, list) or not frame:
                    raise CopyError(f"not a frame: {frame!r:.80}")
                return frame
        chunk = link.sock.recv(65536)
        if not chunk:
            raise CopyError("the connection closed")
        inbox += chunk


def copied_files(state_dir: Path) -> Iterator[Path]:
    """The files the copy carries, relative to the state folder: journal/, store/, log/."""
    for top in ("journal", "store", "log"):
        root = state_dir / top
        if not root.is_dir():
            continue
        for dirpath, _, names in os.walk(root):
            for name in sorted(names):
                if name.endswith(".tmp"):
                    continue
                yield (Path(dirpath) / name).relative_to(state_dir)


def _sort_key(rel: Path) -> tuple:
    # journal first (segments and their snapshots in order), then stores and logs
    return (0 if rel.parts[0] == "journal" else 1, str(rel))


class Link:
    """One connected standby, as the active sees it."""

    def __init__(self, sock: socket.socket, instance: str) -> None:
        self.sock = sock
        self.timeout: float | None = None
        self.inbox = bytearray()  # what the standby sent that is not read as a frame yet
        self.instance = instance
        self.sizes: dict[str, int] = {}  # what the standby has of each file
        self.whole: dict[str, bytes] = {}  # the last content sent of each whole-sent file
        self.seqs: dict[str, int] = {}
        self.caught_up = False
        self.acked: tuple[int, int] = (0, 0)  # (segment, offset) of the journal the standby has
        self.acked_at = time.monotonic()
        self.mark = 0
        self.last_rtt_ms = 0.0


class Shipper:
    """The active's side: serves the copy to one standby at a time.

    ``journal_position()`` -> (segment, size) of the journal being written, ``journal_path()`` its
    file; ``seqs()`` -> {session: next outgoing sequence number}. ``on_state(state, standby)`` is
    called when the copy state changes ("catching_up", "sync"/"async", "alone"); for "alone" it must
    return True only once the change is recorded where the standby's takeover reads it (the lease
    row): until then nothing unacknowledged may go out.
    """

    def __init__(
        self,
        state_dir: Path,
        address: tuple[str, int],
        mode: str,
        token: int,
        history: list[int],
        instance: str,
        journal_position: Callable[[], tuple[int, int]],
        journal_path: Callable[[], Path],
        seqs: Callable[[], dict[str, int]],
        on_state: Callable[[str, str], bool],
        sync_timeout_s: float,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.address = address
        self.mode = mode
        self.token = token
        self.history = history
        self.instance = instance
        self.journal_position = journal_position
        self.journal_path = journal_path
        self.seqs = seqs
        self.on_state = on_state
        self.sync_timeout_s = sync_timeout_s
        self.state = "none"  # none | catching_up | sync | async | alone | sync_lost
        #: What the lease row may say of the copy (the renewals write it): "sync"/"async" only once
        #: the standby has everything up to the moment the state changed (``_in_copy``).
        self.row_state = "alone"
        #: The lease row said so: the standby may take over (what the surfaces call in copy).
        self.announced = False
        self.link: Link | None = None
        self.batches = 0
        self.syncs = 0
        self._io = threading.Lock()  # one batch at a time on the connection
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._log = structlog.get_logger("fixproxy.ha")
        self._server = socket.create_server(address, reuse_port=False)
        self._server.settimeout(0.2)
        self._threads = [
            threading.Thread(target=self._accept_loop, name="fixproxy-ha-accept", daemon=True),
            threading.Thread(target=self._ship_loop, name="fixproxy-ha-ship", daemon=True),
        ]
        self._journal_fd: int | None = None
        self._journal_fd_path: Path | None = None
        self._rel_of: tuple[Path | None, str] = (None, "")

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(2)
        self._server.close()
        link = self.link
        if link is not None:
            try:
                link.sock.close()
            except OSError:
                pass

    # ------------------------------------------------------------ the order path (sync copy)

    def in_copy(self) -> bool:
        return self.state in ("sync", "async")

    def sync(self) -> bool:
        """Before a byte goes on a socket: the standby has the journal up to here. True to send.
        False only when the standby fell away and the lease row could not be told so (fail closed)."""
        link = self.link
        if link is None or self.state != "sync":
            return True
        segment, size = self.journal_position()
        seqs = self.seqs()  # what this write needs covered: another thread's later numbers are its own
        if link.acked >= (segment, size) and seqs == link.seqs:
            return True
        with self._io:
            if self.link is not link or self.state != "sync":
                return self.state != "sync_lost"
            if link.acked >= (segment, size) and seqs == link.seqs:
                return True
            try:
                self._send_batch(link, files=False, timeout=self.sync_timeout_s)
                self.syncs += 1
                return True
            except (OSError, CopyError) as exc:
                return self._drop(link, f"the standby did not acknowledge within the sync timeout: {exc}")

    # ------------------------------------------------------------ batches

    def _journal_bytes(self, link: Link) -> list[list]:
        """Frames of the journal's new bytes (the segment being written), from what the standby has."""
        size = self.journal_position()[1]
        path = self.journal_path()
        rel = self._journal_rel()
        have = link.sizes.get(rel, 0)
        if size <= have:
            return []
        fd = self._journal_fd
        if fd is None or self._journal_fd_path is not path:
            if fd is not None:
                os.close(fd)
            fd = self._journal_fd = os.open(path, os.O_RDONLY)
            self._journal_fd_path = path
        frames = []
        while have < size:
            n = min(size - have, PIECE)
            data = os.pread(fd, n, have)
            frames.append(["data", rel, have, data])
            have += len(data)
            if not data:
                break
        link.sizes[rel] = have
        return frames

    def _file_frames(self, link: Link, limit: int) -> list[list]:
        """Frames for what changed in the other files (at most ``limit`` bytes of appends)."""
        frames: list[list] = []
        current = self.journal_path()
        budget = limit
        for rel in sorted(copied_files(self.state_dir), key=_sort_key):
            path = self.state_dir / rel
            if path == current:
                continue
            key = str(rel)
            if rel.name.endswith(_WHOLE):
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if key.endswith(".snapshot") and key in link.whole:
                    continue  # a snapshot never changes once written
                if link.whole.get(key) != data:
                    frames.append(["replace", key, data])
                    link.whole[key] = data if not key.endswith(".snapshot") else b""
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            have = link.sizes.get(key, 0)
            if size < have:
                frames.append(["truncate", key, 0])
                have = 0
            if size <= have or budget <= 0:
                link.sizes[key] = have
                continue
            want = min(size - have, budget, PIECE)
            with open(path, "rb") as f:
                f.seek(have)
                if rel.parts[0] == "journal":
                    data = f.read(want)
                else:
                    # The files the native engine maps are zeros beyond what was written (in 4 MiB
                    # steps): a zero where the copy ends means nothing new, without reading the rest.
                    data = f.read(min(want, 4096))
                    if data[:1] == b"\0":
                        data = b""
                    elif len(data) < want:
                        data += f.read(want - len(data))
                    data = data.rstrip(b"\0")
            if data:
                frames.append(["data", key, have, data])
                have += len(data)
                budget -= len(data)
            link.sizes[key] = have
        return frames

    def _send_batch(self, link: Link, files: bool, timeout: float, limit: int = 8 * PIECE) -> bool:
        """One batch and its acknowledgement (the caller holds ``_io``). True if the files were all sent."""
        complete = True
        frames: list[list] = []
        if files:
            frames = self._file_frames(link, limit)
            complete = sum(len(f[3]) for f in frames if f[0] == "data") < limit
        # The numbers first, the journal after: an inbound number counts only once its message is
        # journaled, so every message the copy counts as received is in the copy's journal.
        seqs = self.seqs()
        segment = self.journal_position()[0]
        journal = self._journal_bytes(link)
        changed = {k: v for k, v in seqs.items() if link.seqs.get(k) != v}
        batch = journal + frames
        if changed:
            batch.append(["seqs", changed])
        link.mark += 1
        sent_ns = time.time_ns()
        rel = self._journal_rel()
        batch.append(["mark", link.mark, segment, link.sizes.get(rel, 0), sent_ns])
        started = time.monotonic()
        if link.timeout != timeout:
            link.sock.settimeout(timeout)
            link.timeout = timeout
        send_frames(link.sock, batch)
        while True:
            reply = _next_frame(link)
            if reply[0] == "ack" and reply[1] == link.mark:
                break
            if reply[0] != "ack":
                raise CopyError(f"unexpected {reply[0]!r} from the standby")
        link.seqs.update(changed)
        link.acked = (segment, link.sizes.get(rel, 0))
        link.acked_at = time.monotonic()
        link.last_rtt_ms = (link.acked_at - started) * 1000
        self.batches += 1
        return complete and len(journal) <= 1

    def _journal_rel(self) -> str:
        path = self.journal_path()
        if path is not self._rel_of[0]:  # a path operation costs microseconds: once per segment
            self._rel_of = (path, str(path.relative_to(self.state_dir)))
        return self._rel_of[1]

    # ------------------------------------------------------------ threads

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            try:
                self._welcome(sock)
            except (OSError, CopyError) as exc:
                self._log.warning("ha_standby_refused", peer=str(peer), error=str(exc))
                sock.close()

    def _welcome(self, sock: socket.socket) -> None:
        sock.settimeout(5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hello = recv_frame(sock)
        if hello[0] != "hello" or len(hello) != 5:
            raise CopyError("the standby did not say hello")
        _, instance, lineage, writer, sizes = hello
        if instance == self.instance:
            send_frame(sock, ["refuse", f"the standby names itself {instance!r}, as this active does"])
            raise CopyError("same instance name")
        if writer and lineage != self.token:
            send_frame(
                sock, ["refuse", f"superseded: it was the active under token {lineage}; the pair is at {self.token}"]
            )
            raise CopyError(f"{instance} was superseded")
        if sizes and lineage is not None and lineage not in self.history:
            send_frame(sock, ["refuse", f"diverged: its copy is of token {lineage}, not in this line ({self.history})"])
            raise CopyError(f"{instance} diverged")
        send_frame(sock, ["welcome", self.token, self.history, self.instance])
        link = Link(sock, instance)
        link.sizes = {str(k): int(v) for k, v in dict(sizes).items()}
        with self._io:
            old, self.link = self.link, link
            if old is not None:
                try:
                    old.sock.close()
                except OSError:
                    pass
            self._set_state("catching_up", instance)
        self._log.info("ha_standby_connected", standby=instance, files=len(link.sizes))
        self._wake.set()

    def _ship_loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            link = self.link
            if link is None:
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            try:
                if not link.caught_up:
                    with self._io:
                        if self.link is not link:
                            continue
                        done = self._send_batch(link, files=True, timeout=10)
                        if done:
                            self._in_copy(link)
                    continue
                every = ASYNC_EVERY_S if self.mode == "async" else FILES_EVERY_S
                self._wake.wait(every)
                self._wake.clear()
                now = time.monotonic()
                with self._io:
                    if self.link is not link:
                        continue
                    segment, size = self.journal_position()
                    due = (
                        now - last >= FILES_EVERY_S or link.acked < (segment, size) or now - link.acked_at > IDLE_MARK_S
                    )
                    if due:
                        self._send_batch(link, files=now - last >= FILES_EVERY_S, timeout=max(self.sync_timeout_s, 1.0))
                        last = now
            except (OSError, CopyError) as exc:
                with self._io:
                    if self.link is link:
                        self._drop(link, f"the copy connection failed: {exc}")

    def _in_copy(self, link: Link) -> None:
        """The catch-up is done (the caller holds ``_io``): in copy from here on. The state changes
        here first, so every write after it waits for its own sync; one more batch then carries
        what was written since the last one; only then does the lease row name the standby, so it
        is never eligible to take over with less than the peers saw."""
        link.caught_up = True
        mode = self.mode
        self.state = mode
        self._send_batch(link, files=False, timeout=max(self.sync_timeout_s, 1.0))
        self.row_state = mode
        if self.on_state(mode, link.instance):
            self.announced = True
            self._log.info("ha_standby_in_copy", standby=link.instance, mode=mode)

    def _drop(self, link: Link, reason: str) -> bool:
        """The standby fell away (the caller holds ``_io``): go on alone once the lease row says so."""
        self._log.error("ha_standby_lost", standby=link.instance, reason=reason)
        try:
            link.sock.close()
        except OSError:
            pass
        self.link = None
        return self._set_state("alone", "")

    def _set_state(self, state: str, standby: str) -> bool:
        before = self.state
        self.state = state
        if state in ("catching_up", "alone"):
            self.row_state = state
            self.announced = False
        if state == before:
            return True
        ok = self.on_state(state, standby)
        if not ok and state == "alone" and before == "sync":
            # The lease row still names the standby as in sync: sending now could leave it behind
            # what the peers saw. Nothing goes out until the row is told (or the lease is lost).
            self.state = "sync_lost"
            return False
        return True

    def flush(self) -> None:
        """One last batch (a clean stop): the standby gets the journal's end and the stores."""
        link = self.link
        if link is None or not link.caught_up:
            return
        with self._io:
            try:
                self._send_batch(link, files=True, timeout=1.0)
            except (OSError, CopyError) as exc:
                self._log.warning("ha_last_batch_failed", error=str(exc))

    def retry_alone(self) -> bool:
        """After ``sync_lost``: tell the lease row again; True once it took it."""
        if self.state != "sync_lost":
            return True
        if self.on_state("alone", ""):
            self.state = "alone"
            return True
        return False

    def view(self) -> dict[str, Any]:
        link = self.link
        segment, size = self.journal_position()
        partner: dict[str, Any] = {"instance": "", "connected": False, "lag_bytes": None, "lag_ms": None}
        if link is not None:
            behind = size - link.acked[1] if link.acked[0] == segment else size
            partner = {
                "instance": link.instance,
                "connected": True,
                "lag_bytes": max(0, behind),
                "lag_ms": round((time.monotonic() - link.acked_at) * 1000, 1) if behind > 0 else 0.0,
                "position": list(link.acked),
                "round_trip_ms": round(link.last_rtt_ms, 3),
            }
        state = self.state
        if state == "sync_lost":
            state = "alone"
        elif state in ("sync", "async") and not self.announced:
            state = "catching_up"  # not in the lease row yet: the standby could not take over
        return {"copy_state": state, "partner": partner}


class Receiver:
    """The standby's side: connects to the active, writes what it sends, acknowledges each batch."""

    def __init__(
        self, state_dir: Path, instance: str, lineage: int | None, writer: bool, seqs: dict[str, int] | None = None
    ) -> None:
        self.state_dir = Path(state_dir)
        self.instance = instance
        self.lineage = lineage
        self.writer = writer
        self.token: int | None = None
        self.history: list[int] = []
        self.active = ""
        self.address = ""
        #: The sessions' next outgoing numbers as the active last reported them: kept by the caller
        #: across copy connections (a failed attempt to reach a dead active must not forget them),
        #: started afresh by each active that welcomes this standby (its first batch carries them all).
        self.seqs: dict[str, int] = {} if seqs is None else seqs
        self.position: tuple[int, int] = (0, 0)  # the journal as of the last mark
        self.last_mark = 0.0  # time.monotonic() of the last mark
        self.connected = False
        self.refused = ""
        self.error = ""
        self.marks = 0
        self._fds: dict[str, int] = {}
        self._sock: socket.socket | None = None
        self._log = structlog.get_logger("fixproxy.ha")

    def sizes(self) -> dict[str, int]:
        out = {}
        for rel in copied_files(self.state_dir):
            path = self.state_dir / rel
            if rel.name.endswith(_WHOLE):
                continue
            data_end = path.stat().st_size
            out[str(rel)] = data_end
        return out

    def run(self, host: str, port: int, stop: threading.Event, on_mark: Callable[[], None] | None = None) -> None:
        """Copy until the connection ends (or ``stop``); raises nothing, records why in ``error``/``refused``."""
        self.address = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=2)
        except OSError as exc:
            self.error = f"cannot reach the active's copy at {host}:{port}: {exc.strerror or exc}"
            return
        self._sock = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            send_frame(sock, ["hello", self.instance, self.lineage, self.writer, self.sizes()])
            reply = recv_frame(sock)
            if reply[0] == "refuse":
                self.refused = str(reply[1])
                return
            if reply[0] != "welcome":
                raise CopyError(f"unexpected {reply[0]!r}")
            self.token, self.history, self.active = int(reply[1]), [int(t) for t in reply[2]], str(reply[3])
            self.seqs.clear()
            self.connected = True
            self.error = ""
            self._log.info("ha_copying", active=self.active, token=self.token, address=self.address)
            sock.settimeout(0.5)
            while not stop.is_set():
                try:
                    frame = recv_frame(sock)
                except TimeoutError:
                    continue
                kind = frame[0]
                if kind == "data":
                    self._write(frame[1], frame[2], frame[3])
                elif kind == "replace":
                    self._replace(frame[1], frame[2])
                elif kind == "truncate":
                    self._truncate(frame[1], frame[2])
                elif kind == "seqs":
                    self.seqs.update({str(k): int(v) for k, v in frame[1].items()})
                    self._save_seqs()
                elif kind == "mark":
                    self.position = (int(frame[2]), int(frame[3]))
                    self.last_mark = time.monotonic()
                    self.marks += 1
                    send_frame(sock, ["ack", frame[1], frame[2], frame[3]])
                    if on_mark is not None:
                        on_mark()
                else:
                    raise CopyError(f"unknown frame {kind!r}")
        except (OSError, CopyError, msgspec.DecodeError) as exc:
            self.error = f"the copy connection ended: {exc}"
        finally:
            self.connected = False
            self._close_files()
            try:
                sock.close()
            except OSError:
                pass

    def _save_seqs(self) -> None:
        """Kept beside the copy (not fsynced, as the copy is not): a standby restarted after the
        active died still knows them."""
        data = json.dumps(self.seqs).encode()
        fd = os.open(seqs_path(self.state_dir), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def close(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _path(self, rel: str) -> Path:
        path = (self.state_dir / rel).resolve()
        if self.state_dir.resolve() not in path.parents:
            raise CopyError(f"a path outside the state folder: {rel!r}")
        return path

    def _fd(self, rel: str) -> int:
        fd = self._fds.get(rel)
        if fd is None:
            path = self._path(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            self._fds[rel] = fd
        return fd

    def _write(self, rel: str, offset: int, data: bytes) -> None:
        os.pwrite(self._fd(rel), data, offset)

    def _truncate(self, rel: str, size: int) -> None:
        os.ftruncate(self._fd(rel), size)

    def _replace(self, rel: str, data: bytes) -> None:
        path = self._path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def _close_files(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
