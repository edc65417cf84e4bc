"""How targets are named wherever a person reads of them: deliveries, the API, the UI, logs and metrics."""

from __future__ import annotations

import pytest

from bridge.model import DingTalkApp, DingTalkRobot, Email, Target, WeComRobot, label
from bridge.upstreams import rate_key

TOKEN = "b6e0f3a9c5d1e7b2c4a8f0e9d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8"


@pytest.mark.parametrize(
    ("target", "named"),
    [
        (DingTalkRobot(webhook=f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}"), "dingtalk-robot …d9c8"),
        (DingTalkRobot(webhook=f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}", name="值班群"),
         "dingtalk-robot 值班群"),
        (WeComRobot(webhook="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"),
         "wecom-robot …5aaa"),
        (DingTalkApp(app="corp"), "dingtalk-app corp"),
        (DingTalkApp(app="corp", name="ops chat"), "dingtalk-app ops chat"),
        (Email(), "email"),
    ],
)  # fmt: skip
def test_a_target_is_named_by_its_config_name_else_its_app_else_its_tokens_last_four(
    target: Target, named: str
) -> None:
    assert label(target) == named
    assert TOKEN not in label(target)


def test_two_robots_of_one_group_are_told_apart_and_a_name_changes_no_rate_limit() -> None:
    first = DingTalkRobot(webhook="https://oapi.dingtalk.com/robot/send?access_token=aaaa1111")
    second = DingTalkRobot(webhook="https://oapi.dingtalk.com/robot/send?access_token=bbbb2222")
    assert label(first) != label(second)
    assert rate_key(DingTalkRobot(webhook=first.webhook, name="值班群")) == rate_key(first)
