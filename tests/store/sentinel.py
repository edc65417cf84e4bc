"""A real Redis primary, one replica and three Sentinels (Debian's redis-sentinel) on loopback ports, as a peer."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.helpers import free_port, require_binary, wait_for_port

SERVICE = "mymaster"


@dataclass
class SentinelSet:
    url: str  # redis+sentinel://... naming the three Sentinels
    servers: dict[int, subprocess.Popen[bytes]]  # port -> redis-server, the primary's among them
    sentinel_ports: list[int]
    commands: dict[int, list[str]]  # port -> how its server was started
    processes: list[subprocess.Popen[bytes]]  # every one started, to end
    password: str | None = None  # the servers'
    sentinel_password: str | None = None  # the Sentinels' own

    def primary_port(self) -> int:
        """The primary's port as the first Sentinel names it now."""
        with redis.Redis(port=self.sentinel_ports[0], password=self.sentinel_password) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def kill(self, port: int) -> None:
        """SIGKILL: the server is gone at once, with whatever it had not replicated yet."""
        self.servers[port].send_signal(signal.SIGKILL)
        self.servers[port].wait(timeout=10)

    def restart(self, port: int) -> None:
        """Start a killed server again, as an orchestrator would: the Sentinels make it a replica of the new
        primary (a killed primary that had no replica's acknowledgement loses what it alone had)."""
        self.servers[port] = _start(self.processes, port, *self.commands[port])

    def client(self) -> redis.Redis:
        """A client of the primary; the caller closes it."""
        return redis.Redis(port=self.primary_port(), password=self.password, decode_responses=True)


@contextmanager
def sentinel_set(folder: Path, password: str = "", sentinel_password: str = "") -> Iterator[SentinelSet]:
    """The set, once the replica follows the primary and every Sentinel knows the replica and the other two; with
    passwords, the servers and the Sentinels each require theirs."""
    auth = ["--requirepass", password, "--masterauth", password] if password else []
    sentinel_auth = (
        f"requirepass {sentinel_password}\nsentinel sentinel-pass {sentinel_password}\n" if sentinel_password else ""
    )
    if password:
        sentinel_auth += f"sentinel auth-pass {SERVICE} {password}\n"
    server, sentinel = require_binary("redis-server"), require_binary("redis-sentinel")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        primary, replica = free_port(), free_port()
        servers, commands = {}, {}
        for port, follows in ((primary, ()), (replica, ("--replicaof", "127.0.0.1", str(primary)))):
            (folder / str(port)).mkdir(parents=True)
            commands[port] = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                              "--repl-diskless-sync-delay", "0", "--dir", str(folder / str(port)), *auth]  # fmt: skip
            servers[port] = _start(processes, port, *commands[port], *follows)
        sentinel_ports = [free_port() for _ in range(3)]
        for port in sentinel_ports:
            conf = folder / f"sentinel-{port}.conf"  # Sentinel rewrites its file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 4000\n{sentinel_auth}",
                encoding="utf-8",
            )
            _start(processes, port, sentinel, str(conf))
        hosts = ",".join(f"127.0.0.1:{p}" for p in sentinel_ports)
        url = f"redis+sentinel://{f':{password}@' if password else ''}{hosts}/{SERVICE}/0"
        found = SentinelSet(
            url, servers, sentinel_ports, commands, processes, password or None, sentinel_password or None
        )
        _wait_until_known(found, primary)
        yield found
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)  # one a test stopped ends too
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _start(processes: list[subprocess.Popen[bytes]], port: int, *command: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL)
    processes.append(process)
    wait_for_port(port)
    return process


def _wait_until_known(found: SentinelSet, primary: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:  # the replica has the primary's data and takes its writes
        with redis.Redis(port=primary, password=found.password) as client:
            replica = client.info("replication").get("slave0", {})
        if replica.get("state") == "online":
            break
        assert time.monotonic() < deadline, f"the replica does not follow the primary: {replica}"
        time.sleep(0.1)
    for port in found.sentinel_ports:
        while True:
            with redis.Redis(port=port, password=found.sentinel_password, decode_responses=True) as client:
                state = client.sentinel_master(SERVICE)
            if state["num-slaves"] == 1 and state["num-other-sentinels"] == 2:
                break
            assert time.monotonic() < deadline, f"Sentinel on {port} does not know the set: {state}"
            time.sleep(0.1)
