"""B5 footprint: `alarm-bridge serve` (the real CLI, default log level) with the B2 channels configured: time
from spawning the process to its first HTTP answer, and its resident memory once idle. The median of a few starts.
"""

from __future__ import annotations

import statistics
import time

from bench.harness import Figure, Options, Section, gateway, rounds, workdir
from bench.peers import receivers


def run(opts: Options) -> Section:
    ready: list[float] = []
    idle: list[float] = []
    with workdir(opts.scratch) as tmp, receivers(tmp, opts.logs / "b5-receivers.log") as peers:
        config = peers.config()
        for n in range(opts.b5_starts):
            with gateway(config, opts.logs / f"b5-gateway-{n}.log", level=None) as server:
                time.sleep(opts.b5_idle)
                ready.append(server.ready_after)
                idle.append(server.memory_mb()["rss"])
    starts = rounds(len(ready), "starts")
    return Section(
        [Figure("B5", "idle RSS after start", "MB", statistics.median(idle), goal="≤ 80 MB", note=starts),
         Figure("B5", "start to first HTTP answer", "s", statistics.median(ready), goal="≤ 1.5 s", note=starts)],
        {"ready_seconds": ready, "idle_rss_mb": idle, "idle_after_seconds": opts.b5_idle},
    )  # fmt: skip
