"""Trading state per scope (firm, session, account, symbol), checked at one gate.

ACTIVE lets everything through; REDUCING only orders that shrink a position; HALTED no new
orders or replaces. Cancels always pass. Nothing resumes by itself: only an explicit action
moves a scope back to ACTIVE. The most restrictive state among the scopes an order falls in wins.
"""

from __future__ import annotations

import enum

import msgspec


class TradingState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class KillAction(enum.StrEnum):
    HALT = "halt"
    HALT_AND_CANCEL = "halt_and_cancel"
    REDUCING = "reducing"
    RESUME = "resume"


_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

#: The state each action leads to. Every action is allowed from every state: each is an explicit
#: staff decision (a halted account may be put to REDUCING so that it can flatten).
TARGET: dict[KillAction, TradingState] = {
    KillAction.HALT: TradingState.HALTED,
    KillAction.HALT_AND_CANCEL: TradingState.HALTED,
    KillAction.REDUCING: TradingState.REDUCING,
    KillAction.RESUME: TradingState.ACTIVE,
}

SCOPE_KINDS = ("firm", "session", "account", "symbol")


class ScopeState(msgspec.Struct, frozen=True):
    """The trading state of one scope and who put it there."""

    scope: str
    state: TradingState
    reason: str = ""
    operator: str = ""
    since_ns: int = 0


#: Longest name in a scope (a session, account or symbol name).
MAX_SCOPE_NAME = 64


def parse_scope(text: str) -> str:
    """``firm`` or ``<kind>:<name>`` with kind session, account or symbol, the name 1 to 64 printable
    ASCII characters without spaces; ValueError otherwise."""
    if text == "firm":
        return text
    kind, sep, name = text.partition(":")
    if not sep or kind not in SCOPE_KINDS[1:] or not name:
        raise ValueError(f"scope must be 'firm' or session:/account:/symbol:<name>, got {text[:80]!r}")
    if len(name) > MAX_SCOPE_NAME:
        raise ValueError(f"a scope's name is at most {MAX_SCOPE_NAME} characters, got {len(name)}")
    if not all("!" <= c <= "~" for c in name):
        raise ValueError(f"a scope's name is printable ASCII without spaces or control characters, got {name!r}")
    return text


class KillSwitch:
    """Trading states by scope. Scopes not listed are ACTIVE."""

    __slots__ = ("_states",)

    def __init__(self) -> None:
        self._states: dict[str, ScopeState] = {}

    def get(self, scope: str) -> ScopeState:
        return self._states.get(scope) or ScopeState(scope, TradingState.ACTIVE)

    def states(self) -> list[ScopeState]:
        return sorted(self._states.values(), key=lambda s: s.scope)

    def apply(
        self, scope: str, action: KillAction, reason: str, operator: str, now_ns: int
    ) -> tuple[ScopeState, ScopeState]:
        """Move ``scope`` as ``action`` says; returns (before, after)."""
        parse_scope(scope)
        before = self.get(scope)
        target = TARGET[action]
        after = ScopeState(scope, target, reason, operator, now_ns)
        if target is TradingState.ACTIVE:
            self._states.pop(scope, None)
        else:
            self._states[scope] = after
        return before, after

    def load(self, state: ScopeState) -> None:
        if state.state is not TradingState.ACTIVE:
            self._states[state.scope] = state

    def effective(self, session: str, account: str, symbol: str) -> ScopeState | None:
        """The most restrictive non-ACTIVE state among the scopes an order falls in (None: all ACTIVE)."""
        if not self._states:
            return None
        worst: ScopeState | None = None
        for scope in ("firm", f"session:{session}", f"account:{account}" if account else "", f"symbol:{symbol}"):
            found = self._states.get(scope) if scope else None
            if found is not None and (worst is None or _SEVERITY[found.state] > _SEVERITY[worst.state]):
                worst = found
        return worst

    @staticmethod
    def covers(scope: str, session: str, account: str, symbol: str) -> bool:
        """Does ``scope`` apply to an order of this session, account and symbol?"""
        if scope == "firm":
            return True
        kind, _, name = scope.partition(":")
        return {"session": session, "account": account, "symbol": symbol}.get(kind) == name
