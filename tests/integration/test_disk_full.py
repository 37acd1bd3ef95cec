"""The journal's disk fills up: new orders are refused (RECORDING_FAILED), cancels pass, /healthz and
the summary say why; once there is room again and a risk user resumes, orders flow again.

The proxy runs in a mount namespace of its own (``unshare``) with its journal folder on a small tmpfs;
the test fills that tmpfs through ``/proc/<pid>/root`` (the proxy's view of the file system)."""

from __future__ import annotations

import errno
import json
import os
import urllib.error
import urllib.request

from .harness import messages
from .test_admin_http import api, cli
from .test_order_path import order

PREFIX_SH = "mount -t tmpfs -o size=1m fixproxy-journal var/journal && exec {}"


def ballast(path: str) -> int:
    """Fill the file system of ``path`` with a file; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        block = b"\0" * 4096
        while True:
            try:
                written += os.write(fd, block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return written
    finally:
        os.close(fd)


def healthz(stack) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(stack.api_url.removesuffix("/api/v1") + "/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_full_journal_disk_refuses_new_orders_lets_cancels_through_and_resumes(fresh_stack, tmp_path):
    """Disk full: RECORDING_FAILED for new orders, a cancel still reaches the venue, /healthz 503 with the
    cause; with room again a risk user's resume brings orders back."""
    root = tmp_path / "s0"
    (root / "var" / "journal").mkdir(parents=True)
    s = fresh_stack(
        behaviours={"MSFT": "ack"},
        extra="\n[journal]\npreallocate_kb = 64\nreserve_kb = 32\n",
        proxy_prefix=["unshare", "--mount", "--propagation", "private", "sh", "-c", PREFIX_SH],
    )
    assert s.root == root
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("W1", symbol="MSFT", price="410"))
    oms.wait_for(m(**{"35": "8", "11": "W1", "39": "0"}))
    assert healthz(s)[0] == 200

    full = f"/proc/{s.proxy.pid}/root{root}/var/journal/ballast"
    assert ballast(full) < 1 << 20  # the tmpfs, not the test's own disk
    refused = None
    for i in range(400):
        oms.send_line(order(f"N{i}", symbol="MSFT", price="410"))
        answer = oms.wait_for(
            lambda r, cl=f"N{i}": r.get("dir") == "in" and cl in (r["fields"].get("11"), r["fields"].get("379"))
        )["fields"]
        if answer.get("35") == "j":
            refused = answer
            break
    assert refused is not None and refused["58"].startswith("RECORDING_FAILED"), refused
    assert "No space left on device" in refused["58"]
    status, health = healthz(s)
    assert status == 503 and health["status"] == "failed"
    assert "No space left on device" in health["journal"]["reason"]
    assert api(s, "GET", "/summary", role="viewer")[1]["health"]["journal"]["state"] == "failed"
    assert "RECORDING FAILED" in cli(s, "status").stdout

    # A cancel still goes through; a new order is still refused.
    oms.send_line("35=F|11=W1-C|41=W1|55=MSFT|54=1|38=100")
    assert oms.wait_for(m(**{"35": "8", "11": "W1-C"}))["fields"]["39"] == "4"
    oms.send_line(order("N-again", symbol="MSFT", price="410"))
    assert oms.wait_for(m(**{"35": "j", "379": "N-again"}))["fields"]["58"].startswith("RECORDING_FAILED")

    # Resume while the disk is still full: refused. With room again: orders flow.
    status, result = api(s, "POST", "/recording/resume", {"reason": "disk cleaned"})
    assert status == 422 and "No space left on device" in result["detail"], result
    os.unlink(full)
    done = cli(s, "resume-recording", "--reason", "disk cleaned")
    assert done.returncode == 0 and "recording" in done.stdout, done.stdout + done.stderr
    assert healthz(s)[0] == 200
    oms.send_line(order("AFTER", symbol="MSFT", price="410"))
    oms.wait_for(m(**{"35": "8", "11": "AFTER", "39": "0"}))
