"""What the app-mode channels share: group chats cached per group and member list, and token-authorized calls."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

from bridge.channels._http import Failure, Reply, Tokens, call
from bridge.model import Group
from bridge.store import Store, StoreError

logger = logging.getLogger(__name__)

CHAT_TTL = 30 * 86400.0  # chats live until dissolved; a gone chat is noticed on send and created again


class Chats:
    """Chat ids in the store, keyed by app, group and a hash of the member ids (new members, new chat)."""

    def __init__(self, store: Store, vendor: str) -> None:
        self._store = store
        self._vendor = vendor
        self._locks: dict[str, asyncio.Lock] = {}

    def key(self, app: str, group: Group, userids: Sequence[str]) -> str:
        members = hashlib.sha256("\n".join(sorted(set(userids))).encode()).hexdigest()[:16]
        return f"chat:{self._vendor}:{app}:{group.id}:{group.level}:{members}"

    def lock(self, key: str) -> asyncio.Lock:
        """Held while a chat is looked up and created, so concurrent alarms of one group make one chat."""
        return self._locks.setdefault(key, asyncio.Lock())

    async def get(self, key: str) -> str | None:
        try:
            return await self._store.get(key)
        except StoreError as exc:
            logger.warning("chat cache unavailable, creating a new chat: %s", exc)
            return None

    async def put(self, key: str, chatid: str) -> None:
        try:
            await self._store.put(key, chatid, CHAT_TTL)
        except StoreError as exc:
            logger.warning("chat cache unavailable: %s", exc)

    async def forget(self, key: str) -> None:
        try:
            await self._store.delete(key)
        except StoreError as exc:
            logger.warning("chat cache unavailable: %s", exc)


async def authorized_post(
    tokens: Tokens,
    app: str,
    fetch: Callable[[], Awaitable[Reply | Failure]],
    session: aiohttp.ClientSession,
    url: str,
    timeout: float,  # noqa: ASYNC109  (passed to aiohttp, which enforces it)
    body: object,
) -> tuple[Reply | Failure, Reply]:
    """POST ``body`` with the app's access token: the checked result and the last raw reply ({} if none).

    The raw reply is for what ``checked`` drops: the errcode that tells a gone chat, the invalid user ids.
    """
    raw: Reply = {}

    async def request(token: str) -> Reply | Failure:
        nonlocal raw
        reply = await call(session, "POST", url, timeout, params={"access_token": token}, body=body)
        raw = reply if isinstance(reply, dict) else {}
        return reply

    result = await tokens.authorized(app, fetch, request)
    return result, raw


def named_in(text: str, userids: Sequence[str]) -> list[str]:
    """The user ids that ``text`` (an upstream errmsg) names as whole words."""
    return [u for u in userids if re.search(rf"(?<![\w.@-]){re.escape(u)}(?![\w.@-])", text, re.IGNORECASE)]
