"""A real Prometheus Alertmanager (Debian's prometheus-alertmanager 0.25) on loopback ports, as a test peer.

Not a fake: the binary itself, with a generated config (one webhook receiver), its own storage, and clustering off
or with the peers given (an HA pair on loopback).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.helpers import free_port, require_binary


def binary() -> str:
    """Debian installs it as prometheus-alertmanager, upstream as alertmanager; skip or fail (CI) without it."""
    return shutil.which("alertmanager") or require_binary("prometheus-alertmanager")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now(offset: float = 0.0) -> str:
    return rfc3339(datetime.now(UTC) + timedelta(seconds=offset))


@dataclass
class Alertmanager:
    url: str
    log: Path

    def post_alerts(self, *alerts: dict[str, Any]) -> None:
        """POST /api/v2/alerts: each alert is {labels, annotations?, startsAt?, endsAt?, generatorURL?}."""
        response = requests.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=10)
        assert response.status_code == 200, response.text

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def alertmanager(
    folder: Path,
    webhook_url: str,
    http_config: dict[str, Any],
    *,
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str = "1h",
    resolve_timeout: str = "5m",
    cluster_port: int = 0,
    peers: Sequence[int] = (),
    peer_timeout: str = "15s",
) -> Iterator[Alertmanager]:
    """Alertmanager routing every alert (grouped by alertname) to one webhook receiver; yields it once ready.

    With ``cluster_port`` it gossips there with the ``peers`` (their cluster ports) as an HA pair does: a peer
    sends a notification ``peer_timeout`` times its position after the first, unless the gossip says it went out.
    """
    command = binary()
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"resolve_timeout": resolve_timeout},
        "route": {
            "receiver": "bridge",  # no regex metacharacters: the payload carries it QuoteMeta'd
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "bridge",
                "webhook_configs": [{"url": webhook_url, "send_resolved": True, "http_config": http_config}],
            }
        ],
    }
    config_file = folder / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "alertmanager.log"
    arguments = [
        command,
        f"--config.file={config_file}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}",
        "--log.level=debug",
        *_cluster(cluster_port, peers, peer_timeout),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(arguments, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, process, log)
        yield Alertmanager(url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _cluster(port: int, peers: Sequence[int], peer_timeout: str) -> list[str]:
    if not port:
        return ["--cluster.listen-address="]  # no HA gossip: a single peer on loopback
    return [
        f"--cluster.listen-address=127.0.0.1:{port}",
        f"--cluster.advertise-address=127.0.0.1:{port}",
        f"--cluster.peer-timeout={peer_timeout}",
        *(f"--cluster.peer=127.0.0.1:{p}" for p in peers),
    ]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"alertmanager exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"alertmanager not ready within {timeout:g}s:\n{log.read_text(errors='replace')}")
