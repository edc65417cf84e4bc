"""One YAML file -> typed, validated, immutable settings. Errors name the file, the key and what is expected."""

from __future__ import annotations

from pathlib import Path

import yaml

from bridge.config import DeliverySettings, NativeSettings, Settings, vendor_apps
from bridge.config_sections import (
    alertmanager_settings,
    ca_file,
    min_replicas,
    networks,
    server_settings,
    store_url,
    storm_settings,
    templates,
    web_settings,
)
from bridge.model import Group
from bridge.schema import ConfigError, Node, parse_group
from bridge.store import StoreSettings
from bridge.upstreams import (
    DingTalkApp,
    DingTalkSettings,
    FeishuApp,
    FeishuSettings,
    WeComApp,
    WeComSettings,
    blocks,
    email_settings,
    rate_limits,
    vendor,
)


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
    web = web_settings(top.child("web"), delivery)
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
            url=store_url(store.text("url", "sqlite:///data/alarm-bridge.db"), store, Path(file).parent),
            timeout=store.duration("timeout", 2.0),
            prefix=store.text("prefix", "alarm-bridge:"),
            history=store.integer("history", 10000),
            sentinel_username=store.text("sentinel_username", ""),
            sentinel_password=store.text("sentinel_password", ""),
            min_replicas=min_replicas(store),
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
            ca_file=ca_file(delivery, Path(file).parent),
            storm=storm_settings(delivery.child("storm"), top.child("web").text("external_url", "").rstrip("/")),
        ),
        dingtalk=dingtalk,
        wecom=wecom,
        feishu=feishu,
        email=email_settings(top.child("email")),
        renderer=templates(top, Path(file).parent, web.actions),
        alertmanager=alertmanager_settings(top.child("alertmanager"), Path(file).parent),
        web=web,
        reload_enabled=reload_enabled,
        server=server_settings(top.child("server")),
        trusted_proxies=networks(top, "trusted_proxies"),
        groups=tuple(groups.values()),
    )
