"""DingTalk: custom robot webhooks (optionally signed) and enterprise-app group chats (gettoken, chat/create, send)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from dataclasses import replace
from typing import Any

import aiohttp
from yarl import URL

from bridge.channels._chats import Chat, Chats, authorized_post, named_in, without_rejected
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
from bridge.model import DingTalkApp, DingTalkRobot, Format, Group, Mention, Message, Outcome, Reason, Target, label
from bridge.store import Store
from bridge.upstreams import DingTalkApp as AppSettings
from bridge.upstreams import DingTalkSettings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 20000  # robot/send answers 460101 above it; assumed the same for chat/send
MAX_CHAT_MEMBERS = 40  # per chat/create call
CHAT_NAME_CHARS = 20
CHAT_GONE_ERRCODES = frozenset({34001, 34013, 40016})  # 无效的会话id, 找不到群会话对象, 不合法的会话ID
# chat/create refusing a member: 找不到该用户, UserID不存在, 不合法的UserID, 不合法的UserID列表, 用户已禁用,
# 发送者不在企业中
MEMBER_REFUSALS = frozenset({60121, 60111, 40003, 40031, 60120, 34006})
Body = dict[str, Any]


class Sender(BodySender):
    def __init__(
        self, settings: DingTalkSettings, delivery: DeliverySettings, session: aiohttp.ClientSession, store: Store
    ) -> None:
        self._settings = settings
        self._delivery = delivery
        self._session = session
        self._tokens = Tokens(store, "dingtalk")
        self._chats = Chats(store, "dingtalk", "dingtalk-app")

    async def send(self, target: Target, group: Group, message: Message) -> Outcome:
        if isinstance(target, DingTalkRobot):
            return await self._robot(target, group, message)
        if isinstance(target, DingTalkApp):
            return await self._app(target, group, message)
        return _config(label(target), Code.DINGTALK_SEND, f"not a DingTalk target: {target.kind}")

    def _bodies(self, target: Target, group: Group, message: Message) -> list[Body] | None:
        """The request bodies the message is sent as, or None if it cannot be fitted into them."""

        def build(text: str, first: bool) -> Body:
            if isinstance(target, DingTalkRobot):  # the keyword in the text itself: what DingTalk scans is unsaid
                return _robot_body(message, group, keyworded(text, target.keyword), first)
            return {"chatid": "c" * 64, "msg": _msg(message, text)}  # the chat id not known yet: room for a long one

        return fit(message.body, build, self._delivery.split, MAX_BODY_BYTES)

    # -- custom robot --

    async def _robot(self, target: DingTalkRobot, group: Group, message: Message) -> Outcome:
        name = label(target)
        webhook = URL(target.webhook)
        if not webhook.absolute:
            return _config(name, Code.DINGTALK_SEND, "the robot webhook is not an absolute URL")
        bodies = self._bodies(target, group, message)
        if bodies is None:
            return _config(name, Code.DINGTALK_SEND, "the mentions leave no room for the message")
        for i, body in unsent(bodies, message.skip):
            if late(message, i - message.skip, self._delivery.timeout):
                return at_part(left(name, Code.DINGTALK_SEND), i, len(bodies))
            params = dict(webhook.query)
            if target.secret:
                timestamp = _now_ms()
                # The raw base64: aiohttp encodes the query once; quoting it here too would break the sign.
                params |= {"timestamp": str(timestamp), "sign": sign(target.secret, timestamp)}
            url = str(webhook.with_query(None))
            reply = checked(await call(self._session, "POST", url, self._delivery.timeout, params=params, body=body))
            if isinstance(reply, Failure):
                return at_part(_failed(name, Code.DINGTALK_SEND, reply), i, len(bodies))
        return self._delivered(name, bodies)

    # -- enterprise app --

    async def _app(self, target: DingTalkApp, group: Group, message: Message) -> Outcome:
        name = label(target)
        app = self._settings.apps.get(target.app)
        if app is None:
            return _config(name, Code.DINGTALK_TOKEN, f"no app {target.app!r} under dingtalk.apps in the config")
        userids = list(dict.fromkeys(m.dingtalk_userid for m in group.members if m.dingtalk_userid))
        if not userids:
            return _config(name, Code.DINGTALK_CHAT, "no member of the group has a dingtalk_userid")
        if len(userids) > MAX_CHAT_MEMBERS:
            return _config(name, Code.DINGTALK_CHAT, f"{len(userids)} members; chat/create takes {MAX_CHAT_MEMBERS}")
        bodies = self._bodies(target, group, message)
        if bodies is None:
            return _config(name, Code.DINGTALK_SEND, "the message cannot be fitted into a chat message")
        key = self._chats.key(target.app, group, userids)
        for attempt in (1, 2):  # the second in a chat made anew, which has none of the message's parts yet
            chat = await self._chat(name, target.app, app, group, userids, key)
            if isinstance(chat, Outcome):
                return chat if attempt == 1 else replace(chat, sent=0)
            chatid = chat.id
            start = message.skip if attempt == 1 and chatid == message.chat else 0
            for i, body in unsent(bodies, start):
                if late(message, i - start, self._delivery.timeout):
                    return at_part(left(name, Code.DINGTALK_SEND), i, len(bodies), chatid)
                reply, raw = await self._post(target.app, app, "/chat/send", {**body, "chatid": chatid})
                if not isinstance(reply, Failure):
                    continue
                if raw.get("errcode") in CHAT_GONE_ERRCODES and attempt == 1:
                    logger.info("%s: chat %s of group %s/%s is gone; creating it again", name, chatid, *group.key)
                    await self._chats.forget(key)
                    break
                return at_part(_failed(name, Code.DINGTALK_SEND, reply), i, len(bodies), chatid)
            else:
                return self._delivered(name, bodies, chat.detail)
        raise AssertionError("unreachable: the second attempt never recreates")

    async def _chat(
        self, name: str, app_name: str, app: AppSettings, group: Group, userids: list[str], key: str
    ) -> Chat | Outcome:
        """The group's chat: cached, or created now for the members with a DingTalk user id that it accepts."""
        async with self._chats.lock(key):
            if cached := await self._chats.get(key):
                return cached
            title = (group.name.strip() or f"{group.id}/{group.level}")[:CHAT_NAME_CHARS]

            async def create(ids: list[str]) -> tuple[Reply | Failure, Reply]:
                return await self._post(
                    app_name, app, "/chat/create", {"name": title, "owner": ids[0], "useridlist": ids}
                )

            reply, raw, rejected = await without_rejected(create, userids, MEMBER_REFUSALS, 1)
            if isinstance(reply, Failure):
                named = named_in(str(raw.get("errmsg", "")), userids)
                detail = f"; rejected userids: {', '.join(named)}" if named else ""
                return _failed(name, Code.DINGTALK_CHAT, reply, "chat/create: ", detail)
            chatid = reply.get("chatid")
            if not isinstance(chatid, str) or not chatid:
                return Outcome(name, False, Code.DINGTALK_CHAT, True, Reason.REJECTED, "chat/create: no chatid")
            chat = Chat(chatid, rejected)
            await self._chats.made(name, app_name, group, userids, chat)
            return chat

    async def _post(self, app_name: str, app: AppSettings, path: str, body: Body) -> tuple[Reply | Failure, Reply]:
        base = self._settings.base_url
        url = f"{base}{path}"

        async def gettoken() -> Reply | Failure:
            params = {"appkey": app.appkey, "appsecret": app.appsecret}
            return await call(self._session, "GET", f"{base}/gettoken", self._delivery.timeout, params=params)

        return await authorized_post(self._tokens, app_name, gettoken, self._session, url, self._delivery.timeout, body)


def sign(secret: str, timestamp_ms: int) -> str:
    """The robot signature, base64 and not yet URL-encoded."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _robot_body(message: Message, group: Group, text: str, first: bool) -> Body:
    """A robot message; mentions go with the first part only, in ``at`` and as "@..." in the text (both needed)."""
    at: Body = {}
    if first and group.mention is Mention.ALL:
        at = {"isAtAll": True}
    elif first and group.mention is Mention.MEMBERS:
        at = {
            "atMobiles": [m.mobile for m in group.members if m.mobile],
            "atUserIds": [m.dingtalk_userid for m in group.members if m.dingtalk_userid],
        }
        # One tag per member (mobile first, which robots resolve in any group), so no one is named twice.
        tags = [f"@{m.mobile or m.dingtalk_userid}" for m in group.members if m.mobile or m.dingtalk_userid]
        text = f"{text}\n\n{' '.join(tags)}" if tags else text
    if first and (message.mobiles or message.userids):  # the alarm's own mentions: already in the text
        at["atMobiles"] = [*at.get("atMobiles", []), *message.mobiles]
        at["atUserIds"] = [*at.get("atUserIds", []), *message.userids]
    return {**_msg(message, text), "at": at} if at else _msg(message, text)


def _msg(message: Message, text: str) -> Body:
    if message.format is Format.MARKDOWN:
        return {"msgtype": "markdown", "markdown": {"title": message.title or text[:64], "text": text}}
    return {"msgtype": "text", "text": {"content": text}}


def _failed(name: str, code: Code, failure: Failure, prefix: str = "", suffix: str = "") -> Outcome:
    """A failed step; a token that cannot be had, or stays refused after one refresh, is the token step's (4000)."""
    code = Code.DINGTALK_TOKEN if failure.reason is Reason.TOKEN else code
    return Outcome(name, False, code, failure.retryable, failure.reason, f"{prefix}{failure.detail}{suffix}")


def _config(name: str, code: Code, detail: str) -> Outcome:
    return Outcome(name, False, code, False, Reason.CONFIG, detail)
