"""The gateway across processes and outages: atomic dedup on a shared Redis, and recovery of the store."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from bridge.codes import Code
from bridge.gateway import first_failure
from bridge.model import Outcome, Reason
from tests.helpers import (
    REDIS_URL,
    config_data,
    free_port,
    gateway_process,
    require_binary,
    seed_alarm,
    signed,
    wait_for_port,
    write_config,
)
from tests.store.test_contract import redis_prefix


def test_two_processes_on_one_redis_answer_one_0_and_one_1010(tmp_path: Path) -> None:
    data = config_data(REDIS_URL)
    data["store"]["prefix"] = redis_prefix()
    path = write_config(tmp_path / "config.yaml", data)
    with ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        urls = [stack.enter_context(gateway_process(path)) + "/alarm_v2" for _ in range(2)]
        for i in range(20):
            body = json.dumps(signed(seed_alarm(exception_spec=f"race {i}")))
            barrier = threading.Barrier(2)
            codes = pool.map(fire_together, urls, [body, body], [barrier, barrier])
            assert sorted(codes) == [0, 1010], f"round {i}"


def fire_together(url: str, body: str, barrier: threading.Barrier) -> int:
    barrier.wait()
    return int(requests.post(url, data=body, timeout=10).json()["code"])


@contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    binary = require_binary("redis-server")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_gateway_answers_3000_while_redis_is_down_and_recovers_by_itself(tmp_path: Path) -> None:
    require_binary("redis-server")
    port = free_port()
    path = write_config(tmp_path / "config.yaml", config_data(f"redis://127.0.0.1:{port}/0"))
    with gateway_process(path) as url:

        def code(note: str) -> int:
            return int(
                requests.post(url + "/alarm_v2", data=json.dumps(signed(seed_alarm(notes=note))), timeout=10).json()[
                    "code"
                ]
            )

        assert code("before") == 3000
        with redis_server(port):
            assert code("while up") == 0
        assert code("down again") == 3000
        with redis_server(port):
            deadline = time.monotonic() + 10
            while (result := code(f"back {time.monotonic()}")) == 3000 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert result == 0


def test_a_hung_redis_gets_3000_within_the_store_timeout_and_no_alarm_answered_3000_is_written_later(
    tmp_path: Path,
) -> None:
    require_binary("redis-server")
    port = free_port()
    path = write_config(tmp_path / "config.yaml", config_data(f"redis://127.0.0.1:{port}/0"))
    with redis_server(port) as redis, gateway_process(path) as url, ThreadPoolExecutor(16) as pool:

        def post(note: str, delay: float = 0.0) -> tuple[int, str, float]:
            time.sleep(delay)
            started = time.monotonic()
            reply = requests.post(url + "/alarm_v2", data=json.dumps(signed(seed_alarm(notes=note))), timeout=10).json()
            return int(reply["code"]), str(reply.get("msg", "")), time.monotonic() - started

        assert post("before")[0] == 0
        redis.send_signal(signal.SIGSTOP)
        try:  # alarms arriving all through the hang, some of them queued behind a write that never returns
            replies = list(pool.map(post, [f"hung {i}" for i in range(32)], [i * 0.05 for i in range(32)]))
        finally:
            redis.send_signal(signal.SIGCONT)
        assert {code for code, _, _ in replies} == {3000}
        assert max(took for _, _, took in replies) < 1.0 + 0.5  # store.timeout is 1 s; the rest is HTTP
        assert all("not accepted" in msg or "did not confirm" in msg for _, msg, _ in replies)
        # Redis runs the writes it was sent once it wakes, past their deadline: it writes none of them, so each
        # alarm answered 3000 is accepted anew when sent again (a written one would answer 1010, and be delivered).
        deadline = time.monotonic() + 10
        while post("after")[0] == 3000 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [post(f"hung {i}")[0] for i in range(32)] == [0] * 32


@pytest.mark.parametrize(
    ("failed", "code"),
    [
        ([], Code.OK),
        # A robot whose sign does not match, then an app whose token fails: the robot is the first DingTalk target.
        ([(Code.DINGTALK_SEND, "dingtalk-robot"), (Code.DINGTALK_TOKEN, "dingtalk-app corp")], Code.DINGTALK_SEND),
        ([(Code.DINGTALK_CHAT, "dingtalk-app corp"), (Code.DINGTALK_SEND, "dingtalk-robot")], Code.DINGTALK_CHAT),
        ([(Code.EMAIL_SEND, "email"), (Code.WECOM_SEND, "wecom-robot")], Code.WECOM_SEND),
        ([(Code.WECOM_SEND, "wecom-robot"), (Code.DINGTALK_SEND, "dingtalk-robot")], Code.DINGTALK_SEND),
        (
            [(Code.EMAIL_SEND, "email"), (Code.WECOM_TOKEN, "wecom-app a"), (Code.WECOM_SEND, "wecom-robot")],
            Code.WECOM_TOKEN,
        ),
        # Feishu comes after the seed's three channels.
        ([(Code.FEISHU_TOKEN, "feishu-app ops"), (Code.EMAIL_SEND, "email")], Code.EMAIL_SEND),
        ([(Code.FEISHU_SEND, "feishu-robot"), (Code.FEISHU_TOKEN, "feishu-app ops")], Code.FEISHU_SEND),
    ],
)
def test_the_reply_names_the_first_failed_channel_in_the_documented_order(
    failed: list[tuple[Code, str]], code: Code
) -> None:
    outcomes = [Outcome(target, False, int(c), True, Reason.NETWORK, "down") for c, target in failed]
    assert first_failure(outcomes) is code
