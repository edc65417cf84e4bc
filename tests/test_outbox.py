"""Durable delivery in one process: retries until the upstream recovers, dead letters, and storm digests."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config_file import parse
from bridge.gateway import Gateway
from bridge.model import Alarm
from bridge.store import Admission, Job, State
from tests.channels._shared import fail_after, numbered
from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake
from tests.helpers import REDIS_URL, TEMPLATES, config_data, seed_alarm, signed, write_config

TOKEN = "outbox-robot-token"
MARKER = re.compile(r"alarm-(\d{5})")


def robot_config(store_url: str, robot_url: str, **delivery: Any) -> dict[str, Any]:
    group = {
        "id": "chenmin",
        "level": "3",
        "channels": [{"type": "dingtalk-robot", "webhook": f"{robot_url}/robot/send?access_token={TOKEN}"}],
    }
    settings = {"timeout": "300ms", "deadline": "1s", "backoff": "100ms", "backoff_max": "400ms", "poll": "50ms",
                # failed attempts count against the limit too; these tests make many, and few messages arrive
                "rate_limits": {"dingtalk-robot": {"limit": 500, "window": "3s"}}}  # fmt: skip
    return config_data(store_url, groups=[group], delivery=settings | delivery)


def alarm(n: int) -> dict[str, str]:
    return signed(seed_alarm(exception_spec=f"alarm-{n:05d}"))


def markers(fake: DingTalkFake) -> Counter[int]:
    return Counter(int(m) for message in fake.robot_messages for m in MARKER.findall(message.content))


@pytest.fixture
def robot() -> Iterator[tuple[DingTalkFake, str]]:
    fake = DingTalkFake(robot_rate=20, robot_window=3.0)
    fake.add_robot(TOKEN)
    with FakeServer(fake.app()) as server:
        yield fake, server.url


def wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_upstream_failing_with_5xx_then_recovering_gets_each_alarm_once(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    fake.fail_next(4, 502)
    with TestClient(create_app(parse(robot_config(f"sqlite:///{tmp_path / 's.db'}", url), "t.yaml"))) as client:
        reply = client.post("/alarm_v2", content=json.dumps(alarm(1))).json()
        assert reply["code"] == 4002
        assert "HTTP 502 (retrying)" in reply["msg"]
        fake.robot_messages.wait_for(1)
        time.sleep(0.5)
    assert markers(fake) == {1: 1}


def test_alarms_arriving_while_a_message_is_in_flight_share_the_next_one(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    fake.hang(1.5)  # every message takes a second and a half to be answered
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url, timeout="3s", deadline="3s")
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]

        async def accept(n: int) -> int:
            fields = {k: v for k, v in alarm(n).items() if k != "sign"}
            return int((await gateway.accept(Alarm.from_fields(fields))).code)

        async def quiet_then_busy() -> list[int]:
            tasks = [asyncio.create_task(accept(1))]
            await asyncio.sleep(0.2)  # alarm 1's message is in flight from now until about 1.5 s
            for n in (2, 3, 4):  # one by one, each its own store write
                await asyncio.sleep(0.1)
                tasks.append(asyncio.create_task(accept(n)))
            return list(await asyncio.gather(*tasks))

        assert client.portal is not None
        assert client.portal.call(quiet_then_busy) == [0, 0, 0, 0]
    sent = [sorted(MARKER.findall(m.content)) for m in fake.robot_messages]
    # Alarm 1 alone and at once (nothing else was waiting); 2-4 in one digest after it, not three messages.
    assert sent == [["00001"], ["00002", "00003", "00004"]]


LONG = "disk full " * 4500  # 45 KB: a robot message of three parts
ONCE_EACH = ["(1/3)", "(2/3)", "(3/3)"]


def post_long(client: TestClient) -> dict[str, Any]:
    """A signed alarm too long for one robot message, posted: its reply."""
    reply: dict[str, Any] = client.post("/alarm_v2", content=json.dumps(signed(seed_alarm(exception_spec=LONG)))).json()
    return reply


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_split_message_whose_second_part_failed_is_retried_from_that_part(
    robot: tuple[DingTalkFake, str], tmp_path: Path, store: str
) -> None:
    fake, url = robot
    fail_after(fake, 1, "robot")  # part 1 arrives, part 2 meets a 502
    store_url = f"sqlite:///{tmp_path / 's.db'}" if store == "sqlite" else REDIS_URL
    with TestClient(create_app(parse(robot_config(store_url, url), "t.yaml"))) as client:
        reply = post_long(client)
        assert reply["code"] == 4002 and "part 2/3: HTTP 502 (retrying)" in reply["msg"], reply
        fake.robot_messages.wait_for(3)
        time.sleep(0.5)
    assert numbered(m.content for m in fake.robot_messages) == ONCE_EACH


def test_a_split_message_slower_than_its_deadline_is_sent_in_attempts_each_part_once(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    fake.hang(0.6)  # a part takes 0.6 s: within the 1 s call timeout, but no two fit in the 1.5 s deadline
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url, timeout="1s", deadline="1.5s")
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        reply = post_long(client)
        assert "part 2/3: left for a retry" in reply["msg"], reply
        fake.robot_messages.wait_for(3)
        time.sleep(1.0)
    assert numbered(m.content for m in fake.robot_messages) == ONCE_EACH


def test_a_split_message_dead_for_a_broken_template_resumes_once_it_is_fixed(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url)
    shutil.copytree(TEMPLATES, tmp_path / "broken")
    (tmp_path / "broken" / "native" / "text.j2").write_text("{{ alarm.no_such_field }}", encoding="utf-8")
    fake.echo = lambda _: fake.fail_next(10_000, 502)  # part 1 arrives; the robot then fails until told otherwise
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        assert "part 2/3: HTTP 502 (retrying)" in post_long(client)["msg"]
    fake.echo = None
    broken = {**data, "templates": str(tmp_path / "broken")}
    with TestClient(create_app(parse(broken, "t.yaml"))):  # the retry cannot be made: the job is dead
        wait_until(lambda: "dead" in run_cli(write_config(tmp_path / "broken.yaml", broken), "--failed").stdout)
    path = write_config(tmp_path / "c.yaml", data)
    (line,) = run_cli(path, "--failed").stdout.splitlines()
    fake.fail_next(0)
    assert run_cli(path, "retry", line.split()[0]).returncode == 0  # the template fixed, the dead job retried
    with TestClient(create_app(parse(data, str(path)))):
        fake.robot_messages.wait_for(3)
        time.sleep(0.5)
    assert numbered(m.content for m in fake.robot_messages) == ONCE_EACH


def test_a_backlog_longer_to_send_than_its_lease_is_handed_back_not_sent_twice(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url, deadline="1s", timeout="900ms", lease="4s")
    big = "磁盘" * 2500  # 15 KB: one alarm a message
    fake.fail_next(10_000, 500)
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        for n in range(12):
            reply = client.post(
                "/alarm_v2", content=json.dumps(signed(seed_alarm(exception_spec=f"alarm-{n:05d} {big}")))
            )
            assert reply.json()["code"] == 4002  # accepted, to be retried
    time.sleep(1.0)  # every retry is due when the gateway starts again: its worker leases them all at once
    fake.fail_next(0)
    fake.hang(0.5)  # the robot is back, slowly: the twelve messages take 6 s, the lease is 4 s
    with TestClient(create_app(parse(data, "t.yaml"))):
        wait_until(lambda: len(markers(fake)) == 12, timeout=60)
        time.sleep(1.5)
    assert markers(fake) == dict.fromkeys(range(12), 1)


def test_a_job_that_cannot_be_read_is_dead_and_holds_back_none_leased_with_it(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url)
    fake.fail_next(10_000, 500)
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        assert {client.post("/alarm_v2", content=json.dumps(alarm(n))).json()["code"] for n in range(5)} == {4002}
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        assert client.portal is not None
        pending = client.portal.call(store.jobs, State.PENDING, 10)
        damaged = json.loads(pending[0].payload) | {"target": 5}  # the group has one channel
        bad = Job(id="damaged:5", payload=json.dumps(damaged), created=time.time())
        client.portal.call(store.admit, [Admission([bad])], 0.0)
    time.sleep(1.0)  # all due together: one lease holds the damaged job and the good ones
    fake.fail_next(0)
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        wait_until(lambda: len(markers(fake)) == 5, timeout=30)
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        assert client.portal is not None
        (dead,) = client.portal.call(store.jobs, State.DEAD, 10)
    assert markers(fake) == dict.fromkeys(range(5), 1)
    assert dead.id == "damaged:5" and "cannot be read: IndexError" in dead.detail


def test_the_worker_goes_on_after_a_lease_that_failed_unexpectedly(
    robot: tuple[DingTalkFake, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = robot
    fake.fail_next(1, 500)  # the first attempt fails: the alarm is left to the worker's retry
    with TestClient(create_app(parse(robot_config(f"sqlite:///{tmp_path / 's.db'}", url), "t.yaml"))) as client:
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        lease, calls = store.lease, []

        async def damaged_once(limit: int, lease_for: float) -> list[Job]:
            calls.append(limit)
            if len(calls) == 1:
                raise ValueError("a record that cannot be read")
            return list(await lease(limit, lease_for))

        monkeypatch.setattr(store, "lease", lambda limit, lease: damaged_once(limit, lease))
        assert client.post("/alarm_v2", content=json.dumps(alarm(1))).json()["code"] == 4002
        wait_until(lambda: markers(fake) == {1: 1}, timeout=10)
    assert len(calls) > 1


def test_a_delivery_recorded_while_shutting_down_stays_recorded(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    """Stopping cancels a delivery whose outcome is on its way into a slow store: it is recorded, not handed back."""
    fake, url = robot
    path = tmp_path / "s.db"
    data = robot_config(f"sqlite:///{path}", url, shutdown="100ms", reply_wait="0s", timeout="1s", deadline="2s")
    fake.hang(0.3)
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        assert client.post("/alarm_v2", content=json.dumps(alarm(1))).json() == {"code": 0}
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # the store is busy when the delivery's outcome comes
        threading.Timer(1.5, other.close).start()
        fake.robot_messages.wait_for(1)
        time.sleep(0.2)  # the outcome waits for the store: now the gateway stops
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        assert client.portal is not None
        (done,) = client.portal.call(store.jobs, None, 10)
        time.sleep(0.5)
    assert done.state is State.DONE and markers(fake) == {1: 1}


def test_alarms_waiting_behind_a_delivery_are_handed_back_at_shutdown(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot  # deadline 4 s: the lease is 18 s
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url, shutdown="100ms", reply_wait="0s", timeout="3s",
                        deadline="4s")  # fmt: skip
    fake.hang(2.0)
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        for n in range(6):  # the first in flight, the others waiting for the next message to the robot
            assert client.post("/alarm_v2", content=json.dumps(alarm(n))).json() == {"code": 0}
    fake.unhang()
    with TestClient(create_app(parse(data, "t.yaml"))):
        wait_until(lambda: set(markers(fake)) == set(range(6)), timeout=8)  # well before their lease ends
        time.sleep(0.3)
    assert all(markers(fake)[n] == 1 for n in range(1, 6))


def test_callers_are_answered_when_their_wait_runs_out_and_delivery_goes_on(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    fake.hang(1.5)  # the message is answered long after the callers' wait
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url, timeout="3s", deadline="3s", reply_wait="200ms")
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]

        async def accept(n: int, wait: float | None) -> tuple[int, str]:
            fields = {k: v for k, v in alarm(n).items() if k != "sign"}
            result = await gateway.accept(Alarm.from_fields(fields), wait)
            return int(result.code), result.detail

        async def together() -> list[tuple[int, str]]:  # one waits reply_wait, the other not at all
            return list(await asyncio.gather(accept(1, None), accept(2, 0)))

        assert client.portal is not None
        replies = client.portal.call(together)
        assert replies == [(0, "delivery continues for 1 of 1 channels")] * 2
        wait_until(lambda: markers(fake) == {1: 1, 2: 1})  # delivered all the same, once each


def test_timeouts_then_recovery_deliver_each_alarm_once(robot: tuple[DingTalkFake, str], tmp_path: Path) -> None:
    fake, url = robot
    fake.hang(0.6)  # longer than the 300ms call timeout; the upstream then refuses, so nothing half-arrives
    fake.fail_next(10_000, 503)
    with TestClient(create_app(parse(robot_config(f"sqlite:///{tmp_path / 's.db'}", url), "t.yaml"))) as client:
        for n in range(5):
            reply = client.post("/alarm_v2", content=json.dumps(alarm(n))).json()
            assert reply["code"] == 4002, reply
        time.sleep(1.0)
        fake.unhang()
        time.sleep(0.7)  # the requests still hanging in the fake end with their 503
        fake.fail_next(0)
        wait_until(lambda: len(markers(fake)) == 5)
        time.sleep(0.5)
    assert markers(fake) == dict.fromkeys(range(5), 1)


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge", "deliveries", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_a_refused_delivery_is_dead_lettered_listed_and_can_be_retried(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url)
    data["groups"][0]["channels"][0]["webhook"] += "-unknown"
    path = write_config(tmp_path / "c.yaml", data)
    with TestClient(create_app(parse(data, str(path)))) as client:
        reply = client.post("/alarm_v2", content=json.dumps(alarm(7))).json()
        assert reply["code"] == 4002
        assert "errcode 300001" in reply["msg"] and "retrying" not in reply["msg"]
    listed = run_cli(path, "--failed")
    assert listed.returncode == 0
    (line,) = listed.stdout.splitlines()
    assert "dead" in line and "chenmin/3 dingtalk-robot" in line and "errcode 300001" in line
    job_id = line.split()[0]
    fake.add_robot(TOKEN + "-unknown")
    assert run_cli(path, "retry", job_id).returncode == 0
    with TestClient(create_app(parse(data, str(path)))):
        fake.robot_messages.wait_for(1)
    assert markers(fake) == {7: 1}
    assert run_cli(path, "--failed").stdout == ""
    assert run_cli(path, "retry", "no-such-id").returncode == 1
    again = run_cli(path, "retry", job_id)  # delivered by now: sending it again would be a duplicate
    assert again.returncode == 1 and "no dead delivery" in again.stderr
    with TestClient(create_app(parse(data, str(path)))):
        time.sleep(0.5)
    assert markers(fake) == {7: 1}


def test_a_refused_digest_is_one_dead_letter_line_in_the_log(
    robot: tuple[DingTalkFake, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = robot
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url)
    data["groups"][0]["channels"][0]["webhook"] += "-unknown"
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]

        async def together() -> list[int]:  # written together, so delivered (and refused) in one digest
            fields = [{k: v for k, v in alarm(n).items() if k != "sign"} for n in range(4)]
            return [int(r.code) for r in await asyncio.gather(*(gateway.accept(Alarm.from_fields(f)) for f in fields))]

        assert client.portal is not None
        assert client.portal.call(together) == [4002] * 4
    (line,) = [r.getMessage() for r in caplog.records if "dead" in r.getMessage()]
    assert line.startswith("outbox: 4 job(s) for chenmin/3 dingtalk-robot …nown dead") and "errcode 300001" in line


def test_retryable_failures_are_dead_lettered_after_the_maximum_age(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    fake.fail_next(10_000, 500)
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url, max_age="600ms")
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        assert client.post("/alarm_v2", content=json.dumps(alarm(1))).json()["code"] == 4002
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        assert client.portal is not None
        portal = client.portal
        wait_until(lambda: len(portal.call(store.jobs, State.DEAD, 10)) == 1, timeout=10)
        (dead,) = portal.call(store.jobs, State.DEAD, 10)
        assert dead.attempts >= 3 and dead.detail == "HTTP 500"
    assert len(fake.robot_messages) == 0


def test_a_held_target_does_not_ask_the_store_again_before_a_slot_can_be_free(
    robot: tuple[DingTalkFake, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = robot
    limits = {"dingtalk-robot": {"limit": 2, "window": "60s"}}
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url, rate_limits=limits)
    asked: list[str] = []
    settled: list[list[Job]] = []
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        acquire, settle = store.acquire, store.settle

        async def counted(key: str, limit: int, window: float) -> float:
            asked.append(key)
            return float(await acquire(key, limit, window))

        async def recorded(jobs: list[Job]) -> None:
            settled.append(jobs)
            await settle(jobs)

        monkeypatch.setattr(store, "acquire", counted)
        monkeypatch.setattr(store, "settle", recorded)
        codes = [client.post("/alarm_v2", content=json.dumps(alarm(n))).json()["code"] for n in range(6)]
        assert client.portal is not None
        held = client.portal.call(store.jobs, State.PENDING, 10)
    assert codes == [0] * 6  # accepted; the held ones are delivered when the robot's minute allows
    assert markers(fake) == {0: 1, 1: 1} and len(held) == 4
    assert len(asked) == 3  # two slots taken, one refused: the next three alarms were held without asking
    # Nor are their jobs written twice: due when a slot may be free from the start, not put back after an attempt.
    assert [[j.state for j in jobs] for jobs in settled] == [[State.DONE], [State.DONE], [State.PENDING]]
    assert min(j.due for j in held) > time.time() + 50


def test_every_window_of_a_limit_holds_messages_back(robot: tuple[DingTalkFake, str], tmp_path: Path) -> None:
    fake, url = robot
    limits = {"dingtalk-robot": [{"limit": 500, "window": "3s"}, {"limit": 2, "window": "1h"}]}  # an hourly cap
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url, rate_limits=limits)
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        codes = [client.post("/alarm_v2", content=json.dumps(alarm(n))).json()["code"] for n in range(5)]
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        assert client.portal is not None
        held = client.portal.call(store.jobs, State.PENDING, 10)
    assert codes == [0] * 5
    assert markers(fake) == {0: 1, 1: 1} and len(held) == 3
    assert min(job.due for job in held) > time.time() + 3000  # when the hour's first slot frees, not the 3 s one


def test_a_robot_blocked_for_another_senders_messages_is_left_alone_until_the_block_ends(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    other = json.dumps({"msgtype": "text", "text": {"content": "another sender"}}).encode()
    for _ in range(21):  # another sender shares the robot and goes over its limit: blocked for ten minutes
        send = urllib.request.Request(
            f"{url}/robot/send?access_token={TOKEN}", other, {"Content-Type": "application/json"}
        )
        urllib.request.urlopen(send, timeout=5).read()
    assert fake.too_fast == 1
    with TestClient(create_app(parse(robot_config(f"sqlite:///{tmp_path / 's.db'}", url), "t.yaml"))) as client:
        first = client.post("/alarm_v2", content=json.dumps(alarm(1))).json()
        later = [client.post("/alarm_v2", content=json.dumps(alarm(n))).json()["code"] for n in (2, 3)]
        time.sleep(2.0)  # a backoff of 100-400 ms would have retried alarm 1 five times or more by now
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        assert client.portal is not None
        held = client.portal.call(store.jobs, State.PENDING, 10)
    assert first["code"] == 4002 and "errcode 130101" in first["msg"] and later == [0, 0]
    assert fake.too_fast == 2  # the gateway's one message into the block, then none
    assert len(held) == 3 and min(job.due for job in held) > time.time() + 500  # due when the block ends
    assert [job.attempts for job in sorted(held, key=lambda j: j.created)] == [1, 0, 0]


def test_a_storm_is_shaped_to_the_robot_limit_and_merged_into_digests(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot  # the fake robot allows 20 messages in any 3 s, then blocks for 10 minutes
    count = 10_000
    limits = {"dingtalk-robot": {"limit": 20, "window": "3.3s"}}
    data = robot_config(f"sqlite:///{tmp_path / 's.db'}", url, rate_limits=limits, deadline="5s", timeout="5s")
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]

        async def storm() -> list[int]:
            gate = asyncio.Semaphore(200)

            async def one(n: int) -> int:
                async with gate:
                    fields = {k: v for k, v in alarm(n).items() if k != "sign"}
                    return int((await gateway.accept(Alarm.from_fields(fields))).code)

            return await asyncio.gather(*(one(n) for n in range(count)))

        assert client.portal is not None
        codes = client.portal.call(storm)  # how fast is B3's to measure (bench/), not a test's
        assert set(codes) <= {0, 4002}  # 4002: a first attempt that failed (a loaded machine) and is retried
        wait_until(lambda: sum(markers(fake).values()) >= count, timeout=240)
        time.sleep(0.5)
    seen = markers(fake)
    assert fake.too_fast == 0
    assert seen == dict.fromkeys(range(count), 1), "every alarm in exactly one message"
    arrivals = [m.at for m in fake.robot_messages]
    assert max(sum(1 for t in arrivals if a <= t < a + 3.0) for a in arrivals) <= 20
    assert len(arrivals) < count / 20  # merged, not one message per alarm
    assert all(len(json.dumps(m.body, ensure_ascii=False).encode()) <= 20_000 for m in fake.robot_messages)
