"""The receivers, in a process of their own: the DingTalk, WeCom and Feishu fakes over TLS and a real SMTP server.

Each received message is searched for the bench markers (``bench RUN-INDEX``, the alarm's alert_business);
a plain-HTTP control endpoint reports, per run, which alarms every receiver has and when the last one arrived,
and when each message arrived (for the per-minute rate of each robot).

Usage: python -m bench.receivers --cert CERT --key KEY [--robot-rate N --robot-window S]
It prints one JSON line with the addresses once everything listens, and serves until SIGTERM or stdin closes.
"""

from __future__ import annotations

import argparse
import email
import json
import ssl
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bench.constants import (
    DINGTALK_PLAIN_TOKEN,
    DINGTALK_SECRET,
    DINGTALK_TOKEN,
    FEISHU_PLAIN_TOKEN,
    FEISHU_SECRET,
    FEISHU_TOKEN,
    MARKER_RE,
    WECOM_KEY,
)
from tests.fakes._server import FakeServer, Records
from tests.fakes.dingtalk import DingTalkFake
from tests.fakes.feishu import FeishuFake
from tests.fakes.smtp import Recorder, smtp_server
from tests.fakes.wecom import WeComFake


@dataclass
class _Run:
    seen: dict[int, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))  # index -> receiver -> t
    messages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # receiver -> arrivals


class Tracker:
    """Which alarms each receiver got, and when; shared by the receivers' threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = defaultdict(_Run)
        self.rejected: dict[str, int] = defaultdict(int)  # replies with an errcode, per receiver
        self.attempts: dict[str, list[float]] = defaultdict(list)  # every request's arrival, per receiver

    def saw(self, receiver: str, text: str) -> None:
        now = time.time()
        found = {(m[1], int(m[2])) for m in MARKER_RE.finditer(text)}
        with self._lock:
            for run in {r for r, _ in found}:
                self._runs[run].messages[receiver].append(now)
            for run, index in found:
                self._runs[run].seen[index].setdefault(receiver, now)

    def stats(self, run: str, need: list[str], indexes: bool = False) -> dict[str, Any]:
        with self._lock:
            data = self._runs.get(run, _Run())
            complete = [max(by[r] for r in need) for by in data.seen.values() if all(r in by for r in need)]
            found = {r: [i for i, by in data.seen.items() if r in by] for r in need} if indexes else {}
            return {
                "indexes": found,
                "complete": len(complete),
                "last": max(complete, default=None),
                "alarms": {r: sum(1 for by in data.seen.values() if r in by) for r in need},
                "messages": {r: list(times) for r, times in data.messages.items()},
                "rejected": dict(self.rejected),
                "attempts": {r: list(times) for r, times in self.attempts.items()} if indexes else {},
            }

    def reject(self, receiver: str) -> None:
        with self._lock:
            self.rejected[receiver] += 1

    def attempt(self, receiver: str) -> None:
        with self._lock:
            self.attempts[receiver].append(time.time())


class Tap(Records[Any]):
    """A fake's message list that reports each message to the tracker instead of keeping it (storms are big)."""

    def __init__(self, receiver: str, tracker: Tracker) -> None:
        super().__init__()
        self._receiver = receiver
        self._tracker = tracker

    def append(self, item: Any) -> None:
        self._tracker.saw(self._receiver, json.dumps(item.body, ensure_ascii=False))


class MailTap(Recorder):
    """The SMTP recorder, reporting the decoded subject and text parts of each message to the tracker."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self._tracker = tracker

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content.replace(b"\r\n", b"\n"), policy=policy.default)
        texts = [str(parsed.get("Subject", ""))]
        if isinstance(parsed, EmailMessage):
            texts += [part.get_content() for part in parsed.walk() if part.get_content_maintype() == "text"]
        self._tracker.saw("email", "\n".join(texts))
        return self.data_reply


def _counting(receiver: str, tracker: Tracker) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        tracker.attempt(receiver)
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        if isinstance(body, bytes) and body and b'"errcode": 0,' not in body and b'"code": 0,' not in body:
            tracker.reject(receiver)
        return response

    return middleware


def _app(fake: DingTalkFake | WeComFake | FeishuFake, receiver: str, tracker: Tracker) -> web.Application:
    app = web.Application(middlewares=[_counting(receiver, tracker)], client_max_size=4 * 1024 * 1024)
    app.add_routes(fake.routes())
    return app


def _control(tracker: Tracker) -> web.Application:
    async def stats(request: web.Request) -> web.Response:
        need = [r for r in request.query.get("need", "dingtalk,wecom,email").split(",") if r]
        indexes = request.query.get("indexes") == "1"
        return web.json_response(tracker.stats(request.query["run"], need, indexes))

    app = web.Application()
    app.add_routes([web.get("/stats", stats)])
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.receivers")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--robot-rate", type=int, default=10**9, help="messages per window per robot (20 is real)")
    parser.add_argument("--robot-window", type=float, default=60.0)
    args = parser.parse_args(argv)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    tracker = Tracker()
    # A robot over its limit is blocked for 10 minutes: scaled with the window, as the limit is.
    dingtalk = DingTalkFake(robot_rate=args.robot_rate, robot_window=args.robot_window,
                            robot_block=10 * args.robot_window)  # fmt: skip
    dingtalk.add_robot(DINGTALK_TOKEN, DINGTALK_SECRET)
    dingtalk.add_robot(DINGTALK_PLAIN_TOKEN)
    dingtalk.robot_messages = Tap("dingtalk", tracker)
    wecom = WeComFake(robot_rate=args.robot_rate, robot_window=args.robot_window)
    wecom.add_robot(WECOM_KEY)
    wecom.robot_messages = Tap("wecom", tracker)
    feishu = FeishuFake(per_second=args.robot_rate, per_minute=args.robot_rate)
    feishu.add_bot(FEISHU_TOKEN, FEISHU_SECRET)
    feishu.add_bot(FEISHU_PLAIN_TOKEN)
    feishu.messages = Tap("feishu", tracker)
    with (
        FakeServer(_app(dingtalk, "dingtalk", tracker), tls) as ding_server,
        FakeServer(_app(wecom, "wecom", tracker), tls) as wecom_server,
        FakeServer(_app(feishu, "feishu", tracker), tls) as feishu_server,
        FakeServer(_control(tracker)) as control,
        smtp_server(MailTap(tracker)) as smtp_port,
    ):
        ready = {"dingtalk": ding_server.url, "wecom": wecom_server.url, "feishu": feishu_server.url,
                 "smtp_port": smtp_port, "control": control.url}  # fmt: skip
        print(json.dumps(ready), flush=True)
        sys.stdin.read()  # until the parent closes our stdin or ends us


if __name__ == "__main__":
    main()
