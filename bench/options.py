"""Sizes and durations of one bench run: the full run, or --quick (a smoke run with smaller numbers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    scratch: Path  # temporary files (bodies, configs, stores); removed after each benchmark
    logs: Path  # server logs, kept next to the results
    quick: bool = False
    # B1: wrk with one thread and this many connections; a pool of unique alarms larger than any run can post
    b1_connections: int = 64
    b1_rounds: int = 3
    b1_seconds: float = 10.0
    b1_warmup: float = 3.0
    b1_pool: int = 250_000
    b1_warm_pool: int = 40_000
    b1_breakdown_alarms: int = 10_000  # per stage and round of B1 in process (bench.breakdown)
    b1_counted_alarms: int = 300  # B1 in process under callgrind: this many, and three times as many
    # B2: alarms posted by `concurrency` clients; the reference gets fewer alarms (it is much slower)
    b2_rounds: int = 3
    b2_alarms: int = 3000
    b2_reference_alarms: int = 300
    b2_concurrency: int = 16
    b2_timeout: float = 300.0
    # B3: alarms posted within `b3_send_seconds`, then a burst; each watched until the outbox is empty, at most
    # `b3_drain_cap` seconds
    b3_alarms: int = 100_000
    b3_send_seconds: float = 60.0
    b3_burst: int = 1_000
    b3_drain_cap: float = 300.0
    # B4: alerts in one Alertmanager notification
    b4_alerts: int = 1000
    b4_timeout: float = 120.0
    # B5: starts measured (the median is reported)
    b5_starts: int = 5
    b5_idle: float = 3.0
    # B6: alarms admitted and settled through each store
    b6_alarms: int = 20_000
    # profile: seconds of py-spy sampling under the B1 load
    profile_seconds: float = 15.0

    @classmethod
    def quick_run(cls, scratch: Path, logs: Path) -> Options:
        return cls(
            scratch=scratch,
            logs=logs,
            quick=True,
            b1_rounds=1,
            b1_seconds=3.0,
            b1_warmup=1.0,
            b1_pool=60_000,
            b1_warm_pool=20_000,
            b1_breakdown_alarms=2_000,
            b1_counted_alarms=100,
            b2_rounds=1,
            b2_alarms=300,
            b2_reference_alarms=40,
            b2_timeout=60.0,
            b3_alarms=10_000,
            b3_send_seconds=10.0,
            b3_burst=300,
            b3_drain_cap=240.0,
            b4_alerts=1000,
            b4_timeout=60.0,
            b5_starts=2,
            b5_idle=1.0,
            b6_alarms=2_000,
            profile_seconds=5.0,
        )
