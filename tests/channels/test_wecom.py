from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bridge.channels import wecom
from bridge.codes import Code
from bridge.model import (
    Format,
    Group,
    Member,
    Mention,
    Message,
    Outcome,
    Reason,
    Target,
    WeComApp,
    WeComAppChat,
    WeComRobot,
)
from bridge.render import TRUNCATED, WECOM_MENTION_ROOM, budget
from bridge.store import Store
from bridge.upstreams import WeComApp as AppSettings
from bridge.upstreams import WeComSettings
from tests.channels._shared import (
    STATUS_RETRYABLE,
    assert_no_secret,
    assert_resumed_from_the_failed_part,
    delivery,
    fail_after,
    logged,
    numbered,
    sqlite_store,
)
from tests.fakes._server import FakeServer
from tests.fakes.wecom import WeComFake
from tests.helpers import free_port

pytestmark = pytest.mark.anyio

CORPID = "ww0a1b2c3d4e5f"
CORPSECRET = "corpsecret-5e8a1f0c2b9d"
AGENTID = 1000002
ROBOT_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
TEXT = Message(title="【高】磁盘使用率", body="部门:du-srv\n告警业务:磁盘使用率超过90%", format=Format.TEXT)
MARKDOWN = Message(title="【高】磁盘使用率", body="**【高】磁盘**\n> 部门: du-srv", format=Format.MARKDOWN)
MEMBERS = (
    Member(name="Alice", mobile="13800000001", wecom_userid="alice"),
    Member(name="Bob", wecom_userid="Bob"),
    Member(name="Carol", mobile="13800000003"),
)
GROUP = Group(id="chenmin", level="3", name="数据组告警", members=MEMBERS)
APP = WeComApp(app="ops")
CHAT = WeComAppChat(app="ops")

Make = Callable[..., wecom.Sender]


@pytest.fixture
def fake() -> WeComFake:
    fake = WeComFake()
    fake.add_app(CORPID, CORPSECRET, AGENTID)
    fake.add_robot(ROBOT_KEY)
    fake.add_user("alice", "bob", "carol")
    return fake


@pytest.fixture
def url(fake: WeComFake) -> Iterator[str]:
    with FakeServer(fake.app()) as server:
        yield server.url


@pytest.fixture
def make(url: str, session: aiohttp.ClientSession, store: Store) -> Make:
    def make(
        *, base_url: str = url, timeout: float = 5.0, split: bool = True, secret: str = CORPSECRET, into: Store = store
    ) -> wecom.Sender:
        settings = WeComSettings(base_url=base_url, apps={"ops": AppSettings(CORPID, secret, AGENTID)})
        return wecom.Sender(settings, delivery(timeout, split), session, into)

    return make


def robot(url: str, key: str = ROBOT_KEY) -> WeComRobot:
    return WeComRobot(webhook=f"{url}/cgi-bin/webhook/send?key={key}")


def failed(outcome: Outcome, code: Code, reason: Reason, retryable: bool) -> None:
    assert not outcome.ok, outcome
    assert (outcome.code, outcome.reason, outcome.retryable) == (code, reason, retryable), outcome


def long_body(lines: int) -> str:
    return "\n".join(f"第{i:03d}行 告警主机 db-{i} 磁盘 🔥" for i in range(lines))


def assert_parts(contents: list[str], body: str, limit: int) -> None:
    """Numbered parts, each within the byte limit, that put together give the body back."""
    n = len(contents)
    assert n > 1
    for i, content in enumerate(contents, 1):
        assert content.startswith(f"({i}/{n})\n") and len(content.encode()) <= limit
    assert "\n".join(c.split("\n", 1)[1] for c in contents) == body


# -- app message --


async def test_app_message_reaches_members(fake: WeComFake, make: Make) -> None:
    assert await make().send(APP, GROUP, TEXT) == Outcome("wecom-app ops", ok=True)
    [sent] = fake.app_messages
    assert sent.body == {"touser": "alice|Bob", "agentid": AGENTID, "msgtype": "text", "text": {"content": TEXT.body}}
    assert fake.inbox("alice") == fake.inbox("bob") == [sent] and fake.inbox("carol") == []
    assert (await make().send(APP, GROUP, MARKDOWN)).ok
    assert (fake.app_messages[1].msgtype, fake.app_messages[1].content) == ("markdown", MARKDOWN.body)


@pytest.mark.parametrize("fmt", list(Format))
async def test_app_splits_a_long_message(fake: WeComFake, make: Make, fmt: Format) -> None:
    body = long_body(200)
    assert (await make().send(APP, GROUP, Message("t", body, fmt))).ok
    assert all(m.msgtype == fmt.value for m in fake.inbox("alice"))
    assert_parts([m.content for m in fake.inbox("alice")], body, wecom.APP_CONTENT_BYTES)


async def test_app_truncates_when_split_is_off(fake: WeComFake, make: Make) -> None:
    body = long_body(200)
    outcome = await make(split=False).send(APP, GROUP, Message("t", body, Format.TEXT))
    assert outcome.ok and outcome.truncated
    assert not (await make(split=False).send(APP, GROUP, TEXT)).truncated
    [sent, _] = fake.app_messages
    assert sent.content.endswith(TRUNCATED) and body.startswith(sent.content.removesuffix(TRUNCATED))
    assert 1500 < len(sent.content.encode()) <= wecom.APP_CONTENT_BYTES


async def test_app_some_invalid_users_is_ok_naming_them(fake: WeComFake, make: Make) -> None:
    group = Group(id="g", level="1", members=(*MEMBERS, Member("Ghost", wecom_userid="Ghost")))
    outcome = await make().send(APP, group, TEXT)
    assert (outcome.ok, outcome.detail) == (True, "delivered, except to invalid users: ghost")
    assert fake.app_messages[0].delivered == ("alice", "bob")


async def test_app_all_invalid_users_is_a_failure_naming_them(fake: WeComFake, make: Make) -> None:
    group = Group(id="g", level="1", members=(Member("G", wecom_userid="ghost"), Member("Z", wecom_userid="zed")))
    outcome = await make().send(APP, group, TEXT)
    failed(outcome, Code.WECOM_SEND, Reason.REJECTED, retryable=False)
    assert "81013" in outcome.detail and outcome.detail.endswith("; invalid users: ghost|zed")


async def test_app_reuses_the_cached_token(fake: WeComFake, make: Make) -> None:
    sender = make()
    for message in (TEXT, MARKDOWN, TEXT):
        assert (await sender.send(APP, GROUP, message)).ok
    assert (await sender.send(CHAT, GROUP, TEXT)).ok
    assert fake.gettoken_calls == 1 and len(fake.app_messages) == 3


@pytest.mark.parametrize(("how", "errcode"), [("expire", 42001), ("expire", 40014), ("revoke", 40014)])
async def test_token_expiry_is_invisible(fake: WeComFake, make: Make, how: str, errcode: int) -> None:
    fake.expired_token_errcode = errcode
    sender = make()
    assert (await sender.send(APP, GROUP, TEXT)).ok
    (fake.revoke_tokens if how == "revoke" else fake.expire_tokens)()
    assert await sender.send(APP, GROUP, TEXT) == Outcome("wecom-app ops", ok=True)
    assert fake.gettoken_calls == 2 and len(fake.inbox("alice")) == 2


async def test_token_refused_after_a_refresh_is_a_token_failure(session: aiohttp.ClientSession, store: Store) -> None:
    fake = WeComFake(token_ttl=0)  # every token is expired as soon as it is issued
    fake.add_app(CORPID, CORPSECRET, AGENTID)
    fake.add_user("alice")
    with FakeServer(fake.app()) as server:
        settings = WeComSettings(base_url=server.url, apps={"ops": AppSettings(CORPID, CORPSECRET, AGENTID)})
        outcome = await wecom.Sender(settings, delivery(), session, store).send(APP, GROUP, TEXT)
    failed(outcome, Code.WECOM_TOKEN, Reason.TOKEN, retryable=True)
    assert "42001" in outcome.detail and fake.gettoken_calls == 2


async def test_app_configuration_problems_are_not_retryable(fake: WeComFake, make: Make) -> None:
    sender = make()
    for target in (WeComApp(app="missing"), WeComAppChat(app="missing")):
        failed(await sender.send(target, GROUP, TEXT), Code.WECOM_TOKEN, Reason.CONFIG, retryable=False)
    nobody = Group(id="g", level="1", members=(Member("Carol", mobile="13800000003"),))
    failed(await sender.send(APP, nobody, TEXT), Code.WECOM_SEND, Reason.CONFIG, retryable=False)
    alone = Group(id="g", level="1", members=MEMBERS[:1])
    failed(await sender.send(CHAT, alone, TEXT), Code.WECOM_SEND, Reason.CONFIG, retryable=False)
    assert fake.gettoken_calls == 0


async def test_wrong_secret_is_a_token_failure_not_retried(fake: WeComFake, make: Make) -> None:
    outcome = await make(secret="not-the-secret").send(APP, GROUP, TEXT)
    failed(outcome, Code.WECOM_TOKEN, Reason.TOKEN, retryable=False)  # no retry helps until the secret is fixed
    assert "40001" in outcome.detail and len(fake.app_messages) == 0


# -- app chat --


async def test_appchat_is_created_once_and_reused(fake: WeComFake, make: Make) -> None:
    sender = make()
    for message in (TEXT, MARKDOWN):
        assert await sender.send(CHAT, GROUP, message) == Outcome("wecom-appchat ops", ok=True)
    [chat] = fake.chats.values()
    assert (chat.name, chat.owner, chat.userlist) == ("数据组告警", "alice", ("alice", "Bob"))
    assert len(chat.chatid) == 32
    assert [(m.msgtype, m.content) for m in chat.messages] == [("text", TEXT.body), ("markdown", MARKDOWN.body)]
    assert fake.gettoken_calls == 1


async def test_appchat_found_again_after_the_cache_is_lost(
    fake: WeComFake, make: Make, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    assert (await make().send(CHAT, GROUP, TEXT)).ok
    fresh = sqlite_store(tmp_path / "other")
    try:
        assert (await make(into=fresh).send(CHAT, GROUP, TEXT)).ok  # create answers 86215: the chat is ours
    finally:
        await fresh.close()
    [chat] = fake.chats.values()
    assert len(chat.messages) == 2


async def test_appchat_changed_members_get_a_new_chat(fake: WeComFake, make: Make) -> None:
    sender = make()
    assert (await sender.send(CHAT, GROUP, TEXT)).ok
    grown = Group(id=GROUP.id, level=GROUP.level, members=(*MEMBERS, Member("C", wecom_userid="carol")))
    assert (await sender.send(CHAT, grown, TEXT)).ok
    assert sorted(c.userlist for c in fake.chats.values()) == [("alice", "Bob"), ("alice", "Bob", "carol")]


async def test_appchat_deleted_chat_is_recreated(fake: WeComFake, make: Make) -> None:
    sender = make()
    assert (await sender.send(CHAT, GROUP, TEXT)).ok
    [old] = fake.chats
    fake.delete_chat(old)
    assert await sender.send(CHAT, GROUP, MARKDOWN) == Outcome("wecom-appchat ops", ok=True)
    [new] = fake.chats.values()
    assert new.chatid != old and [m.msgtype for m in new.messages] == ["markdown"]
    assert (await sender.send(CHAT, GROUP, TEXT)).ok
    assert len(fake.chats) == 1 and len(new.messages) == 2


@pytest.mark.parametrize("named", [True, False], ids=["errmsg-names-them", "errmsg-names-nobody"])
@pytest.mark.parametrize("errcode", [86007, 86216])
async def test_appchat_is_made_without_a_member_who_left_and_every_delivery_says_so(
    fake: WeComFake, make: Make, errcode: int, named: bool
) -> None:
    fake.invalid_member_errcode, fake.names_invalid_members = errcode, named
    fake.add_user("dave")
    fake.remove_user("Bob")
    group = replace(GROUP, members=(*MEMBERS, Member("Dave", wecom_userid="dave")))
    sender = make()
    said = Outcome("wecom-appchat ops", ok=True, detail="delivered, except to rejected userids: Bob")
    assert await sender.send(CHAT, group, TEXT) == said
    [chat] = fake.chats.values()
    assert chat.userlist == ("alice", "dave") and len(chat.messages) == 1
    assert await sender.send(CHAT, group, TEXT) == said
    corrected = replace(group, members=tuple(m for m in group.members if m.wecom_userid != "Bob"))
    assert await sender.send(CHAT, corrected, TEXT) == Outcome("wecom-appchat ops", ok=True)
    assert list(fake.chats.values()) == [chat] and len(chat.messages) == 3


async def test_appchat_with_too_few_valid_members_fails_naming_them(fake: WeComFake, make: Make) -> None:
    fake.remove_user("bob")
    outcome = await make().send(CHAT, GROUP, TEXT)
    failed(outcome, Code.WECOM_SEND, Reason.REJECTED, retryable=False)
    assert "86216" in outcome.detail and outcome.detail.endswith("; rejected userids: Bob")
    assert fake.chats == {}


async def test_appchat_splits_a_long_message(fake: WeComFake, make: Make) -> None:
    body = long_body(200)
    assert (await make().send(CHAT, GROUP, Message("t", body, Format.MARKDOWN))).ok
    [chat] = fake.chats.values()
    assert_parts([m.content for m in chat.messages], body, wecom.APP_CONTENT_BYTES)


def received(fake: WeComFake, kind: str) -> list[str]:
    """What the group got, in order: the app's messages to a member, the app chat's, or the robot's."""
    if kind == "app":
        return [m.content for m in fake.inbox("alice")]
    if kind == "appchat":
        return [m.content for chat in fake.chats.values() for m in chat.messages]
    return [m.content for m in fake.robot_inbox(ROBOT_KEY)]


@pytest.mark.parametrize(("kind", "sends"), [("app", "wecom app "), ("appchat", "wecom appchat "), ("robot", "robot")])
async def test_a_split_message_that_failed_part_way_is_sent_again_from_that_part(
    fake: WeComFake, url: str, make: Make, kind: str, sends: str
) -> None:
    target: Target = APP if kind == "app" else CHAT if kind == "appchat" else robot(url)
    message = Message("t", long_body(200), Format.TEXT)
    await assert_resumed_from_the_failed_part(make(), target, GROUP, message, fake, sends, lambda: received(fake, kind))


async def test_a_split_message_resumed_in_another_app_chat_is_sent_whole(fake: WeComFake, make: Make) -> None:
    message = Message("t", long_body(200), Format.TEXT)
    sender = make()
    n = sender.parts(CHAT, GROUP, message)
    fail_after(fake, 2, "wecom appchat ")
    outcome = await sender.send(CHAT, GROUP, message)
    assert outcome.sent == 2 and outcome.chat in fake.chats

    # The parts went to a chat the group no longer uses (its cache entry was lost, and the chat made anew).
    assert (await sender.send(CHAT, GROUP, replace(message, skip=2, chat="an-older-chat"))).ok

    [chat] = fake.chats.values()
    assert numbered(m.content for m in chat.messages) == [
        f"(1/{n})",
        f"(2/{n})",
        *(f"({i}/{n})" for i in range(1, n + 1)),
    ]


# -- group robot --


async def test_robot_text_mentions_members(fake: WeComFake, url: str, make: Make) -> None:
    group = Group(id="g", level="1", members=MEMBERS, mention=Mention.MEMBERS)
    assert await make().send(robot(url), group, TEXT) == Outcome("wecom-robot …5aaa", ok=True)
    [sent] = fake.robot_inbox(ROBOT_KEY)
    assert sent.body == {
        "msgtype": "text",
        "text": {"content": TEXT.body, "mentioned_list": ["alice", "Bob"], "mentioned_mobile_list": ["13800000003"]},
    }


async def test_robot_text_mentions_all_and_markdown_tags_members(fake: WeComFake, url: str, make: Make) -> None:
    assert (await make().send(robot(url), Group(id="g", level="1", members=MEMBERS, mention=Mention.ALL), TEXT)).ok
    assert fake.robot_messages[0].body["text"]["mentioned_list"] == ["@all"]
    group = Group(id="g", level="1", members=MEMBERS, mention=Mention.MEMBERS)
    assert (await make().send(robot(url), group, MARKDOWN)).ok
    assert fake.robot_messages[1].body == {
        "msgtype": "markdown",
        "markdown": {"content": f"{MARKDOWN.body}\n<@alice> <@Bob>"},
    }


@pytest.mark.parametrize("fmt", list(Format))
async def test_robot_splits_a_long_message(fake: WeComFake, url: str, make: Make, fmt: Format) -> None:
    body = long_body(400)
    group = Group(id="g", level="1", members=MEMBERS, mention=Mention.MEMBERS)
    assert (await make().send(robot(url), group, Message("t", body, fmt))).ok
    sent = fake.robot_inbox(ROBOT_KEY)
    contents = [m.content for m in sent]
    limit = wecom.ROBOT_CONTENT_BYTES[fmt]
    if fmt is Format.MARKDOWN:
        assert contents[0].endswith("\n<@alice> <@Bob>") and len(contents[0].encode()) <= limit
        contents[0] = contents[0].removesuffix("\n<@alice> <@Bob>")
    else:
        assert "mentioned_list" in sent[0].body["text"] and "mentioned_list" not in sent[1].body["text"]
    assert_parts(contents, body, limit)


async def test_robot_markdown_mentions_fit_into_a_full_part(fake: WeComFake, url: str, make: Make) -> None:
    body = "磁" * 3000  # one line: the parts are cut at the limit, not at line ends
    group = Group(id="g", level="1", members=MEMBERS, mention=Mention.MEMBERS)
    assert (await make().send(robot(url), group, Message("t", body, Format.MARKDOWN))).ok, "a part was refused"
    contents = [m.content for m in fake.robot_inbox(ROBOT_KEY)]
    assert contents[0].endswith("\n<@alice> <@Bob>")
    assert all(len(c.encode()) > 4000 for c in contents[:-1])
    assert "".join(c.split("\n")[1] for c in contents) == body


async def test_robot_markdown_mentions_of_a_large_group_leave_room_for_the_alarm(
    fake: WeComFake, url: str, make: Make
) -> None:
    members = tuple(Member(name=f"m{i}", wecom_userid=f"member{i:04d}") for i in range(400))  # 5 KB of mentions
    group = Group(id="g", level="1", members=members, mention=Mention.MEMBERS)
    assert (await make().send(robot(url), group, MARKDOWN)).ok, "the message was refused"
    [sent] = fake.robot_inbox(ROBOT_KEY)
    body, tags = sent.content.split("\n<@", 1)
    assert body == MARKDOWN.body
    assert tags.startswith("member0000> <@member0001>") and len(f"\n<@{tags}".encode()) <= WECOM_MENTION_ROOM


@pytest.mark.parametrize("members", [0, 3, 60, 400])
@pytest.mark.parametrize("fmt", list(Format))
async def test_robot_sends_a_body_within_the_outbox_budget_as_one_message(
    fake: WeComFake, url: str, make: Make, members: int, fmt: Format
) -> None:
    """The outbox takes one rate-limit slot for a digest within the budget: it must be one message upstream."""
    crowd = tuple(Member(name=f"m{i}", wecom_userid=f"member{i:04d}") for i in range(members))
    group = Group(id="g", level="1", members=crowd, mention=Mention.MEMBERS, format=fmt)
    room = budget(robot(url), group)
    body = "\n".join(f"{i}. 磁盘告警 db-{i}" for i in range(room)).encode()[:room].decode("utf-8", "ignore")
    assert (await make().send(robot(url), group, Message("t", body, fmt))).ok
    assert len(fake.robot_inbox(ROBOT_KEY)) == 1


async def test_robot_unknown_key_is_rejected(fake: WeComFake, url: str, make: Make) -> None:
    outcome = await make().send(robot(url, "no-such-key-0000"), GROUP, TEXT)
    failed(outcome, Code.WECOM_SEND, Reason.REJECTED, retryable=False)
    assert "93000" in outcome.detail and len(fake.robot_messages) == 0


@pytest.mark.parametrize("kind", ["robot", "app"])
@pytest.mark.parametrize(("status", "retryable"), STATUS_RETRYABLE.items())
async def test_http_status_decides_retry(
    fake: WeComFake, url: str, make: Make, kind: str, status: int, retryable: bool
) -> None:
    fake.fail_next(1, status)
    target: Target = robot(url) if kind == "robot" else APP
    outcome = await make().send(target, GROUP, TEXT)
    # The app's first call is gettoken, so an HTTP failure there is the token step's.
    code, reason = (Code.WECOM_SEND, Reason.HTTP_STATUS) if kind == "robot" else (Code.WECOM_TOKEN, Reason.TOKEN)
    failed(outcome, code, reason, retryable)
    assert f"HTTP {status}" in outcome.detail


async def test_hanging_upstream_times_out_quickly(fake: WeComFake, url: str, make: Make) -> None:
    fake.hang(5)
    start = time.monotonic()
    outcomes = [await make(timeout=0.3).send(t, GROUP, TEXT) for t in (robot(url), APP)]
    assert time.monotonic() - start < 3
    failed(outcomes[0], Code.WECOM_SEND, Reason.TIMEOUT, retryable=True)
    failed(outcomes[1], Code.WECOM_TOKEN, Reason.TOKEN, retryable=True)
    assert "no answer within 0.3s" in outcomes[1].detail
    fake.unhang()


async def test_connection_refused_is_retryable(make: Make) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    failed(await make().send(robot(closed), GROUP, TEXT), Code.WECOM_SEND, Reason.NETWORK, retryable=True)


# -- no secret in logs, details or reprs --


async def test_robot_failure_leaks_no_key(
    fake: WeComFake, url: str, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.remove_robot(ROBOT_KEY)
    outcomes = [await make().send(robot(url), GROUP, TEXT)]
    fake.fail_next(1, 500)
    outcomes.append(await make().send(robot(url), GROUP, TEXT))
    assert [(o.ok, o.code) for o in outcomes] == [(False, Code.WECOM_SEND)] * 2
    texts = [*logged(caplog), *(o.detail for o in outcomes), *(repr(o) for o in outcomes)]
    assert_no_secret([ROBOT_KEY, "key="], *texts)


async def test_app_failure_leaks_no_secret(
    fake: WeComFake, make: Make, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sender = make()
    assert (await sender.send(CHAT, GROUP, TEXT)).ok
    token = await store.get("token:wecom:ops")
    assert token
    outcomes = []
    fake.fail_next(1, 503)
    outcomes.append(await sender.send(APP, GROUP, TEXT))  # message/send with the cached token
    fake.revoke_tokens()
    outcomes.append(await make(secret="stale-corp-secret").send(CHAT, GROUP, TEXT))  # the refresh is refused
    assert [(o.ok, o.code) for o in outcomes] == [(False, Code.WECOM_SEND), (False, Code.WECOM_TOKEN)]
    texts = [*logged(caplog), *(o.detail for o in outcomes), *(repr(o) for o in outcomes)]
    assert_no_secret([CORPSECRET, "stale-corp-secret", token, "access_token="], *texts)


async def test_robot_text_carries_an_alarms_own_mentions(fake: WeComFake, url: str, make: Make) -> None:
    message = Message("t", "磁盘满", Format.TEXT, mobiles=("13700000000",), userids=("oncall",))
    assert (await make().send(robot(url), GROUP, message)).ok
    [sent] = fake.robot_messages
    assert sent.body["text"]["mentioned_list"] == ["oncall"]
    assert sent.body["text"]["mentioned_mobile_list"] == ["13700000000"]


@pytest.mark.parametrize("size", [10, 4000, 20000])
@pytest.mark.parametrize("members", [0, 60, 400])
@pytest.mark.parametrize("fmt", list(Format))
async def test_parts_counts_the_messages_a_robot_send_makes(
    fake: WeComFake, url: str, make: Make, size: int, members: int, fmt: Format
) -> None:
    """What the outbox takes rate-limit slots for is what reaches the robot, its mentions included."""
    crowd = tuple(Member(name=f"m{i}", wecom_userid=f"member{i:04d}") for i in range(members))
    group = Group(id="g", level="1", members=crowd, mention=Mention.MEMBERS, format=fmt)
    body = "\n".join(f"{i}. 磁盘告警 db-{i}" for i in range(size)).encode()[:size].decode("utf-8", "ignore")
    message = Message("t", body, fmt)
    sender = make()
    assert (await sender.send(robot(url), group, message)).ok
    assert sender.parts(robot(url), group, message) == len(fake.robot_inbox(ROBOT_KEY))
