"""A real Redis primary, one replica and three Sentinels (Debian's redis-sentinel) on loopback ports: the peer of
the Sentinel tests and of the benchmarks' Sentinel store."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.harness import free_port, wait_for_port
from bench.peers import REDIS_URL, make_cert, redis_answers

SERVICE = "mymaster"
PLAIN, REPLICATED = "Redis", "Sentinel, min_replicas 1"  # the Redis stores the benchmarks compare


@dataclass
class SentinelSet:
    url: str  # redis+sentinel://... naming the three Sentinels
    servers: dict[int, subprocess.Popen[bytes]]  # port -> redis-server, the primary's among them
    sentinel_ports: list[int]
    commands: dict[int, list[str]]  # port -> how its server was started
    processes: list[subprocess.Popen[bytes]]  # every one started, to end
    servers_options: dict[str, Any]  # how a client connects to a server (redis.Redis's keywords) ...
    sentinels_options: dict[str, Any]  # ... and to a Sentinel

    def primary_port(self) -> int:
        """The primary's port as the first Sentinel names it now."""
        with redis.Redis(port=self.sentinel_ports[0], **self.sentinels_options) as sentinel:
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
        return redis.Redis(port=self.primary_port(), decode_responses=True, **self.servers_options)


@contextmanager
def sentinel_set(
    folder: Path, password: str = "", sentinel_password: str = "", tls: bool = False, appendonly: bool = True
) -> Iterator[SentinelSet]:
    """The set, once the replica follows the primary and every Sentinel knows the replica and the other two. With
    passwords, the servers and the Sentinels each require theirs; with TLS, every one speaks only TLS, with a
    self-signed certificate for 127.0.0.1 that the URL names as its CA (ssl_ca_certs). Without ``appendonly`` the
    servers keep no AOF, as the bench's plain Redis (scripts/test-services)."""
    server, sentinel = _binary("redis-server"), _binary("redis-sentinel")
    settings = _certificate(folder) if tls else {}  # the servers' and the Sentinels' alike
    sentinel_settings = dict(settings)
    servers_options: dict[str, Any] = {"host": "127.0.0.1", "password": password or None}
    sentinels_options: dict[str, Any] = {"host": "127.0.0.1", "password": sentinel_password or None}
    if password:
        settings |= {"requirepass": password, "masterauth": password}
        sentinel_settings[f"sentinel auth-pass {SERVICE}"] = password
    if sentinel_password:
        sentinel_settings |= {"requirepass": sentinel_password, "sentinel sentinel-pass": sentinel_password}
    if tls:
        for options in (servers_options, sentinels_options):
            options |= {"ssl": True, "ssl_ca_certs": settings["tls-ca-cert-file"]}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        primary, replica = free_port(), free_port()
        servers, commands = {}, {}
        for port, follows in ((primary, ()), (replica, ("--replicaof", "127.0.0.1", str(primary)))):
            (folder / str(port)).mkdir(parents=True)
            listen = {"tls-port": str(port), "port": "0"} if tls else {"port": str(port)}
            own = listen | {"bind": "127.0.0.1", "save": "", "appendonly": "yes" if appendonly else "no",
                            "repl-diskless-sync-delay": "0", "dir": str(folder / str(port))} | settings  # fmt: skip
            commands[port] = [server, *(x for k, v in own.items() for x in (f"--{k}", v))]
            servers[port] = _start(processes, port, *commands[port], *follows)
        sentinel_ports = [free_port() for _ in range(3)]
        for port in sentinel_ports:
            listen = {"tls-port": str(port), "port": "0"} if tls else {"port": str(port)}
            lines = listen | {"bind": "127.0.0.1", "dir": str(folder), f"sentinel monitor {SERVICE}": f"127.0.0.1 "
                              f"{primary} 2", f"sentinel down-after-milliseconds {SERVICE}": "1000",
                              f"sentinel failover-timeout {SERVICE}": "4000"} | sentinel_settings  # fmt: skip
            conf = folder / f"sentinel-{port}.conf"  # Sentinel rewrites its file: one each
            conf.write_text("".join(f"{k} {v}\n" for k, v in lines.items()), encoding="utf-8")
            _start(processes, port, sentinel, str(conf))
        hosts = ",".join(f"127.0.0.1:{p}" for p in sentinel_ports)
        credentials = f":{password}@" if password else ""
        query = f"?ssl_ca_certs={settings['tls-ca-cert-file']}" if tls else ""
        url = f"{'rediss' if tls else 'redis'}+sentinel://{credentials}{hosts}/{SERVICE}/0{query}"
        found = SentinelSet(url, servers, sentinel_ports, commands, processes, servers_options, sentinels_options)
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


@contextmanager
def redis_stores(folder: Path) -> Iterator[tuple[dict[str, tuple[str, int]], dict[str, str]]]:
    """The Redis stores the benchmarks compare, by label as (store.url, store.min_replicas), and why any is missing:
    plain Redis (REDIS_URL), and beside it a Sentinel set of its own whose servers keep no AOF either, every
    accepted alarm acknowledged by the replica; the set ends with the context."""
    stores, missing = {}, {}
    if redis_answers(REDIS_URL):
        stores[PLAIN] = (REDIS_URL, 0)
    else:
        missing[PLAIN] = missing[REPLICATED] = f"no Redis at {REDIS_URL} to compare with"
    if not (shutil.which("redis-server") and shutil.which("redis-sentinel")):
        missing[REPLICATED] = "redis-sentinel is not installed (scripts/test-services installs it)"
    if REPLICATED in missing:
        yield stores, missing
        return
    with sentinel_set(folder, appendonly=False) as found:
        yield {**stores, REPLICATED: (found.url, 1)}, missing


def _certificate(folder: Path) -> dict[str, str]:
    """A self-signed certificate for 127.0.0.1, as the TLS settings of a server or Sentinel that uses it."""
    cert, key = make_cert(folder)
    return {"tls-cert-file": str(cert), "tls-key-file": str(key), "tls-ca-cert-file": str(cert),
            "tls-auth-clients": "no", "tls-replication": "yes"}  # fmt: skip


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (scripts/test-services installs it)")
    return path


def _start(processes: list[subprocess.Popen[bytes]], port: int, *command: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL)
    processes.append(process)
    wait_for_port(port)
    return process


def _wait_until_known(found: SentinelSet, primary: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:  # the replica has the primary's data and takes its writes
        with redis.Redis(port=primary, **found.servers_options) as client:
            replica = client.info("replication").get("slave0", {})
        if replica.get("state") == "online":
            break
        assert time.monotonic() < deadline, f"the replica does not follow the primary: {replica}"
        time.sleep(0.1)
    for port in found.sentinel_ports:
        while True:
            with redis.Redis(port=port, decode_responses=True, **found.sentinels_options) as client:
                state = client.sentinel_master(SERVICE)
            if state["num-slaves"] == 1 and state["num-other-sentinels"] == 2:
                break
            assert time.monotonic() < deadline, f"Sentinel on {port} does not know the set: {state}"
            time.sleep(0.1)
