"""Which TCP connection is whose, read from Linux's /proc (the simulators' failover reports: which
address an OMS logged on to, which process a venue connection came from). Elsewhere every answer is
None: the simulators work the same, their reports just say less."""

from __future__ import annotations

import os
from pathlib import Path

_ESTABLISHED = "01"


def _port(field: str) -> tuple[str, int]:
    """``0100007F:1F90`` -> ("0100007F", 8080)."""
    host, _, port = field.partition(":")
    return host, int(port, 16)


def _ipv4(hex_host: str) -> str:
    if len(hex_host) != 8:
        return hex_host  # an IPv6 address: kept as /proc writes it
    return ".".join(str(b) for b in reversed(bytes.fromhex(hex_host)))


def established() -> list[tuple[int, str, int, int]]:
    """Every established TCP connection of this network namespace: (local port, remote host, remote
    port, socket inode)."""
    out = []
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != _ESTABLISHED:
                continue
            _, local = _port(parts[1])
            remote_host, remote = _port(parts[2])
            out.append((local, _ipv4(remote_host), remote, int(parts[9])))
    return out


def _socket_inodes(pid: str) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def own_connection_to(ports: set[int]) -> str | None:
    """``host:port`` of this process's established connection to one of ``ports`` (the first found)."""
    mine = _socket_inodes("self")
    for _, host, remote, inode in established():
        if remote in ports and inode in mine:
            return f"{host}:{remote}"
    return None


def process_of(local_port: int, remote_port: int) -> int | None:
    """The pid of the process holding the connection from ``local_port`` to ``remote_port`` (both on
    this host), if /proc lets us see it."""
    inodes = {inode for local, _, remote, inode in established() if local == local_port and remote == remote_port}
    if not inodes:
        return None
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        if _socket_inodes(pid) & inodes:
            return int(pid)
    return None
