"""Fake Feishu / Lark: custom bot webhooks (signature in the body, keywords, IP allowlist, 5/s and 100/min) and the
app API (tenant_access_token, im/v1/messages to a chat), strict as section F of the channel reference says.

Run alone: python -m tests.fakes.feishu --port 8803 --bot TOKEN --secret S --keyword 告警 --app-id cli_a --app-secret S
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes._fake import Fake, cli_parser, run_cli
from tests.fakes._server import Clock, RateLimiter, Records, parse_object, strings

MAX_BODY_BYTES = 20000
SIGN_WINDOW = 3600  # seconds either side of the server's clock
MSG_TYPES = ("text", "post", "interactive", "share_chat", "image")
TOO_MANY = 9499
UNKNOWN_HOOK = 19001  # an unknown or deleted token: a nonzero code, which one is [U]
BAD_PARAMS = 19002  # a malformed message: [U]
SIGN_FAILED, IP_DENIED, NO_KEYWORD = 19021, 19022, 19024
TOKEN_INVALID, TOKEN_MISSING = 99991663, 99991661
CHAT_RATE = 230020  # an app over 5 a second in one chat [U]
BOT_NOT_IN_CHAT = 230002
MENTION = re.compile(r"""<at (?:user_)?id=["']?([\w-]+)["']?>""")


def bot_sign(secret: str, timestamp: int) -> str:
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Bot:
    token: str
    secret: str | None
    keywords: tuple[str, ...]
    allowed: tuple[str, ...]  # client addresses; empty: any


@dataclass(frozen=True)
class Message:
    """An accepted message: a bot's (``token``) or an app's into a chat (``chat_id``), its card or content parsed."""

    msg_type: str
    content: dict[str, Any]  # text: {"text"}; interactive: the card; post: {"post"}; ...
    body: dict[str, Any]  # the request body as sent
    token: str = ""
    chat_id: str = ""
    at: float = 0.0  # arrival, on the fake's clock

    @property
    def text(self) -> str:
        """What a person reads: a text's text, or every lark_md and plain_text of a card."""
        if self.msg_type == "text":
            return str(self.content.get("text", ""))
        return "\n".join(strings(self.content))

    @property
    def mentions(self) -> list[str]:
        """The open ids the message mentions ("all" for everyone)."""
        return MENTION.findall(self.text)


def answer(code: int, msg: str = "success", status: int = 200, **extra: Any) -> web.Response:
    return web.json_response({"code": code, "msg": msg, **extra}, status=status)


def _shape_problem(msg_type: object, content: object) -> str | None:
    """What is wrong with a message of this type, or None."""
    if msg_type not in MSG_TYPES:
        return f"msg_type must be one of {', '.join(MSG_TYPES)}"
    if not isinstance(content, dict):
        return "content must be an object"
    if msg_type == "text":
        text = content.get("text")
        return None if isinstance(text, str) and text.strip() else "content.text must be a non-empty string"
    if msg_type == "post":
        posts = content.get("post")
        ok = isinstance(posts, dict) and posts and all(
            isinstance(p, dict) and isinstance(p.get("content"), list)
            and all(isinstance(line, list) for line in p["content"]) for p in posts.values()
        )  # fmt: skip
        return None if ok else "content.post must map languages to {title, content: [[elements]]}"
    if msg_type == "interactive":
        return _card_problem(content)
    key = "share_chat_id" if msg_type == "share_chat" else "image_key"
    return None if isinstance(content.get(key), str) else f"content.{key} must be a string"


def _card_problem(card: dict[str, Any]) -> str | None:
    elements = card.get("elements")
    if not isinstance(elements, list) or not elements:
        return "card.elements must be a non-empty list"
    header = card.get("header", {})
    if not isinstance(header, dict) or ("title" in header and not isinstance(header["title"], dict)):
        return "card.header.title must be an object"
    for element in elements:
        if not isinstance(element, dict) or not isinstance(element.get("tag"), str):
            return "every card element must be an object with a tag"
        text = element.get("text")
        if element["tag"] == "div" and not (isinstance(text, dict) and text.get("tag") in ("lark_md", "plain_text")):
            return "a div's text must be {tag: lark_md | plain_text, content}"
        if element["tag"] == "action" and not all(
            isinstance(b, dict) and b.get("tag") == "button" and isinstance(b.get("url", ""), str)
            for b in element.get("actions", [])
        ):
            return "an action's actions must be buttons"  # a custom bot's buttons only open URLs
    return None


class FeishuFake(Fake):
    def __init__(
        self,
        *,
        per_second: int = 5,
        per_minute: int = 100,
        chat_per_second: int = 5,
        token_ttl: float = 7200.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        super().__init__(token_ttl=token_ttl, renew_tokens=False, clock=clock)
        self._wall_clock = wall_clock
        self._bots: dict[str, Bot] = {}
        self._second = RateLimiter(per_second, 1.0, clock)
        self._minute = RateLimiter(per_minute, 60.0, clock)
        self._chat_second = RateLimiter(chat_per_second, 1.0, clock)
        self._apps: dict[str, str] = {}
        self._chats: set[str] = set()
        self.messages: Records[Message] = Records()
        self.too_many = 0  # how many rate refusals the fake gave (9499 for a bot, 230020 for a chat)
        self.rate_status = 200  # 9499 is also seen with HTTP 400
        self.token_refusals = 0  # messages sent with an invalid or expired token
        self._throttled = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/open-apis/bot/v2/hook/{token}", self._hook),
            web.post("/open-apis/auth/v3/tenant_access_token/internal", self._tenant_token),
            web.post("/open-apis/im/v1/messages", self._im_send),
        ]

    def error(self, errcode: int, text: str, **extra: Any) -> web.Response:
        return answer(errcode, text, **extra)

    # -- controls (test thread) --

    def add_bot(
        self, token: str, secret: str | None = None, keywords: tuple[str, ...] = (), allowed: tuple[str, ...] = ()
    ) -> None:
        with self._lock:
            self._bots[token] = Bot(token, secret, tuple(keywords), tuple(allowed))

    def remove_bot(self, token: str) -> None:
        with self._lock:
            self._bots.pop(token, None)

    def add_app(self, app_id: str, app_secret: str) -> None:
        with self._lock:
            self._apps[app_id] = app_secret

    def add_chat(self, chat_id: str) -> None:
        """A chat the app's bot is in."""
        with self._lock:
            self._chats.add(chat_id)

    def throttle(self, n: int) -> None:
        """The next ``n`` bot messages meet the platform's own throttling (11232, seen at the top of the hour)."""
        with self._lock:
            self._throttled = n

    def _refused(self) -> web.Response:
        with self._lock:
            self.too_many += 1
        return answer(TOO_MANY, "too many request", status=self.rate_status)

    # -- custom bot --

    async def _hook(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        with self._lock:
            bot = self._bots.get(token)
        if bot is None:
            return answer(UNKNOWN_HOOK, "param invalid: incoming webhook access token invalid")
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return answer(TOO_MANY, "Bad Request", status=400)  # the body limit's code is [U]: 9499 is for bad requests
        body = parse_object(raw)
        if body is None:
            return answer(BAD_PARAMS, "params error: the body is not a JSON object")
        if bot.allowed and request.remote not in bot.allowed:
            return answer(IP_DENIED, f"ip {request.remote} not allowed")
        if bot.secret is not None and not self._signed(bot.secret, body):
            return answer(SIGN_FAILED, "sign match fail or timestamp is not within one hour from current time")
        msg_type = body.get("msg_type")
        content = body.get("card") if msg_type == "interactive" else body.get("content")
        if problem := _shape_problem(msg_type, content):
            return answer(BAD_PARAMS, f"params error: {problem}")
        assert isinstance(content, dict)
        if bot.keywords and not any(k in s for s in strings(content) for k in bot.keywords):
            return answer(NO_KEYWORD, "Key Words Not Found")
        with self._lock:
            throttled, self._throttled = self._throttled > 0, max(self._throttled - 1, 0)
        if throttled:
            return answer(11232, "frequency limited")
        # Both windows count accepted messages; one over either is refused and not delivered.
        if not self._second.allow(token) or not self._minute.allow(token):
            return self._refused()
        message = Message(str(msg_type), content, body, token=token, at=self._clock())
        self.messages.append(message)
        self._emit(f"[feishu bot {token}] {json.dumps(body, ensure_ascii=False)}")
        return answer(0, "success", data={}, StatusCode=0, StatusMessage="success")

    def _signed(self, secret: str, body: dict[str, Any]) -> bool:
        timestamp, sign = body.get("timestamp"), body.get("sign")
        if not isinstance(timestamp, str) or not timestamp.isdigit() or not isinstance(sign, str):
            return False
        if abs(int(timestamp) - self._wall_clock()) > SIGN_WINDOW:
            return False
        return hmac.compare_digest(bot_sign(secret, int(timestamp)).encode(), sign.encode())

    # -- app --

    async def _tenant_token(self, request: web.Request) -> web.Response:
        self._count_gettoken()
        body = parse_object(await request.read()) or {}
        app_id, app_secret = body.get("app_id"), body.get("app_secret")
        with self._lock:
            expected = self._apps.get(app_id) if isinstance(app_id, str) else None
        if expected is None:
            return answer(10003, "invalid param: app_id")
        if not isinstance(app_secret, str) or not hmac.compare_digest(expected.encode(), app_secret.encode()):
            return answer(10014, "app secret invalid")
        token, expires_in = self.tokens.issue(str(app_id))
        return answer(0, "ok", tenant_access_token=f"t-{token}", expire=expires_in)

    async def _im_send(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return answer(TOKEN_MISSING, "Missing access token for authorization", status=400)
        state, owner = self.tokens.check(header.removeprefix("Bearer ").removeprefix("t-"))
        if owner is None:
            with self._lock:
                self.token_refusals += 1
            return answer(TOKEN_INVALID, f"Invalid access token for authorization ({state})", status=400)
        if request.query.get("receive_id_type") != "chat_id":
            return answer(230001, "param invalid: receive_id_type must be chat_id here", status=400)
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return answer(230025, "the message is too long", status=400)
        body = parse_object(raw) or {}
        chat_id, msg_type, text = body.get("receive_id"), body.get("msg_type"), body.get("content")
        with self._lock:
            known = chat_id in self._chats
        if not isinstance(chat_id, str) or not known:
            return answer(BOT_NOT_IN_CHAT, "Bot is not in the chat", status=400)
        content = parse_object(text.encode()) if isinstance(text, str) else None  # content is JSON in a string
        if problem := _shape_problem(msg_type, content) if content is not None else "content must be a JSON string":
            return answer(230001, f"param invalid: {problem}", status=400)
        assert isinstance(content, dict)
        if not self._chat_second.allow(chat_id):
            with self._lock:
                self.too_many += 1
            return answer(CHAT_RATE, "The message rate of this chat exceeds the limit", status=400)
        message = Message(str(msg_type), content, body, chat_id=chat_id, at=self._clock())
        self.messages.append(message)
        self._emit(f"[feishu app {owner} -> {chat_id}] {json.dumps(content, ensure_ascii=False)}")
        return answer(0, "success", data={"message_id": f"om_{uuid.uuid4().hex}", "chat_id": chat_id})


def main(argv: list[str] | None = None) -> None:
    parser = cli_parser("Fake Feishu / Lark custom bots + app messages")
    parser.add_argument("--bot", action="append", default=[], help="bot hook token (repeatable)")
    parser.add_argument("--secret", help="signature secret for every --bot")
    parser.add_argument("--keyword", action="append", default=[], help="bot keyword (repeatable)")
    parser.add_argument("--app-id")
    parser.add_argument("--app-secret")
    parser.add_argument("--chat", action="append", default=[], help="a chat id the app's bot is in (repeatable)")
    args = parser.parse_args(argv)
    fake = FeishuFake()
    registered: list[str] = []
    for token in args.bot:
        fake.add_bot(token, args.secret, tuple(args.keyword))
        security = ("signed" if args.secret else "unsigned") + f", keywords={args.keyword}"
        registered.append(f"bot: POST /open-apis/bot/v2/hook/{token} ({security})")
    if args.app_id:
        fake.add_app(args.app_id, args.app_secret or "")
        registered.append(f"app: {args.app_id} (POST /open-apis/auth/v3/tenant_access_token/internal)")
    for chat in args.chat:
        fake.add_chat(chat)
        registered.append(f"chat: {chat} (POST /open-apis/im/v1/messages?receive_id_type=chat_id)")
    run_cli(fake, args.host, args.port, registered)


if __name__ == "__main__":
    main()
