"""WeCom (企业微信): app messages to members, app group chats (appchat) and group robot webhooks."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import Any

import aiohttp
from yarl import URL

from bridge.channels._chats import Chat, Chats, authorized_post, named_in, without_rejected
from bridge.channels._http import BodySender, Failure, Reply, Tokens, at_part, call, checked, late, left, unsent
from bridge.codes import Code
from bridge.config import DeliverySettings
from bridge.model import (
    Format,
    Group,
    Mention,
    Message,
    Outcome,
    Reason,
    Target,
    WeComApp,
    WeComAppChat,
    WeComRobot,
    label,
)
from bridge.render import WECOM_MENTION_ROOM, split
from bridge.store import Store
from bridge.upstreams import WeComApp as AppSettings
from bridge.upstreams import WeComSettings

logger = logging.getLogger(__name__)

APP_CONTENT_BYTES = 2048  # message/send and appchat/send, text and markdown alike
ROBOT_CONTENT_BYTES = {Format.TEXT: 2048, Format.MARKDOWN: 4096}
MAX_RECIPIENTS = 1000  # touser
CHAT_NAME_CHARS = 50
ALL_INVALID = 81013  # every recipient is invalid; invaliduser lists them
CHAT_EXISTS = 86215
CHAT_GONE_ERRCODES = frozenset({86003, 40050, 49008})  # chatid不存在, chatid不存在, 群已经解散
# appchat/create refusing a member: 不合法的群成员, 存在非法会话成员ID, 群主不合法, 无效的UserID, UserID不存在,
# 指定的用户不存在
MEMBER_REFUSALS = frozenset({86007, 86216, 86005, 40003, 60111, 46004})
Body = dict[str, Any]


class Sender(BodySender):
    def __init__(
        self, settings: WeComSettings, delivery: DeliverySettings, session: aiohttp.ClientSession, store: Store
    ) -> None:
        self._settings = settings
        self._delivery = delivery
        self._session = session
        self._tokens = Tokens(store, "wecom")
        self._chats = Chats(store, "wecom", "wecom-appchat")

    async def send(self, target: Target, group: Group, message: Message) -> Outcome:
        if isinstance(target, WeComRobot):
            return await self._robot(target, group, message)
        if isinstance(target, WeComApp | WeComAppChat):
            app = self._settings.apps.get(target.app)
            if app is None:
                return _config(label(target), Code.WECOM_TOKEN, f"no app {target.app!r} under wecom.apps in the config")
            if isinstance(target, WeComApp):
                return await self._app(target, app, group, message)
            return await self._appchat(target, app, group, message)
        return _config(label(target), Code.WECOM_SEND, f"not a WeCom target: {target.kind}")

    # -- app message to members --

    async def _app(self, target: WeComApp, app: AppSettings, group: Group, message: Message) -> Outcome:
        name = label(target)
        userids = _userids(group)
        if not userids:
            return _config(name, Code.WECOM_SEND, "no member of the group has a wecom_userid")
        if len(userids) > MAX_RECIPIENTS:
            return _config(name, Code.WECOM_SEND, f"{len(userids)} members; message/send takes {MAX_RECIPIENTS}")
        invalid: dict[str, None] = {}  # ordered, across parts
        bodies = self._bodies(target, group, message)
        for i, body in unsent(bodies, message.skip):
            if late(message, i - message.skip, self._delivery.timeout):
                return at_part(left(name, Code.WECOM_SEND), i, len(bodies))
            reply, raw = await self._post(target.app, app, "/cgi-bin/message/send", body)
            if isinstance(reply, Failure):
                named = f"; invalid users: {raw.get('invaliduser')}" if raw.get("errcode") == ALL_INVALID else ""
                return at_part(_failed(name, reply, suffix=named), i, len(bodies))
            invalid |= dict.fromkeys(u for u in str(reply.get("invaliduser", "")).split("|") if u)
        if invalid:
            logger.warning("%s: not delivered to invalid users %s", name, "|".join(invalid))
            detail = f"delivered, except to invalid users: {'|'.join(invalid)}"
            return self._delivered(name, bodies, detail)
        return self._delivered(name, bodies)

    # -- app group chat --

    async def _appchat(self, target: WeComAppChat, app: AppSettings, group: Group, message: Message) -> Outcome:
        name = label(target)
        userids = _userids(group)
        if len(userids) < 2:
            return _config(name, Code.WECOM_SEND, "an app chat needs at least 2 members with a wecom_userid")
        key = self._chats.key(target.app, group, userids)
        bodies = self._bodies(target, group, message)
        for attempt in (1, 2):  # the second in a chat made anew, which has none of the message's parts yet
            chat = await self._chat(name, target.app, app, group, userids, key, recreate=attempt == 2)
            if isinstance(chat, Outcome):
                return chat if attempt == 1 else replace(chat, sent=0)
            chatid = chat.id
            start = message.skip if attempt == 1 and chatid == message.chat else 0
            for i, body in unsent(bodies, start):
                if late(message, i - start, self._delivery.timeout):
                    return at_part(left(name, Code.WECOM_SEND), i, len(bodies), chatid)
                reply, raw = await self._post(target.app, app, "/cgi-bin/appchat/send", {**body, "chatid": chatid})
                if not isinstance(reply, Failure):
                    continue
                if raw.get("errcode") in CHAT_GONE_ERRCODES and attempt == 1:
                    logger.info("%s: chat %s of group %s/%s is gone; creating it again", name, chatid, *group.key)
                    await self._chats.forget(key)
                    break
                return at_part(_failed(name, reply), i, len(bodies), chatid)
            else:
                return self._delivered(name, bodies, chat.detail)
        raise AssertionError("unreachable: the second attempt never recreates")

    async def _chat(
        self, name: str, app_name: str, app: AppSettings, group: Group, userids: list[str], key: str, recreate: bool
    ) -> Chat | Outcome:
        """The group's chat: cached, or created now for the members with a WeCom user id that it accepts.

        A first chat gets an id derived from the cache key, so a lost cache finds it again (86215, exists);
        a chat created again after the first was dissolved gets a fresh id from WeCom.
        """
        async with self._chats.lock(key):
            if cached := await self._chats.get(key):
                return cached
            derived = hashlib.sha256(key.encode()).hexdigest()[:32]
            title = (group.name.strip() or f"{group.id}/{group.level}")[:CHAT_NAME_CHARS]

            async def create(ids: list[str]) -> tuple[Reply | Failure, Reply]:
                body: Body = {"name": title, "owner": ids[0], "userlist": ids}
                if not recreate:
                    body["chatid"] = derived
                reply, raw = await self._post(app_name, app, "/cgi-bin/appchat/create", body)
                if isinstance(reply, Failure) and raw.get("errcode") == CHAT_EXISTS and not recreate:
                    return {"chatid": derived}, raw
                return reply, raw

            reply, raw, rejected = await without_rejected(create, userids, MEMBER_REFUSALS, 2)
            if isinstance(reply, Failure):
                named = named_in(str(raw.get("errmsg", "")), userids)
                detail = f"; rejected userids: {', '.join(named)}" if named else ""
                return _failed(name, reply, "appchat/create: ", detail)
            chatid = reply.get("chatid")
            if not isinstance(chatid, str) or not chatid:
                return Outcome(name, False, Code.WECOM_SEND, True, Reason.REJECTED, "appchat/create: no chatid")
            chat = Chat(chatid, rejected)
            await self._chats.made(name, app_name, group, userids, chat)
            return chat

    # -- group robot --

    async def _robot(self, target: WeComRobot, group: Group, message: Message) -> Outcome:
        name = label(target)
        if not URL(target.webhook).absolute:
            return _config(name, Code.WECOM_SEND, "the robot webhook is not an absolute URL")
        tags = self._texts(target, group, message)[1]
        if tags and tags.count("<@") < (members := len(_userids(group))):
            logger.warning("%s: group %s/%s: the mentions of %d of %d members fit in a message",
                           name, *group.key, tags.count("<@"), members)  # fmt: skip
        bodies = self._bodies(target, group, message)
        for i, body in unsent(bodies, message.skip):
            if late(message, i - message.skip, self._delivery.timeout):
                return at_part(left(name, Code.WECOM_SEND), i, len(bodies))
            reply = checked(await call(self._session, "POST", target.webhook, self._delivery.timeout, body=body))
            if isinstance(reply, Failure):
                return at_part(_failed(name, reply), i, len(bodies))
        return self._delivered(name, bodies)

    # -- shared --

    def _bodies(self, target: Target, group: Group, message: Message) -> list[Body]:
        """The request bodies the message is sent as; an app chat's without its chat id (added when sent)."""
        parts, tags = self._texts(target, group, message)
        if isinstance(target, WeComRobot):  # the mentions with the first part: tags in markdown, lists in text
            bodies = [_content(message.format, part + tags if i == 0 else part) for i, part in enumerate(parts)]
            if message.format is Format.TEXT:
                bodies[0]["text"] |= _text_mentions(group, message)
            return bodies
        if isinstance(target, WeComApp):
            app = self._settings.apps.get(target.app)
            touser = {"touser": "|".join(_userids(group)), "agentid": app.agentid if app else 0}
            return [touser | _content(message.format, part) for part in parts]
        return [{"safe": 0, **_content(message.format, part)} for part in parts]

    def _texts(self, target: Target, group: Group, message: Message) -> tuple[list[str], str]:
        """The contents the message is sent as, and the mentions the first one ends with: a robot's markdown
        mentions live in its content, so they take room from it."""
        if not isinstance(target, WeComRobot):
            return split(message.body, APP_CONTENT_BYTES, self._delivery.split), ""
        mentions = message.format is Format.MARKDOWN and group.mention is Mention.MEMBERS
        kept = _tags(_userids(group), WECOM_MENTION_ROOM) if mentions else []
        tags = "\n" + " ".join(kept) if kept else ""
        return split(message.body, ROBOT_CONTENT_BYTES[message.format] - len(tags.encode()), self._delivery.split), tags

    async def _post(self, app_name: str, app: AppSettings, path: str, body: Body) -> tuple[Reply | Failure, Reply]:
        base = self._settings.base_url
        url = f"{base}{path}"

        async def gettoken() -> Reply | Failure:
            params = {"corpid": app.corpid, "corpsecret": app.corpsecret}
            return await call(self._session, "GET", f"{base}/cgi-bin/gettoken", self._delivery.timeout, params=params)

        return await authorized_post(self._tokens, app_name, gettoken, self._session, url, self._delivery.timeout, body)


def _userids(group: Group) -> list[str]:
    return list(dict.fromkeys(m.wecom_userid for m in group.members if m.wecom_userid))


def _content(fmt: Format, text: str) -> Body:
    return {"msgtype": fmt.value, fmt.value: {"content": text}}


def _text_mentions(group: Group, message: Message) -> Body:
    """Robot text mentions, each member once (by user id, or by mobile when the member has none), and the alarm's."""
    userids, mobiles = list(message.userids), list(message.mobiles)
    if group.mention is Mention.ALL:
        userids = ["@all"]
    elif group.mention is Mention.MEMBERS:
        userids = list(dict.fromkeys([*_userids(group), *userids]))
        mobiles = list(dict.fromkeys([m.mobile for m in group.members if m.mobile and not m.wecom_userid] + mobiles))
    mentions = {"mentioned_list": userids, "mentioned_mobile_list": mobiles}
    return {k: v for k, v in mentions.items() if v}


def _failed(name: str, failure: Failure, prefix: str = "", suffix: str = "") -> Outcome:
    """A failed step; a token that cannot be had, or stays refused after one refresh, is the token step's (4003)."""
    code = Code.WECOM_TOKEN if failure.reason is Reason.TOKEN else Code.WECOM_SEND
    return Outcome(name, False, code, failure.retryable, failure.reason, f"{prefix}{failure.detail}{suffix}")


def _config(name: str, code: Code, detail: str) -> Outcome:
    return Outcome(name, False, code, False, Reason.CONFIG, detail)


def _tags(userids: list[str], room: int) -> list[str]:
    """The markdown mentions of the first members that fit in ``room`` bytes: the alarm keeps the rest."""
    kept: list[str] = []
    size = 0
    for userid in userids:
        size += len(f"<@{userid}>".encode()) + 1  # and the line break or space before it
        if size > room:
            break
        kept.append(f"<@{userid}>")
    return kept
