"""B6 store: what the outbox's store costs per alarm, apart from HTTP and delivery, on SQLite and on Redis.

The bench group's alarms (three jobs each, payloads as the outbox writes them) are admitted with their dedup
claims, 64 alarms a call as under load, then settled as delivered. Reported: the CPU of this process per alarm
for each (on SQLite that includes the store's thread; Redis's own CPU is its own process's and not counted),
and the wall time per alarm. The history is the default 10,000, so the trim of done jobs is paid as in service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from bench.harness import Figure, Options, Section, unavailable, workdir
from bench.peers import CHANNELS, REDIS_URL, alarm_fields, bench_group, drop_redis_prefix, new_run, redis_answers
from bridge.intake import jobs_for
from bridge.model import Alarm
from bridge.schema import Node, parse_group
from bridge.store import Admission, State, StoreSettings, open_store

logger = logging.getLogger(__name__)
BATCH = 64  # alarms a store call, as the outbox batches them under the B1 load


def run(opts: Options) -> Section:
    section = Section()
    with workdir(opts.scratch) as tmp:
        stores = {"SQLite": f"sqlite:///{tmp / 'store.db'}"}
        if redis_answers(REDIS_URL):
            stores["Redis"] = REDIS_URL
        else:
            section.figures.append(unavailable("B6", "store CPU per alarm, Redis", "µs", f"no Redis at {REDIS_URL}"))
        for label, url in stores.items():
            prefix = f"bench:store:{new_run()}:"
            logger.info("B6: %d alarms through the %s store", opts.b6_alarms, label)
            try:
                result = asyncio.run(_measure(StoreSettings(url, 5.0, prefix, 10_000), opts.b6_alarms))
            finally:
                drop_redis_prefix(url, prefix)
            section.details[label] = result
            note = f"admit {result['admit_cpu_us']:.0f} µs + settle {result['settle_cpu_us']:.0f} µs"
            note += f"; wall {result['wall_us']:.0f} µs an alarm, {BATCH} alarms a call"
            total = result["admit_cpu_us"] + result["settle_cpu_us"]
            section.figures.append(Figure("B6", f"store CPU per alarm, {label}", "µs", total, note=note))
    return section


async def _measure(settings: StoreSettings, count: int) -> dict[str, Any]:
    group = parse_group(Node("bench", "group", bench_group(None, CHANNELS)), source="bench")
    run = new_run()
    store = open_store(settings)
    admit = settle = 0.0
    started = time.perf_counter()
    try:
        for first in range(0, count, BATCH):
            alarms = [Alarm.from_fields(alarm_fields(run, i)) for i in range(first, min(first + BATCH, count))]
            admissions = [Admission(jobs_for(a, group), f"dedup:{a.fingerprint()}", 300.0) for a in alarms]
            cpu = time.process_time()
            await store.admit(admissions, lease=30.0)
            admit += time.process_time() - cpu
            now = time.time()
            done = [replace(j, state=State.DONE, attempts=1, updated=now) for a in admissions for j in a.jobs]
            cpu = time.process_time()
            await store.settle(done)
            settle += time.process_time() - cpu
    finally:
        await store.close()
    wall = time.perf_counter() - started
    return {"alarms": count, "batch": BATCH, "admit_cpu_us": 1e6 * admit / count,
            "settle_cpu_us": 1e6 * settle / count, "wall_us": 1e6 * wall / count}  # fmt: skip
