"""One YAML file -> typed, validated, immutable settings. Errors name the file, the key and what is expected."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from bridge import sentinel_url
from bridge.actions import ActionSettings
from bridge.model import Group
from bridge.render import Renderer
from bridge.schema import ConfigError, Node, parse_group
from bridge.upstreams import (
    DingTalkApp,
    DingTalkSettings,
    EmailSettings,
    FeishuApp,
    FeishuSettings,
    RateLimit,
    WeComApp,
    WeComSettings,
    blocks,
    email_settings,
    rate_limits,
    vendor,
)

# The message templates and Alertmanager rules the package ships (the checkout's templates/ and rules/).
SHIPPED_TEMPLATES = Path(__file__).parent / "defaults" / "templates"
SHIPPED_RULES = Path(__file__).parent / "defaults" / "rules"


@dataclass(frozen=True)
class StoreSettings:
    url: str
    timeout: float
    prefix: str
    history: int  # finished deliveries kept for listing (dead ones are always kept)
    sentinel_username: str = ""  # the Sentinels' own credentials (the servers' are in the URL)
    sentinel_password: str = field(default="", repr=False)
    min_replicas: int = 0  # replicas that must acknowledge an accepted alarm's outbox write (WAIT) before the reply


@dataclass(frozen=True)
class NativeSettings:
    departments: Mapping[str, str]
    environments: frozenset[str]
    max_body_bytes: int


@dataclass(frozen=True)
class StormSettings:
    horizon: float  # a target whose backlog its rate budget cannot carry within this long goes to summaries
    interval: float  # one summary update at most this often while the storm lasts
    quiet: float  # nothing new for this long ends the storm (a closing message), and ordinary delivery resumes
    reserve: int  # rate-limit slots per window that ordinary messages leave free, so a summary goes out at once
    top: int  # hosts and businesses listed by count in a summary, the rest as "+M more"
    examples: int  # alarms shown in full in a summary
    gather: int  # alarms at most accounted for by one summary (the rest go into the next)
    external_url: str  # the gateway's URL as people reach it: a summary links to its storm's alarm list there


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
    rate_limits: Mapping[str, tuple[RateLimit, ...]]  # per target type, every window applies; shared by replicas
    blocks: Mapping[str, float]  # per target type: how long its messages wait after a "too fast" refusal
    ca_file: str  # extra CA certificates to trust for HTTPS upstreams (a private proxy, test servers)
    storm: StormSettings | None  # None: storms are delivered as digests, however long they take


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
    dedup_window: float  # copies of a notification (HA peers, retries) within it are one, whatever the group's


@dataclass(frozen=True)
class WebSettings:
    users: Mapping[str, str]  # login name -> password hash (alarm-bridge hash-password)
    api_tokens: Mapping[str, str]  # token name -> token, for /api/v1
    session_secret: str  # signs session cookies; when empty, a random one per start (sessions end on restart)
    login_attempts: int  # failed logins allowed per client address within login_window
    login_window: float
    actions: ActionSettings | None  # signed action links in messages; None when web.actions.key is not set


@dataclass(frozen=True)
class ServerSettings:
    header_timeout: float  # a request's headers, from its first byte (or the connection's opening)
    body_timeout: float  # its body, from the end of its headers
    max_connections: int  # open connections and requests in progress; past it, 503


@dataclass(frozen=True)
class Settings:
    path: str
    store: StoreSettings
    native: NativeSettings
    dedup_window: float
    delivery: DeliverySettings
    dingtalk: DingTalkSettings
    wecom: WeComSettings
    feishu: FeishuSettings
    email: EmailSettings
    renderer: Renderer  # the templates directory's, checked at load: every message can be rendered
    alertmanager: AlertmanagerSettings
    web: WebSettings
    reload_enabled: bool  # POST /-/reload re-reads the config (SIGHUP always does)
    server: ServerSettings
    trusted_proxies: tuple[str, ...]  # addresses or networks whose X-Forwarded-For and -Proto are believed
    groups: tuple[Group, ...]

    @cached_property
    def apps(self) -> Mapping[str, tuple[str, Mapping[str, object]]]:
        """Per app target type, the config section of its apps and the apps by name."""
        return vendor_apps(self.dingtalk, self.wecom, self.feishu)

    @cached_property
    def provisioned(self) -> Mapping[tuple[str, str], Group]:
        """The config file's groups by (id, level): each shadows a stored group of the same key."""
        return {g.key: g for g in self.groups}


def vendor_apps(
    dingtalk: DingTalkSettings, wecom: WeComSettings, feishu: FeishuSettings
) -> dict[str, tuple[str, Mapping[str, object]]]:
    return {"dingtalk-app": ("dingtalk", dingtalk.apps), "wecom-app": ("wecom", wecom.apps),
            "wecom-appchat": ("wecom", wecom.apps), "feishu-app": ("feishu", feishu.apps)}  # fmt: skip


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
    top = Node(file, "", data, environment=True)
    top.only(
        "store", "native", "dedup_window", "delivery", "dingtalk", "wecom", "feishu", "email", "templates",
        "alertmanager", "web", "reload_enabled", "trusted_proxies", "server", "groups",
    )  # fmt: skip
    store = top.child("store")
    store.only("url", "timeout", "prefix", "history", "sentinel_username", "sentinel_password", "min_replicas")
    native = top.child("native")
    native.only("departments", "environments", "max_body_bytes")
    deps = native.child("departments")
    delivery = top.child("delivery")
    delivery.only(
        "dry_run", "timeout", "deadline", "split", "reply_wait", "max_age", "backoff", "backoff_max",
        "lease", "poll", "batch", "shutdown", "rate_limits", "blocks", "ca_file", "storm",
    )  # fmt: skip
    deadline = delivery.duration("deadline", 30.0)
    dingtalk = DingTalkSettings(*vendor(top.child("dingtalk"), "https://oapi.dingtalk.com", DingTalkApp))
    wecom = WeComSettings(*vendor(top.child("wecom"), "https://qyapi.weixin.qq.com", WeComApp))
    feishu = FeishuSettings(*vendor(top.child("feishu"), "https://open.feishu.cn", FeishuApp))
    apps = vendor_apps(dingtalk, wecom, feishu)
    web = _web(top.child("web"), delivery)
    groups: dict[tuple[str, str], Group] = {}
    for node in top.children("groups"):
        group = parse_group(node, source=f"{file} ({node.path})")
        if group.key in groups:
            raise ConfigError(f"{file}: {node.path}: duplicate group id={group.id!r} level={group.level!r}")
        for i, target in enumerate(group.targets):  # a typo here would fail only at the first alarm (4000, 4003)
            section, known = apps.get(target.kind, ("", {}))
            if section and getattr(target, "app", "") not in known:
                listed = ", ".join(sorted(known)) or f"none: add it under {section}.apps"
                raise node.fail(f"channels[{i}].app", f"no {section} app named {getattr(target, 'app', '')!r} "
                                f"(known: {listed})")  # fmt: skip
        groups[group.key] = group
    reload_enabled = top.flag("reload_enabled", False)
    if reload_enabled and not any(web.api_tokens.values()):  # a reload over HTTP is asked for with a token
        raise top.fail("reload_enabled", "POST /-/reload needs a token: add one to web.api_tokens, or send SIGHUP")
    return Settings(
        path=file,
        store=StoreSettings(
            url=_store_url(store.text("url", "sqlite:///data/alarm-bridge.db"), store, Path(file).parent),
            timeout=store.duration("timeout", 2.0),
            prefix=store.text("prefix", "alarm-bridge:"),
            history=store.integer("history", 10000),
            sentinel_username=store.text("sentinel_username", ""),
            sentinel_password=store.text("sentinel_password", ""),
            min_replicas=_min_replicas(store),
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
            rate_limits=rate_limits(delivery.child("rate_limits")),
            blocks=blocks(delivery.child("blocks")),
            ca_file=_ca_file(delivery, Path(file).parent),
            storm=_storm(delivery.child("storm"), top.child("web").text("external_url", "").rstrip("/")),
        ),
        dingtalk=dingtalk,
        wecom=wecom,
        feishu=feishu,
        email=email_settings(top.child("email")),
        renderer=_templates(top, Path(file).parent, web.actions),
        alertmanager=_alertmanager(top.child("alertmanager"), Path(file).parent),
        web=web,
        reload_enabled=reload_enabled,
        server=_server(top.child("server")),
        trusted_proxies=_networks(top, "trusted_proxies"),
        groups=tuple(groups.values()),
    )


def _storm(node: Node, external_url: str) -> StormSettings | None:
    node.only("enabled", "horizon", "interval", "quiet", "reserve", "top", "examples", "gather")
    if not node.flag("enabled", True):
        return None
    return StormSettings(
        horizon=node.duration("horizon", 120.0),
        interval=node.duration("interval", 30.0),
        quiet=node.duration("quiet", 90.0),
        reserve=node.integer("reserve", 4, minimum=0),
        top=node.integer("top", 5, minimum=1),
        examples=node.integer("examples", 3, minimum=0),
        gather=node.integer("gather", 50_000, minimum=1),
        external_url=external_url,
    )


def _ca_file(node: Node, folder: Path) -> str:
    """Extra CA certificates (relative to the config file), refused unless they load as such."""
    name = node.text("ca_file", "")
    if not name:
        return ""
    path = folder / name
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(path)
    except (OSError, ssl.SSLError) as exc:
        raise node.fail("ca_file", f"cannot load {path.resolve()} as CA certificates: {exc}") from None
    return str(path)


def _templates(top: Node, folder: Path, actions: ActionSettings | None) -> Renderer:
    """The renderer of the config's templates folder (``templates``, relative to the config file; by default its
    ``templates`` folder if there is one) laid over the shipped templates, refused unless every shipped template
    loads; the templates it has compiled for that check are the ones it renders with."""
    directory = _local(top, "templates", folder)
    local = [] if directory is None or directory.resolve() == SHIPPED_TEMPLATES.resolve() else [directory]
    renderer = Renderer([*local, SHIPPED_TEMPLATES], actions)
    if problems := renderer.problems():
        raise top.fail("templates", f"{(directory or SHIPPED_TEMPLATES).resolve()}: {'; '.join(problems)}")
    return renderer


def _local(node: Node, key: str, folder: Path) -> Path | None:
    """The folder that ``key`` names (relative to the config's), which must exist; else ``folder/key`` if it
    exists; else None (the shipped one is used)."""
    if key in node.data:
        named = folder / node.text(key)
        if not named.is_dir():
            raise node.fail(key, f"{named.resolve()} is not a directory")
        return named
    return folder / key if (folder / key).is_dir() else None


def _alertmanager(node: Node, base: Path) -> AlertmanagerSettings:
    node.only("bearer_token", "username", "password", "auth_disabled", "rules", "timezone", "per_alert",
              "max_body_bytes", "dedup_window")  # fmt: skip
    rules = _local(node, "rules", base) or SHIPPED_RULES  # a folder of rules replaces the shipped ones whole
    return AlertmanagerSettings(
        bearer_token=node.text("bearer_token", ""),
        username=node.text("username", ""),
        password=node.text("password", ""),
        auth_disabled=node.flag("auth_disabled", False),
        rules=rules,
        timezone=node.text("timezone", "Asia/Shanghai"),
        per_alert=node.flag("per_alert", False),
        max_body_bytes=node.integer("max_body_bytes", 4 * 1024 * 1024, minimum=1024),
        dedup_window=node.duration("dedup_window", 300.0),
    )


def _server(node: Node) -> ServerSettings:
    node.only("header_timeout", "body_timeout", "max_connections")
    for key in ("header_timeout", "body_timeout"):
        if node.duration(key, 1.0) == 0:  # every request would be dropped
            raise node.fail(key, "must be more than 0")
    return ServerSettings(
        header_timeout=node.duration("header_timeout", 10.0),
        body_timeout=node.duration("body_timeout", 30.0),
        max_connections=node.integer("max_connections", 1000, minimum=1),
    )


def _networks(node: Node, key: str) -> tuple[str, ...]:
    found = node.texts(key, ())
    for text in found:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise node.fail(key, f"{text!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return tuple(found)


def _web(node: Node, delivery: Node) -> WebSettings:
    node.only("users", "api_tokens", "session_secret", "login_attempts", "login_window", "external_url", "actions")
    users, tokens = node.child("users"), node.child("api_tokens")
    return WebSettings(
        users={str(name): _password_hash(users, str(name)) for name in users.data},
        api_tokens={str(name): tokens.text(str(name)) for name in tokens.data},
        session_secret=node.text("session_secret", ""),
        login_attempts=node.integer("login_attempts", 5, minimum=1),
        login_window=node.duration("login_window", 300.0),
        actions=_actions(node, delivery),
    )


def _actions(web: Node, delivery: Node) -> ActionSettings | None:
    node = web.child("actions")
    node.only("key", "expires", "durations", "require_login", "alertmanagers")
    key = node.text("key", "")
    if not key:
        return None
    if len(key) < 16:
        raise node.fail("key", "needs at least 16 characters (e.g. the output of `openssl rand -hex 32`)")
    base = web.text("external_url", "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise web.fail("external_url", "action links need the gateway's URL as people reach it (https://...)")
    written = node.texts("durations", ("1h", "4h", "24h"))
    durations = tuple(Node(node.file, node.path, {f"durations[{i}]": v}).duration(f"durations[{i}]", 0)
                      for i, v in enumerate(written))  # fmt: skip
    if not durations or not all(d >= 60 for d in durations):
        raise node.fail("durations", f"expected one or more durations of at least 1m, got {list(written)}")
    urls = tuple(u.rstrip("/") for u in node.texts("alertmanagers", ()))
    if bad := [u for u in urls if not u.startswith(("http://", "https://"))]:
        raise node.fail("alertmanagers", f"expected Alertmanager base URLs (http://host:9093), got {bad}")
    return ActionSettings(
        key=key,
        base_url=base,
        expires=node.duration("expires", 86400.0),
        durations=durations,
        require_login=node.flag("require_login", False),
        alertmanagers=urls,
        timeout=delivery.duration("timeout", 10.0),
    )


def _password_hash(users: Node, name: str) -> str:
    """A user's password hash; a password written as it is would fail every login, with no hint why."""
    value = users.text(name)
    scheme, *numbers = value.split("$")[:4]
    if scheme != "scrypt" or len(value.split("$")) != 6 or not all(n.isdecimal() for n in numbers):
        raise users.fail(name, "not a password hash: write what `alarm-bridge hash-password` prints (scrypt$...)")
    return value


def _min_replicas(store: Node) -> int:
    """Replicas to wait for: only a Redis has them."""
    count = store.integer("min_replicas", 0, minimum=0)
    if count and store.text("url", "sqlite:").startswith("sqlite:"):
        raise store.fail(
            "min_replicas", "only a Redis store has replicas to wait for (store.url: redis+sentinel://...)"
        )
    return count


def _store_url(url: str, node: Node, base: Path) -> str:
    """SQLite paths are relative to the config file's folder; Redis URLs pass through, Sentinel ones checked."""
    if url.startswith(sentinel_url.SCHEMES):
        try:
            sentinel_url.parse(url)
        except ValueError as exc:
            raise node.fail("url", str(exc)) from None
        return url
    if url.startswith(("redis://", "rediss://", "unix://")):
        return url
    if not url.startswith("sqlite:///"):
        raise node.fail("url", f"expected sqlite:///PATH, redis://HOST:PORT/DB or {sentinel_url.EXAMPLE}")
    return f"sqlite:///{base / url.removeprefix('sqlite:///')}"
