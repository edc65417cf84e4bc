"""The worst overrides, rendered by a real gateway process while its health probe is timed and its memory read."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import requests

from tests.helpers import REDIS_URL, start_gateway, write_config
from tests.web._web import AUTH, web_config

# Each of these held the event loop for seconds, or took hundreds of MB, before the bounds held within a call.
WORST = (
    "{{ lipsum(50000)|length }}",
    "{{ ('a ' * 400000)|wordwrap(1) }}",
    "{{ ('%999999d' * 300) % ((1,) * 300) }}",
    "{{ ('{0:>999999}' * 300).format(1) }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s=[1]) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "{{ ('a.com ' * 100000)|urlize }}",
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _groups() -> list[dict[str, object]]:
    return [
        {"id": "worst", "level": str(i), "name": "worst", "templates": {"native/title.j2": source}}
        for i, source in enumerate(WORST)
    ]


def test_the_health_probe_answers_soon_while_the_worst_overrides_render(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bridge.yaml", web_config(REDIS_URL, groups=_groups()))
    process, url = start_gateway(path)
    try:
        slowest, done, failed = 0.0, threading.Event(), list[str]()
        requests.get(f"{url}/api/v1/preview?group=worst/0", headers=AUTH, timeout=30)  # the first render's imports
        before = _rss_mb(process.pid)

        def render() -> None:
            try:
                render_all()
            finally:
                done.set()

        def render_all() -> None:
            for _ in range(3):  # an override that overran is paused: the others are still rendered each round
                for level in range(len(WORST)):
                    reply = requests.get(f"{url}/api/v1/preview?group=worst/{level}", headers=AUTH, timeout=30)
                    if reply.status_code != 200 or not reply.json()["errors"]:
                        failed.append(f"worst/{level}: {reply.status_code} {reply.text[:200]}")

        worker = threading.Thread(target=render)
        worker.start()
        while not done.is_set():
            started = time.monotonic()
            assert requests.get(f"{url}/-/healthy", timeout=10).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
        worker.join()
        grown = _rss_mb(process.pid) - before
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not failed
    print(f"slowest /-/healthy {slowest * 1000:.0f} ms, RSS grew {grown:.1f} MB")
    assert slowest < 0.5, f"/-/healthy took {slowest:.3f}s while an override rendered"  # unbounded: seconds
    assert grown <= 50, f"RSS grew by {grown:.0f} MB"  # unbounded: hundreds of MB
