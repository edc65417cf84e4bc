"""Feishu / Lark: custom bot webhooks (optionally signed, with a keyword) and app messages to a chat
(tenant_access_token, im/v1/messages), as text or as interactive cards."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from bridge.channels._http import (
    BodySender,
    Failure,
    Reply,
    Tokens,
    at_part,
    call,
    checked,
    fit,
    keyworded,
    late,
    left,
    unsent,
)
from bridge.codes import Code
from bridge.config import DeliverySettings
from bridge.model import (
    RESOLVED,
    STORM,
    FeishuApp,
    FeishuRobot,
    Format,
    Group,
    Mention,
    Message,
    Outcome,
    Reason,
    Target,
    label,
)
from bridge.store import Store
from bridge.upstreams import FeishuSettings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 20000
# A message's parts go out back to back, their slots taken at once: a bot takes 5 in a second, of which the outbox
# keeps one for storm summaries (delivery.storm.reserve); a message of more parts would wait for ever.
MAX_PARTS = 4
TITLE_CHARS = 100
COLOURS = {"高": "red", "中": "orange", "低": "blue", RESOLVED: "green", STORM: "carmine"}
# What the bot's refusals mean, for the dead letter: none of them passes by trying again.
MEANINGS = {
    19001: "the hook is unknown or was deleted: check the webhook URL",
    19002: "the request is malformed",
    19021: "the signature was refused: check the secret, and the gateway's clock (within an hour)",
    19022: "the gateway's address is not on the bot's IP allowlist",
    19024: "the message has none of the bot's keywords: set the target's keyword to one of them",
}
_TOO_MANY = re.compile(r"too many|frequen", re.IGNORECASE)  # 9499 also means other bad requests
_SIGNED = {"timestamp": "0" * 10, "sign": "=" * 44}  # the size of a signature: seconds, base64 of SHA-256
Body = dict[str, Any]


class Sender(BodySender):
    def __init__(
        self, settings: FeishuSettings, delivery: DeliverySettings, session: aiohttp.ClientSession, store: Store
    ) -> None:
        self._settings = settings
        self._delivery = delivery
        self._session = session
        self._tokens = Tokens(store, "feishu")

    async def send(self, target: Target, group: Group, message: Message) -> Outcome:
        if isinstance(target, FeishuRobot):
            return await self._robot(target, group, message)
        if isinstance(target, FeishuApp):
            return await self._app(target, group, message)
        return _config(label(target), Code.FEISHU_SEND, f"not a Feishu target: {target.kind}")

    def _bodies(self, target: Target, group: Group, message: Message) -> list[Body] | None:
        """The request bodies the message is sent as (a robot's with room for its signature), or None if it cannot
        be fitted into them."""

        def build(text: str, first: bool) -> Body:
            mentions = _mentions(group, message) if first else []
            if isinstance(target, FeishuRobot):
                signed = _SIGNED if target.secret else {}
                seen = (message.title,) if message.format is Format.MARKDOWN else ()  # a card's header has it
                return signed | _content(message, keyworded(text, target.keyword, *seen), mentions, first)
            content = _content(message, text, mentions, first)
            kind = content["msg_type"]
            payload = content["card"] if kind == "interactive" else content["content"]
            receive_id = getattr(target, "chat_id", "")
            return {"receive_id": receive_id, "msg_type": kind, "content": json.dumps(payload, ensure_ascii=False)}

        return fit(message.body, build, self._delivery.split, MAX_BODY_BYTES, MAX_PARTS)

    # -- custom bot --

    async def _robot(self, target: FeishuRobot, group: Group, message: Message) -> Outcome:
        name = label(target)
        if not URL(target.webhook).absolute:
            return _config(name, Code.FEISHU_SEND, "the bot webhook is not an absolute URL")
        bodies = self._bodies(target, group, message)
        if bodies is None:
            return _config(name, Code.FEISHU_SEND, "the mentions leave no room for the message")

        async def post(body: Body) -> Reply | Failure:
            if target.secret:
                timestamp = _now()
                body = body | {"timestamp": str(timestamp), "sign": sign(target.secret, timestamp)}
            url, timeout = target.webhook, self._delivery.timeout
            return checked(_normalized(await call(self._session, "POST", url, timeout, body=body, answers=_ANSWERS)))

        return await self._each(name, bodies, message, post)

    # -- app --

    async def _app(self, target: FeishuApp, group: Group, message: Message) -> Outcome:
        name = label(target)
        app = self._settings.apps.get(target.app)
        if app is None:
            return _config(name, Code.FEISHU_TOKEN, f"no app {target.app!r} under feishu.apps in the config")
        if not target.chat_id:
            return _config(name, Code.FEISHU_SEND, "the target has no chat_id")
        bodies = self._bodies(target, group, message)
        if bodies is None:
            return _config(name, Code.FEISHU_SEND, "the mentions leave no room for the message")
        base, timeout = self._settings.base_url, self._delivery.timeout

        async def fetch() -> Reply | Failure:
            url = f"{base}/open-apis/auth/v3/tenant_access_token/internal"
            body = {"app_id": app.app_id, "app_secret": app.app_secret}
            return _normalized(await call(self._session, "POST", url, timeout, body=body, answers=_ANSWERS))

        async def post(body: Body) -> Reply | Failure:
            async def request(token: str) -> Reply | Failure:
                url, params = f"{base}/open-apis/im/v1/messages", {"receive_id_type": "chat_id"}
                headers = {"Authorization": f"Bearer {token}"}
                sent = await call(self._session, "POST", url, timeout, params, body, headers, answers=_ANSWERS)
                return _normalized(sent)

            return await self._tokens.authorized(target.app, fetch, request)

        return await self._each(name, bodies, message, post)

    async def _each(
        self, name: str, bodies: list[Body], message: Message, post: Callable[[Body], Awaitable[Reply | Failure]]
    ) -> Outcome:
        """The message's parts not yet sent, posted in turn; the first failure ends it, saying at which part."""
        for i, body in unsent(bodies, message.skip):
            if late(message, i - message.skip, self._delivery.timeout):
                return at_part(left(name, Code.FEISHU_SEND), i, len(bodies))
            reply = await post(body)
            if isinstance(reply, Failure):
                return at_part(_failed(name, reply), i, len(bodies))
        return self._delivered(name, bodies)


_ANSWERS = frozenset(range(200, 500))  # Feishu answers refusals (9499, an invalid token) with 4xx and a code


def sign(secret: str, timestamp: int) -> str:
    """The bot signature: the string to sign is the HMAC key, and the message is empty."""
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _now() -> int:
    return int(time.time())


def _normalized(reply: Reply | Failure) -> Reply | Failure:
    """A Feishu reply ({code, msg}; an older bot's StatusCode; a token's tenant_access_token and expire) in the
    errcode shape the shared classifier reads."""
    if isinstance(reply, Failure):
        return reply
    code = reply.get("code", reply.get("StatusCode"))
    text = str(reply.get("msg", reply.get("StatusMessage", "")))
    if code == 9499 and not _TOO_MANY.search(text):
        return Failure(Reason.REJECTED, False, f"errcode 9499: {text[:200]}")
    meaning = MEANINGS.get(code) if isinstance(code, int) else None
    normal = {"errcode": code, "errmsg": f"{text} ({meaning})" if meaning else text}
    if "tenant_access_token" in reply:
        normal |= {"access_token": reply["tenant_access_token"], "expires_in": reply.get("expire", 7200)}
    return reply | normal


def _mentions(group: Group, message: Message) -> list[tuple[str, str]]:
    """Who the first part mentions, as (open_id, name): the members with a feishu_userid, everyone, and the
    alarm's own mentions that are open ids (the alarm's user ids may be another vendor's)."""
    if group.mention is Mention.ALL:
        return [("all", "所有人")]
    found: dict[str, str] = {}
    if group.mention is Mention.MEMBERS:
        found |= {m.feishu_userid: m.name for m in group.members if m.feishu_userid}
    found |= {u: "" for u in message.userids if u.startswith("ou_") and u not in found}
    return list(found.items())


def _content(message: Message, text: str, mentions: list[tuple[str, str]], first: bool) -> Body:
    """A bot message: text with <at> tags, or a card (markdown) whose header's colour follows the level and whose
    first part carries the action links as buttons (a text message has them as links in its text)."""
    if message.format is Format.TEXT:
        tags = " ".join(f'<at user_id="{oid}">{re.sub(r"[<>&]", "", who)}</at>' for oid, who in mentions)
        return {"msg_type": "text", "content": {"text": f"{text}\n{tags}" if tags else text}}
    elements: list[Body] = [{"tag": "div", "text": {"tag": "lark_md", "content": text}}]
    if mentions:
        tags = " ".join(f"<at id={oid}></at>" for oid, _ in mentions)
        elements.append({"tag": "div", "text": {"tag": "lark_md", "content": tags}})
    if first and message.actions:
        buttons = [{"tag": "button", "text": {"tag": "plain_text", "content": label}, "url": url, "type": "default"}
                   for label, url in message.actions]  # fmt: skip
        elements.append({"tag": "action", "actions": buttons})
    header = {
        "title": {"tag": "plain_text", "content": message.title[:TITLE_CHARS] or text[:TITLE_CHARS]},
        "template": COLOURS.get(message.level, "grey"),
    }
    return {"msg_type": "interactive", "card": {"config": {"wide_screen_mode": True}, "header": header,
                                                "elements": elements}}  # fmt: skip


def _failed(name: str, failure: Failure) -> Outcome:
    """A failed send; a token that cannot be had, or stays refused after one refresh, is the token's (4006)."""
    code = Code.FEISHU_TOKEN if failure.reason is Reason.TOKEN else Code.FEISHU_SEND
    return failure.outcome(name, code)


def _config(name: str, code: Code, detail: str) -> Outcome:
    return Outcome(name, False, code, False, Reason.CONFIG, detail)
