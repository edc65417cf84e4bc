"""B5 footprint: `alarm-bridge serve` (the real CLI, default log level) with the B2 channels configured: time
from spawning the process to its first HTTP answer, and its resident memory once idle. The median of a few starts.
"""

from __future__ import annotations

import statistics
import sys
import time

from bench.common import (
    SERVER_CORE,
    UNLIMITED,
    Figure,
    Section,
    all_limits,
    free_port,
    gateway_config,
    receivers,
    start_server,
    workdir,
)
from bench.options import Options


def run(opts: Options) -> Section:
    section = Section()
    ready: list[float] = []
    idle: list[float] = []
    with workdir(opts.scratch) as tmp, receivers(tmp, opts.logs / "b5-receivers.log") as (upstreams, _, ca):
        path = gateway_config(tmp, "sqlite", dry_run=False, upstreams=upstreams, rate_limits=all_limits(UNLIMITED),
                              ca_file=ca)  # fmt: skip
        for n in range(opts.b5_starts):
            port = free_port()
            command = [sys.executable, "-m", "bridge", "serve", "--config", str(path), "--port", str(port)]
            server = start_server(command, port, opts.logs / f"b5-gateway-{n}.log", SERVER_CORE)
            try:
                time.sleep(opts.b5_idle)
                ready.append(server.ready_after)
                idle.append(server.memory_mb()["rss"])
            finally:
                server.stop()
    section.details = {"ready_seconds": ready, "idle_rss_mb": idle, "idle_after_seconds": opts.b5_idle}
    starts = f"median of {len(ready)} starts"
    section.figures += [
        Figure("B5", "idle RSS after start", "MB", statistics.median(idle), goal="≤ 80 MB", better="lower",
               note=starts),
        Figure("B5", "start to first HTTP answer", "s", statistics.median(ready), goal="≤ 1.5 s", better="lower",
               note=starts),
    ]  # fmt: skip
    return section
