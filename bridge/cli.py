"""alarm-bridge serve | check-config | send."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.error
from pathlib import Path

from bridge import __version__, config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alarm-bridge", description="Alert gateway for DingTalk, WeCom and email.")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", default=8080, type=int)

    check = commands.add_parser("check-config", help="validate a config file; exit 1 on any error")
    check.add_argument("file", type=Path)

    send = commands.add_parser("send", help="sign and post an alarm like the seed's send_v2")
    send.add_argument("--url", default="http://127.0.0.1:8080/alarm_v2")
    send.add_argument("--secret", required=True, help="the department's sign secret")
    send.add_argument("--json", type=Path, help="a JSON file with the alarm's fields")
    send.add_argument("fields", nargs="*", metavar="field=value")

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.config, args.host, args.port)
    if args.command == "check-config":
        return _check(args.file)
    return _send(args.url, args.secret, args.json, args.fields)


def _load(path: Path) -> config.Settings | None:
    try:
        return config.load(path)
    except config.ConfigError as exc:
        print(f"alarm-bridge: {exc}", file=sys.stderr)
        return None


def _serve(path: Path, host: str, port: int) -> int:
    import uvicorn

    from bridge.app import create_app

    settings = _load(path)
    if settings is None:
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_config=None)
    return 0


def _check(path: Path) -> int:
    settings = _load(path)
    if settings is None:
        return 1
    print(f"{path}: ok ({len(settings.native.departments)} departments, {len(settings.groups)} groups)")
    return 0


def _send(url: str, secret: str, json_file: Path | None, pairs: list[str]) -> int:
    from bridge.client import send

    fields: dict[str, str] = json.loads(json_file.read_text(encoding="utf-8")) if json_file else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            print(f"alarm-bridge: expected field=value, got {pair!r}", file=sys.stderr)
            return 2
        fields[key] = value
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
