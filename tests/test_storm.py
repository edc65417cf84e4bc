"""Storms: a target's backlog beyond what its budget carries within the horizon reaches the group as summaries
that account for every alarm exactly once, on one replica or several, and through a crash."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config_file import parse
from bridge.gateway import Gateway
from bridge.intake import jobs_for
from bridge.model import Alarm, Channel
from bridge.store import Admission, Job, State, Store, StoreError
from bridge.tally import Storm
from bridge.upstreams import rate_key
from bridge.web.samples import sample_alarm
from bridge.work import Work
from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake
from tests.helpers import REDIS_URL, config_data, samples, seed_alarm, value
from tests.store.test_contract import redis_prefix
from tests.test_outbox import MARKER, TOKEN, wait_until

STORM = {"horizon": "2s", "interval": "1s", "quiet": "2s", "examples": 2, "top": 3}
LEVELS = ("高", "中", "低")


def storm_config(store_url: str, robot_url: str, **delivery: Any) -> dict[str, Any]:
    group = {
        "id": "chenmin",
        "level": "3",
        "members": [{"name": "陈敏", "mobile": "13800000000"}],
        "mention": "members",
        "channels": [{"type": "dingtalk-robot", "webhook": f"{robot_url}/robot/send?access_token={TOKEN}"}],
    }
    settings = {"timeout": "1s", "deadline": "2s", "poll": "50ms", "backoff": "100ms", "storm": STORM,
                "rate_limits": {"dingtalk-robot": {"limit": 20, "window": "3.2s"}}}  # fmt: skip
    data = config_data(store_url, groups=[group], delivery=settings | delivery)
    data["web"] = {"external_url": "https://bridge.example"}
    if store_url.startswith("redis"):
        data["store"]["prefix"] = redis_prefix()
    return data


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else REDIS_URL


def fields(n: int) -> dict[str, str]:
    """A storm's alarm: long enough that a digest carries about 25 of them."""
    spec = f"alarm-{n:05d} " + "x" * 600
    return seed_alarm(exception_spec=spec, alert_level=LEVELS[n % 3], alert_host=f"host-{n % 7}")


def alarm(n: int) -> Alarm:
    return Alarm.from_fields(fields(n))


@pytest.fixture
def robot() -> Iterator[tuple[DingTalkFake, str]]:
    fake = DingTalkFake(robot_rate=20, robot_window=3.0)  # the gateway's window is 0.2 s longer, as the real 2 s
    fake.add_robot(TOKEN)
    with FakeServer(fake.app()) as server:
        yield fake, server.url


def gateway_of(client: TestClient) -> Gateway:
    gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]
    return gateway


def post(client: TestClient, numbers: range) -> list[int]:
    """The alarms, accepted all at once (as a storm's clients post them), with their reply codes."""
    gateway = gateway_of(client)

    async def all_at_once() -> list[int]:
        results = await asyncio.gather(*(gateway.accept(alarm(n)) for n in numbers))
        return [int(r.code) for r in results]

    assert client.portal is not None
    return client.portal.call(all_at_once)


def depth(client: TestClient) -> int:
    assert client.portal is not None
    return client.portal.call(gateway_of(client).store.depth)


def summarized_jobs(client: TestClient) -> list[Job]:
    assert client.portal is not None
    done = client.portal.call(gateway_of(client).store.jobs, State.DONE, 100_000)
    return [j for j in done if j.detail.startswith("summarized in storm ")]


def storm_over(fake: DingTalkFake, client: TestClient) -> bool:
    return any("storm over" in t for t in summaries(fake)) and depth(client) == 0


def summaries(fake: DingTalkFake) -> list[str]:
    return [m.content for m in fake.robot_messages if "告警风暴" in m.content]


def summarized(text: str) -> int:
    """How many alarms a summary says are new in it (0 for the closing one)."""
    if "storm over" in text:
        return 0
    match = re.search(r"新增 (\d+) 条", text) or re.search(r"【告警风暴】(\d+) 条告警", text)
    assert match, text
    return int(match[1])


def level_counts(text: str) -> int:
    line = next((ln for ln in text.splitlines() if ln.startswith("等级: ")), "")
    return sum(int(n) for n in re.findall(r"[高中低] (\d+)", line))


def accounted(fake: DingTalkFake) -> tuple[set[int], int]:
    """The alarms whose own text reached the robot, and how many the summaries account for."""
    texts = {
        int(m) for msg in fake.robot_messages if "告警风暴" not in msg.content for m in MARKER.findall(msg.content)
    }
    return texts, sum(summarized(text) for text in summaries(fake))


def assert_each_alarm_once(fake: DingTalkFake, client: TestClient, count: int) -> None:
    """Every alarm once: its own text reached the robot, or a summary counted it (and then it was not sent)."""
    texts, counted = accounted(fake)
    folded = summarized_jobs(client)
    assert len(texts) + counted == count
    assert len(folded) == counted
    assert not texts & {int(m) for j in folded for m in MARKER.findall(j.payload)}
    found = summaries(fake)
    assert all(level_counts(t) == summarized(t) for t in found if summarized(t))  # each breakdown adds up
    assert f"storm over: {counted} 条告警" in found[-1]


def test_a_storm_reaches_the_group_as_summaries_that_add_up_to_every_alarm(
    robot: tuple[DingTalkFake, str], store_url: str
) -> None:
    fake, url = robot
    with TestClient(create_app(parse(storm_config(store_url, url), "t.yaml"))) as client:
        before = samples(client)
        assert set(post(client, range(3000))) == {0}
        wait_until(lambda: storm_over(fake, client), timeout=60)
        assert_each_alarm_once(fake, client, 3000)
        found = summaries(fake)
        assert found[0].startswith("【告警风暴】") and "https://bridge.example/ui/alarms?storm=" in found[0]
        mentioned = [m.body.get("at", {}).get("atMobiles", []) for m in fake.robot_messages if "告警风暴" in m.content]
        assert mentioned[0] == ["13800000000"] and not any(mentioned[1:])  # only the first summary mentions
        assert len(fake.robot_messages) < 40  # not the 3000 / 25 digests the storm would otherwise take
        after = samples(client)
        counted = sum(summarized(t) for t in found)
        named = {"channel": "dingtalk", "target": f"dingtalk-robot …{TOKEN[-4:]}"}  # as everywhere else
        for name, moved in (("storms_started", 1), ("storms_ended", 1), ("alarms_summarized", counted)):
            metric = f"alarm_bridge_{name}_total"
            assert value(after, metric, **named) - value(before, metric, **named) == moved, name
        # Over, ordinary delivery resumes: the next alarm's own text.
        fake.robot_messages.clear()
        time.sleep(3.5)  # the rate window of the storm's last messages, and its ended state
        assert post(client, range(5000, 5001)) == [0]
        wait_until(lambda: depth(client) == 0)
    assert [MARKER.findall(m.content) for m in fake.robot_messages] == [["05000"]]


def test_two_replicas_send_one_summary_per_turn_between_them(robot: tuple[DingTalkFake, str]) -> None:
    fake, url = robot
    data = storm_config(REDIS_URL, url)
    with (
        TestClient(create_app(parse(data, "a.yaml"))) as first,
        TestClient(create_app(parse(data, "b.yaml"))) as second,
    ):
        assert set(post(first, range(0, 3000, 2)) + post(second, range(1, 3000, 2))) == {0}
        wait_until(lambda: storm_over(fake, first), timeout=60)
        assert_each_alarm_once(fake, first, 3000)
        numbers = [j.detail.rpartition(" ")[2] for j in summarized_jobs(first)]
    openings = [t for t in summaries(fake) if not t.startswith("【告警风暴】新增") and "storm over" not in t]
    assert len(openings) == 1 and sum(1 for t in summaries(fake) if "storm over" in t) == 1
    assert len(summaries(fake)) == len(set(numbers)) + 1  # one message per turn, and the closing one


class CrashingOnce:
    """The store of a replica that dies in its first summary, after taking the jobs and before writing it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def summarize(self, *args: Any) -> None:
        if not self.crashed:
            self.crashed = True
            raise StoreError("the process died here")
        await self._store.summarize(*args)


class FailingToSettle:
    """A store that times out on every settle, as a Redis busy with a storm's backlog did."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def settle(self, jobs: list[Job]) -> None:
        raise StoreError("redis: TimeoutError: Timeout reading")


def test_parking_that_the_store_cannot_write_is_logged_and_left_to_the_lease(
    robot: tuple[DingTalkFake, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = robot
    settings = parse(storm_config(f"sqlite:///{tmp_path / 's.db'}", url), "t.yaml")
    group = settings.groups[0]
    (target,) = group.targets
    alarms = [alarm(n) for n in range(3)]
    jobs = [j for a in alarms for j in jobs_for(a, group)]
    with TestClient(create_app(settings)) as client:
        assert client.portal is not None
        outbox, store = gateway_of(client).outbox, gateway_of(client).store
        now = time.time()
        storm = Storm("s1", now, now, 0, 0, now + 60, jobs[0].payload)
        client.portal.call(store.put, f"storm:{rate_key(target)}", json.dumps(asdict(storm)), 60.0)
        client.portal.call(store.admit, [Admission(jobs)], 60.0)
        outbox._ledger._store = FailingToSettle(store)  # type: ignore[assignment]
        work = Work(group, target, jobs, alarms, time.monotonic() + 60)
        now_goes = client.portal.call(outbox._composer.park, work)  # raised the StoreError before
        assert now_goes is not None and now_goes.jobs == []  # nothing is sent: the target is in a storm
        assert client.portal.call(store.depth) == 3  # the alarms wait in the store, for when their lease ends
    assert len(fake.robot_messages) == 0
    assert "outbox: cannot record a delivery: redis: TimeoutError" in caplog.text


def test_a_summary_that_never_lands_leaves_its_alarms_to_the_next(
    robot: tuple[DingTalkFake, str], store_url: str
) -> None:
    fake, url = robot
    with TestClient(create_app(parse(storm_config(store_url, url, lease="3s"), "t.yaml"))) as client:
        storms = gateway_of(client).outbox._storms  # the replica's own summaries, to crash one
        crashing = CrashingOnce(storms._store)
        storms._store = crashing
        assert set(post(client, range(3000))) == {0}
        wait_until(lambda: storm_over(fake, client), timeout=60)
        assert crashing.crashed
        assert_each_alarm_once(fake, client, 3000)


def test_a_burst_the_budget_carries_is_delivered_as_each_alarms_text(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    with TestClient(create_app(parse(storm_config(f"sqlite:///{tmp_path / 's.db'}", url), "t.yaml"))) as client:
        assert set(post(client, range(300))) == {0}
        wait_until(lambda: depth(client) == 0, timeout=30)
    texts, counted = accounted(fake)
    assert (texts, counted) == (set(range(300)), 0)
    assert summaries(fake) == []


def test_a_summary_is_previewed_and_overridden_like_any_message(tmp_path: Path) -> None:
    override = "{{ summary.total }} alarms, busiest host {{ summary.hosts[0][0] }}"
    data = storm_config(f"sqlite:///{tmp_path / 's.db'}", "http://127.0.0.1:9")
    data["web"] |= {"api_tokens": {"ci": "token-for-the-storm-preview"}}
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        auth = {"Authorization": "Bearer token-for-the-storm-preview"}
        shipped = client.get("/api/v1/preview?group=chenmin/3&sample=storm", headers=auth).json()
    body = shipped["message"]["body"]
    assert body.startswith("【告警风暴】240 条告警") and "等级: 高 80, 中 80, 低 80" in body
    assert "https://bridge.example/ui/alarms?storm=sample" in body and shipped["errors"] == []
    settings = parse(data, "t.yaml")
    overridden = replace(settings.groups[0], templates={"native/summary.j2": override})
    message, errors = settings.renderer.preview(sample_alarm("storm", overridden, settings.delivery.storm),
                                                overridden, Channel.DINGTALK)  # fmt: skip
    assert message is not None and errors == []
    assert message.body == "240 alarms, busiest host pay-api-00"


def test_acknowledging_a_storm_from_its_summary_stops_its_summaries_and_the_group_hears_of_it(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    data = storm_config(f"sqlite:///{tmp_path / 's.db'}", url)
    data["delivery"]["storm"] = STORM | {"quiet": "60s"}  # the storm lasts while the test runs
    data["web"]["actions"] = {"key": "storm-action-key-0123456789"}
    data["store"]["timeout"] = "10s"  # each alarm gets its action-link subject kept: 3000 more writes in an instant
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        assert set(post(client, range(3000))) == {0}
        wait_until(lambda: summaries(fake), timeout=60)
        (link,) = re.findall(
            r"^认领 / ack: https://bridge\.example(/ui/act/ack\.\S+)$", summaries(fake)[0], re.MULTILINE
        )
        assert "静默" not in summaries(fake)[0]  # a storm is acknowledged, not muted
        page = client.get(link)
        done = client.post(link, data={"csrf": re.findall(r'name="csrf" value="([^"]+)"', page.text)[0]})
        assert done.status_code == 200 and "sends no more summaries" in done.text
        wait_until(lambda: any(m.content.startswith("已认领: ") for m in fake.robot_messages), timeout=30)

        assert set(post(client, range(3000, 3500))) == {0}  # more of the storm, after the acknowledgement
        quiet = "not sent: the storm was acknowledged by chat link"
        wait_until(lambda: sum(quiet in j.detail for j in summarized_jobs(client)) >= 500, timeout=60)
    (notice,) = [t for t in summaries(fake) if t.startswith("已认领: ")]
    assert notice.startswith("已认领: 【告警风暴】storm ") and "@" not in notice  # it tells, and pages nobody
    found = [t for t in summaries(fake) if t != notice]
    assert sum(summarized(t) for t in found) <= 3000  # none of the later 500 reached the group
    assert not any("storm over" in t for t in found)


def test_a_notice_held_back_by_the_rate_limit_in_a_storm_is_still_sent_not_counted(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    data = storm_config(f"sqlite:///{tmp_path / 's.db'}", url)
    data["delivery"]["storm"] = STORM | {"quiet": "60s"}  # the storm lasts while the test runs
    notice = Alarm.from_fields(seed_alarm(alert_level="低", alert_business="已认领: 【高】db1 by alice"))
    notice = replace(notice, extra={"notice": notice.alert_business}, identity="notice:held-back")
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        assert set(post(client, range(3000))) == {0}  # the first digests take every slot of the window
        assert client.portal is not None
        assert client.portal.call(gateway_of(client).accept, notice, 0.0).code == 0  # its first attempt waits
        wait_until(lambda: summaries(fake) and depth(client) == 0, timeout=60)  # the storm's turn took its alarms
    assert [m.content for m in fake.robot_messages].count(notice.alert_business) == 1
    assert not any(notice.alert_business in t for t in summaries(fake))  # not counted in a summary either
