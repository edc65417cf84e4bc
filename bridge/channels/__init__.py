"""One module per channel, each with a ``Sender`` whose ``send`` returns an ``Outcome`` and never raises, and
whose ``parts`` says how many messages upstream that send makes (what a rate limit counts), and whose ``preview``
shows them (``alarm-bridge render``)."""

from __future__ import annotations

from typing import Protocol

from bridge.model import Group, Message, Outcome, Target


class Sender(Protocol):
    async def send(self, target: Target, group: Group, message: Message) -> Outcome: ...

    def parts(self, target: Target, group: Group, message: Message) -> int: ...

    def preview(self, target: Target, group: Group, message: Message) -> list[str]:
        """What upstream receives, request by request, as it is sent (what only sending can know, a signature,
        a timestamp or an app chat's id, as a placeholder of its size)."""
        ...
