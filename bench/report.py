"""What a run reports: the machine line, the table of figures, and the results written beside them."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Figure


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _tool_version(*command: str) -> str:
    if shutil.which(command[0]) is None:
        return "absent"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip() or "unknown"


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    packages = ("alarm-bridge", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "redis", "jinja2", "apprise")
    return {
        "cores": os.cpu_count(),
        "cpu": next((x.partition(":")[2].strip() for x in cpuinfo if x.startswith("model name")), "unknown"),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),  # other work on the machine skews every figure
        "python": platform.python_version(),
        "commit": _commit(),
        "packages": {p: _version(p) for p in packages},
        "wrk": _tool_version("wrk", "--version"),
        "redis_server": _tool_version("redis-server", "--version"),
        "openssl": _tool_version("openssl", "version"),
    }


def machine_line(m: dict[str, Any]) -> str:
    p = m["packages"]
    return (
        f"{m['cores']} cores, {m['cpu']}, {m['memory_gb']} GiB, Linux {m['kernel']}, Python {m['python']}, "
        f"alarm-bridge {p['alarm-bridge']} ({m['commit']}), starlette {p['starlette']}, uvicorn {p['uvicorn']}, "
        f"uvloop {p['uvloop']}, aiohttp {p['aiohttp']}, apprise {p['apprise']}, "
        f"{m['wrk'].split(' Copyright')[0]}, {m['redis_server'].split(' sha=')[0]}; "
        f"load average at start {m['load_average_at_start'][0]:.2f}"
    )


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("req/s", "alarms", "msgs") or abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 100:
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}" if abs(value) >= 10 else f"{value:.2f} {unit}"


def table(figures: list[Figure]) -> str:
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


def write(out: Path, started: float, results: dict[str, Any], line: str, text: str) -> Path:
    """bench-<time>.json and latest.json (every figure, the details behind it, the machine), latest.md (the table)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    dump = json.dumps(results, indent=2, ensure_ascii=False, default=str)
    for name in (f"bench-{stamp}.json", "latest.json"):
        (out / name).write_text(dump, encoding="utf-8")
    (out / "latest.md").write_text(f"{line}\n\n{text}\n", encoding="utf-8")
    return out / f"bench-{stamp}.json"
