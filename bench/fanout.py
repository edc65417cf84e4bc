"""B2 fan-out: alarms per second fully delivered (confirmed by the receivers) to a signed DingTalk robot, a WeCom
robot and SMTP, all local, the HTTPS fakes over TLS; the reference is Apprise, driven the same way.

Both are driven by ``concurrency`` clients; an alarm counts once all three receivers have it. The gateway and
Apprise each run pinned to the server core; the receivers and the driver share the other core. The gateway's
and the fakes' rate limits are raised so that throughput, not shaping, is measured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any

from bench.common import (
    SERVER_CORE,
    UNLIMITED,
    Figure,
    Section,
    alarm_fields,
    all_limits,
    gateway_config,
    new_run,
    pinned,
    receivers,
    signed_body,
    start_gateway,
    workdir,
)
from bench.drive import post_all, stats, wait_complete
from bench.options import Options

logger = logging.getLogger(__name__)
NEED = ("dingtalk", "wecom", "email")
WARMUP = 20


def run(opts: Options) -> Section:
    section = Section()
    with workdir(opts.scratch) as tmp, receivers(tmp, opts.logs / "b2-receivers.log") as (upstreams, line, ca):
        control = upstreams.control
        config = gateway_config(tmp, "sqlite", dry_run=False, upstreams=upstreams, rate_limits=all_limits(UNLIMITED),
                                ca_file=ca)  # fmt: skip
        gateway = start_gateway(config, opts.logs / "b2-gateway.log")
        try:
            url = f"{gateway.url}/alarm_v2"
            warm = new_run()
            asyncio.run(post_all(url, [signed_body(alarm_fields(warm, i)) for i in range(WARMUP)], 4, 60))
            wait_complete(control, warm, NEED, WARMUP, 30)
            measured = new_run()
            bodies = [signed_body(alarm_fields(measured, i)) for i in range(opts.b2_alarms)]
            logger.info("B2: %d alarms through the gateway", len(bodies))
            cpu = gateway.cpu_seconds()
            posted = asyncio.run(post_all(url, bodies, opts.b2_concurrency, opts.b2_timeout))
            done = wait_complete(control, measured, NEED, len(bodies), opts.b2_timeout, idle=30)
            cpu = gateway.cpu_seconds() - cpu
            memory = gateway.memory_mb()
        finally:
            gateway.stop()
        ours = _rate(done, posted.started)
        section.details["gateway"] = {
            "alarms": len(bodies), "concurrency": opts.b2_concurrency, "codes": dict(posted.codes),
            "post_seconds": posted.finished - posted.started, "complete": done["complete"],
            "alarms_per_receiver": done["alarms"], "messages_per_receiver": _messages(done),
            "rejected": done["rejected"], "alarms_per_s": ours, "cpu_seconds": cpu, "memory_mb": memory,
        }  # fmt: skip

        logger.info("B2: %d alarms through Apprise", opts.b2_reference_alarms)
        _reference(line, ca, new_run(), 3, 4, opts, signed=False)  # warm-up: plugins load on first use
        ref_run = new_run()
        ref = _reference(line, ca, ref_run, opts.b2_reference_alarms, opts.b2_concurrency, opts, signed=False)
        ref_done = wait_complete(control, ref_run, NEED, opts.b2_reference_alarms, 30, idle=5)
        reference = _rate(ref_done, ref["started"]) if ref else None
        section.details["apprise"] = {
            "alarms": opts.b2_reference_alarms, "concurrency": opts.b2_concurrency, **(ref or {}),
            "complete": ref_done["complete"], "alarms_per_receiver": ref_done["alarms"],
            "messages_per_receiver": _messages(ref_done), "alarms_per_s": reference,
            "dingtalk_robot": "unsigned (Apprise double-encodes the sign of a signed robot)",
        }  # fmt: skip
        check_run = new_run()
        check = _reference(line, ca, check_run, 5, 1, opts, signed=True)
        section.details["apprise_signed_check"] = {
            "sent": 5, "reported_ok": (check or {}).get("reported_ok"),
            "confirmed_by_robot": stats(control, check_run, ["dingtalk"])["complete"],
        }  # fmt: skip
    per_message = {r: done["alarms"][r] / n for r, n in _messages(done).items() if n}
    notes = ["alarms per upstream message: " + ", ".join(f"{r} {v:.1f}" for r, v in per_message.items())]
    if done["complete"] < len(bodies):
        notes.append(f"only {done['complete']} of {len(bodies)} confirmed within {opts.b2_timeout:g}s")
    note = "; ".join(notes)
    section.figures.append(
        Figure("B2", "fan-out alarms/s, 3 channels", "alarms/s", ours, reference, "Apprise", "≥ 25× Apprise",
               note=note)
    )  # fmt: skip
    return section


def _messages(done: dict[str, Any]) -> dict[str, int]:
    """How many messages each receiver got (alarms that arrive together share a message: a digest)."""
    return {r: len(done["messages"].get(r, [])) for r in NEED}


def _rate(done: dict[str, Any], started: float) -> float | None:
    if not done["complete"] or done["last"] is None:
        return None
    return float(done["complete"]) / (float(done["last"]) - started)


def _reference(
    line: str, ca: object, run: str, count: int, concurrency: int, opts: Options, signed: bool
) -> dict[str, Any] | None:
    command = [sys.executable, "-m", "bench.reference", "--upstreams", line, "--ca", str(ca), "--run", run,
               "--count", str(count), "--concurrency", str(concurrency)]  # fmt: skip
    if signed:
        command.append("--signed-check")
    done = subprocess.run(
        pinned(SERVER_CORE, command), capture_output=True, text=True, timeout=opts.b2_timeout + 60, check=False
    )
    with (opts.logs / "b2-apprise.log").open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command[:3])} run={run} count={count} signed={signed}\n{done.stderr[-4000:]}\n")
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        logger.warning("B2: the Apprise run failed (%s): %s", done.returncode, done.stderr[-300:])
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    return result
