"""Alarms the bridge makes up: test alarms sent from the pages and the API, and the samples a preview renders."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, tzinfo

from bridge.config import StormSettings
from bridge.gateway import Gateway, Result
from bridge.model import Alarm, Group
from bridge.tally import Storm, Tally, summary_alarm
from bridge.web.activity import Delivery, read, records


def test_alarm(group: Group, who: str, dep: str, env: str, alert_level: str, business: str, zone: tzinfo) -> Alarm:
    """A test alarm for the group; its own identity, so that the dedup window never holds it back."""
    return Alarm(
        id=group.id,
        level=group.level,
        dep=dep,
        env=env,
        alert_level=alert_level,
        alert_time=datetime.now(zone).strftime("%Y-%m-%d %H:%M:%S"),
        alert_business=business or "alarm-bridge 测试告警 / test alarm",
        notes=f"测试告警, sent by {who} from alarm-bridge's configuration page",
        identity=f"test:{uuid.uuid4().hex}",
    )


async def send_test(gateway: Gateway, alarm: Alarm) -> tuple[Result, list[Delivery]]:
    """The test alarm through the real delivery path, and each target's delivery as far as it got."""
    result = await gateway.accept(alarm)
    jobs = await gateway.store.jobs(None, 200)
    jobs = [j for j in jobs if read(j).identity == alarm.identity]
    found = records(jobs)
    return result, found[0].deliveries if found else []


SAMPLES: dict[str, dict[str, str]] = {
    "seed": {
        "dep": "du-srv",
        "env": "prod",
        "alert_level": "高",
        "alert_time": "2018-01-1 01:01:01",
        "alert_business": "陈敏测试alert_business",
        "alert_function": "陈敏测试alert_function",
        "exception_spec": "陈敏测试之异常说明",
    },
    "full": {
        "dep": "du-op",
        "env": "prod",
        "alert_level": "中",
        "alert_time": "2024-05-20 09:30:00",
        "alert_business": "订单服务",
        "alert_function": "支付回调",
        "alert_host": "pay-api-03",
        "alert_ip": "10.0.3.17",
        "exception_spec": "TimeoutError: 支付网关 5 秒无响应",
        "status": "firing",
        "notes": "已自动重试 3 次",
        "others": "trace_id=4bf92f3577b34da6",
    },
    "low": {
        "dep": "du-fe",
        "env": "dev",
        "alert_level": "低",
        "alert_time": "2024-05-20 23:59:59",
        "alert_business": "静态资源",
        "exception_spec": "CDN 命中率低于 80%",
    },
}
SAMPLES["storm"] = SAMPLES["full"]  # its alarms are this one's, on six hosts, at every level
SAMPLE_NAMES = {
    "seed": "the seed's example (高)", "full": "every field (中)", "low": "few fields (低)",
    "storm": "a storm's first summary (240 alarms)",
}  # fmt: skip
_SAMPLE_STORM = StormSettings(120.0, 30.0, 90.0, 4, 5, 3, 50_000, "https://alarm-bridge.example")


def sample_alarm(name: str, group: Group, settings: StormSettings | None = None) -> Alarm:
    """A sample alarm for the group, or a storm's summary of sample alarms (as ``settings`` would make it)."""
    fields = {**SAMPLES[name], "id": group.id, "level": group.level}
    if name != "storm":
        return Alarm.from_fields(fields)
    now = time.time()
    settings = settings or _SAMPLE_STORM
    tally = Tally(settings.examples)
    for i in range(240):
        tally.add(fields | {"alert_host": f"pay-api-{i % 6:02d}", "alert_level": "高中低"[i % 3]})
    storm = Storm("sample", now - 40, now, tally.count, 1, now, "")
    return Alarm(**summary_alarm(storm, settings, fields, tally, 0))
