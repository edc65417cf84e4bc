"""B4 Alertmanager burst: one webhook notification (payload version 4) with 1,000 firing alerts to /alertmanager.

Measured: the time to the 2xx reply, and the time until every channel (the DingTalk robot, the WeCom robot and
SMTP, as in B2) has the message. Every alert has the alertname ``bench RUN-0``, which the default rules map to
alert_business, so the receivers find the notification's message by it. A gateway without the endpoint is
reported as "not available".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import yaml

from bench.constants import GROUP_ID, GROUP_LEVEL
from bench.harness import Figure, Options, Section, gateway, unavailable, workdir
from bench.peers import new_run, receivers

logger = logging.getLogger(__name__)
NEED = ("dingtalk", "wecom", "email")
ALERTS = 1000
REPLY, EVERYWHERE = f"alertmanager: {ALERTS:,} alerts, time to 2xx", "alertmanager: until every channel has it"
TOKEN = "bench-alertmanager-token"  # noqa: S105  (a throwaway credential for a loopback run)


def payload(run: str, count: int) -> dict[str, Any]:
    """A webhook notification as Alertmanager 0.25 sends it (see shared reference/alertmanager.md)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": f"bench {run}-0",
                "instance": f"node-{i}:9100",
                "job": "node",
                "severity": "critical",
            },
            "annotations": {"summary": f"disk full on node-{i}"},
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
            "fingerprint": f"{i:016x}",
        }
        for i in range(count)
    ]
    return {
        "receiver": "alarm-bridge",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": f"bench {run}-0"},
        "commonLabels": {"alertname": f"bench {run}-0", "job": "node", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="bench {run}-0"}}',
        "truncatedAlerts": 0,
    }


def run(opts: Options) -> Section:
    with workdir(opts.scratch) as tmp, receivers(tmp, opts.logs / "b4-receivers.log") as peers:
        rules = tmp / "rules"
        rules.mkdir()
        fallback = {"name": "bench", "target": {"id": GROUP_ID, "level": GROUP_LEVEL, "dep": "du-srv", "env": "prod"}}
        (rules / "default.yaml").write_text(yaml.safe_dump({"fallback": fallback}), encoding="utf-8")
        config = peers.config(extra={"alertmanager": {"bearer_token": TOKEN, "rules": str(rules)}})
        burst = new_run()
        body = json.dumps(payload(burst, ALERTS)).encode()
        try:
            with gateway(config, opts.logs / "b4-gateway.log") as server:
                started = time.time()
                status, text, replied = asyncio.run(_post(f"{server.url}/alertmanager", body))
                if status in (404, 405):
                    return _not_available(f"POST /alertmanager answered {status}: {text[:120]}")
                done = peers.wait(burst, NEED, 1, opts.b4_timeout)
        except RuntimeError as exc:  # an older gateway refuses the alertmanager config section
            return _not_available(f"the gateway does not start with an alertmanager section: {exc}"[:300])
    everywhere = (done["last"] - started) if done["complete"] else None
    ok = 200 <= status < 300
    return Section(
        [Figure("B4", REPLY, "s", (replied - started) if ok else None, goal="< 1 s",
                note="" if ok else f"answered {status}: {text[:100]}"),
         Figure("B4", EVERYWHERE, "s", everywhere,
                note="" if everywhere is not None else f"not at every channel within {opts.b4_timeout:g}s")],
        {"alerts": ALERTS, "body_bytes": len(body), "status": status, "reply": text[:300],
         "reply_seconds": replied - started, "every_channel_seconds": everywhere, "per_receiver": done["alarms"]},
    )  # fmt: skip


async def _post(url: str, body: bytes) -> tuple[int, str, float]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}",
               "User-Agent": "Alertmanager/0.25.0"}  # fmt: skip
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text(), time.time()


def _not_available(why: str) -> Section:
    logger.warning("B4: %s", why)
    figures = [unavailable("B4", REPLY, "s", why, "< 1 s"), unavailable("B4", EVERYWHERE, "s", why)]
    return Section(figures, {"not_available": why})
