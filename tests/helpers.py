"""Shared test helpers: settings, signed alarms, free ports, peer binaries and gateway subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bench.harness import free_port as free_port  # re-exported: the tests' one way to these two
from bench.harness import wait_for_port as wait_for_port
from bridge import config, config_file
from bridge.ingest.native import sign
from bridge.schema import ConfigError
from bridge.web.samples import SAMPLES

SECRET = "YYLmfY6IRdjZMQ1"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Every Redis key a test run writes starts with this (tests/conftest.py deletes them when the run ends).
RUN_PREFIX = f"test:{uuid.uuid4().hex[:12]}:"
DOCUMENTED_CODES = {0, 1000, 1001, 1002, 1004, 1010, 2000, 2002, 2003, 2009, 3000, 3001}


def key_prefix() -> str:
    """A fresh Redis key prefix within this run's."""
    return f"{RUN_PREFIX}{uuid.uuid4().hex}:"


def seed_alarm(**changes: str) -> dict[str, str]:
    """The seed's example alarm, addressed to the seed's example group chenmin/3."""
    return {"id": "chenmin", "level": "3", **SAMPLES["seed"], **changes}


def signed(fields: dict[str, str], secret: str = SECRET) -> dict[str, str]:
    return {**fields, "sign": sign(fields, secret)}


def config_data(store_url: str, **top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "store": {"url": store_url, "timeout": "1s", "prefix": key_prefix()},
        "native": {
            "departments": {dep: {"secret": SECRET} for dep in ("du-srv", "du-op", "du-fe", "du-da")},
            "environments": ["prod", "pre", "dev"],
        },
        "dedup_window": "5m",
        "delivery": {"dry_run": True},
        "groups": [
            {
                "id": "chenmin",
                "level": "3",
                "name": "seed example",
                "members": [{"name": "陈敏"}],
                "channels": [
                    {"type": "dingtalk-robot", "webhook": "https://oapi.dingtalk.com/robot/send?access_token=x"}
                ],
            }
        ],
        "templates": str(TEMPLATES),
    }
    data.update(top)
    return data


def make_settings(store_url: str, **top: Any) -> config.Settings:
    return config_file.parse(config_data(store_url, **top), "test.yaml")


def config_error(data: Any, file: Path = Path("site.yaml")) -> str:
    """What the config file's reader refuses ``data`` with."""
    with pytest.raises(ConfigError) as info:
        config_file.parse(data, str(file))
    return str(info.value)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def require_binary(name: str) -> str:
    """The path of a peer binary; without it a test skips on a laptop and fails under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/test-services installs the test peers)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def start_gateway(config_path: Path, port: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    """`alarm-bridge serve` in a subprocess (on a free port unless given), once it listens; the caller ends it. Its
    log is beside the config."""
    port = port or free_port()
    command = [sys.executable, "-m", "bridge", "serve", "--config", str(config_path), "--port", str(port)]
    log = config_path.with_suffix(f".{port}.log")
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        raise
    return process, f"http://127.0.0.1:{port}"


@contextmanager
def gateway_process(config_path: Path, port: int = 0) -> Iterator[str]:
    """`alarm-bridge serve` in a subprocess; yields its base URL."""
    process, url = start_gateway(config_path, port)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def post(url: str, body: bytes | str) -> requests.Response:
    return requests.post(url, data=body, timeout=10)


def samples(client: TestClient | None = None, text: str = "") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = text or (client.get("/metrics").text if client else "")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)
