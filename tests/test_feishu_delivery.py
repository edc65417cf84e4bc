"""End to end through /alarm_v2 and the outbox to the Feishu stand-in: the documented config only, the bot's limits
kept with no refusal earned, refusals held back or dead-lettered with their reason."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config_file import parse
from bridge.model import Alarm
from bridge.render import TRUNCATED
from bridge.store import Job, State
from tests.fakes._server import FakeServer
from tests.fakes.feishu import FeishuFake
from tests.helpers import config_data, seed_alarm, signed

TOKEN, SECRET, KEYWORD = "feishu-hook-0123456789", "feishu-secret-abcdef", "告警网关"
APP_ID, APP_SECRET = "cli_0123456789", "feishu-app-secret-xyz"


@pytest.fixture
def fake() -> Iterator[tuple[FeishuFake, str]]:
    fake = FeishuFake()
    fake.add_bot(TOKEN, SECRET, keywords=(KEYWORD,))
    fake.add_app(APP_ID, APP_SECRET)
    fake.add_chat("oc_ops")
    with FakeServer(fake.app()) as server:
        yield fake, server.url


def settings(url: str, tmp_path: Path, **delivery: object) -> dict[str, Any]:
    group = {
        "id": "chenmin",
        "level": "3",
        "format": "markdown",
        "mention": "members",
        "members": [{"name": "陈敏", "feishu_userid": "ou_chenmin"}],
        "channels": [
            {"type": "feishu-robot", "webhook": f"{url}/open-apis/bot/v2/hook/{TOKEN}", "secret": SECRET,
             "keyword": KEYWORD},
            {"type": "feishu-app", "app": "ops", "chat_id": "oc_ops"},
        ],
    }  # fmt: skip
    timings = {"timeout": "1s", "deadline": "2s", "reply_wait": "10s", "backoff": "1h", "poll": "100ms"}
    return config_data(
        f"sqlite:///{tmp_path / 's.db'}",
        groups=[group],
        delivery=timings | {"storm": {"enabled": False}} | delivery,
        feishu={"base_url": url, "apps": {"ops": {"app_id": APP_ID, "app_secret": APP_SECRET}}},
    )


def post(client: TestClient, **changes: str) -> dict[str, Any]:
    reply: dict[str, Any] = client.post("/alarm_v2", content=json.dumps(signed(seed_alarm(**changes)))).json()
    return reply


def jobs(client: TestClient) -> list[Job]:
    store = client.app.state.gateway.store  # type: ignore[attr-defined]
    assert client.portal is not None
    return list(client.portal.call(store.jobs, None, 1000))


def test_an_alarm_reaches_the_bot_and_the_app_as_a_red_card(fake: tuple[FeishuFake, str], tmp_path: Path) -> None:
    feishu, url = fake
    with TestClient(create_app(parse(settings(url, tmp_path), "test.yaml"))) as client:
        assert post(client) == {"code": 0}
    bot, app = sorted(feishu.messages, key=lambda m: m.chat_id)
    for message in (bot, app):
        assert message.msg_type == "interactive"
        assert message.content["header"]["template"] == "red"
        assert "**异常说明**: 陈敏测试之异常说明" in message.text
        assert message.mentions == ["ou_chenmin"]
    assert bot.token == TOKEN and app.chat_id == "oc_ops"


def test_a_burst_is_paced_within_5_a_second_and_digested(fake: tuple[FeishuFake, str], tmp_path: Path) -> None:
    feishu, url = fake
    with TestClient(create_app(parse(settings(url, tmp_path), "test.yaml"))) as client:
        for i in range(40):
            post(client, alert_business=f"burst-{i:02d}")
        deadline = time.monotonic() + 30
        while any(j.state is State.PENDING for j in jobs(client)) and time.monotonic() < deadline:
            time.sleep(0.2)
        states = [j.state for j in jobs(client)]
    assert states == [State.DONE] * 80
    assert feishu.too_many == 0  # no refusal earned
    bot = [m for m in feishu.messages if m.token]
    assert all(later.at - first.at > 1.0 for first, later in zip(bot, bot[5:], strict=False))  # 5 in any second
    listed = "\n".join(m.text for m in bot)
    assert all(f"burst-{i:02d}" in listed for i in range(40))  # every alarm in a message or a digest
    assert 6 <= len(bot) < 40, len(bot)  # more than a second's worth, fewer than one each


def test_a_wrong_secret_is_dead_lettered_with_what_to_fix(fake: tuple[FeishuFake, str], tmp_path: Path) -> None:
    feishu, url = fake
    feishu.add_bot(TOKEN, "another-secret-000", keywords=(KEYWORD,))
    with TestClient(create_app(parse(settings(url, tmp_path), "test.yaml"))) as client:
        reply = post(client)
        dead = [j for j in jobs(client) if j.state is State.DEAD]
    assert reply["code"] == 4007 and "feishu-robot" in reply["msg"]
    [job] = dead
    assert job.code == 4007 and "19021" in job.detail and "check the secret" in job.detail
    assert SECRET not in reply["msg"] + job.detail


def test_a_rate_refusal_holds_the_bot_back_instead_of_retrying(fake: tuple[FeishuFake, str], tmp_path: Path) -> None:
    feishu, url = fake
    feishu.throttle(1)  # 11232, as at the top of the hour
    with TestClient(create_app(parse(settings(url, tmp_path, backoff="100ms"), "test.yaml"))) as client:
        reply = post(client)
        time.sleep(1.0)  # a backoff of 100 ms would have retried it by now
        [job] = [j for j in jobs(client) if j.detail and "11232" in j.detail]
    assert reply["code"] == 4007 and "retrying" in reply["msg"]
    assert job.state is State.PENDING and job.due > time.time() + 50  # held for the minute
    assert [m.chat_id for m in feishu.messages] == ["oc_ops"]  # the app delivered; the bot was not tried again


def test_a_storm_reaches_the_bot_as_summary_cards_with_no_refusal_earned(
    fake: tuple[FeishuFake, str], tmp_path: Path
) -> None:
    feishu, url = fake
    storm = {"horizon": "2s", "interval": "1s", "quiet": "2s", "examples": 2}
    data = settings(url, tmp_path, storm=storm)
    data["groups"][0]["channels"] = data["groups"][0]["channels"][:1]
    with TestClient(create_app(parse(data, "test.yaml"))) as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]

        async def storm_of(n: int) -> list[int]:
            long = [seed_alarm(exception_spec=f"alarm-{i:04d} " + "x" * 600) for i in range(n)]  # 25 a digest
            alarms = [Alarm.from_fields(fields) for fields in long]
            return [int(r.code) for r in await asyncio.gather(*(gateway.accept(a) for a in alarms))]

        assert client.portal is not None
        assert set(client.portal.call(storm_of, 1000)) == {0}
        deadline = time.monotonic() + 60
        while not any("storm over" in m.text for m in feishu.messages) and time.monotonic() < deadline:
            time.sleep(0.2)
    cards = [m for m in feishu.messages if "告警风暴" in m.text]
    assert cards and all(c.content["header"]["template"] == "carmine" for c in cards)
    assert "###" not in cards[0].text  # lark_md has no headings: the card's header is the title
    assert feishu.too_many == 0 and len(feishu.messages) < 60


def test_a_long_alarm_arrives_in_numbered_parts_with_a_slot_kept_for_summaries(
    fake: tuple[FeishuFake, str], tmp_path: Path
) -> None:
    feishu, url = fake
    data = settings(url, tmp_path, storm={})  # storms on: one slot a second is kept for their summaries
    data["native"]["max_body_bytes"] = 400_000
    data["groups"][0]["channels"] = data["groups"][0]["channels"][:1]
    with TestClient(create_app(parse(data, "test.yaml"))) as client:
        assert post(client, exception_spec="磁盘使用率超过90%\n" * 8000)["code"] == 0  # about 180 KB
    texts = [m.content["elements"][0]["text"]["content"] for m in feishu.messages]
    assert [t.split("\n", 1)[0] for t in texts] == ["(1/4)", "(2/4)", "(3/4)", "(4/4)"]
    assert texts[-1].endswith(f"{TRUNCATED}\n【{KEYWORD}】") and feishu.too_many == 0
    assert all(t.endswith(f"\n【{KEYWORD}】") for t in texts)  # every part has the keyword the bot asks for
