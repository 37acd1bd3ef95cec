"""The risk-desk session's messages: KillSwitchRequest (35=U1) in, KillSwitchReport (35=U2) out.

See spec/admin-messages.md. Tag dicts to and from core values; the engine does the sending.
"""

from __future__ import annotations

from ..core import events as ev

#: PartyActionType (2329) -> KillAction value.
ACTIONS = {"1": "halt", "2": "resume", "100": "halt_and_cancel", "101": "reducing"}


def request_to_event(fields: dict[int, str], operator: str, now_ns: int) -> ev.AdminKill | str:
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


def result_to_report(result: ev.AdminResult, request: dict[int, str], report_id: str) -> list[tuple[int, str]]:
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


def refusal_to_report(request: dict[int, str], why: str, report_id: str) -> list[tuple[int, str]]:
    """A KillSwitchReport refusing a request that could not be read."""
    result = ev.AdminResult("kill", False, request.get(20101, ""), "", "", 0, detail=why)
    return result_to_report(result, request, report_id)
