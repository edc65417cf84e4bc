from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import aiohttp
import pytest
from prometheus_client import REGISTRY

from bridge.channels import dingtalk
from bridge.codes import Code
from bridge.model import DingTalkApp, DingTalkRobot, Format, Group, Member, Mention, Message, Outcome, Reason, Target
from bridge.render import TRUNCATED
from bridge.store import Store
from bridge.upstreams import DingTalkApp as AppSettings
from bridge.upstreams import DingTalkSettings
from tests.channels._shared import (
    STATUS_RETRYABLE,
    assert_no_secret,
    assert_resumed_from_the_failed_part,
    delivery,
    fail_after,
    logged,
    numbered,
)
from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake, robot_sign
from tests.helpers import free_port

pytestmark = pytest.mark.anyio

ROBOT_TOKEN = "robot0token0f3a9c5d1e7b"
SIGN_SECRET = "SEC0f1e2d3c4b5a69788796a5b4c3d2e1f0"
APPKEY = "dingappkey0001"
APPSECRET = "appsecret-7c1d9e0b5a"
TEXT = Message(title="【高】磁盘使用率", body="部门:du-srv\n告警业务:磁盘使用率超过90%", format=Format.TEXT)
MARKDOWN = Message(title="【高】磁盘使用率", body="### 【高】磁盘\n- **部门**: du-srv", format=Format.MARKDOWN)
MEMBERS = (
    Member(name="Alice", mobile="13800000001", dingtalk_userid="alice"),
    Member(name="Bob", dingtalk_userid="bob"),
    Member(name="Carol", mobile="13800000003"),
)
GROUP = Group(id="chenmin", level="3", name="数据组告警", members=MEMBERS)

Make = Callable[..., dingtalk.Sender]


@pytest.fixture
def fake() -> DingTalkFake:
    fake = DingTalkFake()
    fake.add_robot(ROBOT_TOKEN, SIGN_SECRET)
    fake.add_robot("plain-robot")
    fake.add_app(APPKEY, APPSECRET)
    fake.add_user("alice", "bob", "carol")
    return fake


@pytest.fixture
def url(fake: DingTalkFake) -> Iterator[str]:
    with FakeServer(fake.app()) as server:
        yield server.url


@pytest.fixture
def make(url: str, session: aiohttp.ClientSession, store: Store) -> Make:
    def make(
        *, base_url: str = url, timeout: float = 5.0, split: bool = True, appsecret: str = APPSECRET
    ) -> dingtalk.Sender:
        settings = DingTalkSettings(base_url=base_url, apps={"ops": AppSettings(appkey=APPKEY, appsecret=appsecret)})
        return dingtalk.Sender(settings, delivery(timeout, split), session, store)

    return make


def signed_robot(url: str) -> DingTalkRobot:
    return DingTalkRobot(webhook=f"{url}/robot/send?access_token={ROBOT_TOKEN}", secret=SIGN_SECRET)


def plain_robot(url: str) -> DingTalkRobot:
    return DingTalkRobot(webhook=f"{url}/robot/send?access_token=plain-robot")


APP = DingTalkApp(app="ops")


def failed(outcome: Outcome, code: Code, reason: Reason, retryable: bool) -> None:
    assert not outcome.ok, outcome
    assert (outcome.code, outcome.reason, outcome.retryable) == (code, reason, retryable), outcome


# -- robot --


async def test_signed_robot_text_mentions_members_in_at_and_text(
    fake: DingTalkFake, url: str, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A timestamp whose signature holds "+", "/" and "=": each must reach the server encoded exactly once.
    now = int(time.time() * 1000)
    ts = next(t for t in range(now, now + 100_000) if {"+", "/"} <= set(robot_sign(SIGN_SECRET, t)))
    monkeypatch.setattr(dingtalk, "_now_ms", lambda: ts)
    group = Group(id="g", level="1", members=MEMBERS, mention=Mention.MEMBERS)

    outcome = await make().send(signed_robot(url), group, TEXT)

    assert outcome == Outcome("dingtalk-robot …1e7b", ok=True)  # named by its token's last four characters
    [sent] = fake.robot_messages
    assert sent.token == ROBOT_TOKEN
    assert sent.body == {
        "msgtype": "text",
        "text": {"content": f"{TEXT.body}\n\n@13800000001 @bob @13800000003"},
        "at": {"atMobiles": ["13800000001", "13800000003"], "atUserIds": ["alice", "bob"]},
    }


async def test_robot_markdown_has_title_and_mentions_all(fake: DingTalkFake, url: str, make: Make) -> None:
    group = Group(id="g", level="1", members=MEMBERS, mention=Mention.ALL)
    assert (await make().send(plain_robot(url), group, MARKDOWN)).ok
    [sent] = fake.robot_messages
    assert sent.body == {
        "msgtype": "markdown",
        "markdown": {"title": MARKDOWN.title, "text": MARKDOWN.body},
        "at": {"isAtAll": True},
    }


async def test_robot_without_mentions_sends_no_at(fake: DingTalkFake, url: str, make: Make) -> None:
    assert (await make().send(plain_robot(url), GROUP, TEXT)).ok
    assert fake.robot_messages[0].body == {"msgtype": "text", "text": {"content": TEXT.body}}


def long_body(lines: int) -> str:
    return "\n".join(f"第{i:04d}行 告警主机 db-{i} 磁盘使用率超过90% 🔥" for i in range(lines))


@pytest.mark.parametrize("fmt", list(Format))
async def test_robot_splits_a_long_message_into_numbered_parts(
    fake: DingTalkFake, url: str, make: Make, fmt: Format
) -> None:
    body = long_body(1500)  # ~70 KB of UTF-8
    group = Group(id="g", level="1", members=MEMBERS, mention=Mention.MEMBERS)

    outcome = await make().send(signed_robot(url), group, Message("title", body, fmt))

    assert outcome.ok, outcome
    sent = list(fake.robot_messages)
    n = len(sent)
    assert n > 3
    texts = [m.body["text"]["content"] if fmt is Format.TEXT else m.body["markdown"]["text"] for m in sent]
    tags = "\n\n@13800000001 @bob @13800000003"
    assert texts[0].endswith(tags) and "at" in sent[0].body
    assert all("at" not in m.body for m in sent[1:])
    texts[0] = texts[0].removesuffix(tags)
    for i, text in enumerate(texts, 1):
        assert text.startswith(f"({i}/{n})\n")
        assert "\ufffd" not in text
    assert "\n".join(t.split("\n", 1)[1] for t in texts) == body
    assert all(len(json.dumps(m.body, ensure_ascii=False).encode()) <= dingtalk.MAX_BODY_BYTES for m in sent)


@pytest.mark.parametrize("fmt", list(Format))
async def test_a_keyword_robot_gets_its_keyword_in_every_part_and_refuses_what_lacks_it(
    fake: DingTalkFake, url: str, make: Make, fmt: Format
) -> None:
    fake.add_robot("keyword-robot", keywords=("监控",))
    webhook = f"{url}/robot/send?access_token=keyword-robot"
    long = Message("【高】磁盘", long_body(1500), fmt)
    refused = await make().send(DingTalkRobot(webhook=webhook), GROUP, long)
    failed(refused, Code.DINGTALK_SEND, Reason.REJECTED, retryable=False)  # what the issue saw: every alarm dead
    assert "310000" in refused.detail
    assert (await make().send(DingTalkRobot(webhook=webhook, keyword="监控"), GROUP, long)).ok
    field = "markdown" if fmt is Format.MARKDOWN else "text"
    texts = [m.body[field]["text" if field == "markdown" else "content"] for m in fake.robot_messages]
    assert len(texts) > 1 and all(t.endswith("\n【监控】") for t in texts)
    assert all(
        len(json.dumps(m.body, ensure_ascii=False).encode()) <= dingtalk.MAX_BODY_BYTES for m in fake.robot_messages
    )
    fake.robot_messages.clear()
    has_it = Message("磁盘", "监控: 磁盘使用率超过90%", fmt)
    assert (await make().send(DingTalkRobot(webhook=webhook, keyword="监控"), GROUP, has_it)).ok
    [sent] = fake.robot_messages
    assert sent.body[field]["text" if field == "markdown" else "content"] == has_it.body  # it has it: left alone


async def test_robot_truncates_when_split_is_off(fake: DingTalkFake, url: str, make: Make) -> None:
    body = long_body(1500)
    outcome = await make(split=False).send(plain_robot(url), GROUP, Message("t", body, Format.TEXT))
    assert outcome.ok and outcome.truncated  # the dispatcher says so in the delivery's detail, and counts it
    assert not (await make(split=False).send(plain_robot(url), GROUP, TEXT)).truncated
    [sent, _] = fake.robot_messages
    content = sent.body["text"]["content"]
    assert content.endswith(TRUNCATED) and body.startswith(content.removesuffix(TRUNCATED))
    assert len(content) > 1000


async def test_robot_unknown_token_and_bad_sign_are_rejected(fake: DingTalkFake, url: str, make: Make) -> None:
    unknown = DingTalkRobot(webhook=f"{url}/robot/send?access_token=nope00000")
    outcome = await make().send(unknown, GROUP, TEXT)
    failed(outcome, Code.DINGTALK_SEND, Reason.REJECTED, retryable=False)
    assert "300001" in outcome.detail
    unsigned = DingTalkRobot(webhook=f"{url}/robot/send?access_token={ROBOT_TOKEN}")
    outcome = await make().send(unsigned, GROUP, TEXT)
    failed(outcome, Code.DINGTALK_SEND, Reason.REJECTED, retryable=False)
    assert "310000" in outcome.detail
    assert len(fake.robot_messages) == 0


async def test_robot_failure_leaks_no_secret(
    fake: DingTalkFake, url: str, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = DingTalkRobot(webhook=f"{url}/robot/send?access_token={ROBOT_TOKEN}", secret="SECwrong0secret0value")
    outcomes = [await make().send(wrong, GROUP, TEXT)]
    fake.fail_next(1, 502)
    outcomes.append(await make().send(signed_robot(url), GROUP, TEXT))
    assert [(o.ok, o.code) for o in outcomes] == [(False, Code.DINGTALK_SEND)] * 2
    assert "310000" in outcomes[0].detail and "502" in outcomes[1].detail
    texts = [*logged(caplog), *(o.detail for o in outcomes), *(repr(o) for o in outcomes)]
    assert_no_secret([ROBOT_TOKEN, SIGN_SECRET, "SECwrong0secret0value", "access_token=", "sign="], *texts)


@pytest.mark.parametrize("kind", ["robot", "app"])
@pytest.mark.parametrize(("status", "retryable"), STATUS_RETRYABLE.items())
async def test_http_status_decides_retry(
    fake: DingTalkFake, url: str, make: Make, kind: str, status: int, retryable: bool
) -> None:
    fake.fail_next(1, status)
    target: Target = signed_robot(url) if kind == "robot" else APP
    outcome = await make().send(target, GROUP, TEXT)
    # The app's first call is gettoken, so an HTTP failure there is the token step's.
    code, reason = (Code.DINGTALK_SEND, Reason.HTTP_STATUS) if kind == "robot" else (Code.DINGTALK_TOKEN, Reason.TOKEN)
    failed(outcome, code, reason, retryable)
    assert f"HTTP {status}" in outcome.detail


async def test_hanging_upstream_times_out_quickly(fake: DingTalkFake, url: str, make: Make) -> None:
    fake.hang(5)
    start = time.monotonic()
    outcome = await make(timeout=0.3).send(signed_robot(url), GROUP, TEXT)
    assert time.monotonic() - start < 2
    failed(outcome, Code.DINGTALK_SEND, Reason.TIMEOUT, retryable=True)
    fake.unhang()


async def test_connection_refused_is_retryable(make: Make) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    outcome = await make(base_url=closed).send(signed_robot(closed), GROUP, TEXT)
    failed(outcome, Code.DINGTALK_SEND, Reason.NETWORK, retryable=True)
    outcome = await make(base_url=closed).send(APP, GROUP, TEXT)
    failed(outcome, Code.DINGTALK_TOKEN, Reason.TOKEN, retryable=True)


# -- enterprise app --


async def test_app_creates_one_chat_and_reuses_it_and_the_token(fake: DingTalkFake, make: Make) -> None:
    sender = make()
    for message in (TEXT, MARKDOWN, TEXT):
        assert await sender.send(APP, GROUP, message) == Outcome("dingtalk-app ops", ok=True)
    [chat] = fake.chats.values()
    assert (chat.name, chat.owner, chat.useridlist) == ("数据组告警", "alice", ("alice", "bob"))
    assert [m.msg for m in chat.messages] == [
        {"msgtype": "text", "text": {"content": TEXT.body}},
        {"msgtype": "markdown", "markdown": {"title": MARKDOWN.title, "text": MARKDOWN.body}},
        {"msgtype": "text", "text": {"content": TEXT.body}},
    ]
    assert fake.gettoken_calls == 1


async def test_app_chat_name_defaults_and_is_cut_to_20_chars(fake: DingTalkFake, make: Make) -> None:
    unnamed = Group(id="x" * 30, level="7", members=MEMBERS)
    assert (await make().send(APP, unnamed, TEXT)).ok
    assert [c.name for c in fake.chats.values()] == ["x" * 20]


async def test_app_changed_members_get_a_new_chat(fake: DingTalkFake, make: Make) -> None:
    sender = make()
    assert (await sender.send(APP, GROUP, TEXT)).ok
    grown = Group(
        id=GROUP.id, level=GROUP.level, name=GROUP.name, members=(*MEMBERS, Member("C", dingtalk_userid="carol"))
    )
    assert (await sender.send(APP, grown, TEXT)).ok
    assert sorted(c.useridlist for c in fake.chats.values()) == [("alice", "bob"), ("alice", "bob", "carol")]
    assert all(len(c.messages) == 1 for c in fake.chats.values())


@pytest.mark.parametrize("how", ["expire", "expire-40014", "revoke"])
async def test_app_token_expiry_is_invisible(fake: DingTalkFake, make: Make, how: str) -> None:
    sender = make()
    assert (await sender.send(APP, GROUP, TEXT)).ok
    if how == "expire-40014":
        fake.expired_token_errcode = 40014
    (fake.revoke_tokens if how == "revoke" else fake.expire_tokens)()
    assert await sender.send(APP, GROUP, TEXT) == Outcome("dingtalk-app ops", ok=True)
    assert fake.gettoken_calls == 2
    [chat] = fake.chats.values()
    assert len(chat.messages) == 2


async def test_app_token_refused_after_a_refresh_is_a_token_failure(
    url: str, session: aiohttp.ClientSession, store: Store
) -> None:
    fake = DingTalkFake(token_ttl=0)  # every token is expired as soon as it is issued
    fake.add_app(APPKEY, APPSECRET)
    fake.add_user("alice", "bob")
    with FakeServer(fake.app()) as server:
        settings = DingTalkSettings(base_url=server.url, apps={"ops": AppSettings(APPKEY, APPSECRET)})
        outcome = await dingtalk.Sender(settings, delivery(), session, store).send(APP, GROUP, TEXT)
    failed(outcome, Code.DINGTALK_TOKEN, Reason.TOKEN, retryable=True)
    assert "42001" in outcome.detail
    assert fake.gettoken_calls == 2


@pytest.mark.parametrize("errcode", [34001, 40016])
async def test_app_recreates_a_deleted_chat(fake: DingTalkFake, make: Make, errcode: int) -> None:
    fake.gone_chat_errcode = errcode
    sender = make()
    assert (await sender.send(APP, GROUP, TEXT)).ok
    [old] = fake.chats
    fake.delete_chat(old)
    assert await sender.send(APP, GROUP, MARKDOWN) == Outcome("dingtalk-app ops", ok=True)
    [new] = fake.chats.values()
    assert new.chatid != old and [m.msg["msgtype"] for m in new.messages] == ["markdown"]
    assert (await sender.send(APP, GROUP, TEXT)).ok  # the new chat is cached
    assert len(fake.chats) == 1 and len(new.messages) == 2


@pytest.mark.parametrize("named", [True, False], ids=["errmsg-names-them", "errmsg-names-nobody"])
@pytest.mark.parametrize("errcode", [60121, 60111, 40003])
async def test_app_chat_is_made_without_a_member_who_left_and_every_delivery_says_so(
    fake: DingTalkFake, make: Make, errcode: int, named: bool
) -> None:
    fake.unknown_user_errcode, fake.names_unknown_users = errcode, named
    fake.remove_user("bob")
    rejected = REGISTRY.get_sample_value("alarm_bridge_chat_members_rejected_total", {"channel": "dingtalk-app"})
    sender = make()
    said = Outcome("dingtalk-app ops", ok=True, detail="delivered, except to rejected userids: bob")
    assert await sender.send(APP, GROUP, TEXT) == said
    [chat] = fake.chats.values()
    assert chat.useridlist == ("alice",) and len(chat.messages) == 1
    assert await sender.send(APP, GROUP, TEXT) == said  # the chat is cached: none is made again
    after = REGISTRY.get_sample_value("alarm_bridge_chat_members_rejected_total", {"channel": "dingtalk-app"})
    assert (after or 0) - (rejected or 0) == 1
    corrected = replace(GROUP, members=tuple(m for m in MEMBERS if m.dingtalk_userid != "bob"))
    assert await sender.send(APP, corrected, TEXT) == Outcome("dingtalk-app ops", ok=True)
    assert list(fake.chats.values()) == [chat] and len(chat.messages) == 3  # the group corrected: the same chat


async def test_app_chat_that_no_member_can_join_fails_naming_them(fake: DingTalkFake, make: Make) -> None:
    fake.remove_user("alice", "bob")
    outcome = await make().send(APP, GROUP, TEXT)
    failed(outcome, Code.DINGTALK_CHAT, Reason.REJECTED, retryable=False)
    assert "60121" in outcome.detail and outcome.detail.endswith("; rejected userids: alice, bob")
    assert fake.chats == {}


async def test_app_splits_a_long_message(fake: DingTalkFake, make: Make) -> None:
    body = long_body(1200)
    assert (await make().send(APP, GROUP, Message("t", body, Format.TEXT))).ok
    [chat] = fake.chats.values()
    texts = [m.msg["text"]["content"] for m in chat.messages]
    assert len(texts) > 2 and all(t.startswith(f"({i}/{len(texts)})\n") for i, t in enumerate(texts, 1))
    assert "\n".join(t.split("\n", 1)[1] for t in texts) == body


def chat_texts(fake: DingTalkFake) -> list[str]:
    return [m.msg["text"]["content"] for chat in fake.chats.values() for m in chat.messages]


def robot_texts(fake: DingTalkFake) -> list[str]:
    return [m.content for m in fake.robot_messages]


@pytest.mark.parametrize(
    ("target", "sends", "texts"),
    [(APP, "chat/send", chat_texts), (DingTalkRobot(webhook=""), "robot", robot_texts)],
    ids=["app", "robot"],
)
async def test_a_split_message_that_failed_part_way_is_sent_again_from_that_part(
    fake: DingTalkFake, url: str, make: Make, target: Target, sends: str, texts: Callable[[DingTalkFake], list[str]]
) -> None:
    target = plain_robot(url) if isinstance(target, DingTalkRobot) else target
    message = Message("t", long_body(1500), Format.TEXT)
    await assert_resumed_from_the_failed_part(make(), target, GROUP, message, fake, sends, lambda: texts(fake))


async def test_a_split_message_leaves_the_parts_its_deadline_may_cut_off_for_a_retry(
    fake: DingTalkFake, url: str, make: Make
) -> None:
    message = Message("t", long_body(1500), Format.TEXT)
    sender = make(timeout=1.0)
    n = sender.parts(plain_robot(url), GROUP, message)
    fake.hang(0.5)  # each part takes half a second: a part started after 0.75 s might outlast the deadline
    outcome = await sender.send(plain_robot(url), GROUP, replace(message, until=time.monotonic() + 1.75))
    assert (outcome.ok, outcome.retryable, outcome.reason) == (False, True, Reason.TIMEOUT)
    assert outcome.sent is not None and 1 <= outcome.sent < n
    assert outcome.detail == f"part {outcome.sent + 1}/{n}: left for a retry, its deadline being near"
    fake.unhang()

    assert (await sender.send(plain_robot(url), GROUP, replace(message, skip=outcome.sent))).ok
    assert numbered(robot_texts(fake)) == [f"({i}/{n})" for i in range(1, n + 1)]


@pytest.mark.parametrize("gone", ["found by this delivery", "made anew before it"])
async def test_a_split_message_resumed_in_a_chat_made_anew_is_sent_whole(
    fake: DingTalkFake, make: Make, gone: str
) -> None:
    message = Message("t", long_body(1500), Format.TEXT)
    sender = make()
    n = sender.parts(APP, GROUP, message)
    fail_after(fake, 2, "chat/send")
    outcome = await sender.send(APP, GROUP, message)
    assert outcome.sent == 2
    [old] = fake.chats
    assert outcome.chat == old
    fake.delete_chat(old)  # the chat that has the first two parts is gone
    if gone == "made anew before it":  # another alarm's delivery found it gone and made the group's chat again
        assert (await sender.send(APP, GROUP, TEXT)).ok

    assert (await sender.send(APP, GROUP, replace(message, skip=2, chat=outcome.chat))).ok

    [new] = fake.chats.values()
    texts = [m.msg["text"]["content"] for m in new.messages if m.msg["text"]["content"] != TEXT.body]
    assert numbered(texts) == [f"({i}/{n})" for i in range(1, n + 1)]


async def test_app_configuration_problems_are_not_retryable(fake: DingTalkFake, make: Make) -> None:
    sender = make()
    outcome = await sender.send(DingTalkApp(app="missing"), GROUP, TEXT)
    failed(outcome, Code.DINGTALK_TOKEN, Reason.CONFIG, retryable=False)
    nobody = Group(id="g", level="1", members=(Member("Carol", mobile="13800000003"),))
    failed(await sender.send(APP, nobody, TEXT), Code.DINGTALK_CHAT, Reason.CONFIG, retryable=False)
    crowd = Group(id="g", level="1", members=tuple(Member(f"u{i}", dingtalk_userid=f"u{i}") for i in range(41)))
    failed(await sender.send(APP, crowd, TEXT), Code.DINGTALK_CHAT, Reason.CONFIG, retryable=False)
    assert fake.gettoken_calls == 0


async def test_app_wrong_secret_is_a_token_failure_not_retried(fake: DingTalkFake, make: Make) -> None:
    outcome = await make(appsecret="not-the-secret").send(APP, GROUP, TEXT)
    failed(outcome, Code.DINGTALK_TOKEN, Reason.TOKEN, retryable=False)  # no retry helps until the secret is fixed
    assert "40001" in outcome.detail and fake.chats == {}


async def test_app_failure_leaks_no_secret(
    fake: DingTalkFake, make: Make, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sender = make()
    assert (await sender.send(APP, GROUP, TEXT)).ok
    token = await store.get("token:dingtalk:ops")
    assert token
    outcomes = []
    fake.fail_next(1, 503)
    outcomes.append(await sender.send(APP, GROUP, TEXT))  # chat/send with the cached token
    fake.revoke_tokens()
    fake.add_app(APPKEY, "rotated-app-secret")  # the refresh after the revoked token is refused
    outcomes.append(await sender.send(APP, GROUP, TEXT))
    assert [(o.ok, o.code) for o in outcomes] == [(False, Code.DINGTALK_SEND), (False, Code.DINGTALK_TOKEN)]
    texts = [*logged(caplog), *(o.detail for o in outcomes), *(repr(o) for o in outcomes)]
    assert_no_secret([APPSECRET, "rotated-app-secret", token, "access_token="], *texts)


async def test_an_alarms_own_mentions_go_into_at_without_tagging_twice(
    fake: DingTalkFake, url: str, make: Make
) -> None:
    message = Message("t", "磁盘满\n\n@13700000000 @oncall", Format.TEXT, mobiles=("13700000000",), userids=("oncall",))
    assert (await make().send(plain_robot(url), GROUP, message)).ok
    [sent] = fake.robot_messages
    assert sent.body["at"] == {"atMobiles": ["13700000000"], "atUserIds": ["oncall"]}
    assert sent.body["text"]["content"] == "磁盘满\n\n@13700000000 @oncall"


@pytest.mark.parametrize("size", [10, 18000, 60000])
@pytest.mark.parametrize("members", [0, 100])
@pytest.mark.parametrize("fmt", list(Format))
async def test_parts_counts_the_messages_a_robot_send_makes(
    fake: DingTalkFake, url: str, make: Make, size: int, members: int, fmt: Format
) -> None:
    """What the outbox takes rate-limit slots for is what reaches the robot, JSON escapes and mentions included."""
    crowd = tuple(Member(f"m{i}", mobile=f"138{i:08d}", dingtalk_userid=f"member{i:04d}") for i in range(members))
    group = Group(id="g", level="1", members=crowd, mention=Mention.MEMBERS, format=fmt)
    lines = "\n".join(f'{i}. "磁盘"\\告警 db-{i}' for i in range(size))  # quotes and backslashes grow in JSON
    message = Message("t", lines.encode()[:size].decode("utf-8", "ignore"), fmt)
    sender = make()
    assert (await sender.send(signed_robot(url), group, message)).ok
    assert sender.parts(signed_robot(url), group, message) == len(fake.robot_messages)
