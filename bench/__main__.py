"""python -m bench [--quick] [--only B1,B2,...] [--no-profile]: run the benchmarks, print one table, write JSON.

Every figure is measured in this run, the references (a bare Starlette endpoint, Apprise) included.
Results go to bench/results/ (gitignored): bench-<time>.json, latest.json, latest.md, server logs, the profile.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import burst, fanout, footprint, ingest, profile, storage, storm
from bench.common import LOAD_CORE, ROOT, Figure, Section, machine, machine_line
from bench.options import Options

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
    unknown = [b for b in chosen if b not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    if (os.cpu_count() or 1) > LOAD_CORE + 1:  # the orchestrator and its drivers stay off the server's core
        os.sched_setaffinity(0, {LOAD_CORE})
    out: Path = args.out
    logs, scratch = out / "logs", out / "tmp"
    logs.mkdir(parents=True, exist_ok=True)
    make = Options.quick_run if args.quick else Options
    opts = make(scratch=scratch, logs=logs)

    the_machine = machine()
    logger.info("machine: %s", machine_line(the_machine))
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
            logger.error("%s failed:\n%s", key, traceback.format_exc())
            section = Section([Figure(key, title, "", None, note=f"error: {type(exc).__name__}: {exc}"[:200])])
        figures += section.figures
        details[key] = {**section.details, "seconds": time.monotonic() - t0}
    if not args.no_profile and "B1" in chosen:
        logger.info("profile of the B1 hot path (py-spy)")
        try:
            details["profile"] = profile.run(opts).details
        except Exception:
            failed = True
            logger.error("the profile failed:\n%s", traceback.format_exc())
    shutil.rmtree(scratch, ignore_errors=True)

    table = render_table(figures)
    line = machine_line(the_machine)
    print(f"\n{line}\n\n{table}")
    if "profile" in details and details["profile"].get("areas"):
        print("\n" + render_profile(details["profile"]))
    results = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": time.time() - started,
        "quick": args.quick,
        "machine": the_machine,
        "machine_line": line,
        "options": {k: str(v) for k, v in opts.__dict__.items()},
        "figures": [f.to_dict() for f in figures],
        "details": details,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    text = json.dumps(results, indent=2, ensure_ascii=False, default=str)
    (out / f"bench-{stamp}.json").write_text(text, encoding="utf-8")
    (out / "latest.json").write_text(text, encoding="utf-8")
    (out / "latest.md").write_text(f"{line}\n\n{table}\n", encoding="utf-8")
    print(f"\nresults: {out / f'bench-{stamp}.json'}")
    return 1 if failed else 0


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("req/s", "alarms", "msgs") or abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 100:
        return f"{value:.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def render_table(figures: list[Figure]) -> str:
    """A Markdown table: figure, ours, reference, ratio, goal, note."""
    rows = [["", "figure", "ours", "reference", "ratio", "goal", "note"]]
    for f in figures:
        reference = f"{_number(f.reference, f.unit)} ({f.reference_name})" if f.reference is not None else "—"
        ratio = f"{f.ratio:.2f}×" if f.ratio is not None else "—"
        rows.append([f.bench, f.name, _number(f.ours, f.unit), reference, ratio, f.goal or "—", f.note])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def render_profile(profile_details: dict[str, Any], top: int = 12) -> str:
    lines = [f"B1 hot path, py-spy ({profile_details['samples']} samples, both threads): own time by area"]
    lines += [f"  {a['share']:6.1%}  {a['name']}" for a in profile_details["areas"]]
    lines.append("functions with the most own time")
    lines += [f"  {a['share']:6.1%}  {a['name']}" for a in profile_details["own"][:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
