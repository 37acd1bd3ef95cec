"""Writing FIX text: the one builder of whole messages (BeginString, BodyLength, CheckSum)."""

from __future__ import annotations

from collections.abc import Callable

from ..timefmt import fix_timestamp_ms


def build(
    begin_string: str,
    msg_type: str,
    seq: int,
    sender: str,
    target: str,
    sending_time: str,
    body: list[tuple[int, str]],
    header: list[tuple[int, str]] | None = None,
) -> bytes:
    """A complete message; ``header`` holds 43/97/122 when resending. Header fields come in tag order."""
    head = f"35={msg_type}\x0134={seq}\x01"
    if header:
        extra = dict(header)
        if 43 in extra:
            head += f"43={extra[43]}\x01"
        head += f"49={sender}\x0152={sending_time}\x0156={target}\x01"
        for tag in (97, 122):
            if tag in extra:
                head += f"{tag}={extra[tag]}\x01"
    else:
        head += f"49={sender}\x0152={sending_time}\x0156={target}\x01"
    text = (head + "".join([f"{tag}={value}\x01" for tag, value in body])).encode("latin-1", "replace")
    return _enclose(begin_string, text)


def _latin1(text: str) -> bytes:
    return text.encode("latin-1", "replace")


def frame(
    begin_string: str, msg_type: str, body: list[tuple[int, str]], encode: Callable[[str], bytes] = _latin1
) -> bytes:
    """A message without the session header (an engine adds 34, 49, 52 and 56 as it sends it), with
    BodyLength and CheckSum. ``encode`` turns the text from MsgType on into the bytes that are sent
    (by default one byte a character, as the proxy holds FIX text)."""
    text = f"35={msg_type}\x01" + "".join([f"{tag}={value}\x01" for tag, value in body])
    return _enclose(begin_string, encode(text))


def _enclose(begin_string: str, text: bytes) -> bytes:
    """``text`` (MsgType to the last body field) between BeginString and BodyLength, and CheckSum."""
    start = f"8={begin_string}\x019={len(text)}\x01".encode()
    return b"%s%s10=%03d\x01" % (start, text, (sum(start) + sum(text)) % 256)


#: SendingTime (52) of every message the engine sends.
stamp = fix_timestamp_ms
