"""B2 fan-out: alarms per second fully delivered (confirmed by the receivers) to a signed DingTalk robot, a WeCom
robot, a signed Feishu bot and SMTP, all local, the HTTPS fakes over TLS; the reference is Apprise, driven the same
way (to an unsigned Feishu bot: its plugin does not sign).

Both are driven by ``concurrency`` clients; an alarm counts once all four receivers have it. The gateway and
Apprise each run pinned to the server core; the receivers and the driver share the other core. The gateway's
and the fakes' rate limits are raised so that throughput, not shaping, is measured.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from bench.harness import SERVER_CORE, Figure, Options, Section, gateway, median, rounds, run_json, workdir
from bench.load import post_all
from bench.peers import Receivers, bodies, new_run, receivers

logger = logging.getLogger(__name__)
NEED = ("dingtalk", "wecom", "feishu", "email")
WARMUP = 20


def run(opts: Options) -> Section:
    section = Section()
    results: list[dict[str, Any]] = []
    with workdir(opts.scratch) as tmp, receivers(tmp, opts.logs / "b2-receivers.log") as peers:
        config = peers.config(channels=NEED)
        # Rounds of both in turn, each gateway on a fresh start: the machine's speed drifts (Apprise's rate has
        # moved by a third between runs), and drift then skews both alike; the medians are reported.
        for round_ in range(opts.b2_rounds):
            logger.info("B2 round %d/%d: %d alarms through the gateway, %d through Apprise", round_ + 1,
                        opts.b2_rounds, opts.b2_alarms, opts.b2_reference_alarms)  # fmt: skip
            results.append({"gateway": _gateway(config, peers, opts), "apprise": _apprise(peers, opts)})
        check_run = new_run()
        check = _reference(peers, check_run, 5, 1, opts, signed=True)
        section.details["apprise_signed_check"] = {
            "sent": 5, "reported_ok": (check or {}).get("reported_ok"),
            "confirmed_by_robot": peers.stats(check_run, ["dingtalk"])["complete"],
        }  # fmt: skip
    section.details["rounds"] = results
    ours = median([r["gateway"] for r in results], "alarms_per_s")
    reference = median([r["apprise"] for r in results], "alarms_per_s")
    messages = {k: sum(r["gateway"]["messages_per_receiver"][k] for r in results) for k in NEED}
    alarms = {k: sum(r["gateway"]["alarms_per_receiver"][k] for r in results) for k in NEED}
    per_message = ", ".join(f"{k} {alarms[k] / n:.1f}" for k, n in messages.items() if n)
    notes = [rounds(len(results)), f"alarms per upstream message: {per_message}"]
    if short := [r["gateway"]["complete"] for r in results if r["gateway"]["complete"] < opts.b2_alarms]:
        notes.append(f"rounds with only {', '.join(map(str, short))} of {opts.b2_alarms} confirmed in time")
    section.figures.append(Figure("B2", "fan-out alarms/s, 4 channels", "alarms/s", ours, reference, "Apprise",
                                  "≥ 25× Apprise", "; ".join(notes)))  # fmt: skip
    return section


def _gateway(config: Path, peers: Receivers, opts: Options) -> dict[str, Any]:
    """One gateway, started afresh and warmed up, then ``b2_alarms`` alarms until the receivers have them all."""
    with gateway(config, opts.logs / "b2-gateway.log") as server:
        url = f"{server.url}/alarm_v2"
        warm = new_run()
        asyncio.run(post_all(url, bodies(WARMUP, warm), 4, 60))
        peers.wait(warm, NEED, WARMUP, 30)
        measured = new_run()
        cpu = server.cpu_seconds()
        posted = asyncio.run(post_all(url, bodies(opts.b2_alarms, measured), opts.b2_concurrency, opts.b2_timeout))
        done = peers.wait(measured, NEED, opts.b2_alarms, opts.b2_timeout, idle=30)
        cpu = server.cpu_seconds() - cpu
        memory = server.memory_mb()
    return {
        "alarms": opts.b2_alarms, "concurrency": opts.b2_concurrency, "codes": dict(posted.codes),
        "post_seconds": posted.seconds, **_delivered(done, posted.started), "rejected": done["rejected"],
        "cpu_seconds": cpu, "memory_mb": memory,
    }  # fmt: skip


def _apprise(peers: Receivers, opts: Options) -> dict[str, Any]:
    """Apprise, warmed up (its plugins load on first use), then ``b2_reference_alarms`` alarms."""
    _reference(peers, new_run(), 3, 4, opts, signed=False)
    run = new_run()
    ref = _reference(peers, run, opts.b2_reference_alarms, opts.b2_concurrency, opts, signed=False)
    done = peers.wait(run, NEED, opts.b2_reference_alarms, 30, idle=5)
    delivered = _delivered(done, ref["started"] if ref else None)
    return {"alarms": opts.b2_reference_alarms, "concurrency": opts.b2_concurrency, **(ref or {}), **delivered,
            "dingtalk_robot": "unsigned (Apprise double-encodes the sign of a signed robot)"}  # fmt: skip


def _delivered(done: dict[str, Any], started: float | None) -> dict[str, Any]:
    """What the receivers confirmed: alarms complete, per receiver, the messages each got (alarms that arrive
    together share one: a digest) and the rate from the first post to the last alarm complete."""
    rate = None
    if started is not None and done["complete"] and done["last"] is not None:
        rate = done["complete"] / (done["last"] - started)
    return {"complete": done["complete"], "alarms_per_receiver": done["alarms"], "alarms_per_s": rate,
            "messages_per_receiver": {r: len(done["messages"].get(r, [])) for r in NEED}}  # fmt: skip


def _reference(
    peers: Receivers, run: str, count: int, concurrency: int, opts: Options, signed: bool
) -> dict[str, Any] | None:
    """bench.reference (Apprise) in its own process; None when it failed."""
    command = [sys.executable, "-m", "bench.reference", "--upstreams", peers.line, "--ca", str(peers.ca),
               "--run", run, "--count", str(count), "--concurrency", str(concurrency)]  # fmt: skip
    try:
        return run_json(command + ["--signed-check"] * signed, SERVER_CORE, opts.b2_timeout + 60,
                        opts.logs / "b2-apprise.log")  # fmt: skip
    except RuntimeError as exc:
        logger.warning("B2: the Apprise run failed: %s", exc)
        return None
