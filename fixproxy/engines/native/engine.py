"""The native engine as the proxy runs it: the bridge (``engine.NativeBridge``) built from the
config, its stores reconciled with the journal, start and stop."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, cast

from ...config import LoadedConfig
from ...core import events as ev
from ...core.proxy import ProxyCore
from ...journal.writer import Journal
from .bridge import NativeBridge
from .session import Session


class NativeEngine:
    """The native engine (``[proxy] engine = "native"``): every session on the event loop's thread."""

    #: The native engine raises nothing of its own at start-up (its errors are OSErrors).
    start_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(
        self,
        loaded: LoadedConfig,
        core: ProxyCore,
        on_record: Callable[[ev.Action], None],
        *,
        journal: Journal,
        check_logon: dict[str, Callable[[str, str], bool]],
    ) -> None:
        self.bridge = NativeBridge(
            core,
            on_record,
            config=loaded.config,
            state_dir=loaded.state_dir,
            journal=journal,
            check_logon=check_logon,
            identifiers=loaded.config.identifiers.limits(),
        )

    def count_journaled(self, inbound_seq: dict[str, int]) -> None:
        """As ``QuickfixEngine.count_journaled``, on the native engine's stores."""
        for info in self.bridge.sessions():
            seq = inbound_seq.get(info.name)
            store = cast(Session, info.handle).store
            if seq is not None and store.next_target == seq:
                store.next_target = seq + 1
                store.save_seqnums()

    async def start(self) -> None:
        await self.bridge.start()

    async def stop(self, reason: str) -> None:
        await self.bridge.stop(reason)
