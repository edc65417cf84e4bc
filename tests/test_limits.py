"""Rate limits as the outbox applies them: a wait our limits ask for ends with a reload, an upstream's block not."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.limits import Limits
from bridge.model import DingTalkRobot, FeishuRobot, Outcome, Reason, WeComRobot
from bridge.store.sqlite import SqliteStore
from bridge.upstreams import RATE_LIMITS, RateLimit

pytestmark = pytest.mark.anyio
ROBOT = DingTalkRobot(webhook="https://oapi.dingtalk.com/robot/send?access_token=t")
TOO_FAST = Outcome("dingtalk-robot", False, 4002, True, Reason.RATE_LIMITED, "errcode 130101: send too fast")


async def test_a_wait_ends_with_new_limits_and_an_upstream_block_does_not(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"), history=10)
    try:
        limits = Limits(store, {"dingtalk-robot": (RateLimit(1, 60.0),)})
        assert await limits.take(ROBOT, 1) is None  # the one slot of the minute
        wait = await limits.take(ROBOT, 1)
        assert wait is not None and 55 < wait[0] <= 60
        limits.reconfigure({"dingtalk-robot": (RateLimit(100, 60.0),)})
        assert await limits.take(ROBOT, 1) is None  # the new limit has room: the wait is over
        assert limits.blocked(ROBOT, TOO_FAST) == 600
        limits.reconfigure({"dingtalk-robot": (RateLimit(100, 60.0),)})  # a reload: DingTalk's block holds
        held = await limits.take(ROBOT, 1)
        assert held is not None and 595 < held[0] <= 600
    finally:
        await store.close()


async def test_only_a_dingtalk_robot_or_a_feishu_bot_refused_as_too_fast_is_blocked(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"), history=10)
    await store.close()
    limits = Limits(store, RATE_LIMITS)
    assert limits.blocked(WeComRobot(webhook="https://qyapi.weixin.qq.com/x?key=k"), TOO_FAST) is None
    assert limits.blocked(FeishuRobot(webhook="https://open.feishu.cn/open-apis/bot/v2/hook/t"), TOO_FAST) == 62.0
    refused = Outcome("dingtalk-robot", False, 4002, False, Reason.REJECTED, "errcode 300001")
    assert limits.blocked(ROBOT, refused) is None
