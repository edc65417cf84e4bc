"""Benchmarks: numbers measured in one run on this machine, never pass/fail. `make bench` or `python -m bench`."""

from __future__ import annotations
