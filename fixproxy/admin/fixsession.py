"""The risk-desk FIX session: KillSwitchRequest (35=U1) in, KillSwitchReport (35=U2) out.

See spec/admin-messages.md. Pure translation between tag dicts and core values; the quickfix
edge does the sending. The data dictionary extension lives in spec/admin-dictionary.xml.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..core import events as ev

SPEC_EXTENSION = Path(__file__).resolve().parents[2] / "spec" / "admin-dictionary.xml"

#: PartyActionType (2329) -> KillAction value.
ACTIONS = {"1": "halt", "2": "resume", "100": "halt_and_cancel", "101": "reducing"}


def build_dictionary(base: Path, out: Path, extension: Path = SPEC_EXTENSION) -> Path:
    """Write ``base`` (quickfix's FIX44.xml) with the admin messages and fields merged in."""
    tree = ET.parse(base)
    root = tree.getroot()
    ext = ET.parse(extension).getroot()
    messages, fields = root.find("messages"), root.find("fields")
    known = {f.get("number"): f for f in fields}
    for field in ext.find("fields"):
        old = known.get(field.get("number"))
        if old is not None:
            fields.remove(old)
        fields.append(field)
    names = {m.get("msgtype") for m in messages}
    for message in ext.find("messages"):
        if message.get("msgtype") not in names:
            messages.append(message)
    msg_type = next(f for f in fields if f.get("number") == "35")
    for message in ext.find("messages"):
        ET.SubElement(msg_type, "value", enum=message.get("msgtype"), description=message.get("name").upper())
    out.parent.mkdir(parents=True, exist_ok=True)
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return out


def decode_request(fields: dict[int, str], operator: str, now_ns: int) -> ev.AdminKill | str:
    """A KillSwitchRequest as an AdminKill event, or the reason it cannot be one.

    ``operator`` is who the session authenticated as (its Logon's Username); the request is
    recorded as theirs. An Operator (20102) naming anyone else is refused, never believed.
    """
    action = ACTIONS.get(fields.get(2329, ""))
    if action is None:
        return f"PartyActionType (2329) must be one of {', '.join(ACTIONS)}"
    reason = fields.get(58, "").strip()
    if not reason:
        return "Text (58) must give the reason"
    claimed = fields.get(20102)
    if claimed is not None and claimed != operator:
        return f"Operator (20102) {claimed[:64]!r} is not the user this session logged on as ({operator!r})"
    return ev.AdminKill(fields.get(20101, ""), action, reason, operator, now_ns, fields.get(2328, ""))


def encode_report(result: ev.AdminResult, request: dict[int, str], report_id: str) -> list[tuple[int, str]]:
    """KillSwitchReport fields (MsgType first) answering ``request`` with ``result``."""
    out = [(35, "U2"), (2331, report_id)]
    if request.get(2328):
        out.append((2328, request[2328]))
    if request.get(2329) in ACTIONS:
        out.append((2329, request[2329]))
    out.append((2332, "0" if result.ok else "2"))
    if not result.ok:
        out.append((2333, "99"))
    if result.scope:
        out.append((20101, result.scope))
    if result.ok:
        out += [(20103, result.after), (20104, result.before), (20105, str(result.orders_cancelled))]
    out.append((58, result.detail or ("done" if result.ok else "refused")))
    return out


def rejected(request: dict[int, str], why: str, report_id: str) -> list[tuple[int, str]]:
    """A KillSwitchReport refusing a request that could not be read."""
    result = ev.AdminResult("kill", False, request.get(20101, ""), "", "", 0, detail=why)
    return encode_report(result, request, report_id)
