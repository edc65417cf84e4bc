"""B1 ingest: POST /alarm_v2 with unique signed alarms under wrk, against the bare Starlette ceiling.

The gateway runs with dry-run delivery to the bench group (DingTalk robot, WeCom robot, email: three jobs per
alarm, each "delivered" to the log at INFO while the server logs at WARNING), rate limits raised so every alarm
takes the full path, on a fresh SQLite file and on a fresh Redis prefix; beside plain Redis, a Sentinel set on
loopback with store.min_replicas: 1 (each accepted alarm waits for the replica's WAIT). The server is pinned to one
core, wrk to the other. Beside the ceiling, the floor (bench/floor_app.py): the least work the gateway's rules ask
of an alarm, in the plainest code, so that the gateway's figures can be read against what this stack can do with
that work. Then bench.breakdown and bench.instructions: the same alarms in process, to show where the CPU goes.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import breakdown, instructions
from bench.harness import Figure, Options, Section, free_port, gateway, median, rounds, server, unavailable, workdir
from bench.load import wrk, wrk_available
from bench.peers import drop_redis_prefix, gateway_config, write_bodies
from bench.sentinel import PLAIN, REPLICATED, redis_stores

logger = logging.getLogger(__name__)
REFERENCES = {"ceiling": "bench.baseline_app", "floor": "bench.floor_app"}  # the servers measured beside the gateway
FLOOR = "bench/floor_app.py: parse, verify, dedup, commit to SQLite, render a line; nothing more"


def run(opts: Options) -> Section:
    if not wrk_available():
        why = "wrk is not installed (make bench installs Debian's wrk)"
        return Section([unavailable("B1", "ingest req/s", "req/s", why, "≥ 0.5× ceiling")])
    with workdir(opts.scratch) as tmp, redis_stores(tmp / "sentinel") as (redis, missing):
        stores = {"SQLite": ("sqlite", 0), **redis}
        targets = ["ceiling", "floor", *stores]
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
        warm = write_bodies(tmp / "warm.txt", opts.b1_warm_pool)
        bodies = write_bodies(tmp / "bodies.txt", opts.b1_pool)
        # Rounds of every target in turn, each on a fresh server and store: other work on the machine then
        # skews all of them alike, and the median of the rounds is reported.
        for round_ in range(opts.b1_rounds):
            for target in targets:
                logger.info("B1 round %d/%d: %s", round_ + 1, opts.b1_rounds, target)
                runs[target].append(_measure(target, stores.get(target), tmp, warm, bodies, opts))
    section = Section([unavailable("B1", f"ingest req/s, {label}", "req/s", why) for label, why in missing.items()],
                      {"rounds": opts.b1_rounds, "runs": runs})  # fmt: skip
    for label in targets[1:]:  # the floor as one of them: what the least work can do against the ceiling
        # Sentinel's reference is plain Redis: its ratio is what the replica's acknowledgement costs.
        against, name, goal = ("ceiling", "bare Starlette", ("≥ 0.5× ceiling", "≤ 3× ceiling"))
        if label == REPLICATED:
            against, name, goal = PLAIN, "plain Redis", ("", "")
        note = "; ".join(n for n in [rounds(len(runs[label])), *(_note(r) for r in runs[label])] if n)
        section.figures += [
            Figure("B1", f"ingest req/s, {label}", "req/s", median(runs[label], "rps"), median(runs[against], "rps"),
                   name, goal[0], note),
            Figure("B1", f"ingest p99, {label}", "ms", median(runs[label], "p99_ms"),
                   median(runs[against], "p99_ms"), name, goal[1], rounds(len(runs[label]))),
        ]  # fmt: skip
    if REPLICATED in runs:  # the gateway's own CPU an alarm: steadier than req/s on a shared machine
        ours, plain = (median(runs[label], "cpu_ms_per_request") for label in (REPLICATED, PLAIN))
        section.figures.append(Figure("B1", f"ingest CPU per alarm, {REPLICATED}", "ms", ours, plain, "plain Redis",
                                      note="the gateway process, all its threads"))  # fmt: skip
    sqlite, floor = median(runs["SQLite"], "rps"), median(runs["floor"], "rps")
    section.figures.append(Figure("B1", "ingest req/s, SQLite, against the floor", "req/s", sqlite, floor,
                                  "the least work", note=FLOOR))  # fmt: skip
    # Where the CPU per alarm goes, apart from uvicorn and the sockets; then counted in instructions, comparable
    # across runs on other machines. A stage that fails costs B1 none of the above.
    for key, part, name, unit in (("in_process", breakdown, "CPU per alarm", "µs"),
                                  ("counted", instructions, "instructions per alarm", "instr")):  # fmt: skip
        try:
            found = part.run(opts)
        except (subprocess.SubprocessError, RuntimeError, ValueError) as exc:
            logger.exception("B1 in process: %s failed", name)
            found = Section([unavailable("B1", f"in process: {name}", unit, f"{type(exc).__name__}")])
        section.figures += found.figures
        section.details[key] = found.details
    return section


def _measure(
    target: str, store: tuple[str, int] | None, tmp: Path, warm: Path, bodies: Path, opts: Options
) -> dict[str, Any]:
    """One server (a reference, or the gateway on ``store``: store.url and min_replicas), warmed up, then measured:
    wrk's figures, the server's CPU by thread, its memory."""
    with contextlib.ExitStack() as stack:
        if store is None:
            port = free_port()
            command = [sys.executable, "-m", REFERENCES[target], "--port", str(port)]
            measured = stack.enter_context(server(command, port, opts.logs / f"b1-{target}.log"))
        else:
            config = gateway_config(tmp, store[0], store={"min_replicas": store[1]})
            stack.callback(drop_redis_prefix, store[0], f"bench:{config.stem}:")
            log = opts.logs / f"b1-gateway-{target.split(',')[0].lower()}.log"
            measured = stack.enter_context(gateway(config, log))
        wrk(measured.url, warm, opts.b1_warmup)
        before = measured.thread_cpu()
        load = wrk(measured.url, bodies, opts.b1_seconds)
        after = measured.thread_cpu()
        memory = measured.memory_mb()
    busy = {name: (after[name] - before.get(name, 0.0)) / load.seconds for name in after}
    per_request_ms = 1000 * sum(busy.values()) / load.rps if load.rps else None
    return {**asdict(load), "cpu_busy_by_thread": busy, "cpu_ms_per_request": per_request_ms, "memory_mb": memory}


def _note(run: dict[str, Any]) -> str:
    if run["requests"] > 0 and run["not_ok"] == 0 and run["errors"] == 0:
        return ""
    return f"{run['not_ok']} replies not code 0, {run['errors']} socket errors (first: {run['sample'][:80]})"
