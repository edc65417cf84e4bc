"""Signed action links in messages: silence (Alertmanager), mute (native), acknowledge; made and read back here.

A link names what it acts on by a subject id: the alarm's details are kept in the store under that id when the
alarm is accepted (see ``bridge.gateway``), so a link stays short enough for the chat APIs' byte limits. The
link's action, duration, subject and expiry are signed with ``web.actions.key`` (HMAC-SHA256): changing any of
them, or signing with another key, makes a link that is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from bridge.model import Alarm

SUBJECT = "act:subject:"  # store key prefix: a subject's details, for as long as its links are valid
USED = "act:used:"  # a link that acted: never again
ACK = "act:ack:"  # who acknowledged a subject, and when
_TOKEN = re.compile(r"^(silence|mute|ack|expire)\.(\d{1,9})\.([0-9A-Za-z-]{1,64})\.(\d{1,12})\.([A-Za-z0-9_-]{22})$")


@dataclass(frozen=True)
class ActionSettings:
    key: str = field(repr=False)  # signs the links: whoever has it can make links that act
    base_url: str  # web.external_url: where people reach the gateway
    expires: float  # a link is valid this long after its alarm was accepted
    durations: tuple[float, ...]  # the silence and mute links in every message
    require_login: bool  # the confirmation page asks for a login first
    alertmanagers: tuple[str, ...]  # Alertmanager base URLs for silences (an HA pair: one answer is enough)
    timeout: float  # one call to an Alertmanager


class Kind(StrEnum):
    SILENCE = "silence"  # an Alertmanager silence of the alarm's (or group's) labels
    MUTE = "mute"  # alarm-bridge holds back native alarms like this one
    ACK = "ack"  # someone is on it: recorded, and the storm updates of its group stop
    EXPIRE = "expire"  # end a silence made from a link early (the subject is the silence's id)


@dataclass(frozen=True)
class Link:
    kind: Kind
    duration: int  # seconds; 0 for ack and expire
    subject: str
    expires: int  # Unix time

    def text(self) -> str:
        return f"{self.kind}.{self.duration}.{self.subject}.{self.expires}"


def sign(key: str, link: Link) -> str:
    digest = hmac.new(key.encode(), link.text().encode(), hashlib.sha256).digest()[:16]
    return f"{link.text()}.{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"


@dataclass(frozen=True)
class Refused:
    message: str
    expired: bool = False


def read(key: str, token: str, now: float | None = None) -> Link | Refused:
    """The link a token holds, or why it is refused (forged or altered, expired)."""
    match = _TOKEN.match(token)
    if match is None:
        return Refused("This link is not one alarm-bridge made, or it was cut or changed")
    link = Link(Kind(match[1]), int(match[2]), match[3], int(match[4]))
    if not hmac.compare_digest(sign(key, link).encode(), token.encode()):
        return Refused("This link's signature does not match: it was changed, or not made by this alarm-bridge")
    if link.expires < (time.time() if now is None else now):
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(link.expires))
        return Refused(f"This link expired at {when}", expired=True)
    return link


def url(settings: ActionSettings, link: Link) -> str:
    return f"{settings.base_url}/ui/act/{sign(settings.key, link)}"


def span(seconds: float) -> str:
    """1h, 24h, 30m, 90s: a duration as the links and messages show it."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@dataclass(frozen=True)
class Subject:
    """What a link acts on, as kept in the store: one alarm, or one Alertmanager notification (a group)."""

    id: str
    group: tuple[str, str]  # the alert group's id and level
    source: str  # native | alertmanager
    business: str
    host: str
    alert_level: str
    title: str  # how the page and the confirmation message name it
    dep: str = ""
    env: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # an Alertmanager silence's matchers

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Subject:
        data: dict[str, Any] = json.loads(text)
        data["group"] = tuple(data["group"])
        return cls(**data)


def subject_of(alarm: Alarm) -> Subject | None:
    """The subject of an alarm's links; None for an alarm that has none (a resolved notification, a notice)."""
    extra = alarm.extra
    if "notice" in extra or "summary" in extra or extra.get("status") == "resolved":
        return None
    digest = hashlib.sha256(f"{alarm.fingerprint()}|{alarm.alert_time}".encode()).hexdigest()[:24]
    where = f" @ {alarm.alert_host}" if alarm.alert_host else ""
    return Subject(
        id=digest,
        group=(alarm.id, alarm.level),
        source=alarm.source,
        business=alarm.alert_business,
        host=alarm.alert_host,
        alert_level=alarm.alert_level,
        title=f"【{alarm.alert_level}】{alarm.alert_business}{where}",
        dep=alarm.dep,
        env=alarm.env,
        labels=dict(extra.get("silence_labels", {})) if alarm.source == "alertmanager" else {},
    )


def links(settings: ActionSettings | None, alarm: Alarm) -> list[dict[str, str]]:
    """The action links of an alarm's message (none unless actions are configured and the alarm has a subject):
    each with its kind, label and URL, for the templates."""
    marked = alarm.extra.get("actions")
    if settings is None or not isinstance(marked, dict):
        return []
    subject, expires = str(marked["subject"]), int(marked["expires"])
    silence = alarm.source == "alertmanager"
    if marked.get("only") == "ack" or (silence and not (marked.get("labels") and settings.alertmanagers)):
        timed: list[tuple[Kind, float]] = []
    else:
        timed = [(Kind.SILENCE if silence else Kind.MUTE, d) for d in settings.durations]
    found = [
        {"kind": kind.value, "label": f"静默 {span(d)}", "url": url(settings, Link(kind, int(d), subject, expires))}
        for kind, d in timed
    ]
    return [*found, {"kind": "ack", "label": "认领 / ack", "url": url(settings, Link(Kind.ACK, 0, subject, expires))}]
