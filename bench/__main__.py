"""python -m bench [--quick] [--only B1,B2,...] [--no-profile]: run the benchmarks, print one table, write JSON.

Every figure is measured in this run, the references (a bare Starlette endpoint, Apprise) included.
Results go to bench/results/ (gitignored): bench-<time>.json, latest.json, latest.md, server logs, the profile.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import burst, fanout, footprint, ingest, profile, report, storage, storm
from bench.harness import LOAD_CORE, ROOT, Figure, Options, Section

logger = logging.getLogger("bench")
BENCHES: dict[str, tuple[str, Callable[[Options], Section]]] = {
    "B1": ("ingest", ingest.run),
    "B2": ("fan-out", fanout.run),
    "B3": ("storm", storm.run),
    "B4": ("alertmanager burst", burst.run),
    "B5": ("footprint", footprint.run),
    "B6": ("store cost", storage.run),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with smaller numbers")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated: B1,B2,B3,B4,B5,B6")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of B1")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    chosen = [b.strip().upper() for b in args.only.split(",") if b.strip()]
    if unknown := [b for b in chosen if b not in BENCHES]:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    if (os.cpu_count() or 1) > LOAD_CORE + 1:  # the orchestrator and its drivers stay off the server's core
        os.sched_setaffinity(0, {LOAD_CORE})
    out: Path = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    opts = Options.make(out / "tmp", out / "logs", args.quick)

    the_machine = report.machine()
    line = report.machine_line(the_machine)
    logger.info("machine: %s", line)
    started = time.time()
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    failed = False
    for key in chosen:
        title, bench = BENCHES[key]
        logger.info("%s %s", key, title)
        t0 = time.monotonic()
        try:
            section = bench(opts)
        except Exception as exc:  # one broken benchmark must not cost the others their figures
            failed = True
            logger.exception("%s failed", key)
            section = Section([Figure(key, title, "", None, note=f"error: {type(exc).__name__}: {exc}"[:200])])
        figures += section.figures
        details[key] = {**section.details, "seconds": time.monotonic() - t0}
    if not args.no_profile and "B1" in chosen:
        logger.info("profile of the B1 hot path (py-spy)")
        try:
            details["profile"] = profile.run(opts).details
        except Exception:
            failed = True
            logger.exception("the profile failed")
    shutil.rmtree(opts.scratch, ignore_errors=True)

    text = report.table(figures)
    print(f"\n{line}\n\n{text}")
    if details.get("profile", {}).get("areas"):
        print("\n" + profile.render(details["profile"]))
    results = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": time.time() - started,
        "quick": args.quick,
        "machine": the_machine,
        "machine_line": line,
        "options": asdict(opts),
        "figures": [f.to_dict() for f in figures],
        "details": details,
    }
    print(f"\nresults: {report.write(out, started, results, line, text)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
