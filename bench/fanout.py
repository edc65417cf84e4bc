"""B2 fan-out: alarms per second fully delivered (confirmed by the receivers) to a signed DingTalk robot, a WeCom
robot, a signed Feishu bot and SMTP, all local, the HTTPS fakes over TLS; the reference is Apprise, driven the same
way (to an unsigned Feishu bot: its plugin does not sign).

Both are driven by ``concurrency`` clients; an alarm counts once all four receivers have it. The gateway and
Apprise each run pinned to the server core; the receivers and the driver share the other core. The gateway's
and the fakes' rate limits are raised so that throughput, not shaping, is measured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    SERVER_CORE,
    UNLIMITED,
    Figure,
    Section,
    alarm_fields,
    all_limits,
    gateway_config,
    median,
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
NEED = ("dingtalk", "wecom", "feishu", "email")
WARMUP = 20


def run(opts: Options) -> Section:
    section = Section()
    rounds: list[dict[str, Any]] = []
    with workdir(opts.scratch) as tmp, receivers(tmp, opts.logs / "b2-receivers.log") as (upstreams, line, ca):
        control = upstreams.control
        config = gateway_config(tmp, "sqlite", dry_run=False, upstreams=upstreams, channels=NEED,
                                rate_limits=all_limits(UNLIMITED), ca_file=ca)  # fmt: skip
        # Rounds of both in turn, each gateway on a fresh start: the machine's speed drifts (Apprise's rate has
        # moved by a third between runs), and drift then skews both alike; the medians are reported.
        for round_ in range(opts.b2_rounds):
            logger.info("B2 round %d/%d: %d alarms through the gateway, %d through Apprise", round_ + 1,
                        opts.b2_rounds, opts.b2_alarms, opts.b2_reference_alarms)  # fmt: skip
            rounds.append({"gateway": _gateway(config, control, opts), "apprise": _apprise(line, ca, control, opts)})
        check_run = new_run()
        check = _reference(line, ca, check_run, 5, 1, opts, signed=True)
        section.details["apprise_signed_check"] = {
            "sent": 5, "reported_ok": (check or {}).get("reported_ok"),
            "confirmed_by_robot": stats(control, check_run, ["dingtalk"])["complete"],
        }  # fmt: skip
    section.details["rounds"] = rounds
    ours = median([r["gateway"] for r in rounds], "alarms_per_s")
    reference = median([r["apprise"] for r in rounds], "alarms_per_s")
    messages = {k: sum(r["gateway"]["messages_per_receiver"][k] for r in rounds) for k in NEED}
    alarms = {k: sum(r["gateway"]["alarms_per_receiver"][k] for r in rounds) for k in NEED}
    per_message = ", ".join(f"{k} {alarms[k] / n:.1f}" for k, n in messages.items() if n)
    notes = [f"median of {len(rounds)} rounds" if len(rounds) > 1 else "1 round"]
    notes.append(f"alarms per upstream message: {per_message}")
    short = [r["gateway"]["complete"] for r in rounds if r["gateway"]["complete"] < opts.b2_alarms]
    if short:
        notes.append(f"rounds with only {', '.join(map(str, short))} of {opts.b2_alarms} confirmed in time")
    section.figures.append(
        Figure("B2", "fan-out alarms/s, 4 channels", "alarms/s", ours, reference, "Apprise", "≥ 25× Apprise",
               note="; ".join(notes))
    )  # fmt: skip
    return section


def _gateway(config: Path, control: str, opts: Options) -> dict[str, Any]:
    """One gateway, started afresh and warmed up, then ``b2_alarms`` alarms until the receivers have them all."""
    gateway = start_gateway(config, opts.logs / "b2-gateway.log")
    try:
        url = f"{gateway.url}/alarm_v2"
        warm = new_run()
        asyncio.run(post_all(url, [signed_body(alarm_fields(warm, i)) for i in range(WARMUP)], 4, 60))
        wait_complete(control, warm, NEED, WARMUP, 30)
        measured = new_run()
        bodies = [signed_body(alarm_fields(measured, i)) for i in range(opts.b2_alarms)]
        cpu = gateway.cpu_seconds()
        posted = asyncio.run(post_all(url, bodies, opts.b2_concurrency, opts.b2_timeout))
        done = wait_complete(control, measured, NEED, len(bodies), opts.b2_timeout, idle=30)
        cpu = gateway.cpu_seconds() - cpu
        memory = gateway.memory_mb()
    finally:
        gateway.stop()
    return {
        "alarms": len(bodies), "concurrency": opts.b2_concurrency, "codes": dict(posted.codes),
        "post_seconds": posted.finished - posted.started, "complete": done["complete"],
        "alarms_per_receiver": done["alarms"], "messages_per_receiver": _messages(done),
        "rejected": done["rejected"], "alarms_per_s": _rate(done, posted.started), "cpu_seconds": cpu,
        "memory_mb": memory,
    }  # fmt: skip


def _apprise(line: str, ca: object, control: str, opts: Options) -> dict[str, Any]:
    """Apprise, warmed up (its plugins load on first use), then ``b2_reference_alarms`` alarms."""
    _reference(line, ca, new_run(), 3, 4, opts, signed=False)
    run = new_run()
    ref = _reference(line, ca, run, opts.b2_reference_alarms, opts.b2_concurrency, opts, signed=False)
    done = wait_complete(control, run, NEED, opts.b2_reference_alarms, 30, idle=5)
    return {
        "alarms": opts.b2_reference_alarms, "concurrency": opts.b2_concurrency, **(ref or {}),
        "complete": done["complete"], "alarms_per_receiver": done["alarms"], "messages_per_receiver": _messages(done),
        "alarms_per_s": _rate(done, ref["started"]) if ref else None,
        "dingtalk_robot": "unsigned (Apprise double-encodes the sign of a signed robot)",
    }  # fmt: skip


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
