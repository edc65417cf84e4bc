"""What every benchmark shares: figures, signed alarms, gateway configs, pinned processes and their memory."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from bridge.ingest.native import sign
from bridge.upstreams import RATE_LIMITS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
SECRET = "YYLmfY6IRdjZMQ1"  # noqa: S105  (the seed's example department secret)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LOAD_CORE, SERVER_CORE = 0, 1  # the load generator and the receivers on one core, the server measured on the other
GROUP_ID, GROUP_LEVEL = "bench", "1"
MAIL_TO = "oncall@example.com"
MARKER_RE = re.compile(r"bench ([0-9a-f]{8})-(\d+)")  # alert_business of the bench alarms: run and index
UNLIMITED = {"limit": 1_000_000, "window": "1s"}  # gateway rate limits raised so throughput, not shaping, is measured


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
    better: str = "higher"  # which way the ratio ours/reference is good
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.reference:
            return None
        return self.ours / self.reference

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["ratio"] = self.ratio
        return data


@dataclass
class Section:
    """A benchmark's figures plus the details behind them (raw tool output, counts), for the JSON results."""

    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    """The median of one figure over rounds, leaving out the rounds that have none."""
    values = [float(r[key]) for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def unavailable(bench: str, name: str, unit: str, why: str, goal: str = "") -> Figure:
    return Figure(bench, name, unit, None, goal=goal, note=f"not available: {why}")


# -- alarms --


def alarm_fields(run: str, index: int) -> dict[str, str]:
    """A unique alarm for the bench group; ``bench RUN-INDEX`` in alert_business lets the receivers find it."""
    return {
        "id": GROUP_ID,
        "level": GROUP_LEVEL,
        "dep": "du-srv",
        "env": "prod",
        "alert_level": "高",
        "alert_time": "2018-01-1 01:01:01",
        "alert_business": f"bench {run}-{index}",
        "alert_function": "陈敏测试alert_function",
        "alert_host": f"du-ftp-qd-{index % 50}",
        "exception_spec": "陈敏测试之异常说明: 第 33 分区，数据延时 231s",
    }


def signed_body(fields: dict[str, str]) -> bytes:
    """The request body exactly as the seed's send_v2 builds it (json.dumps with its ASCII escapes)."""
    return json.dumps({**fields, "sign": sign(fields, SECRET)}).encode()


def new_run() -> str:
    return uuid.uuid4().hex[:8]


def write_bodies(path: Path, run: str, count: int) -> Path:
    """One signed alarm body per line, for wrk's script."""
    with path.open("wb") as out:
        for i in range(count):
            out.write(signed_body(alarm_fields(run, i)) + b"\n")
    return path


# -- gateway configs --


@dataclass(frozen=True)
class Upstreams:
    """Where the receivers listen (see bench.receivers)."""

    dingtalk: str  # https://127.0.0.1:PORT
    wecom: str
    feishu: str
    smtp_port: int
    control: str  # http://127.0.0.1:PORT

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Upstreams:
        return cls(data["dingtalk"], data["wecom"], data["feishu"], int(data["smtp_port"]), data["control"])


def bench_group(upstreams: Upstreams | None, channels: Sequence[str]) -> dict[str, Any]:
    """The bench group: a signed DingTalk robot, a WeCom robot, a signed Feishu bot and email, or the subset named
    in ``channels``."""
    from bench.receivers import DINGTALK_SECRET, DINGTALK_TOKEN, FEISHU_SECRET, FEISHU_TOKEN, WECOM_KEY

    ding = upstreams.dingtalk if upstreams else "https://oapi.dingtalk.com"
    wecom = upstreams.wecom if upstreams else "https://qyapi.weixin.qq.com"
    feishu = upstreams.feishu if upstreams else "https://open.feishu.cn"
    targets = {
        "dingtalk": {
            "type": "dingtalk-robot",
            "webhook": f"{ding}/robot/send?access_token={DINGTALK_TOKEN}",
            "secret": DINGTALK_SECRET,
        },
        "wecom": {"type": "wecom-robot", "webhook": f"{wecom}/cgi-bin/webhook/send?key={WECOM_KEY}"},
        "feishu": {
            "type": "feishu-robot",
            "webhook": f"{feishu}/open-apis/bot/v2/hook/{FEISHU_TOKEN}",
            "secret": FEISHU_SECRET,
        },
        "email": {"type": "email", "to": [MAIL_TO]},
    }
    return {
        "id": GROUP_ID,
        "level": GROUP_LEVEL,
        "name": "bench",
        "members": [{"name": "值班"}],
        "channels": [targets[c] for c in channels],
    }


def gateway_config(
    folder: Path,
    store_url: str,
    *,
    dry_run: bool,
    upstreams: Upstreams | None = None,
    channels: Sequence[str] = ("dingtalk", "wecom", "email"),
    rate_limits: dict[str, Any] | None = None,
    ca_file: Path | None = None,
    store: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A config file for one gateway run: a fresh store (SQLite file or Redis prefix, ``store`` adding to that
    section) and the bench group."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"gateway-{uuid.uuid4().hex[:8]}"
    if store_url == "sqlite":
        store_url = f"sqlite:///{folder / name}.db"
    delivery: dict[str, Any] = {"dry_run": dry_run}
    if rate_limits is not None:
        delivery["rate_limits"] = rate_limits
    if ca_file is not None:
        delivery["ca_file"] = str(ca_file)
    data: dict[str, Any] = {
        "store": {"url": store_url, "prefix": f"bench:{name}:", **(store or {})},
        "native": {"departments": {"du-srv": {"secret": SECRET}}},
        "delivery": delivery,
        "templates": str(TEMPLATES),
        "groups": [bench_group(upstreams, channels)],
    }
    if upstreams is not None:
        data["email"] = {"host": "127.0.0.1", "port": upstreams.smtp_port, "security": "plain"}
    data.update(extra or {})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def all_limits(value: dict[str, Any]) -> dict[str, Any]:
    return dict.fromkeys(RATE_LIMITS, value)


def drop_redis_prefix(url: str, prefix: str) -> int:
    """Delete a run's Redis keys (bounded: at most 10 million)."""
    import redis

    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.delete(*batch))
                batch = []
            if deleted > 10_000_000:
                break
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


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


def pinned(core: int | None, command: list[str]) -> list[str]:
    """The command pinned to one core with taskset, when there are cores to spare for it."""
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) <= core:
        return command
    return ["taskset", "-c", str(core), *command]


def answers(port: int, path: str = "/alarm_v2") -> bool:
    """True once the server gives any HTTP answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


@dataclass
class Server:
    """A server in a subprocess: its port, its log, and its memory from /proc."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float  # time.monotonic() just before the process was spawned
    ready_after: float = 0.0  # seconds from spawn to the first HTTP answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory_mb(self) -> dict[str, float]:
        """Resident set now (VmRSS) and its peak so far (VmHWM), in MB (10^6 bytes)."""
        return proc_memory_mb(self.pid)

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds so far per thread, by thread name (numbered when names repeat)."""
        found: dict[str, float] = {}
        for task in sorted(Path(f"/proc/{self.pid}/task").iterdir(), key=lambda t: int(t.name)):
            with contextlib.suppress(OSError):
                text = (task / "stat").read_text()
                name = text[text.index("(") + 1 : text.rindex(")")]
                fields = text.rpartition(")")[2].split()
                seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                key = name if name not in found else f"{name}#{task.name}"
                found[key] = seconds
        return found

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        return ""


def proc_memory_mb(pid: int) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024 / 1e6
    return {"rss": values.get("VmRSS", 0.0), "peak": values.get("VmHWM", 0.0)}


def start_server(
    command: list[str], port: int, log: Path, core: int | None, env: dict[str, str] | None = None, timeout: float = 30
) -> Server:
    """Spawn, pinned, and wait (bounded) until it answers HTTP; the time to that answer is kept."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            pinned(core, command), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
        )
    server = Server(process, port, log, started)
    deadline = started + timeout
    while time.monotonic() < deadline:
        if answers(port):
            server.ready_after = time.monotonic() - started
            return server
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited with {process.returncode}:\n{server.tail()}")
        time.sleep(0.005)
    server.stop()
    raise RuntimeError(f"{command[:4]} did not answer within {timeout}s:\n{server.tail()}")


def start_gateway(config: Path, log: Path, core: int | None = SERVER_CORE, level: str = "WARNING") -> Server:
    """`alarm-bridge serve`, logging at WARNING: the dry-run log at INFO would dominate the ingest figures."""
    port = free_port()
    command = [sys.executable, "-m", "bridge", "serve", "--config", str(config), "--port", str(port)]
    return start_server(command, port, log, core, env={"ALARM_BRIDGE_LOG_LEVEL": level})


# -- the machine --


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _tool_version(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "absent"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def git_commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip() or "unknown"


def machine() -> dict[str, Any]:
    packages = ("alarm-bridge", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "redis", "jinja2", "apprise")
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),  # other work on the machine skews every figure
        "python": platform.python_version(),
        "commit": git_commit(),
        "packages": {p: _version(p) for p in packages},
        "wrk": _tool_version(["wrk", "--version"]),
        "redis_server": _tool_version(["redis-server", "--version"]),
        "openssl": _tool_version(["openssl", "version"]),
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


@contextlib.contextmanager
def workdir(base: Path) -> Iterator[Path]:
    """A scratch folder for one benchmark's files, removed afterwards."""
    folder = base / uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the receivers and their certificate --


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI (the gateway trusts it via ca_file)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def receivers(
    folder: Path, log: Path, robot_rate: int = 10**9, robot_window: float = 60.0
) -> Iterator[tuple[Upstreams, str, Path]]:
    """bench.receivers in its own process on the load core; yields their addresses, their JSON line, the CA."""
    cert, key = make_cert(folder)
    command = [sys.executable, "-m", "bench.receivers", "--cert", str(cert), "--key", str(key),
               "--robot-rate", str(robot_rate), "--robot-window", str(robot_window)]  # fmt: skip
    with log.open("wb") as err:
        process = subprocess.Popen(
            pinned(LOAD_CORE, command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT
        )
    assert process.stdout is not None and process.stdin is not None
    try:
        line = process.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"bench.receivers did not start: {log.read_text(errors='replace')[-800:]}")
        yield Upstreams.from_dict(json.loads(line)), line.strip(), cert
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
