"""One YAML file -> typed, validated, immutable settings. Errors name the file, the key and what is expected."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bridge.model import TARGET_TYPES, Format, Group, Member, Mention, Target

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_MISSING: Any = object()
T = TypeVar("T")


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class StoreSettings:
    url: str
    timeout: float
    prefix: str
    history: int  # finished deliveries kept for listing (dead ones are always kept)


@dataclass(frozen=True)
class NativeSettings:
    departments: Mapping[str, str]
    environments: frozenset[str]
    max_body_bytes: int


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window: float


@dataclass(frozen=True)
class DeliverySettings:
    dry_run: bool
    timeout: float  # one upstream call
    deadline: float  # one target's attempt, every call in it included
    split: bool  # long messages: numbered parts, or truncated with a marker
    reply_wait: float  # how long /alarm_v2 waits for the first attempt
    max_age: float  # retried until this old, then dead-lettered
    backoff: float  # first retry delay, doubled each attempt, with jitter
    backoff_max: float
    lease: float  # how long a worker holds a job before another may take it
    poll: float  # how often an idle worker looks for due jobs
    batch: int  # jobs leased at a time (and at most merged into one digest)
    shutdown: float  # on SIGTERM, how long in-flight deliveries may finish
    rate_limits: Mapping[str, RateLimit]  # per target type, shared by every replica
    ca_file: str  # extra CA certificates to trust for HTTPS upstreams (a private proxy, test servers)


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
class EmailSettings:
    host: str
    port: int
    security: str  # plain | starttls | tls
    username: str
    password: str
    sender: str
    validate_certs: bool


@dataclass(frozen=True)
class AlertmanagerSettings:
    bearer_token: str  # what Alertmanager's http_config sends: a bearer token, or basic auth
    username: str
    password: str
    auth_disabled: bool  # explicitly accept unauthenticated webhooks (a warning is logged at start)
    rules: Path  # a folder of *.yaml rule files
    timezone: str  # times in messages are shown in this zone
    per_alert: bool  # one message per alert instead of one per notification
    max_body_bytes: int


@dataclass(frozen=True)
class WebSettings:
    users: Mapping[str, str]  # login name -> password hash (alarm-bridge hash-password)
    api_tokens: Mapping[str, str]  # token name -> token, for /api/v1
    session_secret: str  # signs session cookies; when empty, a random one per start (sessions end on restart)
    login_attempts: int  # failed logins allowed per client address within login_window
    login_window: float


@dataclass(frozen=True)
class Settings:
    path: str
    store: StoreSettings
    native: NativeSettings
    dedup_window: float
    delivery: DeliverySettings
    dingtalk: DingTalkSettings
    wecom: WeComSettings
    email: EmailSettings
    templates: Path
    alertmanager: AlertmanagerSettings
    web: WebSettings
    reload_enabled: bool  # POST /-/reload re-reads the config (SIGHUP always does)
    groups: tuple[Group, ...]


class Node:
    """A mapping in the config file, read key by key so that every error can say exactly where it is."""

    def __init__(self, file: str, path: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: {path or 'top level'}: expected a mapping, got {_kind(data)}")
        self.file, self.path, self.data = file, path, data

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.where(key)}: {expected}")

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(str(key), f"unknown key; expected one of: {', '.join(allowed)}")

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.fail(key, "is required")
            return default
        return _interpolate(self.data[key], self, key)

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_kind(value)}")
        return value

    def ident(self, key: str) -> str:
        """A string that YAML may have read as a number (a group's level, say)."""
        value = self.raw(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.text(key)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_kind(value)}")
        return value

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self.raw(key, default)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def duration(self, key: str, default: float) -> float:
        """Seconds, written as a number or with a unit: 500ms, 2s, 5m, 1h."""
        value = self.raw(key, default)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise self.fail(key, f"expected a duration such as 30, 500ms, 2s, 5m or 1h, got {value!r}")
        return float(match[1]) * _UNITS[match[2]]

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise self.fail(key, f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    def texts(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(str(_interpolate(v, self, key)) for v in value)

    def child(self, key: str) -> Node:
        return Node(self.file, self.where(key), self.raw(key, {}))

    def children(self, key: str) -> list[Node]:
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {_kind(value)}")
        return [Node(self.file, f"{self.where(key)}[{i}]", item) for i, item in enumerate(value)]


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _interpolate(value: object, node: Node, key: str) -> object:
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise node.fail(key, f"environment variable {name} is not set (write ${{{name}:-default}} for one)")
        return default

    return _ENV_REF.sub(substitute, value)


def parse_group(node: Node, source: str) -> Group:
    """A group from its YAML/JSON shape (the same shape ``Group.to_dict`` writes)."""
    node.only("id", "level", "name", "members", "channels", "format", "mention", "dedup_window", "templates")
    members = []
    for m in node.children("members"):
        m.only(*(f.name for f in fields(Member)))
        members.append(Member(**{f.name: m.text(f.name, f.default) for f in fields(Member)}))
    templates = node.child("templates")
    window = node.raw("dedup_window", None)
    return Group(
        id=node.text("id"),
        level=node.ident("level"),
        name=node.text("name", ""),
        members=tuple(members),
        targets=tuple(_parse_target(t) for t in node.children("channels")),
        format=Format(node.choice("format", "text", tuple(Format))),
        mention=Mention(node.choice("mention", "none", tuple(Mention))),
        dedup_window=None if window is None else node.duration("dedup_window", 0),
        templates={str(k): templates.text(str(k)) for k in templates.data},
        source=source,
    )


def _parse_target(node: Node) -> Target:
    kind = node.choice("type", "", tuple(TARGET_TYPES))
    cls = TARGET_TYPES[kind]
    node.only("type", *(f.name for f in fields(cls)))
    values: dict[str, Any] = {}
    for f in fields(cls):
        default = _MISSING if f.default is MISSING else f.default
        values[f.name] = node.texts(f.name, default) if f.name == "to" else node.text(f.name, default)
    return cls(**values)


def load(path: str | Path) -> Settings:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    return parse(data or {}, file)


def parse(data: object, file: str) -> Settings:
    top = Node(file, "", data)
    top.only(
        "store", "native", "dedup_window", "delivery", "dingtalk", "wecom", "email", "templates", "alertmanager",
        "web", "reload_enabled", "groups",
    )  # fmt: skip
    store = top.child("store")
    store.only("url", "timeout", "prefix", "history")
    native = top.child("native")
    native.only("departments", "environments", "max_body_bytes")
    deps = native.child("departments")
    delivery = top.child("delivery")
    delivery.only(
        "dry_run", "timeout", "deadline", "split", "reply_wait", "max_age", "backoff", "backoff_max",
        "lease", "poll", "batch", "shutdown", "rate_limits", "ca_file",
    )  # fmt: skip
    deadline = delivery.duration("deadline", 30.0)
    groups: dict[tuple[str, str], Group] = {}
    for node in top.children("groups"):
        group = parse_group(node, source=f"{file} ({node.path})")
        if group.key in groups:
            raise ConfigError(f"{file}: {node.path}: duplicate group id={group.id!r} level={group.level!r}")
        groups[group.key] = group
    return Settings(
        path=file,
        store=StoreSettings(
            url=_store_url(store.text("url", "sqlite:///data/alarm-bridge.db"), store, Path(file).parent),
            timeout=store.duration("timeout", 2.0),
            prefix=store.text("prefix", "alarm-bridge:"),
            history=store.integer("history", 10000),
        ),
        native=NativeSettings(
            departments={str(dep): deps.child(str(dep)).text("secret") for dep in deps.data},
            environments=frozenset(native.texts("environments", ("prod", "pre", "dev"))),
            max_body_bytes=native.integer("max_body_bytes", 64 * 1024, minimum=1024),
        ),
        dedup_window=top.duration("dedup_window", 300.0),
        delivery=DeliverySettings(
            dry_run=delivery.flag("dry_run", False),
            timeout=delivery.duration("timeout", 10.0),
            deadline=deadline,
            split=delivery.flag("split", True),
            reply_wait=delivery.duration("reply_wait", 3.0),
            max_age=delivery.duration("max_age", 3600.0),
            backoff=delivery.duration("backoff", 1.0),
            backoff_max=delivery.duration("backoff_max", 300.0),
            lease=delivery.duration("lease", 2 * deadline + 10),
            poll=delivery.duration("poll", 0.5),
            batch=delivery.integer("batch", 500, minimum=1),
            shutdown=delivery.duration("shutdown", 10.0),
            rate_limits=_rate_limits(delivery.child("rate_limits")),
            ca_file=delivery.text("ca_file", ""),
        ),
        dingtalk=DingTalkSettings(*_vendor(top.child("dingtalk"), "https://oapi.dingtalk.com", DingTalkApp)),
        wecom=WeComSettings(*_vendor(top.child("wecom"), "https://qyapi.weixin.qq.com", WeComApp)),
        email=_email(top.child("email")),
        templates=Path(file).parent / top.text("templates", "templates"),
        alertmanager=_alertmanager(top.child("alertmanager"), Path(file).parent),
        web=_web(top.child("web")),
        reload_enabled=top.flag("reload_enabled", False),
        groups=tuple(groups.values()),
    )


# The upstreams' documented limits, measured over 62 s: a 2 s margin so that network delays never make
# an upstream count 21 messages in its own minute.
RATE_LIMITS = {
    "dingtalk-robot": RateLimit(20, 62.0),
    "wecom-robot": RateLimit(20, 62.0),
    "wecom-app": RateLimit(30, 62.0),
}


def _rate_limits(node: Node) -> dict[str, RateLimit]:
    node.only(*RATE_LIMITS)
    limits = {}
    for kind, default in RATE_LIMITS.items():
        limit = node.child(kind)
        limit.only("limit", "window")
        limits[kind] = RateLimit(
            limit.integer("limit", default.limit, minimum=1), limit.duration("window", default.window)
        )
    return limits


def _vendor(node: Node, base_url: str, app: type[T]) -> tuple[str, dict[str, T]]:
    """A chat vendor's section: its base URL and its apps by name."""
    node.only("base_url", "apps")
    apps = node.child("apps")
    return node.text("base_url", base_url).rstrip("/"), {str(n): _app(apps.child(str(n)), app) for n in apps.data}


def _app(node: Node, cls: type[T]) -> T:
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    node.only(*names)
    return cls(**{n: node.integer(n, _MISSING, minimum=1) if n == "agentid" else node.text(n) for n in names})


def _alertmanager(node: Node, base: Path) -> AlertmanagerSettings:
    node.only("bearer_token", "username", "password", "auth_disabled", "rules", "timezone", "per_alert",
              "max_body_bytes")  # fmt: skip
    return AlertmanagerSettings(
        bearer_token=node.text("bearer_token", ""),
        username=node.text("username", ""),
        password=node.text("password", ""),
        auth_disabled=node.flag("auth_disabled", False),
        rules=base / node.text("rules", "rules"),
        timezone=node.text("timezone", "Asia/Shanghai"),
        per_alert=node.flag("per_alert", False),
        max_body_bytes=node.integer("max_body_bytes", 4 * 1024 * 1024, minimum=1024),
    )


def _web(node: Node) -> WebSettings:
    node.only("users", "api_tokens", "session_secret", "login_attempts", "login_window")
    users, tokens = node.child("users"), node.child("api_tokens")
    return WebSettings(
        users={str(name): users.text(str(name)) for name in users.data},
        api_tokens={str(name): tokens.text(str(name)) for name in tokens.data},
        session_secret=node.text("session_secret", ""),
        login_attempts=node.integer("login_attempts", 5, minimum=1),
        login_window=node.duration("login_window", 300.0),
    )


def _email(node: Node) -> EmailSettings:
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


def _store_url(url: str, node: Node, base: Path) -> str:
    """SQLite paths are relative to the config file's folder; Redis URLs pass through."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return url
    if not url.startswith("sqlite:///"):
        raise node.fail("url", f"expected sqlite:///PATH or redis://HOST:PORT/DB, got {url!r}")
    return f"sqlite:///{base / url.removeprefix('sqlite:///')}"
