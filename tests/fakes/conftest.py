from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes._server import ManualClock

ROOT = Path(__file__).resolve().parents[2]
Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def spawn_cli() -> Iterator[Spawn]:
    """Start `python -m <module> <args>`; the process is terminated at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def spawn(module: str, *args: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", module, "--port", "0", *args]
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, encoding="utf-8")
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=10)
        elif proc.stdout is not None:
            proc.stdout.close()
