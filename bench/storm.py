"""B3 storm: 100,000 alarms within 60 s for one group with a DingTalk robot and a WeCom robot, both limited to
20 messages a minute (the fakes enforce it, the gateway shapes to it), on the embedded SQLite store.

Measured: how long posting took (the driver is paced to the 60 s and to what the gateway answers; how busy the
gateway's core and the driver were meanwhile says which one set the pace), the gateway's peak RSS (VmHWM),
alarms lost (accepted, yet neither at the robot nor still in the outbox when the run ends), the most messages
any robot got within one window, and the time until the last alarm reached both robots.
``b3_scale`` divides the limit's window (1 = the real minute), so a bounded run can drain a storm that at the real
rate takes hours; the drain is watched for at most ``b3_drain_cap`` seconds, and what is left is reported.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from bisect import bisect_right
from typing import Any

from bench.common import (
    MARKER_RE,
    Figure,
    Section,
    alarm_fields,
    gateway_config,
    new_run,
    receivers,
    signed_body,
    start_gateway,
    workdir,
)
from bench.drive import Posted, post_all, stats
from bench.options import Options
from bridge import config as bridge_config
from bridge.store import State, open_store

logger = logging.getLogger(__name__)
NEED = ("dingtalk", "wecom")
LIMIT = 20  # messages per minute per robot: the vendors' documented limit
CONCURRENCY = 64


def run(opts: Options) -> Section:
    section = Section()
    window = 60.0 / opts.b3_scale
    limits = {
        kind: {"limit": LIMIT, "window": f"{62.0 / opts.b3_scale:g}s"} for kind in ("dingtalk-robot", "wecom-robot")
    }
    with (
        workdir(opts.scratch) as tmp,
        receivers(tmp, opts.logs / "b3-receivers.log", LIMIT, window) as (upstreams, _, ca),
    ):
        path = gateway_config(tmp, "sqlite", dry_run=False, upstreams=upstreams, channels=NEED,
                              rate_limits=limits, ca_file=ca)  # fmt: skip
        storm = new_run()
        bodies = [signed_body(alarm_fields(storm, i)) for i in range(opts.b3_alarms)]
        gateway = start_gateway(path, opts.logs / "b3-gateway.log")
        try:
            logger.info("B3: %d alarms, paced to %gs", len(bodies), opts.b3_send_seconds)
            rate = len(bodies) / opts.b3_send_seconds
            send_cap = max(10 * opts.b3_send_seconds, 600.0)
            cpu = gateway.cpu_seconds(), time.process_time()
            posted = asyncio.run(post_all(f"{gateway.url}/alarm_v2", bodies, CONCURRENCY, send_cap, rate))
            # Which side bounds the posting: the gateway's core, or the driver's (this process) and the receivers'.
            busy = {"gateway": gateway.cpu_seconds() - cpu[0], "driver": time.process_time() - cpu[1]}
            busy = {side: seconds / _took(posted) for side, seconds in busy.items()}
            logger.info("B3: posted in %.0fs; watching the drain for up to %gs", _took(posted), opts.b3_drain_cap)
            _drain(upstreams.control, storm, len(posted.ok), opts.b3_drain_cap)
            memory = gateway.memory_mb()
        finally:
            gateway.stop()
        # Read after the stop: deliveries in flight when the watch ended finish during the shutdown.
        done = stats(upstreams.control, storm, list(NEED), indexes=True)
        left = asyncio.run(_outbox(path))
    # Every send counts, those the robot refused included: the upstream counts what arrives.
    per_robot = {r: _busiest(done["attempts"].get(r, []), window) for r in NEED}
    refused = sum(done["rejected"].values())
    delivered = {r: _indexes(done, r) for r in NEED}
    waiting = {r: {i for i, t in left["pending"] if t == r} for r in NEED}
    lost = sorted({i for i in posted.ok for r in NEED if i not in delivered[r] and i not in waiting[r]})
    # Alarms per digest as measured (the median of the messages that carry more than one alarm: the first ones,
    # sent while slots are free, carry one), and what that means for a drain at the real 20 a minute.
    packing = {r: statistics.median(d) for r in NEED if (d := [n for n in done["sizes"].get(r, []) if n > 1])}
    real_drain = {r: len(posted.ok) / packing[r] / LIMIT * 62.0 for r in packing}
    drained = done["complete"] >= len(posted.ok)
    last = (done["last"] - posted.started) if done["last"] and drained else None
    scaled = f"limit window {window:g}s (1 minute / {opts.b3_scale:g})" if opts.b3_scale != 1 else "real 20/min"
    section.details = {
        "alarms": len(bodies), "sent": posted.sent, "codes": dict(posted.codes), "post_seconds": _took(posted),
        "wanted_post_seconds": opts.b3_send_seconds, "accepted": len(posted.ok), "complete": done["complete"],
        "alarms_per_robot": done["alarms"], "messages_per_robot": {r: len(done["messages"].get(r, [])) for r in NEED},
        "busiest_window": per_robot, "window_seconds": window, "rejected_by_robots": done["rejected"],
        "pending_jobs_at_end": len(left["pending"]), "dead_jobs": left["dead"], "lost": len(lost),
        "lost_sample": lost[:20], "memory_mb": memory, "drain_cap": opts.b3_drain_cap, "scale": opts.b3_scale,
        "last_delivered_after": last, "alarms_per_digest": packing, "projected_real_drain_seconds": real_drain,
        "cpu_busy_while_posting": busy,
    }  # fmt: skip
    not_drained = "" if drained else f"{done['complete']} of {len(posted.ok)} delivered when the watch ended"
    section.figures += [
        Figure("B3", "storm: posting time", "s", _took(posted), goal=f"≤ {opts.b3_send_seconds:g} s",
               better="lower", note=f"{len(bodies)} alarms, {len(posted.ok)} accepted, {CONCURRENCY} clients; while"
               f" posting the gateway's core {busy['gateway']:.0%} busy, the driver's {busy['driver']:.0%}"),
        Figure("B3", "storm: gateway peak RSS", "MB", memory["peak"], better="lower"),
        Figure("B3", "storm: alarms lost", "alarms", float(len(lost)), goal="0", better="lower",
               note=f"{len(left['pending'])} jobs still in the outbox, {left['dead']} dead"),
        Figure("B3", "storm: most messages in one window, per robot", "msgs", float(max(per_robot.values())),
               goal="≤ 20", better="lower", note=f"{scaled}; {refused} sends refused by the robots as too fast"),
        Figure("B3", "storm: last alarm delivered after", "s", last, better="lower",
               note=f"{scaled}; {not_drained}" if not_drained else scaled),
        Figure("B3", "storm: drain at the real 20/min (projected)", "s", max(real_drain.values(), default=None),
               better="lower", note="from the median alarms per digest: "
               + ", ".join(f"{r} {v:.1f}" for r, v in packing.items())),
    ]  # fmt: skip
    return section


def _took(posted: Posted) -> float:
    return posted.finished - posted.started


def _drain(control: str, run: str, expected: int, cap: float) -> None:
    """Watch until both robots have every accepted alarm, or ``cap`` seconds pass."""
    deadline = time.monotonic() + cap
    while stats(control, run, list(NEED))["complete"] < expected and time.monotonic() < deadline:
        time.sleep(1.0)


def _indexes(done: dict[str, Any], receiver: str) -> set[int]:
    return {int(i) for i in done["indexes"].get(receiver, [])}


def _busiest(times: list[float], window: float) -> int:
    """The most messages that arrived within any ``window`` seconds."""
    ordered = sorted(times)
    return max((bisect_right(ordered, t + window - 1e-6) - i for i, t in enumerate(ordered)), default=0)


async def _outbox(path: Any) -> dict[str, Any]:
    """What the stopped gateway left in its outbox: (alarm index, receiver) per pending job, and the dead count."""
    settings = bridge_config.load(path)
    store = open_store(settings.store)
    names = {"dingtalk-robot": "dingtalk", "wecom-robot": "wecom"}
    try:
        pending = []
        for job in await store.jobs(State.PENDING, 10_000_000):
            data = json.loads(job.payload)
            match = MARKER_RE.search(data["alarm"]["alert_business"])
            kind = data["group"]["channels"][data["target"]]["type"]
            if match:
                pending.append((int(match[2]), names.get(kind, kind)))
        dead = len(await store.jobs(State.DEAD, 10_000_000))
    finally:
        await store.close()
    return {"pending": pending, "dead": dead}
