"""The settings one config file gives: typed and frozen. bridge.config_file reads them from YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bridge.actions import ActionSettings
from bridge.model import Group
from bridge.render import Renderer
from bridge.store import StoreSettings
from bridge.upstreams import DingTalkSettings, EmailSettings, FeishuSettings, RateLimit, WeComSettings


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
