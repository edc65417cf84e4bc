"""Instructions an alarm, as valgrind's callgrind counts them: unlike CPU time, the same from run to run whatever
else the machine is doing (two runs of one checkout agree to 0.1 %), so a change that saves a few per cent can be
told from noise. For an A/B, run it in each checkout.

A stage of ``bench.breakdown`` (in process, the store's thread included) runs under callgrind twice, with
``--small`` alarms and with three times as many; the difference in instructions over the difference in alarms
leaves start-up and imports out. Callgrind runs code some fifty times slower, so batches form differently than at
full speed: the figure compares checkouts, it does not predict a rate.

Usage: python -m bench.instructions [STAGE] [--small N] [--storm]   (JSON on stdout)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from bench.breakdown import STAGES

WARM = 300  # alarms before the counted ones, in both runs
COLLECTED = re.compile(r"Collected : (\d+)")


def count(stage: str, alarms: int, storm: bool) -> int:
    """Instructions of one run of the stage under callgrind, start-up included."""
    callgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    stage_run = ["-m", "bench.breakdown", stage, str(alarms), "--warm", str(WARM), *(["--storm"] if storm else [])]
    done = subprocess.run([*callgrind, sys.executable, *stage_run], capture_output=True, text=True, timeout=1800,
                          check=True)  # fmt: skip
    found = COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total: {done.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("stage", nargs="?", choices=STAGES, default="gateway")
    parser.add_argument("--small", type=int, default=300, help="alarms counted in the smaller run")
    parser.add_argument("--storm", action="store_true", help="the two robots, held by their rate limits (B3)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    sizes = (args.small, 3 * args.small)
    with ThreadPoolExecutor(len(sizes)) as pool:  # one run a core
        small, large = pool.map(lambda n: count(args.stage, n, args.storm), sizes)
    per_alarm = (large - small) / (sizes[1] - sizes[0])
    print(json.dumps({"stage": args.stage, "storm": args.storm, "alarms": sizes, "instructions": [small, large],
                      "instructions_per_alarm": round(per_alarm)}))  # fmt: skip


if __name__ == "__main__":
    main()
