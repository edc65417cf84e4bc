"""Instructions an alarm, as valgrind's callgrind counts them: unlike CPU time, the same from run to run whatever
else the machine is doing (two runs in a row of one checkout agree to 0.1 %, runs from other clones within 1 %),
so a change that saves a few per cent can be told from noise. For an A/B, run it in each checkout.

A stage of ``bench.breakdown`` (in process, the store's thread included) runs under callgrind twice, with
``--small`` alarms and with three times as many; the difference in instructions over the difference in alarms
leaves start-up and imports out. The bodies are signed beforehand, so that only the stage's own work is counted.
Callgrind runs code some fifty times slower, so batches form differently than at full speed: the figure compares
checkouts, it does not predict a rate.

``make bench`` reports it under B1 for the bare endpoint, the floor, the gateway, and the gateway in B3's shape:
counts that, unlike CPU time, can be set beside those of a run on another machine of the same software.

Usage: python -m bench.instructions [STAGE] [--small N] [--storm]   (JSON on stdout)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.breakdown import STAGES
from bench.harness import Figure, Options, Section, unavailable
from bench.peers import write_bodies

logger = logging.getLogger(__name__)

WARM = 300  # alarms before the counted ones, in both runs
COLLECTED = re.compile(r"Collected : (\d+)")


def count(stage: str, alarms: int, storm: bool, bodies: Path) -> int:
    """Instructions of one run of the stage under callgrind, start-up included."""
    callgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    stage_run = ["-m", "bench.breakdown", stage, str(alarms), "--warm", str(WARM), "--bodies", str(bodies)]
    stage_run += ["--storm"] if storm else []
    done = subprocess.run([*callgrind, sys.executable, *stage_run], capture_output=True, text=True, timeout=1800,
                          check=True)  # fmt: skip
    found = COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total: {done.stderr[-500:]}")
    return int(found.group(1))


def per_alarm(stage: str, small: int, storm: bool) -> tuple[float, dict[str, Any]]:
    """Instructions an alarm of the stage, from a run of ``small`` alarms and one of three times as many at once."""
    sizes = (small, 3 * small)
    with tempfile.TemporaryDirectory() as tmp:  # signed here: the stage's count is its own work alone
        bodies = write_bodies(Path(tmp) / "bodies", sizes[1] + WARM)
        with ThreadPoolExecutor(len(sizes)) as pool:  # one run a core
            counts = list(pool.map(lambda n: count(stage, n, storm, bodies), sizes))
    return (counts[1] - counts[0]) / (sizes[1] - sizes[0]), {"alarms": sizes, "instructions": counts}


def run(opts: Options) -> Section:
    """B1 in process, counted: the bare endpoint, the floor, the gateway, and the gateway in B3's shape."""
    if shutil.which("valgrind") is None:
        return Section([unavailable("B1", "in process: instructions per alarm", "instr", "valgrind is not installed")])
    section = Section()
    runs = {"ceiling": ("ceiling", False), "floor": ("floor", False), "gateway": ("gateway", False),
            "storm": ("gateway", True)}  # fmt: skip
    for name, (stage, storm) in runs.items():
        logger.info("B1 in process, under callgrind: %s", name)
        section.details[name] = per_alarm(stage, opts.b1_counted_alarms, storm)
    ceiling, floor = section.details["ceiling"][0], section.details["floor"][0]
    note = f"callgrind, {opts.b1_counted_alarms} alarms and 3× as many"
    section.figures += [
        Figure("B1", "in process: instructions per alarm, floor", "instr", floor, ceiling, "bare endpoint",
               note=note),
        Figure("B1", "in process: instructions per alarm, gateway", "instr", section.details["gateway"][0], ceiling,
               "bare endpoint", note=note),
        Figure("B1", "in process: instructions per alarm, B3's shape", "instr", section.details["storm"][0], ceiling,
               "bare endpoint", note=f"{note}; the two robots held by their rate limits"),
        Figure("B1", "in process: instructions per alarm, gateway against the floor", "instr",
               section.details["gateway"][0], floor, "the least work", note=note),
    ]  # fmt: skip
    return section


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("stage", nargs="?", choices=STAGES, default="gateway")
    parser.add_argument("--small", type=int, default=300, help="alarms counted in the smaller run")
    parser.add_argument("--storm", action="store_true", help="the two robots, held by their rate limits (B3)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    instructions, details = per_alarm(args.stage, args.small, args.storm)
    print(json.dumps({"stage": args.stage, "storm": args.storm, **details, "per_alarm": round(instructions)}))


if __name__ == "__main__":
    main()
