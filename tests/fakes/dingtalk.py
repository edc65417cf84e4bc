"""Fake DingTalk: custom robot webhook and enterprise app (gettoken, chat/create, chat/send).

Run alone: python -m tests.fakes.dingtalk --port 8801 --robot TOKEN --secret SEC... --user alice
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes._fake import Fake, cli_parser, run_cli
from tests.fakes._server import Clock, RateLimiter, Records, parse_object, reply, strings

MAX_BODY_BYTES = 20000
SIGN_WINDOW_MS = 3_600_000
TOO_FAST = "send too fast, exceed 20 times per minute"
ROBOT_LOOSE_TYPES = ("link", "actionCard", "feedCard")
CHAT_LOOSE_TYPES = ("link", "action_card", "oa", "image", "file", "voice")


def robot_sign(secret: str, timestamp_ms: int) -> str:
    """The raw (not URL-encoded) base64 signature for a signed robot webhook."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Robot:
    token: str
    secret: str | None
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class RobotMessage:
    token: str
    body: dict[str, Any]
    at: float = 0.0  # arrival, on the fake's clock

    @property
    def content(self) -> str:
        part = self.body.get(self.msgtype, {})
        return str(part.get("content") or part.get("text") or "")

    @property
    def msgtype(self) -> str:
        return str(self.body.get("msgtype"))


@dataclass(frozen=True)
class ChatMessage:
    message_id: str
    msg: dict[str, Any]  # normalized {"msgtype": .., <msgtype>: {..}}, whichever form was sent
    body: dict[str, Any]  # the request body as sent


@dataclass(frozen=True)
class Chat:
    chatid: str
    open_conversation_id: str
    name: str
    owner: str
    useridlist: tuple[str, ...]
    messages: Records[ChatMessage] = field(default_factory=Records, compare=False)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _msg_problem(msg: dict[str, Any], loose_types: tuple[str, ...]) -> str | None:
    msgtype = msg.get("msgtype")
    part = msg.get(msgtype) if isinstance(msgtype, str) else None
    if msgtype == "text":
        content = part.get("content") if isinstance(part, dict) else None
        return None if isinstance(content, str) and content else "text.content must be a non-empty string"
    if msgtype == "markdown":
        fields = [part.get(k) for k in ("title", "text")] if isinstance(part, dict) else [None]
        return None if all(isinstance(f, str) for f in fields) else "markdown.title/text must be strings"
    if msgtype in loose_types:
        return None if isinstance(part, dict) else f"{msgtype} must be an object"
    return f"unsupported msgtype {msgtype!r}"


def _at_problem(body: dict[str, Any]) -> str | None:
    at = body.get("at", {})
    if not isinstance(at, dict):
        return "at must be an object"
    for key in ("atMobiles", "atUserIds"):
        if key in at and not _is_str_list(at[key]):
            return f"at.{key} must be a list of strings"
    if "isAtAll" in at and not isinstance(at["isAtAll"], bool):
        return "at.isAtAll must be a boolean"
    return None


def _first(query: dict[str, list[str]], key: str) -> str:
    return query.get(key, [""])[0]


class DingTalkFake(Fake):
    def __init__(
        self,
        *,
        robot_rate: int = 20,
        robot_window: float = 60.0,
        robot_block: float = 600.0,
        token_ttl: float = 7200.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        super().__init__(token_ttl=token_ttl, renew_tokens=True, clock=clock)
        self._wall_clock = wall_clock
        self._robots: dict[str, Robot] = {}
        self._robot_rate = RateLimiter(robot_rate, robot_window, clock)
        self._robot_block = robot_block
        self._blocked_until: dict[str, float] = {}
        self._apps: dict[str, str] = {}
        self._chats: dict[str, Chat] = {}
        self.robot_messages: Records[RobotMessage] = Records()
        self.too_fast = 0  # how many 130101 answers the robot gave
        # Missing/unknown msgtype or a malformed body: 400105 (不支持的消息类型) is from memory [U].
        self.bad_message_errcode = 400105
        # The code for a member who left the company is [U]: 60121, 60111 or 40003.
        self.unknown_user_errcode = 60121
        self.names_unknown_users = True  # whether that errmsg names them: the real one may well not
        # 34001 无效的会话id; 40016 不合法的会话ID also plausible [U].
        self.gone_chat_errcode = 34001

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/robot/send", self._robot_send),
            web.get("/gettoken", self._gettoken),
            web.post("/chat/create", self._chat_create),
            web.post("/chat/send", self._chat_send),
        ]

    # -- controls (test thread) --

    def add_robot(self, token: str, secret: str | None = None, keywords: tuple[str, ...] = ()) -> None:
        with self._lock:
            self._robots[token] = Robot(token, secret, tuple(keywords))

    def add_app(self, appkey: str, appsecret: str) -> None:
        with self._lock:
            self._apps[appkey] = appsecret

    @property
    def chats(self) -> dict[str, Chat]:
        with self._lock:
            return dict(self._chats)

    def delete_chat(self, chatid: str) -> None:
        with self._lock:
            self._chats.pop(chatid, None)

    # -- custom robot --

    def _too_fast(self) -> web.Response:
        with self._lock:
            self.too_fast += 1
        return reply(130101, TOO_FAST)

    async def _robot_send(self, request: web.Request) -> web.Response:
        # Parse the raw query once, as the real server does: a double-encoded sign stays encoded.
        query = parse_qs(request.rel_url.raw_query_string)
        token = _first(query, "access_token")
        with self._lock:
            robot = self._robots.get(token)
            blocked = self._blocked_until.get(token, 0.0) > self._clock()
        if robot is None:
            return reply(300001, "token is not exist")
        if blocked:
            return self._too_fast()
        if robot.secret is not None and (problem := self._sign_problem(robot.secret, query)):
            return reply(310000, problem)
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return reply(460101, f"message too long, exceed {MAX_BODY_BYTES} bytes")
        body = parse_object(raw)
        if body is None:
            return reply(self.bad_message_errcode, "body is not a JSON object")
        if problem := _msg_problem(body, ROBOT_LOOSE_TYPES) or _at_problem(body):
            return reply(self.bad_message_errcode, problem)
        if robot.keywords and not any(k in s for s in strings(body) for k in robot.keywords):
            return reply(310000, "keywords not in content")
        # The window counts accepted messages; going over it blocks the robot.
        if not self._robot_rate.allow(token):
            with self._lock:
                self._blocked_until[token] = self._clock() + self._robot_block
            return self._too_fast()
        self.robot_messages.append(RobotMessage(token, body, self._clock()))
        self._emit(f"[dingtalk robot {token}] {json.dumps(body, ensure_ascii=False)}")
        return reply(0)

    def _sign_problem(self, secret: str, query: dict[str, list[str]]) -> str | None:
        timestamp = _first(query, "timestamp")
        if not timestamp.isdigit() or abs(int(timestamp) - self._wall_clock() * 1000) > SIGN_WINDOW_MS:
            return "invalid timestamp"
        expected = robot_sign(secret, int(timestamp))
        if not hmac.compare_digest(expected.encode(), _first(query, "sign").encode()):
            return "sign not match"
        return None

    # -- enterprise app --

    async def _gettoken(self, request: web.Request) -> web.Response:
        self._count_gettoken()
        appkey = request.query.get("appkey", "")
        with self._lock:
            expected = self._apps.get(appkey)
        if expected is None:
            return reply(40089, "不合法的corpid或corpsecret")
        if not hmac.compare_digest(expected.encode(), request.query.get("appsecret", "").encode()):
            return reply(40001, "不合法的appsecret")
        token, expires_in = self.tokens.issue(appkey)
        return reply(0, access_token=token, expires_in=expires_in)

    async def _chat_create(self, request: web.Request) -> web.Response:
        if isinstance(auth := self._authorize(request), web.Response):
            return auth
        body = parse_object(await request.read()) or {}
        name, owner, userids = body.get("name"), body.get("owner"), body.get("useridlist")
        if not isinstance(name, str) or not 1 <= len(name) <= 20:
            return reply(40035, "不合法的参数: name must be 1~20 characters")  # code [U]
        if not _is_str_list(userids) or not userids:
            return reply(40031, "不合法的UserID列表")
        if len(userids) > 40:
            return reply(49005, "群人数超过人数限制: at most 40 per call")
        if not isinstance(owner, str) or owner not in userids:
            return reply(49006, "群成员列表必须包含群主")
        unknown = [u for u in userids if self._known_user(u) is None]
        if unknown:
            named = f": {','.join(unknown)}" if self.names_unknown_users else ""
            return reply(self.unknown_user_errcode, f"找不到该用户{named}")
        chat = Chat(f"chat{uuid.uuid4().hex}", f"cid{uuid.uuid4().hex}", name, owner, tuple(userids))
        with self._lock:
            self._chats[chat.chatid] = chat
        self._emit(f"[dingtalk chat/create {chat.chatid}] {name!r} owner={owner} users={','.join(userids)}")
        return reply(
            0,
            chatid=chat.chatid,
            openConversationId=chat.open_conversation_id,
            conversationTag=body.get("conversationTag", 2),
        )

    async def _chat_send(self, request: web.Request) -> web.Response:
        if isinstance(auth := self._authorize(request), web.Response):
            return auth
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return reply(460101, f"message too long, exceed {MAX_BODY_BYTES} bytes")  # limit [U] here
        body = parse_object(raw) or {}
        chatid = body.get("chatid")
        if not isinstance(chatid, str) or not chatid:
            return reply(49000, "缺少chatid")
        with self._lock:
            chat = self._chats.get(chatid)
        if chat is None:
            return reply(self.gone_chat_errcode, "无效的会话id")
        msg = body.get("msg")
        if msg is None:  # legacy flat form: {"chatid","sender","msgtype","text":{..}}
            msgtype = body.get("msgtype")
            msg = {"msgtype": msgtype, str(msgtype): body.get(str(msgtype))}
            sender = body.get("sender")
            if sender is not None and self._known_user(str(sender)) is None:
                return reply(34006, "发送者不在企业中")
            if sender is not None and sender not in chat.useridlist:
                return reply(34007, "发送者不在会话中")
        if not isinstance(msg, dict) or _msg_problem(msg, CHAT_LOOSE_TYPES):
            return reply(34014, "会话消息的json结构无效或不完整")
        message = ChatMessage(uuid.uuid4().hex, msg, body)
        chat.messages.append(message)
        self._emit(f"[dingtalk chat/send {chatid}] {json.dumps(msg, ensure_ascii=False)}")
        return reply(0, messageId=message.message_id)


def main(argv: list[str] | None = None) -> None:
    parser = cli_parser("Fake DingTalk robot + enterprise app API")
    parser.add_argument("--robot", action="append", default=[], help="robot access_token (repeatable)")
    parser.add_argument("--secret", help="sign secret (SEC...) for every --robot")
    parser.add_argument("--keyword", action="append", default=[], help="robot keyword (repeatable)")
    parser.add_argument("--appkey")
    parser.add_argument("--appsecret")
    args = parser.parse_args(argv)
    fake = DingTalkFake()
    registered: list[str] = []
    for token in args.robot:
        fake.add_robot(token, args.secret, tuple(args.keyword))
        security = ("signed" if args.secret else "unsigned") + f", keywords={args.keyword}"
        registered.append(f"robot: POST /robot/send?access_token={token} ({security})")
    if args.appkey:
        fake.add_app(args.appkey, args.appsecret or "")
        registered.append(f"app: GET /gettoken?appkey={args.appkey}&appsecret=...")
    if args.user:
        fake.add_user(*args.user)
        registered.append(f"users: {', '.join(args.user)}")
    run_cli(fake, args.host, args.port, registered)


if __name__ == "__main__":
    main()
