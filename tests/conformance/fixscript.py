"""Reads and runs the conformance table (``*.fixscript``): bytes in, the proxy's answer expected.

The format (after QuickFIX/J's acceptance ``.def`` scripts) is described at the top of
``cases.fixscript`` and in docs/conformance.md. A case is run over real loopback TCP against a
running proxy stack (tests/integration/harness.py ``Stack``); its expectations are checked on the
OMS connection (``E``), on the venue simulator's message log (``V``/``N``) and on the connection's
end (``eDISCONNECT``). An ``E`` or ``V`` line starting ``8=`` is exact (the golden scripts,
tests/golden/): the whole message, every field in order, masked fields taking any value.
"""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

SOH = b"\x01"
#: Tags never compared (they change with every run): BodyLength, CheckSum, SendingTime,
#: TransactTime, OrigSendingTime.
MASKED = frozenset((9, 10, 52, 60, 122))
#: Sessions of the conformance stack: name -> (SenderCompID, BeginString).
SESSIONS = {
    "OMS1": ("OMS1", "FIX.4.4"),
    "OMS2": ("OMS2", "FIX.4.2"),
    "OMS3": ("OMS3", "FIX.4.4"),
    "OMS4": ("OMS4", "FIX.4.2"),
    "OMS5": ("OMS5", "FIXT.1.1"),
}
#: OMS5, the FIX 5.0SP2 (FIXT.1.1) session of the conformance stack: added to harness.config_text's.
FIXT_OMS = '\n[[oms]]\nname = "oms5"\ncomp_id = "OMS5"\nfix_version = "FIX.5.0SP2"\ndefault_venue = "sim"\n'
#: The proxy's CompID on every session (OMS and venue side).
PROXY_COMP_ID = "FIXPROXY"
#: Session-level MsgTypes (Heartbeat, TestRequest, ResendRequest, Reject, SequenceReset, Logout, Logon).
ADMIN_TYPES = frozenset("012345A")
#: How long an expectation waits (seconds); a slow machine is no failure, a missing answer is.
WAIT_S = float(os.environ.get("CONFORMANCE_WAIT_S", "10"))


@dataclass
class Step:
    engine: str  # "" for every engine, else the one engine this step is for
    kind: str  # I (send), E (expect message), eDISCONNECT, V (venue got), N (venue never got), or a command
    # (E and V text starting "8=" is an exact expectation)
    text: str
    line: int


@dataclass
class Case:
    name: str
    comment: str
    line: int
    steps: list[Step] = field(default_factory=list)


def load(path: Path) -> list[Case]:
    """Every case of a table file, in order; a malformed line is an error naming its line."""
    cases: list[Case] = []
    comment: list[str] = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = text.rstrip()
        if not line:
            continue
        if line.startswith("=== "):
            name = line[4:].strip()
            if not re.fullmatch(r"[0-9]+[a-z]*_[A-Za-z0-9_]+", name) or any(c.name == name for c in cases):
                raise ValueError(f"{path.name}:{number}: bad or repeated case name {name!r}")
            cases.append(Case(name, "", number))
            comment = []
            continue
        if line.startswith("#"):
            if cases and not cases[-1].steps:
                comment.append(line.lstrip("# "))
                cases[-1].comment = " ".join(comment)
            continue
        if not cases:
            raise ValueError(f"{path.name}:{number}: a step before the first case")
        engine = ""
        if line.startswith("["):
            engine, _, line = line[1:].partition("] ")
            if engine not in ("quickfix", "native"):
                raise ValueError(f"{path.name}:{number}: unknown engine {engine!r}")
        if line[0] in "IEVN":
            cases[-1].steps.append(Step(engine, line[0], line[1:], number))
        elif line.split()[0] in ("iLOGON", "iCONNECT", "iDISCONNECT", "eDISCONNECT", "iPAUSE", "iHTTP"):
            cases[-1].steps.append(Step(engine, line.split()[0], line[len(line.split()[0]) :].strip(), number))
        else:
            raise ValueError(f"{path.name}:{number}: unknown step {line[:20]!r}")
    return cases


def _stamp(offset_s: float) -> str:
    t = datetime.now(UTC) + timedelta(seconds=offset_s)
    return t.strftime("%Y%m%d-%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def expand(text: str, ids: dict[str, str]) -> str:
    """Placeholders: <TIME>, <TIME-N>/<TIME+N> (seconds), <ID>, <ID2>... (the case's ClOrdIDs)."""
    text = re.sub(r"<TIME([+-]\d+)?>", lambda m: _stamp(float(m.group(1) or 0)), text)
    return re.sub(r"<(ID\d*)>", lambda m: ids[m.group(1)], text)


def to_bytes(text: str) -> bytes:
    """``|`` is SOH; ``\\xNN`` is one raw byte; everything else is latin-1."""
    out = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)
    return out.replace("|", "\x01").encode("latin-1")


def frame(begin: str, text: str) -> bytes:
    """An ``I`` line as bytes. A line starting ``8=`` or ``!`` is sent as written (without the ``!``),
    with ``<LEN>`` and ``<SUM>`` (or ``<BADSUM>``, a wrong one) filled in if present; any other line is framed:
    ``8=<begin>|9=<len>|...|10=<sum>|``."""
    if text.startswith("!"):
        text = text[1:]
    elif not text.startswith("8="):
        text = f"8={begin}|9=<LEN>|{text}" + ("" if text.endswith("|") else "|") + "10=<SUM>|"
    if "<LEN>" in text:
        head, rest = text.split("<LEN>|", 1)
        trailer = rest.rfind("|10=")
        body = rest[: trailer + 1] if trailer >= 0 else rest
        text = f"{head}{len(to_bytes(body))}|{rest}"
    for mark, off in (("<SUM>", 0), ("<BADSUM>", 1)):  # <BADSUM>: the right CheckSum plus one, never right
        if mark in text:
            before = text.split(f"10={mark}")[0]
            text = text.replace(mark, f"{(sum(to_bytes(before)) + off) % 256:03d}", 1)
    return to_bytes(text)


def parse_expected(text: str) -> list[tuple[int, str, str]]:
    """``tag=value`` (equal), ``tag=*`` (present), ``tag~text`` (contains), ``tag!`` (absent)."""
    out = []
    for part in text.split("|"):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(=|~|!)(.*)", part)
        if m is None:
            raise ValueError(f"bad expectation {part!r}")
        out.append((int(m.group(1)), m.group(2), m.group(3)))
    return out


def mask(raw: str) -> str:
    """A message (``|``-separated) with the values of masked tags written ``*``: an exact line as a script has it."""
    return (
        "|".join(
            f"{tag}=*" if tag.isdigit() and int(tag) in MASKED else f"{tag}={value}"
            for tag, _, value in (part.partition("=") for part in raw.strip("|").split("|"))
        )
        + "|"
    )


def exact_mismatch(expected: str, raw: str) -> str | None:
    """Why ``raw`` is not exactly ``expected`` (both ``|``-separated, starting ``8=``), or None: the same
    fields in the same order with the same values; masked tags, and ``tag=*``, take any value."""
    want = [part.partition("=") for part in expected.strip("|").split("|")]
    got = [part.partition("=") for part in raw.strip("|").split("|")]
    for number, ((w_tag, _, w_value), (g_tag, _, g_value)) in enumerate(zip(want, got, strict=False), 1):
        if w_tag != g_tag:
            return f"field {number} is tag {g_tag}, expected tag {w_tag}"
        if w_value != "*" and not (w_tag.isdigit() and int(w_tag) in MASKED) and w_value != g_value:
            return f"{w_tag}={g_value}, expected {w_tag}={w_value}"
    if len(want) != len(got):
        return f"{len(got)} fields, expected {len(want)}"
    return None


def matches(msg: dict[int, str], expected: list[tuple[int, str, str]]) -> bool:
    for tag, op, value in expected:
        got = msg.get(tag)
        if op == "!":
            if got is not None:
                return False
        elif got is None:
            return False
        elif op == "~":
            if value.lower() not in got.lower():
                return False
        elif value != "*" and tag not in MASKED and got != value:
            return False
    return True


class Client:
    """One OMS connection: raw bytes out, whole messages in."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        self.buffer = b""
        self.eof = False
        self.last_seq = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        for m in re.finditer(rb"\x0134=(\d+)\x01", data):
            self.last_seq = max(self.last_seq, int(m.group(1)))

    def read(self, timeout: float = WAIT_S) -> dict[int, str] | None:
        """The next message (tag -> value, first occurrence kept; 0 -> raw text), None on close or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            end = self.buffer.find(b"\x0110=")
            if end >= 0:
                stop = self.buffer.find(SOH, end + 4)
                if stop >= 0:
                    raw, self.buffer = self.buffer[: stop + 1], self.buffer[stop + 1 :]
                    msg: dict[int, str] = {0: raw.decode("latin-1").replace("\x01", "|")}
                    for part in raw.decode("latin-1").split("\x01"):
                        tag, _, value = part.partition("=")
                        if tag.isdigit():
                            msg.setdefault(int(tag), value)
                    return msg
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


class Runner:
    """Runs cases against one stack; ``venue_lines`` is the venue simulator's record list."""

    def __init__(
        self,
        port: int,
        venue_proc,
        index: int,
        engine: str,
        *,
        venue_log: Path | None = None,
        api: tuple[str, str] | None = None,
    ):
        """``venue_log``: the folder of the proxy's venue message logs (exact ``V`` lines read the wire
        bytes there); ``api``: the admin API's base URL and a risk token (``iHTTP`` steps)."""
        self.port = port
        self.engine = engine
        self.venue = venue_proc
        self.client: Client | None = None
        self.begin = "FIX.4.4"
        self.sender = "OMS1"
        self.ids = {"ID": f"K{index:03d}", **{f"ID{n}": f"K{index:03d}-{n}" for n in range(2, 10)}}
        self.never: list[tuple[list[tuple[int, str, str]], int]] = []
        self.venue_mark = venue_proc.mark()
        self.venue_log = venue_log
        self.api = api
        self.venue_seen = len(self._venue_sent()) if venue_log is not None else 0

    def fail(self, step: Step, why: str) -> AssertionError:
        return AssertionError(f"line {step.line}: {step.kind}{step.text[:120]}: {why}")

    def run(self, case: Case) -> None:
        try:
            for step in case.steps:
                if not step.engine or step.engine == self.engine:
                    getattr(self, "_" + step.kind)(step)
        finally:
            self._end()

    # -------------------------------------------------------------- steps

    def _connect(self, name: str) -> None:
        if self.client is not None:
            self.client.close()
        self.sender, self.begin = SESSIONS[name or "OMS1"]
        self.client = Client(self.port)

    def _iCONNECT(self, step: Step) -> None:
        self._connect(step.text)

    def _iLOGON(self, step: Step) -> None:
        """Connect and log on with 141=Y (sequence numbers 1 both ways); retried while the proxy
        still holds the previous case's connection."""
        words = step.text.split()
        for _ in range(40):
            self._connect(words[0] if words else "")
            logon = f"35=A|34=1|49={self.sender}|52=<TIME>|56=FIXPROXY|98=0|108=30|141=Y" + "".join(
                "|" + w for w in words[1:]
            )
            self.client.send(frame(self.begin, expand(logon, self.ids)))
            msg = self.client.read()
            if msg is not None and msg.get(35) == "A":
                return
            time.sleep(0.25)
        raise self.fail(step, f"no Logon answer (last: {msg})")

    def _iDISCONNECT(self, step: Step) -> None:
        self.client.close()
        self.client = None

    def _iPAUSE(self, step: Step) -> None:
        time.sleep(float(step.text or 0.2))

    def _I(self, step: Step) -> None:
        text = expand(step.text, self.ids)
        if "<NEXT>" in text:  # several messages in one write
            self.client.send(b"".join(frame(self.begin, part) for part in text.split("<NEXT>")))
            return
        split = re.search(r"<SPLIT(-\d+)?>", text)
        if split is None:
            self.client.send(frame(self.begin, text))
            return
        # Sent in two writes: cut in the middle (<SPLIT>) or N bytes before the end (<SPLIT-N>).
        data = frame(self.begin, text[: split.start()] + text[split.end() :])
        cut = len(data) + int(split.group(1)) if split.group(1) else len(data) // 2
        self.client.send(data[:cut])
        time.sleep(0.2)
        self.client.send(data[cut:])

    def _E(self, step: Step) -> None:
        text = expand(step.text, self.ids)
        exact = text.startswith("8=")
        expected = (
            [(int(t), "=", v) for t, _, v in (p.partition("=") for p in text.split("|")) if t.isdigit()]
            if exact
            else parse_expected(text)
        )
        wants_plain_heartbeat = any(t == 35 and v == "0" for t, _, v in expected) and not any(
            t == 112 for t, _, _ in expected
        )
        while True:
            msg = self.client.read()
            if msg is None:
                raise self.fail(step, "closed or nothing within the wait" if self.client.eof else "nothing received")
            if msg.get(35) == "0" and 112 not in msg and not wants_plain_heartbeat:
                continue  # an unsolicited Heartbeat
            if exact:
                why = exact_mismatch(text, msg[0])
                if why is not None:
                    raise self.fail(step, f"not exactly as expected ({why}); got\nE{mask(msg[0])}")
            elif not matches(msg, expected):
                raise self.fail(step, f"got {msg[0]}")
            return

    def _eDISCONNECT(self, step: Step) -> None:
        """The proxy closes the connection. A Logout before the close is allowed (quickfix and the
        native engine may or may not say goodbye when they drop a connection)."""
        while True:
            msg = self.client.read()
            if msg is None:
                if not self.client.eof:
                    raise self.fail(step, "the connection stayed open")
                self.client.close()
                self.client = None
                return
            if msg.get(35) not in ("5", "0"):
                raise self.fail(step, f"got {msg[0]} before the close")

    def _V(self, step: Step) -> None:
        if step.text.startswith("8="):
            self._V_exact(step)
            return
        expected = parse_expected(expand(step.text, self.ids))
        try:
            self.venue.wait_for(
                lambda r: r.get("dir") == "in" and _venue_matches(r, expected), timeout=WAIT_S, start=self.venue_mark
            )
        except AssertionError:
            raise self.fail(step, "the venue never received it") from None

    def _venue_sent(self) -> list[str]:
        """Every application message the proxy wrote to the venue, as on the wire (``|`` for SOH), in
        order: the venue simulator's own record is quickfix's re-serialization, which sorts fields."""
        if self.venue_log is None:
            raise AssertionError("an exact V line needs the runner's venue_log")
        sent = []
        for path in sorted(self.venue_log.glob("*.messages.current.log")):
            for line in path.read_text(encoding="latin-1").split("\n")[:-1]:  # whole lines only
                raw = line.split(" : ", 1)[-1].replace("\x01", "|")
                msg_type = re.search(r"\|35=([^|]*)", raw)
                if f"|49={PROXY_COMP_ID}|" in raw and msg_type and msg_type.group(1) not in ADMIN_TYPES:
                    sent.append(raw)
        return sent

    def _V_exact(self, step: Step) -> None:
        """The next application message the proxy sent the venue is exactly this one, and the venue
        simulator received it."""
        text = expand(step.text, self.ids)
        deadline = time.monotonic() + WAIT_S
        while len(sent := self._venue_sent()) <= self.venue_seen:
            if time.monotonic() > deadline:
                raise self.fail(step, "the proxy sent the venue nothing more")
            time.sleep(0.05)
        raw = sent[self.venue_seen]
        self.venue_seen += 1
        why = exact_mismatch(text, raw)
        if why is not None:
            raise self.fail(step, f"not exactly as expected ({why}); sent\nV{mask(raw)}")
        key = [(t, "=", v) for t, _, v in (p.partition("=") for p in raw.split("|")) if t in ("35", "11")]
        self._V(Step(step.engine, "V", "|".join(f"{t}={v}" for t, _, v in key), step.line))

    def _iHTTP(self, step: Step) -> None:
        """``iHTTP <METHOD> <path> [JSON body]``: one request to the admin API with the risk token; 2xx expected."""
        if self.api is None:
            raise self.fail(step, "an iHTTP step needs the runner's api")
        method, path, *body = step.text.split(None, 2)
        url, token = self.api
        request = urllib.request.Request(
            url + path,
            data=body[0].encode() if body else None,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=WAIT_S) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise self.fail(step, f"HTTP {exc.code}: {exc.read()[:200]!r}") from None

    def _N(self, step: Step) -> None:
        self.never.append((parse_expected(expand(step.text, self.ids)), step.line))

    # -------------------------------------------------------------- after the case

    def _end(self) -> None:
        client = self.client
        if client is not None and not client.eof:
            # Leave the session logged out, so the next case's Logon is not refused.
            logout = f"35=5|34={client.last_seq + 1}|49={self.sender}|52=<TIME>|56=FIXPROXY"
            try:
                client.send(frame(self.begin, expand(logout, self.ids)))
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline and client.read(deadline - time.monotonic()) is not None:
                    pass
            except OSError:
                pass
            client.close()
        self.client = None
        if self.never:
            lines = [r for r in list(self.venue.lines)[self.venue_mark :] if r.get("dir") == "in"]
            for expected, line in self.never:
                hit = [r for r in lines if _venue_matches(r, expected)]
                assert not hit, f"line {line}: the venue received {hit[0].get('fields')}"


def _venue_matches(record: dict, expected: list[tuple[int, str, str]]) -> bool:
    fields = record.get("fields") or {}
    return matches({int(k): v for k, v in fields.items() if k.isdigit()}, expected)
