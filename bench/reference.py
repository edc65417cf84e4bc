"""The B2 reference: Apprise delivering the bench alarms to the same receivers, driven like the gateway is.

Apprise's DingTalk, WeCom robot and Feishu plugins hard-code the vendors' hosts in a class attribute (``notify_url``);
pointing that attribute at the local fakes is the only change: every send still goes through the plugin's own
code (requests.post with a new session, hence a new TLS handshake, per message). ``REQUESTS_CA_BUNDLE`` makes
requests trust the fakes' self-signed certificate; the per-target throttle (``request_rate_per_sec``) is off.
Apprise quotes the DingTalk sign and then passes it through ``params``, so a signed robot rejects it with
errcode 310000 (which Apprise reports as success: it trusts HTTP 200); the throughput run therefore uses an
unsigned robot on the same fake, and ``--signed-check`` measures what the signed robot confirms. Apprise's Feishu
plugin does not sign at all: it sends to an unsigned bot on the Feishu fake.

Usage: python -m bench.reference --upstreams JSON --ca CERT --run RUN --count N --concurrency C [--signed-check]
Prints one JSON line: {"started": t, "finished": t, "reported_ok": n, "reported_failed": n}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.constants import (
    DINGTALK_PLAIN_TOKEN,
    DINGTALK_SECRET,
    DINGTALK_TOKEN,
    FEISHU_PLAIN_TOKEN,
    GROUP_ID,
    GROUP_LEVEL,
    MAIL_TO,
    WECOM_KEY,
)
from bench.peers import TEMPLATES, Upstreams, alarm_fields
from bridge.model import Alarm, Channel, Group
from bridge.render import Renderer


def targets(upstreams: Upstreams, signed: bool) -> list[str]:
    if signed:
        return [f"dingtalk://{DINGTALK_SECRET}@{DINGTALK_TOKEN}/"]
    return [
        f"dingtalk://{DINGTALK_PLAIN_TOKEN}/",
        f"wecombot://{WECOM_KEY}",
        f"feishu://{FEISHU_PLAIN_TOKEN}/",
        f"mailto://127.0.0.1:{upstreams.smtp_port}?to={MAIL_TO}&from=alarm-bridge@localhost&mode=insecure",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reference")
    parser.add_argument("--upstreams", required=True, help="the receivers' JSON line")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--signed-check", action="store_true")
    args = parser.parse_args(argv)
    os.environ["REQUESTS_CA_BUNDLE"] = args.ca
    logging.basicConfig(level=logging.WARNING)

    import apprise
    from apprise.plugins.dingtalk import NotifyDingTalk
    from apprise.plugins.feishu import NotifyFeishu
    from apprise.plugins.wecombot import NotifyWeComBot

    upstreams = Upstreams(**json.loads(args.upstreams))
    NotifyDingTalk.notify_url = f"{upstreams.dingtalk}/robot/send?access_token={{token}}"
    NotifyWeComBot.notify_url = f"{upstreams.wecom}/cgi-bin/webhook/send?key={{key}}"
    NotifyFeishu.notify_url = f"{upstreams.feishu}/open-apis/bot/v2/hook/{{token}}"
    notifier = apprise.Apprise()
    for url in targets(upstreams, args.signed_check):
        if not notifier.add(url):
            print(f"bench.reference: apprise refused {url.split('://')[0]}://...", file=sys.stderr)
            return 2
    for plugin in notifier:
        plugin.request_rate_per_sec = 0  # the per-target throttle, off

    # The same text the gateway sends (its default templates), rendered before the clock starts.
    renderer = Renderer([TEMPLATES])
    group = Group(id=GROUP_ID, level=GROUP_LEVEL, name="bench")
    messages = []
    for i in range(args.count):
        message, _ = renderer.message(Alarm.from_fields(alarm_fields(args.run, i)), group, Channel.DINGTALK)
        messages.append((message.title, message.body))

    def send(title_body: tuple[str, str]) -> Any:
        return notifier.notify(body=title_body[1], title=title_body[0])

    started = time.time()
    with ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(send, messages))
    finished = time.time()
    ok = sum(1 for r in results if r)
    print(
        json.dumps({"started": started, "finished": finished, "reported_ok": ok, "reported_failed": len(results) - ok})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
