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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bridge.model import ALERT_LEVELS, Alarm

if TYPE_CHECKING:
    from bridge.store import Store

SUBJECT = "act:subject:"  # store key prefix: a subject's details, for as long as its links are valid
USED = "act:used:"  # a link that acted: never again
ACK = "act:ack:"  # who acknowledged a subject, and when
DIGEST_SILENCES = 10  # a digest of more notification groups than this has no silence links (see digest_subject)
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
    SILENCE = "silence"  # an Alertmanager silence of the alarm's (or group's) labels; a digest's: one a group
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
    """What a link acts on, as kept in the store: one alarm, one Alertmanager notification (a group), or a digest's
    alarms (its ``members``). A business or host of None is any: a digest's alarms did not share it."""

    id: str
    group: tuple[str, str]  # the alert group's id and level
    source: str  # native | alertmanager | mixed (a digest of both)
    business: str | None
    host: str | None
    alert_level: str
    title: str  # how the page and the confirmation message name it
    dep: str = ""
    env: str = ""
    silences: tuple[Mapping[str, str], ...] = ()  # the matchers of its Alertmanager silences, one per group
    members: tuple[str, ...] = ()  # a digest's: the subjects of its alarms, each acknowledged with it

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Subject:
        data: dict[str, Any] = json.loads(text)
        if "labels" in data:  # kept before digests had links: one silence's labels
            data["silences"] = [labels] if (labels := data.pop("labels")) else []
        data |= {"group": tuple(data["group"]), "silences": tuple(data.get("silences", ())),
                 "members": tuple(data.get("members", ()))}  # fmt: skip
        return cls(**data)


async def keep(store: Store, subject: Subject, expires: float) -> None:
    """The subject in the store for as long as links that expire then are valid."""
    await store.put(SUBJECT + subject.id, subject.to_json(), max(expires - time.time(), 0) + 60)


def subject_of(alarm: Alarm) -> Subject | None:
    """The subject of an alarm's links; None for an alarm that has none (a resolved notification, a notice)."""
    extra = alarm.extra
    if "notice" in extra or "summary" in extra or extra.get("status") == "resolved":
        return None
    digest = hashlib.sha256(f"{alarm.fingerprint()}|{alarm.alert_time}".encode()).hexdigest()[:24]
    where = f" @ {alarm.alert_host}" if alarm.alert_host else ""
    labels = dict(extra.get("silence_labels", {})) if alarm.source == "alertmanager" else {}
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
        silences=(labels,) if labels else (),
    )


def _shared(values: Sequence[str]) -> str | None:
    return values[0] if len(set(values)) == 1 else None


def digest_subject(alarms: Sequence[Alarm]) -> tuple[Subject, int] | None:
    """The subject of a digest's links, and when they expire: the digest's alarms that have links (None if none
    has). Its mutes hold back the group's alarms of the business and host they all share, or of any; its
    silences are those of each Alertmanager notification group it holds, as each message's own link makes them."""
    marked = [a for a in alarms if isinstance(a.extra.get("actions"), dict) and "only" not in a.extra["actions"]]
    if not marked:
        return None
    first, members = marked[0], tuple(str(a.extra["actions"]["subject"]) for a in marked)
    business, host = _shared([a.alert_business for a in marked]), _shared([a.alert_host for a in marked])
    labels = [dict(a.extra.get("silence_labels", {})) for a in marked if a.source == "alertmanager"]
    groups = tuple({json.dumps(g, sort_keys=True): g for g in labels if g}.values())
    level = min((a.alert_level for a in marked), key=lambda x: ALERT_LEVELS.index(x) if x in ALERT_LEVELS else 9)
    named, where = f": {business}" if business else "", f" @ {host}" if host else ""
    subject = Subject(
        id=hashlib.sha256(f"digest|{','.join(members)}".encode()).hexdigest()[:24],
        group=(first.id, first.level),
        source=_shared([a.source for a in marked]) or "mixed",
        business=business,
        host=host,
        alert_level=level,
        title=f"【告警汇总】{len(marked)} 条告警{named}{where}",
        dep=first.dep,
        env=first.env,
        silences=groups if len(groups) <= DIGEST_SILENCES else (),
        members=members,
    )
    return subject, min(int(a.extra["actions"]["expires"]) for a in marked)


def links(settings: ActionSettings | None, alarm: Alarm) -> list[dict[str, str]]:
    """The action links of an alarm's message (none unless actions are configured and the alarm has a subject):
    each with its kind, label and URL, for the templates."""
    marked = alarm.extra.get("actions")
    if settings is None or not isinstance(marked, dict):
        return []
    silence = alarm.source == "alertmanager"
    if marked.get("only") == "ack" or (silence and not (marked.get("labels") and settings.alertmanagers)):
        timed = None
    else:
        timed = Kind.SILENCE if silence else Kind.MUTE
    return _links(settings, str(marked["subject"]), int(marked["expires"]), timed, "认领 / ack")


def digest_links(settings: ActionSettings | None, found: tuple[Subject, int] | None) -> list[dict[str, str]]:
    """The action links of a digest's message (see digest_subject): mute or silence what it holds, and
    acknowledge its alarms."""
    if settings is None or found is None:
        return []
    subject, expires = found
    timed = {"native": Kind.MUTE, "alertmanager": Kind.SILENCE}.get(subject.source)
    if timed is Kind.SILENCE and not (subject.silences and settings.alertmanagers):
        timed = None
    count = len(subject.members)
    return _links(settings, subject.id, expires, timed, f"认领 {count} 条 / ack {count}")


def _links(settings: ActionSettings, subject: str, expires: int, timed: Kind | None, ack: str) -> list[dict[str, str]]:
    found = [] if timed is None else [
        {"kind": timed.value, "label": f"静默 {span(d)}", "url": url(settings, Link(timed, int(d), subject, expires))}
        for d in settings.durations
    ]  # fmt: skip
    return [*found, {"kind": "ack", "label": ack, "url": url(settings, Link(Kind.ACK, 0, subject, expires))}]


def room(settings: ActionSettings | None) -> int:
    """The UTF-8 bytes a message's action links take at most: what a digest leaves for them."""
    if settings is None:
        return 0
    longest = Link(Kind.SILENCE, int(max(settings.durations, default=0)), "0" * 24, 10**10)
    return (len(settings.durations) + 1) * (len(url(settings, longest)) + 40)  # a label and the markup around it
