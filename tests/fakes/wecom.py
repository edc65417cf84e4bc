"""Fake WeCom (企业微信): gettoken, app message, appchat and group robot webhook.

Run alone: python -m tests.fakes.wecom --port 8802 --robot KEY --corpid ww1 --corpsecret S --agentid 1000002
"""

from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._fake import Fake, cli_parser, run_cli
from tests.fakes._server import Clock, RateLimiter, Records, parse_object, reply, utf8_len

APP_CONTENT_BYTES = 2048
ROBOT_LIMITS = {"text": 2048, "markdown": 4096, "markdown_v2": 4096}
CHATID = re.compile(r"[0-9a-zA-Z]{1,32}")


@dataclass(frozen=True)
class App:
    corpid: str
    corpsecret: str
    agentid: int


@dataclass(frozen=True)
class AppMessage:
    msgid: str
    agentid: int
    msgtype: str
    content: str
    delivered: tuple[str, ...]  # user ids as registered
    dropped: tuple[str, ...]  # valid users over the per-user rate limit: silently not delivered
    invaliduser: tuple[str, ...]  # lowercased, as reported
    body: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    msgtype: str
    content: str
    body: dict[str, Any]


@dataclass(frozen=True)
class AppChat:
    chatid: str
    name: str
    owner: str
    userlist: tuple[str, ...]
    agentid: int
    messages: Records[ChatMessage] = field(default_factory=Records, compare=False)


@dataclass(frozen=True)
class RobotMessage:
    key: str
    body: dict[str, Any]

    @property
    def msgtype(self) -> str:
        return str(self.body.get("msgtype"))

    @property
    def content(self) -> str:
        return str(self.body[self.msgtype]["content"])


def _split(ids: object) -> list[str]:
    return [i for i in ids.split("|") if i] if isinstance(ids, str) else []


def _content(body: dict[str, Any], msgtype: str) -> object:
    part = body.get(msgtype)
    return part.get("content") if isinstance(part, dict) else None


class WeComFake(Fake):
    casefold_users = True  # WeCom user ids are case-insensitive and reported lowercased

    def __init__(
        self,
        *,
        user_rate: int = 30,
        user_window: float = 60.0,
        robot_rate: int = 20,
        robot_window: float = 60.0,
        token_ttl: float = 7200.0,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(token_ttl=token_ttl, renew_tokens=False, clock=clock)
        self._apps: dict[str, App] = {}  # by corpsecret: each app has its own secret
        self._robots: set[str] = set()
        self._chats: dict[str, AppChat] = {}
        self._user_rate = RateLimiter(user_rate, user_window, clock)
        self._robot_rate = RateLimiter(robot_rate, robot_window, clock)
        self.app_messages: Records[AppMessage] = Records()
        self.robot_messages: Records[RobotMessage] = Records()
        # App/appchat content over 2048 bytes: 45002 or 40058 [U].
        self.oversize_errcode = 45002
        # appchat/create with a member who is not a valid user: 86216 or 40003 [U].
        self.invalid_member_errcode = 86216
        self.names_invalid_members = True  # whether that errmsg names them: the real one may well not
        # Robot over 20/min: probably 45009 [U].
        self.robot_rate_errcode = 45009

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/cgi-bin/gettoken", self._gettoken),
            web.post("/cgi-bin/message/send", self._message_send),
            web.post("/cgi-bin/appchat/create", self._appchat_create),
            web.post("/cgi-bin/appchat/send", self._appchat_send),
            web.get("/cgi-bin/appchat/get", self._appchat_get),
            web.post("/cgi-bin/webhook/send", self._webhook_send),
        ]

    def error(self, errcode: int, text: str, **extra: Any) -> web.Response:
        hint = uuid.uuid4().hex[:24]
        more = f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
        return reply(errcode, f"{text}, hint: [{hint}], from ip: 127.0.0.1, {more}", **extra)

    # -- controls (test thread) --

    def add_app(self, corpid: str, corpsecret: str, agentid: int) -> None:
        with self._lock:
            self._apps[corpsecret] = App(corpid, corpsecret, agentid)

    def add_robot(self, key: str) -> None:
        with self._lock:
            self._robots.add(key)

    def remove_robot(self, key: str) -> None:
        with self._lock:
            self._robots.discard(key)

    @property
    def chats(self) -> dict[str, AppChat]:
        with self._lock:
            return dict(self._chats)

    def delete_chat(self, chatid: str) -> None:
        with self._lock:
            self._chats.pop(chatid, None)

    def inbox(self, userid: str) -> list[AppMessage]:
        """App messages delivered to one user (case-insensitive)."""
        return [m for m in self.app_messages if userid.lower() in (u.lower() for u in m.delivered)]

    def robot_inbox(self, key: str) -> list[RobotMessage]:
        return [m for m in self.robot_messages if m.key == key]

    # -- token --

    async def _gettoken(self, request: web.Request) -> web.Response:
        self._count_gettoken()
        corpid, secret = request.query.get("corpid", ""), request.query.get("corpsecret", "")
        with self._lock:
            corp_known = any(app.corpid == corpid for app in self._apps.values())
            app = self._apps.get(secret)
        if not corp_known:
            return self.error(40013, "invalid corpid")
        if app is None or not hmac.compare_digest(app.corpid.encode(), corpid.encode()):
            return self.error(40001, "invalid credential")
        token, expires_in = self.tokens.issue(secret)
        return reply(0, access_token=token, expires_in=expires_in)

    async def _caller(self, request: web.Request) -> tuple[App, dict[str, Any]] | web.Response:
        """Authorize and parse the body: (app, body) or the error reply."""
        if isinstance(auth := self._authorize(request), web.Response):
            return auth
        with self._lock:
            app = self._apps[auth]
        body = parse_object(await request.read())
        if body is None:
            return self.error(47001, "data format error")
        return app, body

    def _check_content(self, body: dict[str, Any], limit: int) -> web.Response | None:
        msgtype = body.get("msgtype")
        if msgtype not in ("text", "markdown"):
            return self.error(40008, "invalid message type")
        content = _content(body, msgtype)
        if not isinstance(content, str) or not content:
            return self.error(44004, "empty content")
        if utf8_len(content) > limit:
            return self.error(self.oversize_errcode, f"content size out of limit {limit} bytes")
        return None

    # -- app message --

    async def _message_send(self, request: web.Request) -> web.Response:
        if isinstance(caller := await self._caller(request), web.Response):
            return caller
        app, body = caller
        if str(body.get("agentid")) != str(app.agentid):
            return self.error(40056, "invalid agentid")
        if problem := self._check_content(body, APP_CONTENT_BYTES):
            return problem
        touser, toparty, totag = (_split(body.get(k)) for k in ("touser", "toparty", "totag"))
        if not (touser or toparty or totag):
            return self.error(82001, "touser & toparty & totag all empty")
        if touser == ["@all"]:  # @all ignores toparty and totag
            touser, toparty, totag = self._all_users(), [], []
        known = {u: self._known_user(u) for u in touser}
        valid = list(dict.fromkeys(k for k in known.values() if k is not None))
        invalid = tuple(u.lower() for u, k in known.items() if k is None)
        # Departments and tags are not modelled: every party/tag id is reported invalid.
        extra = {"invaliduser": "|".join(invalid), "invalidparty": "|".join(toparty), "invalidtag": "|".join(totag)}
        if not valid:
            return self.error(81013, "user & party & tag all invalid", **extra)
        delivered = tuple(u for u in valid if self._user_rate.allow(u))
        dropped = tuple(u for u in valid if u not in delivered)
        msgtype = body["msgtype"]
        message = AppMessage(
            uuid.uuid4().hex, app.agentid, msgtype, body[msgtype]["content"], delivered, dropped, invalid, body
        )
        self.app_messages.append(message)
        self._emit(f"[wecom app {app.agentid} -> {'|'.join(delivered)}] {msgtype}: {message.content}")
        return reply(0, msgid=message.msgid, **extra)

    # -- appchat --

    async def _appchat_create(self, request: web.Request) -> web.Response:
        if isinstance(caller := await self._caller(request), web.Response):
            return caller
        app, body = caller
        name, owner, userlist = body.get("name", ""), body.get("owner"), body.get("userlist")
        chatid = body.get("chatid") or uuid.uuid4().hex
        if not isinstance(name, str):
            return self.error(86004, "invalid chat name")
        if not isinstance(userlist, list) or not 2 <= len(userlist) <= 2000:
            return self.error(86006, "invalid chat member count")
        invalid = [str(u) for u in userlist if not isinstance(u, str) or self._known_user(u) is None]
        if invalid:
            named = f": {'|'.join(invalid)}" if self.names_invalid_members else ""
            return self.error(self.invalid_member_errcode, f"invalid chat member{named}")
        if owner is not None and owner not in userlist:
            return self.error(86005, "invalid chat owner")
        if not isinstance(chatid, str) or not CHATID.fullmatch(chatid):
            return self.error(86001, "invalid chatid")
        chat = AppChat(chatid, name[:50], owner or userlist[0], tuple(userlist), app.agentid)
        with self._lock:
            if chatid in self._chats:
                return self.error(86215, "chatid exists")
            self._chats[chatid] = chat
        self._emit(f"[wecom appchat/create {chatid}] {chat.name!r} owner={chat.owner} users={userlist}")
        return reply(0, chatid=chatid)

    async def _appchat_send(self, request: web.Request) -> web.Response:
        if isinstance(caller := await self._caller(request), web.Response):
            return caller
        app, body = caller
        with self._lock:
            chat = self._chats.get(str(body.get("chatid")))
        if chat is None:
            return self.error(86003, "chatid not exist")
        if chat.agentid != app.agentid:
            return self.error(86008, "chat not created by this app")
        if problem := self._check_content(body, APP_CONTENT_BYTES):
            return problem
        msgtype = body["msgtype"]
        chat.messages.append(ChatMessage(msgtype, body[msgtype]["content"], body))
        self._emit(f"[wecom appchat {chat.chatid}] {msgtype}: {body[msgtype]['content']}")
        return reply(0)

    async def _appchat_get(self, request: web.Request) -> web.Response:
        if isinstance(auth := self._authorize(request), web.Response):
            return auth
        with self._lock:
            chat = self._chats.get(request.query.get("chatid", ""))
        if chat is None:
            return self.error(86003, "chatid not exist")
        info = {"chatid": chat.chatid, "name": chat.name, "owner": chat.owner, "userlist": list(chat.userlist)}
        return reply(0, chat_info={**info, "chat_type": 0})

    # -- group robot --

    async def _webhook_send(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        with self._lock:
            known = key in self._robots
        if not known:
            return self.error(93000, "invalid webhook url")
        body = parse_object(await request.read())
        if body is None:
            return self.error(47001, "data format error")
        msgtype = body.get("msgtype")
        if not isinstance(msgtype, str) or msgtype not in ROBOT_LIMITS:
            return self.error(40008, "invalid message type")  # other robot types are not modelled
        content = _content(body, msgtype)
        if not isinstance(content, str) or not content:
            return self.error(44004, "empty content")
        if utf8_len(content) > ROBOT_LIMITS[msgtype]:
            limit = ROBOT_LIMITS[msgtype]
            return self.error(40058, f"{msgtype}.content exceed max length {limit}. invalid Request Parameter")
        for mentions in ("mentioned_list", "mentioned_mobile_list"):
            value = body[msgtype].get(mentions, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return self.error(40058, f"{msgtype}.{mentions} invalid Request Parameter")
        if not self._robot_rate.allow(key):
            return self.error(self.robot_rate_errcode, "api freq out of limit")
        self.robot_messages.append(RobotMessage(key, body))
        self._emit(f"[wecom robot {key}] {json.dumps(body, ensure_ascii=False)}")
        return reply(0)


def main(argv: list[str] | None = None) -> None:
    parser = cli_parser("Fake WeCom API (app message, appchat, group robot)")
    parser.add_argument("--robot", action="append", default=[], help="webhook key (repeatable)")
    parser.add_argument("--corpid")
    parser.add_argument("--corpsecret")
    parser.add_argument("--agentid", type=int, default=1000002)
    args = parser.parse_args(argv)
    fake = WeComFake()
    registered: list[str] = []
    for key in args.robot:
        fake.add_robot(key)
        registered.append(f"robot: POST /cgi-bin/webhook/send?key={key}")
    if args.corpid:
        fake.add_app(args.corpid, args.corpsecret or "", args.agentid)
        registered.append(f"app: corpid={args.corpid} agentid={args.agentid} (GET /cgi-bin/gettoken)")
    if args.user:
        fake.add_user(*args.user)
        registered.append(f"users: {', '.join(args.user)}")
    run_cli(fake, args.host, args.port, registered)


if __name__ == "__main__":
    main()
