"""A raw FIX client on a TCP socket, for sending what no well-behaved engine would: bad checksums,
wrong body lengths, missing tags. Test code only; the proxy itself speaks through quickfix."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

SOH = "\x01"


def checksum(text: str) -> str:
    return f"{sum(text.encode('latin-1')) % 256:03d}"


def frame(begin: str, body: str) -> str:
    """``8=...|9=len|<body>|10=sum|`` with correct length and checksum (body without 8/9/10, SOH-separated)."""
    head = f"8={begin}{SOH}9={len(body.encode('latin-1'))}{SOH}"
    return head + body + f"10={checksum(head + body)}{SOH}"


def now() -> str:
    t = datetime.now(UTC)
    return t.strftime("%Y%m%d-%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


class RawFix:
    def __init__(self, port: int, sender: str, target: str = "FIXPROXY", begin: str = "FIX.4.4"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sender, self.target, self.begin = sender, target, begin
        self.seq = 1
        self.buffer = b""

    def body(self, msg_type: str, fields: str, seq: int | None = None) -> str:
        seq = self.seq if seq is None else seq
        parts = f"35={msg_type}{SOH}34={seq}{SOH}49={self.sender}{SOH}52={now()}{SOH}56={self.target}{SOH}"
        return parts + "".join(f"{f}{SOH}" for f in fields.split("|") if f)

    def send_raw(self, data: str) -> None:
        self.sock.sendall(data.encode("latin-1"))

    def send(self, msg_type: str, fields: str = "") -> int:
        """Send a well-framed message with the next sequence number; returns that number."""
        seq = self.seq
        self.send_raw(frame(self.begin, self.body(msg_type, fields, seq)))
        self.seq += 1
        return seq

    def logon(self, extra: str = "", reset: bool = True) -> dict[int, str]:
        """Log on; ``reset=False``: without ResetSeqNumFlag, the session's numbers going on."""
        self.send("A", f"98=0|108=30{'|141=Y' if reset else ''}{'|' + extra if extra else ''}")
        return self.expect(lambda m: m.get(35) == "A")

    def reconnect(self, ports: list[int], timeout: float = 30.0) -> int:
        """A new connection, the session unchanged (sequence numbers go on): to the first of
        ``ports`` that accepts, trying them in turn (an active/passive pair's two proxies) until
        ``timeout``; the port connected to. Log on after it with ``logon(reset=False)``."""
        self.sock.close()
        self.buffer = b""
        deadline = time.monotonic() + timeout
        while True:
            for port in ports:
                try:
                    self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                    return port
                except OSError:
                    continue
            if time.monotonic() > deadline:
                raise AssertionError(f"none of {ports} accepted a connection within {timeout}s")
            time.sleep(0.05)

    def read(self, timeout: float = 5.0) -> dict[int, str] | None:
        """The next message as tag -> value, or None on timeout or a closed connection."""
        deadline = time.monotonic() + timeout
        while True:
            end = self.buffer.find(b"\x0110=")
            if end >= 0:
                stop = self.buffer.find(b"\x01", end + 4)
                if stop >= 0:
                    raw, self.buffer = self.buffer[: stop + 1], self.buffer[stop + 1 :]
                    fields = {}
                    for part in raw.decode("latin-1").split(SOH):
                        tag, _, value = part.partition("=")
                        if tag.isdigit():
                            fields[int(tag)] = value
                    return fields
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except ConnectionError:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def expect(self, predicate, timeout: float = 10.0) -> dict[int, str]:
        """Read until a message matches (answering TestRequests); AssertionError otherwise."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            msg = self.read(max(0.1, deadline - time.monotonic()))
            if msg is None:
                break
            seen.append(msg)
            if msg.get(35) == "1":
                self.send("0", f"112={msg.get(112, '')}")
            if predicate(msg):
                return msg
        raise AssertionError(f"no matching message; got {seen}")

    def closed(self, timeout: float = 10.0) -> bool:
        """True once the peer closes the connection (messages before that are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if not chunk:
                return True
        return False

    def close(self) -> None:
        self.sock.close()
