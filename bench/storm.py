"""B3 storm: 100,000 alarms within 60 s for one group with a DingTalk robot and a WeCom robot, at their real limit
of 20 messages a minute (the fakes enforce it, the gateway shapes to it), on the embedded SQLite store; then a
burst of 1,000 alarms to a fresh gateway, the size a budget may still carry as each alarm's text.

Measured, nothing projected: the time from the first post to each robot's first message, the most messages a
robot got in any 60 s, the messages the group got in all, the time from the last post until the outbox is empty,
how every accepted alarm was accounted for (its text delivered, or counted in a summary, or lost), and the
gateway's peak RSS (VmHWM). The storm again on plain Redis and on a Sentinel set with store.min_replicas: 1, in
turn: what the replica's acknowledgement costs the storm's posts (their time and p99), the drain and the count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from bench.harness import Figure, Options, Section, gateway, unavailable, workdir
from bench.load import post_all
from bench.peers import bodies, drop_redis_prefix, new_run, receivers
from bench.sentinel import PLAIN, REPLICATED, redis_stores
from bridge import config_file
from bridge.store import State, open_store

logger = logging.getLogger(__name__)
NEED = ("dingtalk", "wecom")
LIMIT, WINDOW = 20, 60.0  # messages per minute per robot: the vendors' documented limit
CONCURRENCY = 64
_DEPTH = re.compile(r"^alarm_bridge_outbox_depth (\S+)$", re.MULTILINE)


def run(opts: Options) -> Section:
    section = Section()
    storm = _storm(opts, opts.b3_alarms, opts.b3_send_seconds, "storm")
    burst = _storm(opts, opts.b3_burst, 1.0, "burst")
    section.details = {"storm": storm, "burst": burst}
    first = max(storm["first_message_after"].values(), default=None)
    section.figures += [
        Figure("B3", "storm: first message per robot after the first post", "s", first, goal="≤ 10 s",
               note=_each(storm["first_message_after"], "{:.1f} s")),
        Figure("B3", "storm: most messages a robot got in any 60 s", "msgs", float(max(storm["busiest"].values())),
               goal="≤ 20", note=f"{storm['refused']} sends refused by the robots as too fast"),
        Figure("B3", "storm: outbox empty after the last post", "s", storm["empty_after"], goal="≤ 120 s",
               note=f"the closing messages sent {storm['storms_over_after']} s after it (quiet"
               f" 90 s); watched for at most {opts.b3_drain_cap:g} s"),
        Figure("B3", "storm: messages per robot, whole storm", "msgs", float(max(storm["messages"].values())),
               goal="≤ 20", note=_each(storm["messages"], "{}")),
        Figure("B3", "storm: alarms lost", "alarms", float(storm["lost"]), goal="0",
               note=f"{storm['accepted']} accepted in {storm['post_seconds']:.1f} s; per robot, texts delivered /"
               f" summarized: {_each(storm['accounted'], '{0[0]} / {0[1]}')}"),
        Figure("B3", "storm: gateway peak RSS", "MB", storm["memory_mb"]["peak"]),
        Figure("B3", f"burst of {opts.b3_burst}: alarm texts delivered to the DingTalk robot", "alarms",
               float(burst["accounted"]["dingtalk"][0]), goal=f"{opts.b3_burst}",
               note=f"texts / summarized: {_each(burst['accounted'], '{0[0]} / {0[1]}')}; messages:"
               f" {_each(burst['messages'], '{}')}; outbox empty {burst['empty_after']} s after the last post"),
    ]  # fmt: skip
    with workdir(opts.scratch) as tmp, redis_stores(tmp) as (stores, missing):
        redis = {label: _storm(opts, opts.b3_alarms, opts.b3_send_seconds, f"storm-{label.split(',')[0].lower()}",
                               store) for label, store in stores.items()}  # fmt: skip
    section.details["redis"] = redis
    section.figures += [unavailable("B3", f"storm on {label}", "s", why) for label, why in missing.items()]
    for label, result in redis.items():
        # Sentinel's reference is plain Redis: its ratio is what the replica's acknowledgement costs.
        plain = redis[PLAIN] if label == REPLICATED else {}
        section.figures += [
            Figure("B3", f"storm on {label}: time to post", "s", result["post_seconds"], plain.get("post_seconds"),
                   "plain Redis", note=f"{result['accepted']} of {result['alarms']} accepted,"
                   f" paced to {opts.b3_send_seconds:g} s"),
            Figure("B3", f"storm on {label}: p99 of the replies", "ms", result["p99_ms"], plain.get("p99_ms"),
                   "plain Redis", note=f"{CONCURRENCY} clients"),
            Figure("B3", f"storm on {label}: outbox empty after the last post", "s", result["empty_after"],
                   plain.get("empty_after"), "plain Redis"),
            Figure("B3", f"storm on {label}: alarms lost", "alarms", float(result["lost"]), goal="0"),
        ]  # fmt: skip
    return section


def _each(values: dict[str, Any], fmt: str) -> str:
    return ", ".join(f"{robot} {fmt.format(value)}" for robot, value in values.items())


def _storm(
    opts: Options, count: int, seconds: float, name: str, store: tuple[str, int] = ("sqlite", 0)
) -> dict[str, Any]:
    """``count`` alarms posted within ``seconds`` to a fresh gateway on ``store`` (store.url and min_replicas),
    watched until its outbox is empty."""
    limits = {kind: {"limit": LIMIT, "window": "62s"} for kind in ("dingtalk-robot", "wecom-robot")}
    with workdir(opts.scratch) as tmp, receivers(tmp, opts.logs / f"b3-{name}-receivers.log", LIMIT, WINDOW) as peers:
        path = peers.config(store[0], channels=NEED, rate_limits=limits,
                            store={"history": 10 * count, "min_replicas": store[1]})  # fmt: skip
        run = new_run()
        signed = bodies(count, run)
        with gateway(path, opts.logs / f"b3-{name}-gateway.log") as server:
            logger.info("B3 %s: %d alarms, paced to %gs", name, count, seconds)
            posted = asyncio.run(post_all(f"{server.url}/alarm_v2", signed, CONCURRENCY, 10 * seconds + 600,
                                          count / seconds))  # fmt: skip
            empty, over = _watch(server.url, opts.b3_drain_cap)
            empty_after, over_after = (None if t is None else round(t - posted.finished, 1) for t in (empty, over))
            memory = server.memory_mb()
        done = peers.stats(run, NEED, indexes=True)
        outbox = asyncio.run(_outbox(path))
        drop_redis_prefix(store[0], f"bench:{path.stem}:")
    arrivals = {r: sorted(done["attempts"].get(r, [])) for r in NEED}
    summarized = {r: outbox["summarized"].get(r, set()) for r in NEED}
    # A summary names some alarms (its examples, the top businesses): those it counted are not texts delivered.
    texts = {r: {int(i) for i in done["indexes"].get(r, [])} - summarized[r] for r in NEED}
    lost = {i for i in posted.ok for r in NEED if i not in texts[r] and i not in summarized[r]}
    return {
        "alarms": count, "accepted": len(posted.ok), "codes": dict(posted.codes), "post_seconds": posted.seconds,
        "p99_ms": posted.p99_ms,
        "first_message_after": {r: a[0] - posted.started for r, a in arrivals.items() if a},
        "busiest": {r: _busiest(a, WINDOW) for r, a in arrivals.items()},
        "messages": {r: len(a) for r, a in arrivals.items()}, "refused": sum(done["rejected"].values()),
        "empty_after": empty_after, "storms_over_after": over_after,
        "accounted": {r: (len(texts[r]), len(summarized[r])) for r in NEED},
        "lost": len(lost), "pending": outbox["pending"], "dead": outbox["dead"], "memory_mb": memory,
    }  # fmt: skip


def _watch(url: str, cap: float) -> tuple[float | None, float | None]:
    """When the gateway's outbox depth (its /metrics) first read 0, and when every storm it started had ended (its
    closing message sent), watched for at most ``cap`` seconds (None: not by then)."""
    deadline = time.monotonic() + cap
    empty = None
    while time.monotonic() < deadline:
        with urlopen(f"{url}/metrics", timeout=30) as response:  # noqa: S310
            text = response.read().decode()
        depth = _DEPTH.search(text)
        if empty is None and depth and float(depth[1]) == 0:
            empty = time.time()
        if empty is not None and _total(text, "storms_started") == _total(text, "storms_ended"):
            return empty, time.time()
        time.sleep(0.5)
    return empty, None


def _total(metrics: str, name: str) -> float:
    return sum(float(m[1]) for m in re.finditer(rf"^alarm_bridge_{name}_total{{[^}}]*}} (\S+)$", metrics, re.M))


def _busiest(times: list[float], window: float) -> int:
    """The most messages that arrived within any ``window`` seconds."""
    return max((bisect_right(times, t + window - 1e-6) - i for i, t in enumerate(times)), default=0)


async def _outbox(path: Path) -> dict[str, Any]:
    """What the stopped gateway's store says: per robot, the alarms (by index) that a summary counted; the jobs
    still pending, and the dead."""
    settings = config_file.load(path)
    store = open_store(settings.store)
    names = {"dingtalk-robot": "dingtalk", "wecom-robot": "wecom"}
    summarized: dict[str, set[int]] = {}
    try:
        for job in await store.jobs(State.DONE, 100_000_000):
            data = json.loads(job.payload)
            robot = names.get(data["group"]["channels"][data["target"]]["type"], "")
            if job.detail.startswith("summarized in storm "):
                summarized.setdefault(robot, set()).add(int(data["alarm"]["alert_business"].rpartition("-")[2]))
        pending = len(await store.jobs(State.PENDING, 100_000_000))
        dead = len(await store.jobs(State.DEAD, 100_000_000))
    finally:
        await store.close()
    return {"summarized": summarized, "pending": pending, "dead": dead}
