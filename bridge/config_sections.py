"""The config file's sections that take more than reading values one by one: paths relative to the file, files
that must load, and values checked against one another."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from bridge import sentinel_url
from bridge.actions import ActionSettings
from bridge.config import AlertmanagerSettings, ServerSettings, StormSettings, WebSettings
from bridge.render import Renderer
from bridge.schema import Node

# The message templates and Alertmanager rules the package ships (the checkout's templates/ and rules/).
SHIPPED_TEMPLATES = Path(__file__).parent / "defaults" / "templates"
SHIPPED_RULES = Path(__file__).parent / "defaults" / "rules"


def storm_settings(node: Node, external_url: str) -> StormSettings | None:
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


def ca_file(node: Node, folder: Path) -> str:
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


def templates(top: Node, folder: Path, actions: ActionSettings | None) -> Renderer:
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


def alertmanager_settings(node: Node, base: Path) -> AlertmanagerSettings:
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


def server_settings(node: Node) -> ServerSettings:
    node.only("header_timeout", "body_timeout", "max_connections")
    for key in ("header_timeout", "body_timeout"):
        if node.duration(key, 1.0) == 0:  # every request would be dropped
            raise node.fail(key, "must be more than 0")
    return ServerSettings(
        header_timeout=node.duration("header_timeout", 10.0),
        body_timeout=node.duration("body_timeout", 30.0),
        max_connections=node.integer("max_connections", 1000, minimum=1),
    )


def networks(node: Node, key: str) -> tuple[str, ...]:
    found = node.texts(key, ())
    for text in found:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise node.fail(key, f"{text!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return tuple(found)


def web_settings(node: Node, delivery: Node) -> WebSettings:
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


def min_replicas(store: Node) -> int:
    """Replicas to wait for: only a Redis has them."""
    count = store.integer("min_replicas", 0, minimum=0)
    if count and store.text("url", "sqlite:").startswith("sqlite:"):
        raise store.fail(
            "min_replicas", "only a Redis store has replicas to wait for (store.url: redis+sentinel://...)"
        )
    return count


def store_url(url: str, node: Node, base: Path) -> str:
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
