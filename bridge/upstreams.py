"""The upstreams' settings: the chat vendors' apps, the SMTP server, and the rate limits every replica shares."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TypeVar

from bridge.model import Target
from bridge.schema import REQUIRED, Node

T = TypeVar("T")


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window: float


@dataclass(frozen=True)
class DingTalkApp:
    appkey: str
    appsecret: str


@dataclass(frozen=True)
class DingTalkSettings:
    base_url: str
    apps: Mapping[str, DingTalkApp]


@dataclass(frozen=True)
class WeComApp:
    corpid: str
    corpsecret: str
    agentid: int


@dataclass(frozen=True)
class WeComSettings:
    base_url: str
    apps: Mapping[str, WeComApp]


@dataclass(frozen=True)
class FeishuApp:
    app_id: str
    app_secret: str


@dataclass(frozen=True)
class FeishuSettings:
    base_url: str  # the app API's (Lark: https://open.larksuite.com); a bot's webhook holds its own host
    apps: Mapping[str, FeishuApp]


@dataclass(frozen=True)
class EmailSettings:
    host: str
    port: int
    security: str  # plain | starttls | tls
    username: str
    password: str
    sender: str
    validate_certs: bool


# The upstreams' documented limits, every window of a type applying. Each window is 2 s longer than the
# upstream's (a minute is 62 s), so that network delays never make an upstream count one message too many.
RATE_LIMITS = {
    "dingtalk-robot": (RateLimit(20, 62.0),),
    "wecom-robot": (RateLimit(20, 62.0),),
    # Per member, and more is dropped silently: an app 30 a minute and 1,000 an hour; an app chat 200 a minute
    # and 10,000 a day.
    "wecom-app": (RateLimit(30, 62.0), RateLimit(1000, 3602.0)),
    "wecom-appchat": (RateLimit(200, 62.0), RateLimit(10_000, 86_402.0)),
    # Per bot 5 a second and 100 a minute; per chat 5 a second for an app. The short window first: a slot it
    # gives and the minute then refuses is back within seconds, where one of the minute would be lost for a minute.
    "feishu-robot": (RateLimit(5, 3.0), RateLimit(100, 62.0)),
    "feishu-app": (RateLimit(5, 3.0),),
}

# How long a target's messages wait once its upstream refused one as too fast (``delivery.blocks``): DingTalk then
# blocks a robot for ten minutes; WeCom's limits are a minute's; Feishu's 9499 and 11232 come with no stated
# block, and a minute lets its window empty. The gateway keeps within the limits itself, so such a refusal means
# that someone else sends through the same robot or app: retried, it only adds to the count.
BLOCKS = {
    "dingtalk-robot": 600.0,
    "wecom-robot": 60.0,
    "wecom-app": 60.0,
    "wecom-appchat": 60.0,
    "feishu-robot": 62.0,
    "feishu-app": 62.0,
}


def blocks(node: Node) -> dict[str, float]:
    """Per target type, how long its messages wait after a "too fast" refusal: the type's default replaced."""
    node.only(*BLOCKS)
    return {kind: node.duration(kind, default) for kind, default in BLOCKS.items()}


def rate_limits(node: Node) -> dict[str, tuple[RateLimit, ...]]:
    """Per target type, ``{limit, window}`` or a list of them (every one applies): the type's defaults replaced."""
    node.only(*RATE_LIMITS)
    limits = {}
    for kind, defaults in RATE_LIMITS.items():
        value = node.raw(kind, None)
        if value is None:
            limits[kind] = defaults
            continue
        windows = node.children(kind) if isinstance(value, list) else [node.child(kind)]
        if not windows:
            raise node.fail(kind, "expected {limit, window} or a list of them, got an empty list")
        limits[kind] = tuple(_window(window, defaults[0]) for window in windows)
    return limits


def _window(node: Node, default: RateLimit) -> RateLimit:
    node.only("limit", "window")
    return RateLimit(node.integer("limit", default.limit, minimum=1), node.duration("window", default.window))


def vendor(node: Node, base_url: str, app: type[T]) -> tuple[str, dict[str, T]]:
    """A chat vendor's section: its base URL and its apps by name."""
    node.only("base_url", "apps")
    apps = node.child("apps")
    return node.text("base_url", base_url).rstrip("/"), {str(n): _app(apps.child(str(n)), app) for n in apps.data}


def _app(node: Node, cls: type[T]) -> T:
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    node.only(*names)
    return cls(**{n: node.integer(n, REQUIRED, minimum=1) if n == "agentid" else node.text(n) for n in names})


def email_settings(node: Node) -> EmailSettings:
    node.only("host", "port", "security", "username", "password", "sender", "validate_certs")
    security = node.choice("security", "starttls", ("plain", "starttls", "tls"))
    return EmailSettings(
        host=node.text("host", "localhost"),
        port=node.integer("port", {"plain": 25, "starttls": 587, "tls": 465}[security], minimum=1),
        security=security,
        username=node.text("username", ""),
        password=node.text("password", ""),
        sender=node.text("sender", "alarm-bridge <alarm-bridge@localhost>"),
        validate_certs=node.flag("validate_certs", True),
    )


@functools.lru_cache(maxsize=1024)
def rate_key(target: Target) -> str | None:
    """Which upstream limits a target counts against: per robot, or per app (whatever the config names it)."""
    if target.kind not in RATE_LIMITS:
        return None
    identity = {k: v for k, v in asdict(target).items() if k != "name"}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    return f"{target.kind}:{digest}"
