"""Durable delivery across processes: a killed gateway, a replica taking over, two replicas, a graceful stop."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake
from tests.helpers import REDIS_URL, start_gateway, write_config
from tests.store.test_contract import redis_prefix
from tests.test_outbox import TOKEN, alarm, markers, robot_config, wait_until

COUNT = 1000


@pytest.fixture
def robot() -> Iterator[tuple[DingTalkFake, str]]:
    fake = DingTalkFake(robot_rate=20, robot_window=2.0)  # the real limit, on a shorter clock
    fake.add_robot(TOKEN)
    with FakeServer(fake.app()) as server:
        yield fake, server.url


def config(tmp_path: Path, store_url: str, robot_url: str, **delivery: str) -> Path:
    settings = {"lease": "3s", "rate_limits": {"dingtalk-robot": {"limit": 20, "window": "2.2s"}}, **delivery}
    data = robot_config(store_url, robot_url, **settings)
    if store_url.startswith("redis"):
        data["store"]["prefix"] = redis_prefix()
    return write_config(tmp_path / "config.yaml", data)


def post_all(url: str, numbers: range) -> list[int]:
    with requests.Session() as session:
        return [session.post(url + "/alarm_v2", data=json.dumps(alarm(n)), timeout=10).json()["code"] for n in numbers]


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> int:
    """Signal the gateway and wait; after a graceful stop uvicorn exits by the same signal it was sent."""
    process.send_signal(sig)
    code = process.wait(timeout=30)
    return 0 if code == -signal.SIGTERM else code


def delivered_exactly_once(fake: DingTalkFake, count: int, capsys: pytest.CaptureFixture[str]) -> None:
    wait_until(lambda: len(markers(fake)) >= count, timeout=120)
    time.sleep(1.0)  # anything delivered twice would arrive by now
    seen = markers(fake)
    duplicates = sum(n - 1 for n in seen.values())
    messages = len(fake.robot_messages)
    with capsys.disabled():  # the figure is reported on every run, not only when the test fails
        print(f"\n  alarms delivered: {len(seen)}, duplicate deliveries: {duplicates}, upstream messages: {messages}")
    assert seen == dict.fromkeys(range(count), 1)
    assert fake.too_fast == 0


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_alarms_accepted_by_a_killed_gateway_are_all_delivered_once(
    robot: tuple[DingTalkFake, str], tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = robot
    store_url = f"sqlite:///{tmp_path / 's.db'}" if store == "sqlite" else REDIS_URL
    path = config(tmp_path, store_url, url)
    fake.fail_next(1_000_000, 502)  # the robot is down while the alarms are accepted
    first, first_url = start_gateway(path)
    second = None
    try:
        if store == "redis":  # a second replica is already running and takes over
            second, _ = start_gateway(path)
        codes = post_all(first_url, range(COUNT))
        assert set(codes) <= {0, 4002}, set(codes)
        assert stop(first, signal.SIGKILL) == -signal.SIGKILL
        assert len(fake.robot_messages) == 0
        fake.fail_next(0)
        if second is None:  # the embedded store: the same gateway starts again
            second, _ = start_gateway(path)
        delivered_exactly_once(fake, COUNT, capsys)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_two_replicas_deliver_each_alarm_once_per_channel(
    robot: tuple[DingTalkFake, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = robot
    path = config(tmp_path, REDIS_URL, url)
    (a, a_url), (b, b_url) = start_gateway(path), start_gateway(path)
    try:
        for n in range(100):  # each alarm to both replicas, alternating which gets it first
            first, second = (a_url, b_url) if n % 2 else (b_url, a_url)
            assert post_all(first, range(n, n + 1)) == [0]
            assert post_all(second, range(n, n + 1)) == [1010]
        for n in range(100, 200):  # different alarms, alternately
            assert post_all(a_url if n % 2 else b_url, range(n, n + 1)) == [0]
        delivered_exactly_once(fake, 200, capsys)
    finally:
        for process in (a, b):
            stop(process)


def test_sigterm_lets_in_flight_deliveries_finish_and_hands_back_the_rest(
    robot: tuple[DingTalkFake, str], tmp_path: Path
) -> None:
    fake, url = robot
    path = config(tmp_path, f"sqlite:///{tmp_path / 's.db'}", url, timeout="10s", deadline="10s", shutdown="5s",
                  reply_wait="100ms")  # fmt: skip
    fake.hang(1.0)  # in flight when SIGTERM comes, done well within the shutdown deadline
    process, gateway = start_gateway(path)
    assert post_all(gateway, range(3)) == [0, 0, 0]  # answered at the reply bound: delivery continues
    assert stop(process) == 0
    assert markers(fake) == dict.fromkeys(range(3), 1)

    fake.hang(3.0)  # now longer than the shutdown deadline: the stopping gateway hands the job back
    fake.fail_next(1, 503)  # and the upstream refuses the abandoned request when it wakes up
    path = config(tmp_path, f"sqlite:///{tmp_path / 's.db'}", url, timeout="10s", deadline="10s", shutdown="500ms",
                  reply_wait="100ms")  # fmt: skip
    process, gateway = start_gateway(path)
    assert post_all(gateway, range(3, 4)) == [0]
    assert stop(process) == 0
    fake.unhang()
    process, _ = start_gateway(path)
    try:
        wait_until(lambda: len(markers(fake)) == 4, timeout=30)
    finally:
        stop(process)
    assert markers(fake) == dict.fromkeys(range(4), 1)
