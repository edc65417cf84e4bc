"""What the HTTP channels share: one JSON call with a timeout, one classifier of results, one token cache."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import aiohttp

from bridge import metrics
from bridge.config import DeliverySettings
from bridge.model import Group, Message, Outcome, Reason, Target
from bridge.render import split, truncated
from bridge.store import Store, StoreError

logger = logging.getLogger(__name__)

Reply = dict[str, Any]
T = TypeVar("T")

# -1 busy; 130101/410100 DingTalk robot too fast; 45009/45033 WeCom frequency and concurrency limits;
# 9499/11232 a Feishu bot too fast, 99991400 a Feishu app, 230020 an app in one chat.
RATE_LIMIT_ERRCODES = frozenset({130101, 410100, 45009, 45033, 9499, 11232, 99991400, 230020})
RETRYABLE_ERRCODES = RATE_LIMIT_ERRCODES | {-1}
# Invalid or expired access tokens (every vendor); the token is dropped and fetched anew once.
TOKEN_ERRCODES = frozenset({33001, 40001, 40014, 42001, 99991661, 99991663})
TOKEN_MARGIN = 300.0  # refresh this long before the upstream's expiry (a tenth of a shorter lifetime)
LONGEST_TOKEN = 86400.0
JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}


def encode(body: object) -> bytes:
    """A request body as sent: UTF-8 JSON, so that byte limits count what the upstream counts."""
    return json.dumps(body, ensure_ascii=False).encode()


@dataclass(frozen=True)
class Failure:
    reason: Reason
    retryable: bool
    detail: str

    def outcome(self, target: str, code: int) -> Outcome:
        return Outcome(
            target=target, ok=False, code=code, retryable=self.retryable, reason=self.reason, detail=self.detail
        )


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    timeout: float,  # noqa: ASYNC109  (passed to aiohttp, which enforces it)
    params: dict[str, str] | None = None,
    body: object = None,
    headers: dict[str, str] | None = None,
    answers: frozenset[int] = frozenset({200}),
) -> Reply | Failure:
    """One upstream call; a JSON object in a reply with a status among ``answers`` is the upstream's answer (Feishu
    answers refusals with 4xx and a code). Details never contain the URL: query strings hold tokens and
    signatures."""
    status, data = 0, None
    try:
        async with session.request(
            method,
            url,
            params=params,
            data=None if body is None else encode(body),
            headers={**(headers or {}), **(JSON_UTF8 if body is not None else {})} or None,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            if status in answers:
                with contextlib.suppress(ValueError):  # not JSON: judged by the status below
                    data = await response.json(content_type=None)
    except TimeoutError:
        return Failure(Reason.TIMEOUT, True, f"no answer within {timeout:g}s")
    except aiohttp.ClientConnectorError as exc:
        return Failure(Reason.NETWORK, True, f"cannot connect to {exc.host}:{exc.port}")
    except aiohttp.ClientError as exc:
        return Failure(Reason.NETWORK, True, f"{type(exc).__name__}")
    if isinstance(data, dict):
        return data
    if status != 200:
        return Failure(Reason.HTTP_STATUS, status == 429 or status >= 500, f"HTTP {status}")
    return Failure(Reason.HTTP_STATUS, True, "the reply is not a JSON object")


def _lifetime(value: object) -> float:
    """A token's lifetime in seconds as the upstream gave it, within (0, a day]; 7200 when it is not a number."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 7200.0
    return min(seconds, LONGEST_TOKEN) if seconds > 0 else 0.0


def fit(text: str, build: Callable[[str, bool], Any], numbered: bool, limit: int, most: int = 0) -> list[Any] | None:
    """Bodies of at most ``limit`` bytes as sent, ``build(part, first)`` each, or None if the envelope alone is too
    big; with ``most``, at most that many (the text is cut to fit in them).

    The parts are cut by the text's UTF-8 bytes; JSON escapes (newlines, quotes) make a body a little larger,
    so the cut is tightened until every body fits.
    """
    envelope = size(build("", True))
    room = limit - envelope
    for _ in range(10):
        if room < 200:
            return None
        bodies = [build(part, i == 0) for i, part in enumerate(split(text, room, numbered, most))]
        biggest = max(size(body) for body in bodies)
        if biggest <= limit:
            return bodies
        room = room * (limit - envelope) // (biggest - envelope) - 16
    return None


def size(body: object) -> int:
    return len(encode(body))


class BodySender:
    """What the HTTP channels' senders share: a message is sent as the request bodies ``_bodies`` makes (None
    when it cannot be fitted into them, which ``send`` refuses as a config error)."""

    _delivery: DeliverySettings

    def _bodies(self, target: Target, group: Group, message: Message) -> Sequence[Reply] | None:
        raise NotImplementedError

    def parts(self, target: Target, group: Group, message: Message) -> int:
        bodies = self._bodies(target, group, message)
        return 1 if bodies is None else len(bodies)

    def preview(self, target: Target, group: Group, message: Message) -> list[str]:
        """The bodies as they are sent, for a person to read: each one's JSON."""
        return [json.dumps(body, ensure_ascii=False, indent=2) for body in self._bodies(target, group, message) or ()]

    def _delivered(self, name: str, bodies: Sequence[Reply], detail: str = "") -> Outcome:
        """A message sent whole as ``bodies``; with ``delivery.split`` off, whether it was cut short to one."""
        return Outcome(name, True, detail=detail, truncated=not self._delivery.split and truncated(bodies))


def keyworded(text: str, keyword: str, *seen: str) -> str:
    """The text with the robot's keyword on a last line, unless it, or a text sent with it (``seen``), has it
    already (a split message's "(i/n)" stays first)."""
    if not keyword or any(keyword in t for t in (text, *seen)):
        return text
    return f"{text}\n【{keyword}】"


def unsent(parts: Sequence[T], skip: int) -> list[tuple[int, T]]:
    """The parts of a split message still to send, numbered from 1 among all: an earlier attempt sent ``skip``."""
    return list(enumerate(parts, 1))[skip:]


def late(message: Message, nth: int, timeout: float) -> bool:
    """Whether the ``nth`` part this attempt sends is better left for a retry: past the first, one that might
    outlast the delivery's deadline would be cut off there, and the parts before it go unrecorded."""
    return nth > 1 and bool(message.until) and time.monotonic() + timeout > message.until


def left(name: str, code: int) -> Outcome:
    """The outcome of a split message whose further parts were left for a retry (see ``late``)."""
    return Outcome(name, False, code, True, Reason.TIMEOUT, "left for a retry, its deadline being near")


def at_part(outcome: Outcome, i: int, n: int, chat: str = "") -> Outcome:
    """A message that failed at its part ``i`` of ``n``: the parts before it are delivered (to the app chat)."""
    detail = f"part {i}/{n}: {outcome.detail}" if n > 1 else outcome.detail
    return replace(outcome, detail=detail, sent=i - 1, chat=chat)


def checked(reply: Reply | Failure) -> Reply | Failure:
    """A reply counts only with ``errcode`` 0: chat APIs report failures inside HTTP 200."""
    if isinstance(reply, Failure):
        return reply
    errcode = reply.get("errcode")
    if errcode == 0:
        return reply
    if not isinstance(errcode, int):
        return Failure(Reason.REJECTED, False, "the reply has no errcode")
    reason = (
        Reason.RATE_LIMITED
        if errcode in RATE_LIMIT_ERRCODES
        else Reason.TOKEN
        if errcode in TOKEN_ERRCODES
        else Reason.REJECTED
    )
    retry = errcode in RETRYABLE_ERRCODES or errcode in TOKEN_ERRCODES
    return Failure(reason, retry, f"errcode {errcode}: {str(reply.get('errmsg', ''))[:200]}")


class Tokens:
    """Access tokens per app, cached in the store (so replicas share them) and fetched under a lock."""

    def __init__(self, store: Store, vendor: str) -> None:
        self._store = store
        self._vendor = vendor
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, app: str, fetch: Callable[[], Awaitable[Reply | Failure]]) -> str | Failure:
        """A valid token; ``fetch`` is the vendor's gettoken call, made only when none is cached."""
        key = f"token:{self._vendor}:{app}"
        async with self._locks.setdefault(app, asyncio.Lock()):
            cached = await self._cached(key)
            if cached:
                return cached
            reply = checked(await fetch())
            if isinstance(reply, Failure):  # a token errcode from gettoken itself (40001) is a wrong secret: no retry
                retryable = reply.retryable and reply.reason is not Reason.TOKEN
                return Failure(Reason.TOKEN, retryable, f"gettoken: {reply.detail}")
            metrics.TOKEN_REFRESHES.labels(vendor=self._vendor).inc()
            token = str(reply.get("access_token", ""))
            if not token:
                return Failure(Reason.TOKEN, True, "gettoken: the reply has no access_token")
            lifetime = _lifetime(reply.get("expires_in", 7200))
            ttl = lifetime - min(TOKEN_MARGIN, lifetime / 10)
            if ttl > 0:  # a token already expired is used once, not kept
                await self._ignore_store_errors(self._store.put(key, token, ttl))
            return token

    async def authorized(
        self,
        app: str,
        fetch: Callable[[], Awaitable[Reply | Failure]],
        request: Callable[[str], Awaitable[Reply | Failure]],
    ) -> Reply | Failure:
        """``request(token)``, checked; on a token errcode the token is dropped, fetched anew and tried once more."""
        for attempt in range(2):
            token = await self.get(app, fetch)
            if isinstance(token, Failure):
                return token
            reply = checked(await request(token))
            if not (isinstance(reply, Failure) and reply.reason is Reason.TOKEN) or attempt == 1:
                return reply
            await self._ignore_store_errors(self._store.delete(f"token:{self._vendor}:{app}"))
        raise AssertionError("unreachable")

    async def _cached(self, key: str) -> str | None:
        try:
            return await self._store.get(key)
        except StoreError as exc:
            logger.warning("token cache unavailable, fetching a new token: %s", exc)
            return None

    async def _ignore_store_errors(self, work: Awaitable[None]) -> None:
        try:
            await work
        except StoreError as exc:
            logger.warning("token cache unavailable: %s", exc)
