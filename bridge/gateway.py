"""The path every alarm takes once it is valid: group lookup, the dedup window, delivery."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bridge.codes import Code
from bridge.config import Settings
from bridge.dispatch import Delivery
from bridge.model import Alarm, Group
from bridge.store import Store, StoreError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    code: Code
    detail: str = ""


class Gateway:
    def __init__(self, settings: Settings, store: Store, delivery: Delivery) -> None:
        self.settings = settings
        self.store = store
        self.delivery = delivery
        self._provisioned = {g.key: g for g in settings.groups}

    async def find_group(self, id: str, level: str) -> Group | None:
        return self._provisioned.get((id, level)) or await self.store.get_group(id, level)

    async def accept(self, alarm: Alarm) -> Result:
        try:
            async with asyncio.timeout(self.settings.store.timeout):
                group = await self.find_group(alarm.id, alarm.level)
                if group is None:
                    return Result(Code.NO_GROUP, f"id={alarm.id!r} level={alarm.level!r}")
                window = self.settings.dedup_window if group.dedup_window is None else group.dedup_window
                fresh = window <= 0 or await self.store.put_new(f"dedup:{alarm.fingerprint()}", "1", window)
        except (StoreError, TimeoutError) as exc:
            logger.warning("store unavailable: %s", exc or "timed out")
            return Result(Code.STORE_DOWN)
        if not fresh:
            return Result(Code.DUPLICATE, f"within the {window:g}s window")
        failed = [o for o in await self.delivery.deliver(alarm, group) if not o.ok]
        if not failed:
            return Result(Code.OK)
        return Result(Code(min(o.code for o in failed)), "; ".join(f"{o.target}: {o.detail}" for o in failed))
