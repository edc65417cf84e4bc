"""What the app-mode channels share: group chats cached per group and member list, and token-authorized calls."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from bridge import metrics
from bridge.channels._http import Failure, Reply, Tokens, call
from bridge.model import Group
from bridge.store import Store, StoreError

logger = logging.getLogger(__name__)

CHAT_TTL = 30 * 86400.0  # chats live until dissolved; a gone chat is noticed on send and created again
Create = Callable[[list[str]], Awaitable[tuple[Reply | Failure, Reply]]]  # a chat of these members: checked, raw


@dataclass(frozen=True)
class Chat:
    id: str
    rejected: tuple[str, ...] = ()  # the group's user ids the upstream refused as members: the chat is without them

    @property
    def detail(self) -> str:
        """What a delivery to the chat says of it (the configuration page flags the members it names)."""
        return f"delivered, except to rejected userids: {', '.join(self.rejected)}" if self.rejected else ""


class Chats:
    """Chat ids in the store, keyed by app, group and a hash of the member ids (new members, new chat)."""

    def __init__(self, store: Store, vendor: str, channel: str) -> None:
        self._store = store
        self._vendor = vendor  # in the cache keys
        self._channel = channel  # the target type whose chats these are, in metrics
        self._locks: dict[str, asyncio.Lock] = {}

    def key(self, app: str, group: Group, userids: Sequence[str]) -> str:
        members = hashlib.sha256("\n".join(sorted(set(userids))).encode()).hexdigest()[:16]
        return f"chat:{self._vendor}:{app}:{group.id}:{group.level}:{members}"

    def lock(self, key: str) -> asyncio.Lock:
        """Held while a chat is looked up and created, so concurrent alarms of one group make one chat."""
        return self._locks.setdefault(key, asyncio.Lock())

    async def get(self, key: str) -> Chat | None:
        try:
            value = await self._store.get(key)
        except StoreError as exc:
            logger.warning("chat cache unavailable, creating a new chat: %s", exc)
            return None
        if value is None:
            return None
        if not value.startswith("{"):  # a chat id alone, as cached before members could be left out
            return Chat(value)
        data = json.loads(value)
        return Chat(data["id"], tuple(data["rejected"]))

    async def put(self, key: str, chat: Chat) -> None:
        try:
            await self._store.put(key, json.dumps({"id": chat.id, "rejected": chat.rejected}), CHAT_TTL)
        except StoreError as exc:
            logger.warning("chat cache unavailable: %s", exc)

    async def made(self, name: str, app: str, group: Group, userids: Sequence[str], chat: Chat) -> None:
        """Cache a chat just made for the group's members: when it leaves some out, also under the members it
        has, so that the group corrected (the leavers removed) finds the same chat instead of making another."""
        await self.put(self.key(app, group, userids), chat)
        if chat.rejected:
            kept = [u for u in userids if u not in chat.rejected]
            await self.put(self.key(app, group, kept), Chat(chat.id))
            metrics.CHAT_MEMBERS_REJECTED.labels(channel=self._channel).inc(len(chat.rejected))
            logger.warning("%s: group %s/%s: the chat was made without the user ids it refused: %s; correct the "
                           "group's members", name, *group.key, ", ".join(chat.rejected))  # fmt: skip
        logger.info("%s: chat %s for group %s/%s", name, chat.id, *group.key)

    async def forget(self, key: str) -> None:
        try:
            await self._store.delete(key)
        except StoreError as exc:
            logger.warning("chat cache unavailable: %s", exc)


async def without_rejected(
    create: Create, userids: Sequence[str], refusals: frozenset[int], minimum: int
) -> tuple[Reply | Failure, Reply, tuple[str, ...]]:
    """Create a chat of every member; refused for a member (an errcode in ``refusals``: one who left, an unknown
    id), again without the members its errmsg names, and if it names none, without each member in turn. One
    leaver costs at most a call per member, and no chat is made that leaves out a member the upstream accepts.
    The checked reply, the raw one and the members left out."""
    members = list(userids)
    reply, raw = await create(members)
    while _refused(reply, raw, refusals) and (named := named_in(str(raw.get("errmsg", "")), members)):
        members = [u for u in members if u not in named]
        if len(members) < minimum:
            return reply, raw, ()
        reply, raw = await create(members)
    if _refused(reply, raw, refusals):
        for leaver in members if len(members) > minimum else []:
            rest = [u for u in members if u != leaver]
            again, again_raw = await create(rest)
            if not _refused(again, again_raw, refusals):
                if not isinstance(again, Failure):
                    members, reply, raw = rest, again, again_raw
                break
    if isinstance(reply, Failure):
        return reply, raw, ()
    return reply, raw, tuple(u for u in userids if u not in members)


def _refused(reply: Reply | Failure, raw: Reply, refusals: frozenset[int]) -> bool:
    return isinstance(reply, Failure) and raw.get("errcode") in refusals


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
