"""The upstreams' rate limits as the outbox applies them: slots shared through the store, the waits they ask
for, when held jobs come due again, and the blocks an upstream imposes on a sender that went too fast."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from bridge import metrics
from bridge.model import Outcome, Reason, Target
from bridge.store import Job, Store
from bridge.upstreams import RateLimit, rate_key


class Limits:
    def __init__(
        self, store: Store, rate_limits: Mapping[str, tuple[RateLimit, ...]], blocks: Mapping[str, float]
    ) -> None:
        self._store = store
        self._limits = rate_limits
        self._block_for = blocks
        self._packing: dict[str, int] = {}  # per rate key: how many jobs the last full digest carried
        # Per rate key: no slot is free before this time.monotonic(), in this window of its limits; the waits our
        # own limits ask for, and the blocks the upstreams impose (which no change of our limits lifts).
        self._waits: dict[str, tuple[float, RateLimit]] = {}
        self._blocks: dict[str, tuple[float, RateLimit]] = {}
        self._last_hold = 0.0  # when the last of them ends: no target is known to be held after it

    def reconfigure(self, rate_limits: Mapping[str, tuple[RateLimit, ...]], blocks: Mapping[str, float]) -> None:
        self._limits = rate_limits
        self._block_for = blocks
        self._waits.clear()  # new limits may free slots sooner

    async def take(self, target: Target, count: int, reserve: int = 0) -> tuple[float, RateLimit] | None:
        """Take ``count`` slots for the target, leaving ``reserve`` of each window free: None when it has them (or
        no limit), else how long until one is free, and in which window."""
        key = rate_key(target)
        if key is None:
            return None
        for _ in range(count):
            # Slots only free as time passes: until the store's last "wait" is over, asking it again is no use.
            if held := self._known_hold(target):
                return held
            wait, limit = await self._acquire(key, self._limits[target.kind], reserve)
            if wait > 0:
                self._waits[key] = self._held(time.monotonic() + wait, limit)
                return wait, limit
        return None

    def _known_hold(self, target: Target) -> tuple[float, RateLimit] | None:
        """How long until a slot for the target may be free, and in which window, as far as this process knows
        without asking the store: the last wait it was told, or a block; None when a slot may be free now."""
        key, now = rate_key(target), time.monotonic()
        for held in (self._blocks.get(key or ""), self._waits.get(key or "")):
            if held is not None and held[0] > now:
                return held[0] - now, held[1]
        return None

    async def _acquire(self, key: str, limits: Sequence[RateLimit], reserve: int) -> tuple[float, RateLimit]:
        """A slot in each window of the target's limits, in turn: 0.0 when every one gave one, else how long until
        the first that refused has one, and that window (the windows before it keep their slot: they count a
        message that was not sent, never one too few)."""
        for i, limit in enumerate(limits):
            room = _room(limit, reserve)
            wait = await self._store.acquire(key if i == 0 else f"{key}/{limit.window:g}s", room, limit.window)
            if wait > 0:
                return wait, limit
        return 0.0, limits[0]

    def hold(self, target: Target, jobs: Sequence[Job], wait: float, limit: RateLimit) -> list[Job]:
        """Jobs a rate limit holds back, oldest first, each due when a slot for its message may be free: the first
        message's worth when the next slot is, the next message's worth one slot spacing later, and so on; so a
        backlog is not all read back at every free slot, only what the next message can carry."""
        metrics.RATE_LIMIT_WAITS.labels(channel=target.channel).inc(len(jobs))
        per_message = self._packing.get(rate_key(target) or "", len(jobs))
        due, spacing = time.time() + wait, limit.window / limit.limit
        ordered = sorted(jobs, key=lambda j: j.created)
        return [replace(j, due=due + (i // per_message) * spacing) for i, j in enumerate(ordered)]

    def held_at_admission(self, targets: Sequence[Target]) -> list[float]:
        """Per target of an alarm being admitted: when a slot may be free (a time.time()) if this process knows the
        target to be held, else 0.0 (no list when none is). Its job written due then skips a first attempt that
        would only put it back: in a storm, most alarms skip it for every target, and their jobs are written once
        instead of twice."""
        if time.monotonic() >= self._last_hold:  # none is: the alarms of an ordinary day cost nothing here
            return []
        dues, now = [], time.time()
        for target in targets:
            held = self._known_hold(target)
            if held:
                metrics.RATE_LIMIT_WAITS.labels(channel=target.channel).inc()
            dues.append(now + held[0] if held else 0.0)
        return dues

    def capacity(self, target: Target, per_message: int, within: float, reserve: int) -> int:
        """How many alarms the target's rate budget carries within ``within`` seconds, leaving ``reserve`` slots of
        each window free: its messages in the tightest window, times what one digest carries (the last full one's
        count where known, else ``per_message``)."""
        key = rate_key(target)
        if key is None:
            return 2**62
        messages = min(_room(w, reserve) * max(1.0, within / w.window) for w in self._limits[target.kind])
        return int(messages * self._packing.get(key, per_message))

    def packed(self, target: Target, count: int) -> None:
        """A digest for the target was full at ``count`` jobs: what one message carries, for ``hold``."""
        if key := rate_key(target):
            self._packing[key] = count

    def blocked(self, target: Target, outcome: Outcome) -> float | None:
        """If the upstream said "too fast", how long the target's messages wait (``delivery.blocks``): no slot is
        free until then, so that they are not retried into the upstream's block or its count."""
        key, block = rate_key(target), self._block_for.get(target.kind)
        if outcome.reason is not Reason.RATE_LIMITED or key is None or block is None:
            return None
        self._blocks[key] = self._held(time.monotonic() + block, self._limits[target.kind][0])
        return block

    def _held(self, until: float, limit: RateLimit) -> tuple[float, RateLimit]:
        self._last_hold = max(self._last_hold, until)
        return until, limit


def _room(limit: RateLimit, reserve: int) -> int:
    """The slots of a window that ordinary messages may take: all but the reserve, which keeps at most a quarter."""
    return limit.limit - min(reserve, limit.limit // 4)
