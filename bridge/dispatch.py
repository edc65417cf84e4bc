"""Delivery of an accepted alarm to its group's targets."""

from __future__ import annotations

import logging
from typing import Protocol

from bridge.model import Alarm, Group, Outcome
from bridge.render import Renderer

logger = logging.getLogger(__name__)


class Delivery(Protocol):
    async def deliver(self, alarm: Alarm, group: Group) -> list[Outcome]: ...


class DryRun:
    """Renders the group's text message and logs it instead of sending anything."""

    def __init__(self, renderer: Renderer) -> None:
        self._renderer = renderer

    async def deliver(self, alarm: Alarm, group: Group) -> list[Outcome]:
        text, _ = self._renderer.render("native/text.j2", alarm, group)
        logger.info("dry-run delivery to group %s/%s:\n%s", group.id, group.level, text)
        return []
