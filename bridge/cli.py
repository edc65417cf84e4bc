"""alarm-bridge serve | check-config | send | render | deliveries | rules test | hash-password."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import urllib.error
from pathlib import Path
from typing import Any

from bridge import __version__, config, config_file, logs
from bridge.schema import ConfigError
from bridge.store import StoreError


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `alarm-bridge render ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush fails silently
        return 0


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="alarm-bridge", description="Alert gateway for DingTalk, WeCom and email.")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    default_config = os.environ.get("ALARM_BRIDGE_CONFIG")
    config_option: dict[str, Any] = {"type": Path, "default": default_config, "required": default_config is None}
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", **config_option)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", default=8080, type=int)
    serve.add_argument("--log-format", choices=("text", "json"), default="text")

    check = commands.add_parser("check-config", help="validate a config file; exit 1 on any error")
    check.add_argument("file", type=Path)

    send = commands.add_parser("send", help="sign and post an alarm like the seed's send_v2")
    send.add_argument("--url", default="http://127.0.0.1:8080/alarm_v2", help="where to post (default: %(default)s)")
    send.add_argument("--secret", required=True, help="the department's sign secret")
    send.add_argument("--json", type=Path, help="a JSON file with the alarm's fields")
    send.add_argument("fields", nargs="*", metavar="field=value")

    render = commands.add_parser("render", help="print what each channel of the alarm's group would receive")
    render.add_argument("--config", **config_option)
    render.add_argument("alarm", type=Path, help="a JSON file with the alarm's fields")

    jobs = commands.add_parser("deliveries", help="list deliveries, or `deliveries retry ID` to re-send one")
    jobs.add_argument("--config", **config_option)
    jobs.add_argument("--failed", action="store_true", help="only the dead-lettered ones")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("retry", nargs="*", metavar="retry ID", help="put a delivery back in the outbox")

    rules = commands.add_parser("rules", help="`rules test FILE label=value ...`: an alert's routes and alarm")
    rules.add_argument("action", choices=["test"])
    rules.add_argument("file", type=Path, help="a rules file, e.g. rules/default.yaml")
    rules.add_argument("labels", nargs="*", metavar="label=value")
    rules.add_argument("--annotation", action="append", default=[], metavar="name=value")
    rules.add_argument("--resolved", action="store_true", help="the alert has resolved")
    rules.add_argument("--timezone", default="Asia/Shanghai")

    commands.add_parser("hash-password", help="print a password hash for web.users (password from stdin or a prompt)")

    args = parser.parse_args(argv)
    if args.command == "hash-password":
        return _hash_password()
    if args.command == "serve":
        return _serve(args.config, args.host, args.port, args.log_format)
    if args.command == "check-config":
        return _check(args.file)
    if args.command == "send":
        return _send(args.url, args.secret, args.json, args.fields)
    if args.command == "rules":
        return _rules_test(args.file, args.labels, args.annotation, args.resolved, args.timezone)
    settings = _load(args.config)
    if settings is None:
        return 2
    from bridge import deliveries

    try:
        if args.command == "render":
            fields = _fields_file(args.alarm)
            return 2 if fields is None else asyncio.run(deliveries.render(settings, fields))
        return asyncio.run(deliveries.listing(settings, args.failed, args.limit, args.retry))
    except (StoreError, TimeoutError) as exc:
        print(f"alarm-bridge: the store is unavailable: {exc or 'timed out'}", file=sys.stderr)
        return 1


def _fields_file(path: Path) -> dict[str, str] | None:
    """An alarm's fields from a JSON file (an object of strings), or None (and a message) when it has none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"alarm-bridge: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None
    except ValueError as exc:
        print(f"alarm-bridge: {path} is not JSON: {exc}", file=sys.stderr)
        return None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        print(f"alarm-bridge: {path}: expected a JSON object of the alarm's fields, each a string", file=sys.stderr)
        return None
    return data


def _hash_password() -> int:
    """A hash for ``web.users``: the password typed twice at a prompt, or the first line of what is piped in."""
    import getpass

    from bridge.web.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("alarm-bridge: the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("alarm-bridge: a password needs at least 8 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _load(path: Path) -> config.Settings | None:
    try:
        return config_file.load(path)
    except ConfigError as exc:
        print(f"alarm-bridge: {exc}", file=sys.stderr)
        return None


def _serve(path: Path, host: str, port: int, log_format: str) -> int:
    import uvicorn

    from bridge.app import create_app
    from bridge.server import protocol

    settings = _load(path)
    if settings is None:
        return 2
    logs.setup(log_format, getattr(logging, os.environ.get("ALARM_BRIDGE_LOG_LEVEL", "INFO").upper(), logging.INFO))
    server_config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        proxy_headers=bool(settings.trusted_proxies),  # none by default: a client's own X-Forwarded-For is not news
        forwarded_allow_ips=list(settings.trusted_proxies),
        http=protocol(settings.server),
        limit_concurrency=settings.server.max_connections,
    )
    server_config.load()  # imports the event loop and the HTTP protocol now, so that the freeze below takes them too
    # What is loaded by now lives as long as the process: frozen, full collections no longer walk it (under load
    # they took 15-50 ms each, about every second, and found nothing to free).
    gc.collect()
    gc.freeze()
    server = uvicorn.Server(server_config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 3  # as uvicorn.run exits: the port is taken, or the start failed


def _check(path: Path) -> int:
    from bridge.ingest import alertmanager

    settings = _load(path)
    if settings is None:
        return 1
    try:
        rulesets = alertmanager.check(settings)
    except ConfigError as exc:
        print(f"alarm-bridge: {exc}", file=sys.stderr)
        return 1
    counts = [_count(len(settings.native.departments), "department"), _count(len(settings.groups), "group")]
    print(f"{path}: ok ({', '.join([*counts, _count(len(rulesets), 'ruleset')])})")
    return 0


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _pairs(items: list[str], what: str) -> dict[str, str] | None:
    """``what=value`` arguments as a dict, or None (and a message) when one has no ``=``."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"alarm-bridge: expected {what}=value, got {item!r}", file=sys.stderr)
            return None
        found[key] = value
    return found


def _send(url: str, secret: str, json_file: Path | None, pairs: list[str]) -> int:
    from bridge.client import send

    given = _pairs(pairs, "field")
    from_file = _fields_file(json_file) if json_file else {}
    if given is None or from_file is None:
        return 2
    fields = from_file | given
    try:
        text = send(url, fields, secret)
    except (OSError, urllib.error.URLError) as exc:
        print(f"alarm-bridge: cannot reach {url}: {exc}", file=sys.stderr)
        return 2
    print(text)
    try:
        return 0 if json.loads(text).get("code") == 0 else 1
    except (ValueError, AttributeError):
        return 1


def _rules_test(path: Path, labels: list[str], annotations: list[str], resolved: bool, timezone: str) -> int:
    from bridge import rules
    from bridge.ingest import alerts

    label_pairs, annotation_pairs = _pairs(labels, "name"), _pairs(annotations, "name")
    if label_pairs is None or annotation_pairs is None:
        return 2
    try:
        ruleset = rules.load_file(path)
        explained = alerts.explain(ruleset, label_pairs, annotation_pairs, resolved, timezone)
    except ConfigError as exc:
        print(f"alarm-bridge: {exc}", file=sys.stderr)
        return 2
    print(explained)
    return 0
