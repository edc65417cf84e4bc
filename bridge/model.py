"""The gateway's value types: alarms, alert groups and their channel targets, messages and outcomes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

REQUIRED_FIELDS = ("id", "level", "dep", "env", "sign", "alert_level", "alert_time", "alert_business")
OPTIONAL_FIELDS = (
    "alert_host",
    "alert_ip",
    "alert_function",
    "exception_spec",
    "status",
    "notes",
    "others",
)
ALERT_LEVELS = ("高", "中", "低")
RESOLVED, STORM = "resolved", "storm"  # a Message's level beside the alert levels


@dataclass(frozen=True)
class Alarm:
    """One alarm, as the native protocol defines it (``sign`` is checked at ingest and not kept)."""

    id: str
    level: str
    dep: str
    env: str
    alert_level: str
    alert_time: str
    alert_business: str
    alert_host: str = ""
    alert_ip: str = ""
    alert_function: str = ""
    exception_spec: str = ""
    status: str = ""
    notes: str = ""
    others: str = ""
    source: str = "native"  # which templates render it: templates/<source>/...
    extra: Mapping[str, Any] = field(default_factory=dict)  # more template context, e.g. an Alertmanager notification
    identity: str = ""  # when set, what the dedup window compares instead of the fields

    @classmethod
    def from_fields(cls, values: Mapping[str, str]) -> Alarm:
        known: dict[str, Any] = {k: v for k, v in values.items() if k in _ALARM_FIELDS}
        return cls(**known)

    def fingerprint(self) -> str:
        """Identity for the dedup window: every field except the alarm's time (or the given identity)."""
        if self.identity:
            content: dict[str, Any] = {"id": self.id, "level": self.level, "identity": self.identity}
        else:
            content = {k: v for k, v in self.__dict__.items() if k not in ("alert_time", "extra", "identity")}
        return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


_ALARM_FIELDS = frozenset(f.name for f in fields(Alarm))


class Channel(StrEnum):
    DINGTALK = "dingtalk"
    WECOM = "wecom"
    EMAIL = "email"
    FEISHU = "feishu"


class Format(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"


class Mention(StrEnum):
    NONE = "none"
    MEMBERS = "members"
    ALL = "all"


@dataclass(frozen=True)
class Member:
    name: str
    mail: str = ""
    mobile: str = ""
    dingtalk_userid: str = ""
    wecom_userid: str = ""
    feishu_userid: str = ""  # the member's open_id (ou_...)


@dataclass(frozen=True)
class DingTalkRobot:
    kind: ClassVar[str] = "dingtalk-robot"
    channel: ClassVar[Channel] = Channel.DINGTALK
    webhook: str = field(repr=False)  # holds the robot's token: never in a repr, so never in a template or a log
    secret: str = field(default="", repr=False)
    keyword: str = ""  # one of the robot's keywords: added to a message that lacks it, or the robot refuses it
    name: str = ""  # how deliveries, logs, metrics and the UI call it (see ``label``)


@dataclass(frozen=True)
class DingTalkApp:
    kind: ClassVar[str] = "dingtalk-app"
    channel: ClassVar[Channel] = Channel.DINGTALK
    app: str
    name: str = ""  # how deliveries, logs, metrics and the UI call it (see ``label``)


@dataclass(frozen=True)
class WeComApp:
    kind: ClassVar[str] = "wecom-app"
    channel: ClassVar[Channel] = Channel.WECOM
    app: str
    name: str = ""  # how deliveries, logs, metrics and the UI call it (see ``label``)


@dataclass(frozen=True)
class WeComAppChat:
    kind: ClassVar[str] = "wecom-appchat"
    channel: ClassVar[Channel] = Channel.WECOM
    app: str
    name: str = ""  # how deliveries, logs, metrics and the UI call it (see ``label``)


@dataclass(frozen=True)
class WeComRobot:
    kind: ClassVar[str] = "wecom-robot"
    channel: ClassVar[Channel] = Channel.WECOM
    webhook: str = field(repr=False)
    name: str = ""  # how deliveries, logs, metrics and the UI call it (see ``label``)


@dataclass(frozen=True)
class FeishuRobot:
    kind: ClassVar[str] = "feishu-robot"
    channel: ClassVar[Channel] = Channel.FEISHU
    webhook: str = field(repr=False)
    secret: str = field(default="", repr=False)
    keyword: str = ""  # one of the bot's keywords: added to a message that lacks it, or the bot refuses it
    name: str = ""  # how deliveries, logs, metrics and the UI call it (see ``label``)


@dataclass(frozen=True)
class FeishuApp:
    kind: ClassVar[str] = "feishu-app"
    channel: ClassVar[Channel] = Channel.FEISHU
    app: str
    chat_id: str
    name: str = ""  # how deliveries, logs, metrics and the UI call it (see ``label``)


@dataclass(frozen=True)
class Email:
    kind: ClassVar[str] = "email"
    channel: ClassVar[Channel] = Channel.EMAIL
    to: tuple[str, ...] = ()
    name: str = ""  # how deliveries, logs, metrics and the UI call it (see ``label``)


Target = DingTalkRobot | DingTalkApp | WeComApp | WeComAppChat | WeComRobot | FeishuRobot | FeishuApp | Email


def label(target: Target) -> str:
    """How a target is named in replies, deliveries, logs, metrics and the UI: its type, then the ``name`` the
    config gives it, else its app, else the last four characters of its webhook's token (never the token)."""
    if target.name:
        return f"{target.kind} {target.name}"
    if app := getattr(target, "app", ""):
        return f"{target.kind} {app}"
    if webhook := getattr(target, "webhook", ""):
        url = urlsplit(webhook)
        values = [value for _, value in parse_qsl(url.query)]
        token = values[-1] if values else url.path.rstrip("/").rsplit("/", 1)[-1]
        return f"{target.kind} …{token[-4:]}"
    return target.kind


TARGET_TYPES: dict[str, type[Target]] = {
    t.kind: t for t in (DingTalkRobot, DingTalkApp, WeComApp, WeComAppChat, WeComRobot, FeishuRobot, FeishuApp, Email)
}


@dataclass(frozen=True)
class Group:
    """An alert group, keyed by the owner's ``id`` and the group number ``level``."""

    id: str
    level: str
    name: str = ""
    members: tuple[Member, ...] = ()
    targets: tuple[Target, ...] = ()
    format: Format = Format.TEXT
    mention: Mention = Mention.NONE
    dedup_window: float | None = None
    templates: Mapping[str, str] = field(default_factory=dict)
    source: str = "store"

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.level)

    @cached_property
    def encoded(self) -> str:
        """``to_dict`` as JSON, made once per group: every job of every alarm for the group carries it."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def to_dict(self) -> dict[str, object]:
        """The group in the YAML/JSON shape that ``schema.parse_group`` reads back."""
        data: dict[str, object] = {
            "id": self.id,
            "level": self.level,
            "name": self.name,
            "format": self.format.value,
            "mention": self.mention.value,
            "members": [asdict(m) for m in self.members],
            "channels": [{"type": t.kind, **target_fields(t)} for t in self.targets],
            "templates": dict(self.templates),
        }
        if self.dedup_window is not None:
            data["dedup_window"] = self.dedup_window
        return data


def target_fields(target: Target) -> dict[str, Any]:
    """A target's fields as a group's ``channels`` entry has them: a ``name`` only where one is given."""
    return {k: v for k, v in asdict(target).items() if k != "name" or v}


@dataclass(frozen=True)
class Message:
    """What one channel sends: ``body`` is text or markdown as ``format`` says; ``html`` is for email."""

    title: str
    body: str
    format: Format
    html: str = ""
    mobiles: tuple[str, ...] = ()  # the alarm's own mentions (the template already wrote them into the body)
    userids: tuple[str, ...] = ()
    skip: int = 0  # a split message's leading parts that an earlier attempt delivered: not sent again
    chat: str = ""  # the app chat those parts went to ("" for a robot); another chat gets the message whole
    until: float = 0.0  # time.monotonic() by which its delivery must end (0: no bound); see channels._http.late
    level: str = ""  # what a card's colour says: an alert_level (the highest of a digest's), RESOLVED, or STORM
    actions: tuple[tuple[str, str], ...] = ()  # its action links (label, URL), for a channel that shows them as buttons


class Reason(StrEnum):
    """Why a delivery ended as it did; also the metric label."""

    OK = "ok"
    NETWORK = "network"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    RATE_LIMITED = "rate_limited"
    TOKEN = "token"  # noqa: S105  (a reason label, not a secret)
    REJECTED = "rejected"
    CONFIG = "config"
    INTERNAL = "internal"


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery to one target; ``detail`` is safe to log and to show (no secrets)."""

    target: str
    ok: bool
    code: int = 0
    retryable: bool = False
    reason: Reason = Reason.OK
    detail: str = ""
    later: tuple[str, ...] = ()  # email: recipients the server refused for now (4xx) while it took the others
    sent: int | None = None  # a split message that failed: how many of its leading parts the upstream has
    chat: str = ""  # and the app chat they went to
    truncated: bool = False  # delivered cut short to one message (delivery.split off)
