"""Signed action links: made for every message on every channel, refused when forged, altered or expired."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest

from bridge import actions
from bridge.actions import Kind, Link
from bridge.config_file import parse
from bridge.model import Alarm, Channel, Format, Group, Message
from bridge.render import WECOM_ROBOT_BUDGETS
from bridge.schema import ConfigError
from bridge.web.samples import sample_alarm
from tests.helpers import config_data

KEY = "action-key-0123456789abcdef"
ACTIONS = {"key": KEY, "durations": ["1h", "4h", "24h"]}
WEB = {"external_url": "https://bridge.example/", "actions": ACTIONS}


def settings(**web: object) -> actions.ActionSettings:
    found = parse(config_data("sqlite:///unused.db", web=WEB | web), "test.yaml").web.actions
    assert found is not None
    return found


def test_a_link_reads_back_as_signed() -> None:
    link = Link(Kind.MUTE, 3600, "0123456789abcdef01234567", int(time.time()) + 60)
    assert actions.read(KEY, actions.sign(KEY, link)) == link


@pytest.mark.parametrize("part", [0, 1, 2, 3])
def test_an_altered_link_is_refused(part: int) -> None:
    token = actions.sign(KEY, Link(Kind.MUTE, 3600, "0123456789abcdef01234567", int(time.time()) + 60))
    pieces = token.split(".")
    pieces[part] = {0: "ack", 1: "86400", 2: "0123456789abcdef01234568", 3: str(int(time.time()) + 10**6)}[part]
    assert "signature does not match" in repr(actions.read(KEY, ".".join(pieces)))


def test_a_link_signed_with_another_key_or_cut_is_refused() -> None:
    link = Link(Kind.SILENCE, 3600, "0123456789abcdef01234567", int(time.time()) + 60)
    assert "signature does not match" in repr(actions.read(KEY, actions.sign("another-key-0123456789", link)))
    assert "not one alarm-bridge made" in repr(actions.read(KEY, actions.sign(KEY, link)[:-3]))
    assert "not one alarm-bridge made" in repr(actions.read(KEY, "<script>"))


def test_an_expired_link_is_refused_saying_when_it_expired() -> None:
    link = Link(Kind.ACK, 0, "0123456789abcdef01234567", 1_700_000_000)
    expired = actions.Refused("This link expired at 2023-11-14 22:13 UTC", expired=True)
    assert actions.read(KEY, actions.sign(KEY, link)) == expired


def test_without_a_key_there_are_no_links_and_a_short_key_or_no_url_is_refused() -> None:
    assert parse(config_data("sqlite:///unused.db"), "test.yaml").web.actions is None
    with pytest.raises(ConfigError, match=r"web.actions.key: needs at least 16 characters"):
        settings(actions={"key": "short"})
    with pytest.raises(ConfigError, match=r"web.external_url: action links need the gateway's URL"):
        parse(config_data("sqlite:///unused.db", web={"actions": ACTIONS}), "test.yaml")
    with pytest.raises(ConfigError, match=r"web.actions.durations\[1\]: expected a duration"):
        settings(actions=ACTIONS | {"durations": ["1h", "soon"]})


NATIVE = Alarm(
    id="chenmin", level="3", dep="du-srv", env="prod", alert_level="高", alert_time="2024-05-20 09:30:00",
    alert_business="订单服务", alert_host="pay-api-03",
)  # fmt: skip


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("fmt", list(Format))
def test_every_channel_and_format_carries_the_mute_and_ack_links(channel: Channel, fmt: Format) -> None:
    config = parse(config_data("sqlite:///unused.db", web=WEB), "test.yaml")
    subject = actions.subject_of(NATIVE)
    assert subject is not None
    marker = {"subject": subject.id, "expires": int(time.time()) + 86400, "labels": False}
    alarm = replace(NATIVE, extra={"actions": marker})
    message, errors = config.renderer.message(alarm, Group(id="chenmin", level="3", format=fmt), channel)
    assert not errors
    text = message.html if channel is Channel.EMAIL else message.body
    if channel is Channel.FEISHU and fmt is Format.MARKDOWN:  # a card shows them as buttons, not in its text
        assert "/ui/act/" not in text
        text = " ".join(f"{label} {url}" for label, url in message.actions)
    tokens = re.findall(r"https://bridge\.example/ui/act/([\w.-]+)", text)
    found = [actions.read(KEY, t) for t in tokens]
    assert [(f.kind, f.duration) for f in found if isinstance(f, Link)] == [
        (Kind.MUTE, 3600), (Kind.MUTE, 4 * 3600), (Kind.MUTE, 86400), (Kind.ACK, 0)
    ]  # fmt: skip
    assert "静默 1h" in text and "认领" in text
    plain, _ = parse(config_data("sqlite:///unused.db"), "test.yaml").renderer.message(
        NATIVE, Group(id="chenmin", level="3", format=fmt), channel
    )
    assert "/ui/act/" not in plain.body + plain.html  # not configured: the message is as it was


@pytest.mark.parametrize("fmt", list(Format))
def test_a_storm_summary_carries_only_the_link_that_acknowledges_the_storm(fmt: Format) -> None:
    config = parse(config_data("sqlite:///unused.db", web=WEB), "test.yaml")
    group = Group(id="chenmin", level="3", format=fmt)
    summary = sample_alarm("storm", group)
    expires = int(time.time()) + 86400
    marker = {"subject": "storm0123456789ab", "expires": expires, "labels": False, "only": "ack"}
    alarm = replace(summary, extra={**summary.extra, "actions": marker})
    message, _ = config.renderer.message(alarm, group, Channel.DINGTALK)
    found = [actions.read(KEY, t) for t in re.findall(r"https://bridge\.example/ui/act/([\w.-]+)", message.body)]
    assert found == [Link(Kind.ACK, 0, "storm0123456789ab", expires)]
    assert "【告警风暴】" in message.body and "静默" not in message.body


def marked(alarm: Alarm) -> Alarm:
    """The alarm as the gateway marks it when it is accepted with action links on."""
    subject = actions.subject_of(alarm)
    assert subject is not None
    marker = {"subject": subject.id, "expires": int(time.time()) + 86400, "labels": bool(subject.silences)}
    return replace(alarm, extra={**alarm.extra, "actions": marker})


def links_in(message: Message) -> list[Link]:
    """The links a person sees in a message: in its text, or as a Feishu card's buttons."""
    text = message.body if message.actions and message.actions[0][1] in message.body else str(message.actions)
    found = [actions.read(KEY, t) for t in re.findall(r"https://bridge\.example/ui/act/([\w.-]+)", text)]
    assert all(isinstance(f, Link) for f in found)
    return [f for f in found if isinstance(f, Link)]


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("fmt", list(Format))
def test_a_digest_on_every_channel_carries_links_that_act_on_its_alarms(channel: Channel, fmt: Format) -> None:
    config = parse(config_data("sqlite:///unused.db", web=WEB), "test.yaml")
    alarms = [marked(replace(NATIVE, alert_host=f"pay-api-0{n}", exception_spec=f"n{n}")) for n in range(3)]
    message, count = config.renderer.digest(alarms, Group(id="chenmin", level="3", format=fmt), channel, 18000)
    found = actions.digest_subject(alarms)
    assert count == 3 and found is not None
    subject, expires = found
    assert [(f.kind, f.duration, f.subject) for f in links_in(message)] == [
        (Kind.MUTE, 3600, subject.id), (Kind.MUTE, 4 * 3600, subject.id), (Kind.MUTE, 86400, subject.id),
        (Kind.ACK, 0, subject.id),
    ]  # fmt: skip
    assert "认领 3 条 / ack 3" in str(message.actions) and all(f.expires == expires for f in links_in(message))
    assert (subject.business, subject.host, subject.title) == ("订单服务", None, "【告警汇总】3 条告警: 订单服务")
    plain, _ = parse(config_data("sqlite:///unused.db"), "test.yaml").renderer.digest(
        alarms, Group(id="chenmin", level="3", format=fmt), channel, 18000
    )
    assert "/ui/act/" not in plain.body and plain.actions == ()  # not configured: the digest is as it was


@pytest.mark.parametrize("fmt", list(Format))
def test_a_digest_for_a_wecom_robot_fits_its_limit_with_its_links(fmt: Format) -> None:
    config = parse(config_data("sqlite:///unused.db", web=WEB), "test.yaml")
    alarms = [marked(replace(NATIVE, exception_spec=f"alarm {n:03d} " + "x" * 80)) for n in range(100)]
    limit = WECOM_ROBOT_BUDGETS[fmt.value]
    message, count = config.renderer.digest(alarms, Group(id="chenmin", level="3", format=fmt), Channel.WECOM, limit)
    assert 1 < count < 100 and len(message.body.encode()) <= limit  # one message: one slot of the robot's 20 a minute
    assert len(links_in(message)) == 4 and f"认领 {count} 条 / ack {count}" in message.body
    assert all(len(actions.sign(KEY, link)) <= 80 for link in links_in(message))  # short tokens: room for alarms


def test_a_digest_of_alertmanager_notifications_silences_each_of_their_groups() -> None:
    config = parse(config_data("sqlite:///unused.db", web=WEB | {"actions": ACTIONS | {
        "alertmanagers": ["http://127.0.0.1:9093"]}}), "test.yaml")  # fmt: skip
    notified = [
        replace(NATIVE, source="alertmanager", alert_business=name, extra={"silence_labels": {"alertname": name}},
                exception_spec=str(n))
        for n, name in enumerate(["DiskFull", "DiskFull", "HighLoad"])
    ]  # fmt: skip
    alarms = [marked(a) for a in notified]
    message, _ = config.renderer.digest(alarms, Group(id="chenmin", level="3"), Channel.DINGTALK, 18000)
    assert [f.kind for f in links_in(message)] == [Kind.SILENCE] * 3 + [Kind.ACK]
    found = actions.digest_subject(alarms)
    assert found is not None
    assert found[0].silences == ({"alertname": "DiskFull"}, {"alertname": "HighLoad"})  # one silence a group
    mixed = [*alarms, marked(NATIVE)]
    message, _ = config.renderer.digest(mixed, Group(id="chenmin", level="3"), Channel.DINGTALK, 18000)
    assert [f.kind for f in links_in(message)] == [Kind.ACK]  # neither one mute nor silences would cover them all


def test_a_subject_kept_before_digests_had_links_still_reads_back() -> None:
    kept = ('{"id": "0123456789abcdef01234567", "group": ["chenmin", "3"], "source": "alertmanager", "business": '
            '"DiskFull", "host": "db1", "alert_level": "高", "title": "【高】DiskFull", "labels": {"alertname": '
            '"DiskFull"}}')  # fmt: skip
    subject = actions.Subject.from_json(kept)
    assert subject.silences == ({"alertname": "DiskFull"},) and subject.members == ()
    assert actions.Subject.from_json(subject.to_json()) == subject
