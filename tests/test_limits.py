"""Rate limits as the outbox applies them: a wait our limits ask for ends with a reload, an upstream's block not."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.limits import Limits
from bridge.model import DingTalkRobot, FeishuRobot, Outcome, Reason, WeComRobot
from bridge.schema import ConfigError, Node
from bridge.store.sqlite import SqliteStore
from bridge.upstreams import BLOCKS, RATE_LIMITS, RateLimit, blocks

pytestmark = pytest.mark.anyio
ROBOT = DingTalkRobot(webhook="https://oapi.dingtalk.com/robot/send?access_token=t")
TOO_FAST = Outcome("dingtalk-robot", False, 4002, True, Reason.RATE_LIMITED, "errcode 130101: send too fast")


async def test_a_wait_ends_with_new_limits_and_an_upstream_block_does_not(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"), history=10)
    try:
        limits = Limits(store, {"dingtalk-robot": (RateLimit(1, 60.0),)}, BLOCKS)
        assert await limits.take(ROBOT, 1) is None  # the one slot of the minute
        wait = await limits.take(ROBOT, 1)
        assert wait is not None and 55 < wait[0] <= 60
        limits.reconfigure({"dingtalk-robot": (RateLimit(100, 60.0),)}, BLOCKS)
        assert await limits.take(ROBOT, 1) is None  # the new limit has room: the wait is over
        assert limits.blocked(ROBOT, TOO_FAST) == 600
        limits.reconfigure({"dingtalk-robot": (RateLimit(100, 60.0),)}, BLOCKS)  # a reload: DingTalk's block holds
        held = await limits.take(ROBOT, 1)
        assert held is not None and 595 < held[0] <= 600
    finally:
        await store.close()


async def test_a_too_fast_refusal_holds_the_targets_messages_for_its_types_block(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"), history=10)
    try:
        limits = Limits(store, RATE_LIMITS, parse_blocks({"dingtalk-robot": "5m"}))
        # Another sender took the WeCom robot's minute: its messages wait out the minute, not retried into it.
        wecom = WeComRobot(webhook="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
        refused = Outcome("wecom-robot", False, 4004, True, Reason.RATE_LIMITED, "errcode 45009: api freq out of limit")
        assert limits.blocked(wecom, refused) == 60
        held = await limits.take(wecom, 1)
        assert held is not None and 55 < held[0] <= 60
        assert limits.blocked(ROBOT, TOO_FAST) == 300  # delivery.blocks replaced DingTalk's ten minutes
        assert limits.blocked(FeishuRobot(webhook="https://open.feishu.cn/open-apis/bot/v2/hook/t"), TOO_FAST) == 62
        assert limits.blocked(ROBOT, Outcome("dingtalk-robot", False, 4002, False, Reason.REJECTED, "300001")) is None
    finally:
        await store.close()


def parse_blocks(data: dict[str, str]) -> dict[str, float]:
    return blocks(Node("test.yaml", "delivery.blocks", data))


def test_delivery_blocks_name_known_types_only() -> None:
    with pytest.raises(ConfigError, match="wecom-robto"):
        parse_blocks({"wecom-robto": "1m"})
