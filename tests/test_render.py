"""Templates: the seed's text layout, and group overrides that never lose an alarm."""

from __future__ import annotations

from bridge.model import Alarm, Group
from bridge.render import Renderer
from tests.helpers import TEMPLATES

SEED = Alarm(
    id="chenmin",
    level="3",
    dep="xx",
    env="xx",
    alert_level="高",
    alert_time="2018-01-1 11:11:11",
    alert_business="陈敏测试alert_business",
    alert_function="陈敏测试alert_function",
    exception_spec="陈敏测试之异常说明",
)


def test_native_text_reproduces_the_seeds_example_output() -> None:
    text, error = Renderer(TEMPLATES).render("native/text.j2", SEED, Group(id="chenmin", level="3"))
    assert error == ""
    assert text == (
        "部门:xx\n环境:xx\n告警业务:陈敏测试alert_business\n告警功能:陈敏测试alert_function\n"
        "告警等级:高\n告警时间:2018-01-1 11:11:11\n异常说明:陈敏测试之异常说明"
    )


def test_every_optional_field_has_its_line_in_order() -> None:
    full = Alarm(
        **{**SEED.__dict__, "alert_host": "h", "alert_ip": "10.0.0.1", "status": "s", "notes": "n", "others": "o"}
    )
    text, _ = Renderer(TEMPLATES).render("native/text.j2", full, Group(id="chenmin", level="3"))
    labels = [line.split(":", 1)[0] for line in text.splitlines()]
    assert labels == [
        "部门",
        "环境",
        "告警业务",
        "告警功能",
        "告警主机",
        "告警 IP",
        "告警等级",
        "告警时间",
        "异常说明",
        "状态",
        "备注",
        "其他",
    ]


def test_a_group_override_is_used() -> None:
    group = Group(
        id="chenmin", level="3", templates={"native/text.j2": "【{{ alarm.alert_level }}】{{ alarm.alert_business }}"}
    )
    assert Renderer(TEMPLATES).render("native/text.j2", SEED, group) == ("【高】陈敏测试alert_business", "")


def test_a_broken_override_falls_back_to_the_default_and_says_why() -> None:
    for source in (
        "{{ alarm.nope }}",
        "{% if %}",
        "{{ alarm.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
    ):
        group = Group(id="chenmin", level="3", templates={"native/text.j2": source})
        text, error = Renderer(TEMPLATES).render("native/text.j2", SEED, group)
        assert text.startswith("部门:xx\n"), source
        assert "native/text.j2" in error
