"""The audit log: who changed what, when, kept in the store so every replica writes to and shows one log.

Entries are numbered store keys (``web:audit:N``), each number claimed with ``put_new`` so that concurrent
writers on any replica never overwrite each other; ``web:audit:head`` is a hint where the newest one is.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass

from bridge.store import Store

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

logger = logging.getLogger(__name__)

KEEP = 10000  # the newest entries kept; older ones are deleted as new ones come
TTL = 400 * 86400.0  # and none is kept longer than this
HEAD = "web:audit:head"


@dataclass(frozen=True)
class Entry:
    number: int
    at: float
    who: str  # "alice" for a page user, "token:ci" for an API token
    action: str  # group.create, group.update, group.delete, test.send, delivery.retry, login, logout
    target: str  # what it acted on, e.g. "chenmin/3"
    detail: str  # what changed, never a secret

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _key(number: int) -> str:
    return f"web:audit:{number}"


async def record(store: Store, who: str, action: str, target: str, detail: str = "") -> None:
    # One line per event: a line break in a name someone typed must not forge another log line.
    line = " ".join(_CONTROL.sub(lambda m: repr(m[0])[1:-1], part) for part in (who, action, target, detail))
    logger.info("audit: %s", line)
    number = int(await store.get(HEAD) or 0) + 1
    data = json.dumps({"at": time.time(), "who": who, "action": action, "target": target, "detail": detail})
    while not await store.put_new(_key(number), data, TTL):
        number += 1
    await store.put(HEAD, str(number), TTL)
    if number > KEEP:
        await store.delete(_key(number - KEEP))


async def entries(store: Store, limit: int, before: int | None = None) -> list[Entry]:
    """The newest entries first, up to ``limit``, older than number ``before`` when it is given."""
    newest = int(await store.get(HEAD) or 0)
    while await store.get(_key(newest + 1)) is not None:  # the hint may lag behind a concurrent writer
        newest += 1
    number = newest if before is None else min(newest, before - 1)
    found: list[Entry] = []
    while number > 0 and len(found) < limit:
        raw = await store.get(_key(number))
        if raw is None:  # entries expire and are deleted oldest first: nothing older is left
            break
        found.append(Entry(number=number, **json.loads(raw)))
        number -= 1
    return found
