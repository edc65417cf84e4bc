"""What the gateway under test meets: signed alarms, its config, the receivers (bench.receivers) and Redis."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import redis
import yaml

from bench.constants import (
    DINGTALK_SECRET,
    DINGTALK_TOKEN,
    FEISHU_SECRET,
    FEISHU_TOKEN,
    GROUP_ID,
    GROUP_LEVEL,
    MAIL_TO,
    SECRET,
    WECOM_KEY,
)
from bench.harness import LOAD_CORE, ROOT, pinned, stop
from bridge.ingest.native import sign
from bridge.upstreams import RATE_LIMITS

TEMPLATES = ROOT / "templates"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNELS = ("dingtalk", "wecom", "email")  # the bench group's unless a benchmark names others


def rate_limits(limit: int, window: str) -> dict[str, Any]:
    """The gateway's rate limits of every kind of target set to one value."""
    return {kind: {"limit": limit, "window": window} for kind in RATE_LIMITS}


UNLIMITED = rate_limits(10**9, "1s")  # throughput, not shaping, is measured


def new_run() -> str:
    return uuid.uuid4().hex[:8]


def alarm_fields(run: str, index: int) -> dict[str, str]:
    """A unique alarm for the bench group; ``bench RUN-INDEX`` in alert_business lets the receivers find it."""
    return {
        "id": GROUP_ID,
        "level": GROUP_LEVEL,
        "dep": "du-srv",
        "env": "prod",
        "alert_level": "高",
        "alert_time": "2018-01-1 01:01:01",
        "alert_business": f"bench {run}-{index}",
        "alert_function": "陈敏测试alert_function",
        "alert_host": f"du-ftp-qd-{index % 50}",
        "exception_spec": "陈敏测试之异常说明: 第 33 分区，数据延时 231s",
    }


def bodies(count: int, run: str | None = None) -> list[bytes]:
    """Signed alarm bodies exactly as the seed's send_v2 builds them (json.dumps with its ASCII escapes)."""
    run = run or new_run()
    return [json.dumps({**f, "sign": sign(f, SECRET)}).encode() for f in (alarm_fields(run, i) for i in range(count))]


def write_bodies(path: Path, count: int) -> Path:
    """One signed alarm body per line of a new run, for wrk's script and the in-process stages."""
    path.write_bytes(b"\n".join(bodies(count)) + b"\n")
    return path


@dataclass(frozen=True)
class Upstreams:
    """Where the receivers listen: the fakes at https://127.0.0.1:PORT, SMTP, and their plain-HTTP control."""

    dingtalk: str
    wecom: str
    feishu: str
    smtp_port: int
    control: str


def bench_group(upstreams: Upstreams | None, channels: Sequence[str]) -> dict[str, Any]:
    """The bench group: a signed DingTalk robot, a WeCom robot, a signed Feishu bot and email, or those named."""
    ding = upstreams.dingtalk if upstreams else "https://oapi.dingtalk.com"
    wecom = upstreams.wecom if upstreams else "https://qyapi.weixin.qq.com"
    feishu = upstreams.feishu if upstreams else "https://open.feishu.cn"
    targets = {
        "dingtalk": {"type": "dingtalk-robot", "webhook": f"{ding}/robot/send?access_token={DINGTALK_TOKEN}",
                     "secret": DINGTALK_SECRET},
        "wecom": {"type": "wecom-robot", "webhook": f"{wecom}/cgi-bin/webhook/send?key={WECOM_KEY}"},
        "feishu": {"type": "feishu-robot", "webhook": f"{feishu}/open-apis/bot/v2/hook/{FEISHU_TOKEN}",
                   "secret": FEISHU_SECRET},
        "email": {"type": "email", "to": [MAIL_TO]},
    }  # fmt: skip
    chosen = [targets[c] for c in channels]
    return {"id": GROUP_ID, "level": GROUP_LEVEL, "name": "bench", "members": [{"name": "值班"}], "channels": chosen}


def gateway_config(
    folder: Path,
    store_url: str = "sqlite",
    *,
    upstreams: Upstreams | None = None,
    ca_file: Path | None = None,
    channels: Sequence[str] = CHANNELS,
    rate_limits: dict[str, Any] = UNLIMITED,
    store: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A config file for one gateway run: a fresh store (SQLite file or Redis prefix, ``store`` adding to that
    section) and the bench group; without ``upstreams`` delivery is a dry run."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"gateway-{uuid.uuid4().hex[:8]}"
    if store_url == "sqlite":
        store_url = f"sqlite:///{folder / name}.db"
    delivery: dict[str, Any] = {"dry_run": upstreams is None, "rate_limits": rate_limits}
    if ca_file is not None:
        delivery["ca_file"] = str(ca_file)
    data: dict[str, Any] = {
        "store": {"url": store_url, "prefix": f"bench:{name}:", **(store or {})},
        "native": {"departments": {"du-srv": {"secret": SECRET}}},
        "delivery": delivery,
        "templates": str(TEMPLATES),
        "groups": [bench_group(upstreams, channels)],
    }
    if upstreams is not None:
        data["email"] = {"host": "127.0.0.1", "port": upstreams.smtp_port, "security": "plain"}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data | (extra or {}), allow_unicode=True), encoding="utf-8")
    return path


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI (the gateway trusts it via ca_file)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@dataclass(frozen=True)
class Receivers:
    """bench.receivers running: their addresses (also as the JSON line they printed), the CA that signed them."""

    upstreams: Upstreams
    line: str
    ca: Path
    folder: Path

    def config(self, store_url: str = "sqlite", **settings: Any) -> Path:
        """A gateway config delivering to these receivers."""
        return gateway_config(self.folder, store_url, upstreams=self.upstreams, ca_file=self.ca, **settings)

    def stats(self, run: str, need: Sequence[str], indexes: bool = False) -> dict[str, Any]:
        """What the receivers have of one run; with ``indexes``, which alarms each one has."""
        query = f"run={run}&need={','.join(need)}&indexes={int(indexes)}"
        with urlopen(f"{self.upstreams.control}/stats?{query}", timeout=30) as response:  # noqa: S310
            data: dict[str, Any] = json.loads(response.read())
        return data

    def wait(self, run: str, need: Sequence[str], expected: int, timeout: float, idle: float = 0.0) -> dict[str, Any]:
        """Poll until ``expected`` alarms are complete, ``timeout`` seconds pass, or (``idle`` > 0) nothing new
        arrived for that long (a sender that is done)."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while True:
            data = self.stats(run, need)
            if data["complete"] >= expected or time.monotonic() > deadline:
                return data
            if data["complete"] != last_count:
                last_count, last_change = data["complete"], time.monotonic()
            elif idle and time.monotonic() - last_change > idle:
                return data
            time.sleep(0.05)


@contextlib.contextmanager
def receivers(folder: Path, log: Path, robot_rate: int = 10**9, robot_window: float = 60.0) -> Iterator[Receivers]:
    """bench.receivers in its own process on the load core, until the context ends."""
    cert, key = make_cert(folder)
    command = [sys.executable, "-m", "bench.receivers", "--cert", str(cert), "--key", str(key),
               "--robot-rate", str(robot_rate), "--robot-window", str(robot_window)]  # fmt: skip
    with log.open("wb") as err:
        process = subprocess.Popen(
            pinned(LOAD_CORE, command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT
        )
    assert process.stdout is not None and process.stdin is not None
    try:
        line = process.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"bench.receivers did not start: {log.read_text(errors='replace')[-800:]}")
        yield Receivers(Upstreams(**json.loads(line)), line.strip(), cert, folder)
    finally:
        process.stdin.close()  # the receivers end when their stdin does
        stop(process)


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete a run's keys from the shared Redis (a Sentinel set of a benchmark's own ends with it)."""
    if url != REDIS_URL:
        return
    with redis.Redis.from_url(url) as client:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
