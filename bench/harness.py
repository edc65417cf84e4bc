"""What every benchmark shares: its sizes, its figures, the processes it measures, the machine and the table."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOAD_CORE, SERVER_CORE = 0, 1  # the load generator and the receivers on one core, the server measured on the other


@dataclass(frozen=True)
class Options:
    """Sizes and durations of one run: the full one, or with ``quick`` a smoke run with smaller numbers."""

    scratch: Path  # temporary files (bodies, configs, stores); removed after each benchmark
    logs: Path  # server logs, kept next to the results
    b1_rounds: int = 3
    b1_seconds: float = 10.0
    b1_warmup: float = 3.0
    b1_pool: int = 250_000  # unique alarms, more than any run can post
    b1_warm_pool: int = 40_000
    b1_breakdown_alarms: int = 10_000  # per stage and round of B1 in process (bench.breakdown)
    b1_counted_alarms: int = 300  # B1 in process under callgrind: this many, and three times as many
    b2_rounds: int = 3
    b2_alarms: int = 3000
    b2_reference_alarms: int = 300  # Apprise gets fewer: it is much slower
    b2_concurrency: int = 16
    b2_timeout: float = 300.0
    b3_alarms: int = 100_000
    b3_send_seconds: float = 60.0
    b3_burst: int = 1_000
    b3_drain_cap: float = 300.0  # each storm watched until the outbox is empty, at most this long
    b4_timeout: float = 120.0
    b5_starts: int = 5
    b5_idle: float = 3.0
    b6_alarms: int = 20_000
    profile_seconds: float = 15.0  # of py-spy sampling under the B1 load

    @classmethod
    def make(cls, scratch: Path, logs: Path, quick: bool) -> Options:
        full = cls(scratch, logs)
        if not quick:
            return full
        return replace(full, b1_rounds=1, b1_seconds=3.0, b1_warmup=1.0, b1_pool=60_000, b1_warm_pool=20_000,
                       b1_breakdown_alarms=2_000, b1_counted_alarms=100, b2_rounds=1, b2_alarms=300,
                       b2_reference_alarms=40, b2_timeout=60.0, b3_alarms=10_000, b3_send_seconds=10.0, b3_burst=300,
                       b3_drain_cap=240.0, b4_timeout=60.0, b5_starts=2, b5_idle=1.0, b6_alarms=2_000,
                       profile_seconds=5.0)  # fmt: skip


@dataclass
class Figure:
    """One row of the table: our number, the reference's (if any) and the goal, all measured in this run."""

    bench: str
    name: str
    unit: str
    ours: float | None
    reference: float | None = None
    reference_name: str = ""
    goal: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.ours / self.reference if self.ours is not None and self.reference else None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ratio": self.ratio}


@dataclass
class Section:
    """A benchmark's figures plus the details behind them (raw tool output, counts), for the JSON results."""

    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    """The median of one figure over rounds, leaving out the rounds that have none."""
    values = [float(r[key]) for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def rounds(count: int, what: str = "rounds") -> str:
    return f"median of {count} {what}" if count > 1 else f"1 {what.removesuffix('s')}"


def unavailable(bench: str, name: str, unit: str, why: str, goal: str = "") -> Figure:
    return Figure(bench, name, unit, None, goal=goal, note=f"not available: {why}")


@contextlib.contextmanager
def workdir(base: Path) -> Iterator[Path]:
    """A scratch folder for one benchmark's files, removed afterwards."""
    folder = base / uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- processes --


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port}")


def pinned(core: int, command: list[str]) -> list[str]:
    """The command pinned to one core with taskset, when there are cores to spare for it."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) <= core:
        return command
    return ["taskset", "-c", str(core), *command]


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def run_json(command: list[str], core: int, timeout: float, log: Path | None = None) -> dict[str, Any]:
    """A pinned bench subprocess's last JSON line on stdout (its stderr appended to ``log``)."""
    done = subprocess.run(pinned(core, command), capture_output=True, text=True, timeout=timeout, check=False)
    if log is not None:
        with log.open("a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(command[1:])}\n{done.stderr[-4000:]}\n")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command[1:3])} failed ({done.returncode}): {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _cpu_seconds(stat: str) -> float:
    """User plus system CPU seconds from a /proc stat line."""
    values = stat.rpartition(")")[2].split()
    return (int(values[11]) + int(values[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A server in a subprocess: its port, its log, and its CPU and memory from /proc."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    ready_after: float = 0.0  # seconds from spawn to the first HTTP answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def memory_mb(self) -> dict[str, float]:
        """Resident set now (VmRSS) and its peak so far (VmHWM), in MB (10^6 bytes)."""
        values = dict(line.split(":", 1) for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines())
        return {k: int(values[key].split()[0]) * 1024 / 1e6 for k, key in (("rss", "VmRSS"), ("peak", "VmHWM"))}

    def cpu_seconds(self) -> float:
        """CPU time of the process so far (all its threads)."""
        return _cpu_seconds(Path(f"/proc/{self.process.pid}/stat").read_text())

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds so far per thread, by thread name (numbered when names repeat)."""
        found: dict[str, float] = {}
        for task in sorted(Path(f"/proc/{self.process.pid}/task").iterdir(), key=lambda t: int(t.name)):
            with contextlib.suppress(OSError):
                text = (task / "stat").read_text()
                name = text[text.index("(") + 1 : text.rindex(")")]
                found[name if name not in found else f"{name}#{task.name}"] = _cpu_seconds(text)
        return found

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _answers(port: int) -> bool:
    """True once the server gives any HTTP answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/alarm_v2")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def server(command: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Spawned on the server core; yielded once it answers HTTP (within 30 s), with the time that took; stopped."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(pinned(SERVER_CORE, command), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, **(env or {})})  # fmt: skip
    running = Server(process, port, log)
    try:
        while not _answers(port):
            if process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited with {process.returncode}:\n{running.tail()}")
            if time.monotonic() > started + 30:
                raise RuntimeError(f"{command[:4]} did not answer within 30 s:\n{running.tail()}")
            time.sleep(0.005)
        running.ready_after = time.monotonic() - started
        yield running
    finally:
        stop(process)


def gateway(config: Path, log: Path, level: str | None = "WARNING") -> contextlib.AbstractContextManager[Server]:
    """`alarm-bridge serve`, by default at WARNING: the dry-run log at INFO would dominate the ingest figures."""
    port = free_port()
    command = [sys.executable, "-m", "bridge", "serve", "--config", str(config), "--port", str(port)]
    return server(command, port, log, env={"ALARM_BRIDGE_LOG_LEVEL": level} if level else None)
