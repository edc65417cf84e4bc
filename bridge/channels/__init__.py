"""One module per channel, each with a ``Sender`` whose ``send`` returns an ``Outcome`` and never raises, and
whose ``parts`` says how many messages upstream that send makes (what a rate limit counts)."""

from __future__ import annotations

from typing import Protocol

from bridge.model import Group, Message, Outcome, Target


class Sender(Protocol):
    async def send(self, target: Target, group: Group, message: Message) -> Outcome: ...

    def parts(self, target: Target, group: Group, message: Message) -> int: ...
