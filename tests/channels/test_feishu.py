from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace

import aiohttp
import pytest

from bridge.channels import feishu
from bridge.channels._http import Failure
from bridge.codes import Code
from bridge.model import RESOLVED, FeishuApp, FeishuRobot, Format, Group, Member, Mention, Message, Outcome, Reason
from bridge.render import TRUNCATED
from bridge.store import Store
from bridge.upstreams import FeishuApp as AppSettings
from bridge.upstreams import FeishuSettings
from tests.channels._shared import (
    STATUS_RETRYABLE,
    assert_no_secret,
    assert_resumed_from_the_failed_part,
    delivery,
    logged,
    numbered,
)
from tests.fakes._server import FakeServer
from tests.fakes.feishu import FeishuFake
from tests.helpers import free_port

pytestmark = pytest.mark.anyio

SECRET = "feishu-sign-secret-7d1c0b"
APP_ID = "cli_a1b2c3d4e5"
APP_SECRET = "app-secret-9f8e7d6c5b"
TEXT = Message(title="【高】磁盘使用率", body="部门:du-srv\n告警业务:磁盘使用率超过90%", format=Format.TEXT, level="高")
CARD = Message(title="【高】磁盘使用率", body="**部门**: du-srv\n**主机**: db-1", format=Format.MARKDOWN, level="高")
MEMBERS = (
    Member(name="Alice", feishu_userid="ou_alice"),
    Member(name="Bob", mobile="13800000002"),
    Member(name="Carol <c>", feishu_userid="ou_carol"),
)
GROUP = Group(id="chenmin", level="3", name="数据组告警", members=MEMBERS)
MENTIONING = replace(GROUP, mention=Mention.MEMBERS)

Make = Callable[..., feishu.Sender]


@pytest.fixture
def fake() -> FeishuFake:
    fake = FeishuFake()
    fake.add_bot("signed", SECRET)
    fake.add_bot("plain")
    fake.add_bot("kw", keywords=("告警网关", "alarm"))
    fake.add_app(APP_ID, APP_SECRET)
    fake.add_chat("oc_ops")
    return fake


@pytest.fixture
def url(fake: FeishuFake) -> Iterator[str]:
    with FakeServer(fake.app()) as server:
        yield server.url


@pytest.fixture
def make(url: str, session: aiohttp.ClientSession, store: Store) -> Make:
    def make(
        *, base_url: str = url, timeout: float = 5.0, split: bool = True, secret: str = APP_SECRET
    ) -> feishu.Sender:
        settings = FeishuSettings(base_url=base_url, apps={"ops": AppSettings(app_id=APP_ID, app_secret=secret)})
        return feishu.Sender(settings, delivery(timeout, split), session, store)

    return make


def bot(url: str, token: str = "plain", secret: str = "", keyword: str = "") -> FeishuRobot:
    return FeishuRobot(webhook=f"{url}/open-apis/bot/v2/hook/{token}", secret=secret, keyword=keyword)


APP = FeishuApp(app="ops", chat_id="oc_ops")


def failed(outcome: Outcome, code: Code, reason: Reason, retryable: bool) -> None:
    assert not outcome.ok, outcome
    assert (outcome.code, outcome.reason, outcome.retryable) == (code, reason, retryable), outcome


# -- custom bot --


async def test_a_signed_bot_gets_text_mentioning_members_by_open_id(fake: FeishuFake, url: str, make: Make) -> None:
    message = replace(TEXT, userids=("ou_dave", "dingtalk-only-id"))  # the alarm's own, from its labels

    assert await make().send(bot(url, "signed", SECRET), MENTIONING, message) == Outcome("feishu-robot …gned", ok=True)

    [sent] = fake.messages
    assert sent.msg_type == "text" and sent.token == "signed"
    tags = '<at user_id="ou_alice">Alice</at> <at user_id="ou_carol">Carol c</at> <at user_id="ou_dave"></at>'
    assert sent.text == f"{TEXT.body}\n{tags}"
    assert sent.body["timestamp"].isdigit() and len(sent.body["timestamp"]) == 10  # seconds, in the body


async def test_a_card_has_the_title_coloured_by_level_and_lark_md(fake: FeishuFake, url: str, make: Make) -> None:
    sender = make()
    for level in ("高", "中", "低", RESOLVED):
        assert (await sender.send(bot(url), GROUP, replace(CARD, level=level))).ok
    cards = [m.content for m in fake.messages]
    assert [c["header"]["template"] for c in cards] == ["red", "orange", "blue", "green"]
    assert cards[0]["header"]["title"] == {"tag": "plain_text", "content": CARD.title}
    assert cards[0]["elements"] == [{"tag": "div", "text": {"tag": "lark_md", "content": CARD.body}}]


async def test_a_cards_action_links_are_buttons_on_its_first_part(fake: FeishuFake, url: str, make: Make) -> None:
    links = (("静默 1h", "https://bridge.example/ui/act/a"), ("认领 / ack", "https://bridge.example/ui/act/b"))
    long = replace(CARD, body="\n".join(f"**行{i}**: 磁盘使用率超过90%" for i in range(1500)), actions=links)
    assert (await make().send(bot(url), GROUP, long)).ok
    first, *rest = [m.content for m in fake.messages]
    assert rest  # split: the buttons once, where the header and the mentions are
    buttons = [{"tag": "button", "text": {"tag": "plain_text", "content": label}, "url": link, "type": "default"}
               for label, link in links]  # fmt: skip
    assert first["elements"][-1] == {"tag": "action", "actions": buttons}
    assert not any(e["tag"] == "action" for card in rest for e in card["elements"])


async def test_a_card_mentions_everyone_or_the_members(fake: FeishuFake, url: str, make: Make) -> None:
    sender = make()
    assert (await sender.send(bot(url), replace(GROUP, mention=Mention.ALL), CARD)).ok
    assert (await sender.send(bot(url), MENTIONING, CARD)).ok
    assert (await sender.send(bot(url), GROUP, CARD)).ok
    assert [m.mentions for m in fake.messages] == [["all"], ["ou_alice", "ou_carol"], []]


@pytest.mark.parametrize("message", [TEXT, CARD], ids=["text", "card"])
async def test_the_keyword_is_added_where_the_message_lacks_it(
    fake: FeishuFake, url: str, make: Make, message: Message
) -> None:
    sender = make()
    outcome = await sender.send(bot(url, "kw"), GROUP, message)
    failed(outcome, Code.FEISHU_SEND, Reason.REJECTED, retryable=False)
    assert outcome.detail == (
        "errcode 19024: Key Words Not Found (the message has none of the bot's keywords: "
        "set the target's keyword to one of them)"
    )

    assert (await sender.send(bot(url, "kw", keyword="告警网关"), GROUP, message)).ok
    assert (await sender.send(bot(url, "kw", keyword="alarm"), GROUP, replace(message, body="alarm: disk"))).ok
    first, second = fake.messages
    assert "【告警网关】" in first.text
    assert "【alarm】" not in second.text  # it had the keyword already


def long_body(lines: int) -> str:
    return "\n".join(f"第{i:04d}行 告警主机 db-{i} 磁盘使用率超过90% 🔥" for i in range(lines))


@pytest.mark.parametrize("message", [TEXT, CARD], ids=["text", "card"])
async def test_a_long_message_is_split_into_numbered_parts_within_20000_bytes(
    fake: FeishuFake, url: str, make: Make, message: Message
) -> None:
    body = long_body(700)
    long = replace(message, body=body)
    target = bot(url, "signed", SECRET)
    sender = make()
    parts = sender.parts(target, MENTIONING, long)

    assert (await sender.send(target, MENTIONING, long)).ok

    sent = fake.messages[:]
    assert len(sent) == parts >= 3
    assert all(len(json.dumps(m.body, ensure_ascii=False).encode()) <= 20000 for m in sent)
    texts = [m.content["text"] if message.format is Format.TEXT else m.content["elements"][0]["text"]["content"]
             for m in sent]  # fmt: skip
    assert numbered(texts) == [f"({i}/{parts})" for i in range(1, parts + 1)]
    assert "\n".join(t.split("\n", 1)[1] for t in texts).startswith(body.split("\n", 1)[0])
    assert [bool(m.mentions) for m in sent] == [True] + [False] * (parts - 1)  # the first part mentions


async def test_a_message_is_never_more_than_four_parts(fake: FeishuFake, url: str, make: Make) -> None:
    long = replace(TEXT, body=long_body(3000))
    sender = make()
    assert sender.parts(bot(url), GROUP, long) == 4
    assert (await sender.send(bot(url), GROUP, long)).ok
    assert len(fake.messages) == 4 and fake.messages[3].text.endswith(TRUNCATED)


async def test_split_off_truncates_and_says_so(fake: FeishuFake, url: str, make: Make) -> None:
    outcome = await make(split=False).send(bot(url), GROUP, replace(TEXT, body=long_body(3000)))
    assert outcome.ok and outcome.truncated  # the dispatcher records it in the delivery's detail, and counts it
    assert not (await make(split=False).send(bot(url), GROUP, TEXT)).truncated
    sent, _ = fake.messages
    assert sent.text.endswith(TRUNCATED)


async def test_a_split_message_that_failed_part_way_is_sent_again_from_that_part(
    fake: FeishuFake, url: str, make: Make
) -> None:
    long = replace(TEXT, body=long_body(700))
    await assert_resumed_from_the_failed_part(
        make(), bot(url), GROUP, long, fake, "[feishu bot", lambda: [m.text for m in fake.messages]
    )


@pytest.mark.parametrize(
    ("target", "code", "meaning"),
    [
        (lambda url: bot(url, "nope"), 19001, "the hook is unknown or was deleted"),
        (lambda url: bot(url, "signed", "wrong-secret-0000"), 19021, "the signature was refused"),
        (lambda url: bot(url, "signed"), 19021, "the signature was refused"),  # no secret configured
    ],
)
async def test_permanent_refusals_say_why(
    url: str, make: Make, target: Callable[[str], FeishuRobot], code: int, meaning: str
) -> None:
    outcome = await make().send(target(url), GROUP, TEXT)
    failed(outcome, Code.FEISHU_SEND, Reason.REJECTED, retryable=False)
    assert outcome.detail.startswith(f"errcode {code}: ") and meaning in outcome.detail


async def test_an_ip_not_allowed_is_permanent(fake: FeishuFake, url: str, make: Make) -> None:
    fake.add_bot("ip", allowed=("10.1.2.3",))
    outcome = await make().send(bot(url, "ip"), GROUP, TEXT)
    failed(outcome, Code.FEISHU_SEND, Reason.REJECTED, retryable=False)
    assert "19022" in outcome.detail and "allowlist" in outcome.detail


@pytest.mark.parametrize("status", [200, 400, 429])
async def test_9499_too_many_is_a_rate_refusal(fake: FeishuFake, url: str, make: Make, status: int) -> None:
    fake.rate_status = status
    sender = make()
    for _ in range(5):
        assert (await sender.send(bot(url), GROUP, TEXT)).ok
    outcome = await sender.send(bot(url), GROUP, TEXT)
    failed(outcome, Code.FEISHU_SEND, Reason.RATE_LIMITED, retryable=True)
    assert outcome.detail == "errcode 9499: too many request"


async def test_11232_frequency_limited_is_a_rate_refusal(fake: FeishuFake, url: str, make: Make) -> None:
    fake.throttle(1)
    outcome = await make().send(bot(url), GROUP, TEXT)
    failed(outcome, Code.FEISHU_SEND, Reason.RATE_LIMITED, retryable=True)
    assert "11232" in outcome.detail


async def test_9499_for_a_bad_request_is_not_a_rate_refusal(url: str, session: aiohttp.ClientSession) -> None:
    # A body over 20,000 bytes, as another client might send it: HTTP 400, code 9499, "Bad Request".
    body = json.dumps({"msg_type": "text", "content": {"text": "x" * 20001}})
    async with session.post(f"{url}/open-apis/bot/v2/hook/plain", data=body) as response:
        reply = await response.json()
    result = feishu._normalized(reply)
    assert isinstance(result, Failure) and (result.reason, result.retryable) == (Reason.REJECTED, False)


@pytest.mark.parametrize(("status", "retryable"), STATUS_RETRYABLE.items())
@pytest.mark.parametrize("kind", ["bot", "app"])
async def test_http_status_decides_retry(
    fake: FeishuFake, url: str, make: Make, kind: str, status: int, retryable: bool
) -> None:
    target = bot(url) if kind == "bot" else APP
    sender = make()
    if kind == "app":  # its token first, so that the failure meets the message
        assert (await sender.send(target, GROUP, TEXT)).ok
    fake.fail_next(1, status)
    outcome = await sender.send(target, GROUP, TEXT)
    assert (outcome.ok, outcome.retryable, outcome.reason) == (False, retryable, Reason.HTTP_STATUS)
    assert outcome.detail.endswith(f"HTTP {status}")


async def test_a_hanging_upstream_times_out(fake: FeishuFake, url: str, make: Make) -> None:
    fake.hang(5)
    outcome = await make(timeout=0.3).send(bot(url), GROUP, TEXT)
    failed(outcome, Code.FEISHU_SEND, Reason.TIMEOUT, retryable=True)


async def test_connection_refused_is_retryable(make: Make) -> None:
    outcome = await make().send(bot(f"http://127.0.0.1:{free_port()}"), GROUP, TEXT)
    failed(outcome, Code.FEISHU_SEND, Reason.NETWORK, retryable=True)


async def test_a_relative_webhook_is_a_config_error(make: Make) -> None:
    outcome = await make().send(FeishuRobot(webhook="/open-apis/bot/v2/hook/x"), GROUP, TEXT)
    failed(outcome, Code.FEISHU_SEND, Reason.CONFIG, retryable=False)


async def test_a_failing_bot_leaks_no_secret(
    fake: FeishuFake, url: str, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sender = make()
    outcomes = [await sender.send(bot(url, "signed", "wrong-" + SECRET), GROUP, TEXT)]
    fake.fail_next(1, 502)
    outcomes.append(await sender.send(bot(url, "signed-token-0123"), GROUP, TEXT))
    texts = [o.detail for o in outcomes] + [repr(bot(url, "signed-token-0123", SECRET))] + logged(caplog)
    assert_no_secret([SECRET, "signed-token-0123"], *texts)


# -- app --


async def test_the_app_sends_to_its_chat_with_one_cached_token(fake: FeishuFake, make: Make) -> None:
    sender = make()
    assert await sender.send(APP, GROUP, TEXT) == Outcome("feishu-app ops", ok=True)
    assert (await sender.send(APP, MENTIONING, CARD)).ok
    text, card = fake.messages
    assert (text.chat_id, text.msg_type, text.text) == ("oc_ops", "text", TEXT.body)
    assert card.msg_type == "interactive" and card.content["header"]["template"] == "red"
    assert card.mentions == ["ou_alice", "ou_carol"]
    assert fake.gettoken_calls == 1


@pytest.mark.parametrize("how", ["expire", "revoke"])
async def test_an_expired_token_is_refreshed_unseen(fake: FeishuFake, make: Make, how: str) -> None:
    sender = make()
    assert (await sender.send(APP, GROUP, TEXT)).ok
    fake.expire_tokens() if how == "expire" else fake.revoke_tokens()
    assert (await sender.send(APP, GROUP, TEXT)).ok
    assert fake.gettoken_calls == 2 and len(fake.messages) == 2


async def test_a_short_lived_token_is_fetched_again_before_it_expires(
    url: str, session: aiohttp.ClientSession, store: Store
) -> None:
    fake = FeishuFake(token_ttl=1)  # expire: 1 second
    fake.add_app(APP_ID, APP_SECRET)
    fake.add_chat("oc_ops")
    with FakeServer(fake.app()) as server:
        settings = FeishuSettings(base_url=server.url, apps={"ops": AppSettings(APP_ID, APP_SECRET)})
        sender = feishu.Sender(settings, delivery(), session, store)
        assert (await sender.send(APP, GROUP, TEXT)).ok
        assert (await sender.send(APP, GROUP, TEXT)).ok  # within its life: the cached token
        await asyncio.sleep(1.0)
        assert (await sender.send(APP, GROUP, TEXT)).ok
    assert (fake.gettoken_calls, fake.token_refusals, len(fake.messages)) == (2, 0, 3)


async def test_a_token_refused_after_a_refresh_is_a_token_failure(
    url: str, session: aiohttp.ClientSession, store: Store
) -> None:
    fake = FeishuFake(token_ttl=0)  # every token is expired as soon as it is issued
    fake.add_app(APP_ID, APP_SECRET)
    fake.add_chat("oc_ops")
    with FakeServer(fake.app()) as server:
        settings = FeishuSettings(base_url=server.url, apps={"ops": AppSettings(APP_ID, APP_SECRET)})
        outcome = await feishu.Sender(settings, delivery(), session, store).send(APP, GROUP, TEXT)
    failed(outcome, Code.FEISHU_TOKEN, Reason.TOKEN, retryable=True)
    assert "99991663" in outcome.detail and fake.gettoken_calls == 2


async def test_a_wrong_app_secret_is_a_token_failure_not_retried(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    outcome = await make(secret="wrong-app-secret").send(APP, GROUP, TEXT)
    failed(outcome, Code.FEISHU_TOKEN, Reason.TOKEN, retryable=False)
    assert "10014" in outcome.detail
    assert_no_secret(["wrong-app-secret", APP_SECRET], outcome.detail, *logged(caplog))


async def test_a_chat_the_bot_is_not_in_is_permanent(make: Make) -> None:
    outcome = await make().send(FeishuApp(app="ops", chat_id="oc_gone"), GROUP, TEXT)
    failed(outcome, Code.FEISHU_SEND, Reason.REJECTED, retryable=False)
    assert "230002" in outcome.detail


async def test_an_unknown_app_is_a_config_error(make: Make) -> None:
    outcome = await make().send(FeishuApp(app="nope", chat_id="oc_ops"), GROUP, TEXT)
    failed(outcome, Code.FEISHU_TOKEN, Reason.CONFIG, retryable=False)
    assert "feishu.apps" in outcome.detail


async def test_the_app_over_five_a_second_in_a_chat_is_a_rate_refusal(fake: FeishuFake, make: Make) -> None:
    sender = make()
    outcomes = [await sender.send(APP, GROUP, TEXT) for _ in range(6)]
    failed(outcomes[-1], Code.FEISHU_SEND, Reason.RATE_LIMITED, retryable=True)
    assert all(o.ok for o in outcomes[:5])


async def test_the_app_splits_a_long_message(fake: FeishuFake, make: Make) -> None:
    long = replace(TEXT, body=long_body(500))
    parts = make().parts(APP, GROUP, long)
    assert (await make().send(APP, GROUP, long)).ok
    assert len(fake.messages) == parts >= 2
    assert all(len(json.dumps(m.body, ensure_ascii=False).encode()) <= 20000 for m in fake.messages)
