"""A Redis failover under steady traffic: two gateway processes on a Sentinel set (a primary, a replica, three
Sentinels, all real), the primary killed with SIGKILL while alarms keep coming."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake
from tests.helpers import config_data, gateway_process, seed_alarm, signed, write_config
from tests.store.sentinel import sentinel_set

ROBOT = "failover-robot"
BUSINESS = re.compile(r"failover-[ab]-\d+")


@dataclass
class Traffic:
    """Every alarm sent, in order, with its reply code, and whether the primary had been killed by then."""

    sent: list[tuple[str, int, bool]] = field(default_factory=list)
    killed: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def send(self, gateway: str, name: str) -> None:
        n = 0
        while not self.stop.is_set():
            business, killed = f"failover-{name}-{n}", self.killed.is_set()
            reply = requests.post(f"{gateway}/alarm_v2", json=signed(seed_alarm(alert_business=business)), timeout=30)
            assert reply.status_code == 200, reply.text  # no 5xx; a hang fails on the timeout
            self.sent.append((business, reply.json()["code"], killed))
            n += 1

    def answered(self, code: int, after_kill: bool | None = None) -> list[str]:
        return [b for b, c, k in self.sent if c == code and after_kill in (None, k)]

    def wait_for(self, count: int, after_kill: bool, timeout: float = 60.0) -> None:
        """Until ``count`` alarms from each gateway answered 0 (after the kill, or before it)."""
        deadline = time.monotonic() + timeout
        while min(sum(b.startswith(f"failover-{n}-") for b in self.answered(0, after_kill)) for n in "ab") < count:
            assert time.monotonic() < deadline, Counter(c for _, c, _ in self.sent)
            time.sleep(0.1)


def test_a_primary_killed_under_traffic_loses_no_accepted_alarm_and_delivers_none_twice(tmp_path: Path) -> None:
    robot = DingTalkFake(robot_rate=100_000)
    robot.add_robot(ROBOT)
    traffic = Traffic()
    with sentinel_set(tmp_path / "redis") as sentinels, FakeServer(robot.app()) as server:
        group = {
            "id": "chenmin",
            "level": "3",
            "channels": [{"type": "dingtalk-robot", "webhook": f"{server.url}/robot/send?access_token={ROBOT}"}],
        }
        data = config_data(
            sentinels.url,
            groups=[group],
            delivery={"dry_run": False, "timeout": "1s", "deadline": "2s", "lease": "6s", "backoff": "200ms",
                      "backoff_max": "1s", "poll": "100ms", "reply_wait": "1s",
                      "rate_limits": {"dingtalk-robot": {"limit": 100_000, "window": "60s"}}},
        )  # fmt: skip
        data["store"] |= {"timeout": "1s", "min_replicas": 1}
        config = write_config(tmp_path / "config.yaml", data)
        with gateway_process(config) as one, gateway_process(config) as two, ThreadPoolExecutor(2) as pool:
            senders = [pool.submit(traffic.send, one, "a"), pool.submit(traffic.send, two, "b")]
            try:
                traffic.wait_for(10, after_kill=False)
                old = sentinels.primary_port()
                traffic.killed.set()
                sentinels.kill(old)
                deadline = time.monotonic() + 30
                while sentinels.primary_port() == old:  # the Sentinels elect the replica
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                sentinels.restart(old)  # and make the old primary its replica, so that writes are acknowledged
                traffic.wait_for(10, after_kill=True)  # both gateways recovered by themselves
            finally:
                traffic.stop.set()
                for sender in senders:
                    sender.result()
            assert {c for _, c, _ in traffic.sent} <= {0, 3000}
            accepted = traffic.answered(0)
            deadline = time.monotonic() + 60
            while not set(accepted) <= (delivered := Counter(_businesses(robot))).keys():
                assert time.monotonic() < deadline, sorted(set(accepted) - delivered.keys())
                time.sleep(0.2)
            time.sleep(7)  # past a lease: a delivery that was not recorded would go out again by now
            delivered = Counter(_businesses(robot))
            assert [b for b in accepted if delivered[b] != 1] == []  # every alarm answered 0, exactly once
            assert max(delivered.values()) == 1  # and those answered 3000 (some are delivered) at most once
            for business in accepted:
                gateway = one if business.startswith("failover-a-") else two
                again = requests.post(
                    f"{gateway}/alarm_v2", json=signed(seed_alarm(alert_business=business)), timeout=30
                )
                assert again.json()["code"] == 1010, business  # no dedup claim was lost
            assert traffic.answered(3000, after_kill=True)  # the failover was felt: the test saw one


def _businesses(robot: DingTalkFake) -> list[str]:
    return [b for m in robot.robot_messages for b in BUSINESS.findall(m.content)]
