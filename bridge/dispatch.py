"""One delivery to one target, bounded in time, through the channel's sender (or the dry-run log)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace

from bridge import metrics
from bridge.channels import Sender
from bridge.codes import Code
from bridge.model import Channel, Group, Message, Outcome, Reason, Target, label

logger = logging.getLogger(__name__)

# The code a channel answers when its sender gave no result at all (it hung, or failed unexpectedly).
SEND_CODES = {
    Channel.DINGTALK: Code.DINGTALK_SEND,
    Channel.WECOM: Code.WECOM_SEND,
    Channel.EMAIL: Code.EMAIL_SEND,
    Channel.FEISHU: Code.FEISHU_SEND,
}


class DryRun:
    """A sender for every channel that logs the message instead of sending it."""

    async def send(self, target: Target, group: Group, message: Message) -> Outcome:
        logger.info("dry-run delivery to group %s/%s via %s:\n%s", group.id, group.level, label(target), message.body)
        return Outcome(label(target), ok=True)

    def parts(self, target: Target, group: Group, message: Message) -> int:
        return 1

    def preview(self, target: Target, group: Group, message: Message) -> list[str]:
        return [message.body]


class Dispatcher:
    def __init__(self, senders: Mapping[Channel, Sender], deadline: float) -> None:
        self._senders = senders
        self._deadline = deadline

    def parts(self, target: Target, group: Group, message: Message) -> int:
        """How many messages upstream the target's delivery of this message is: the rate-limit slots it takes."""
        return self._senders[target.channel].parts(target, group, message)

    def preview(self, target: Target, group: Group, message: Message) -> list[str]:
        return self._senders[target.channel].preview(target, group, message)

    async def send(self, target: Target, group: Group, message: Message) -> Outcome:
        """One target's delivery, bounded by the deadline, so a hanging upstream delays nothing else."""
        started = time.monotonic()
        outcome = await self._send(target, group, message)
        if outcome.truncated:
            metrics.MESSAGES_TRUNCATED.labels(channel=target.channel).inc()
            cut = "cut short to one message (delivery.split is off)"
            outcome = replace(outcome, detail=f"{outcome.detail}; {cut}" if outcome.detail else cut)
        metrics.DELIVERIES.labels(channel=target.channel, target=outcome.target, reason=outcome.reason).inc()
        metrics.DELIVERY_DURATION.labels(channel=target.channel).observe(time.monotonic() - started)
        return outcome

    async def _send(self, target: Target, group: Group, message: Message) -> Outcome:
        code = SEND_CODES[target.channel]
        try:
            async with asyncio.timeout(self._deadline):
                until = time.monotonic() + self._deadline
                return await self._senders[target.channel].send(target, group, replace(message, until=until))
        except TimeoutError:
            return Outcome(label(target), False, code, True, Reason.TIMEOUT, f"no result within {self._deadline:g}s")
        except Exception:  # a bug in a sender must not cost the other targets their delivery
            logger.exception("sender for %s failed unexpectedly", label(target))
            return Outcome(label(target), False, code, False, Reason.INTERNAL, "internal error (logged)")
