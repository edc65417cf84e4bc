"""Templates: the seed's text layout, and group overrides that never lose an alarm."""

from __future__ import annotations

import gc
import re
import time
import weakref
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.model import Alarm, Channel, DingTalkRobot, Format, Group, WeComRobot
from bridge.render import OVERRUN_PAUSE, Renderer, split
from bridge.sandbox import OVERRIDE_SECONDS, Bounded
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
    text, error = Renderer([TEMPLATES]).render("native/text.j2", SEED, Group(id="chenmin", level="3"))
    assert error == ""
    assert text == (
        "部门:xx\n环境:xx\n告警业务:陈敏测试alert_business\n告警功能:陈敏测试alert_function\n"
        "告警等级:高\n告警时间:2018-01-1 11:11:11\n异常说明:陈敏测试之异常说明"
    )


def test_every_optional_field_has_its_line_in_order() -> None:
    full = Alarm(
        **{**SEED.__dict__, "alert_host": "h", "alert_ip": "10.0.0.1", "status": "s", "notes": "n", "others": "o"}
    )
    text, _ = Renderer([TEMPLATES]).render("native/text.j2", full, Group(id="chenmin", level="3"))
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
    assert Renderer([TEMPLATES]).render("native/text.j2", SEED, group) == ("【高】陈敏测试alert_business", "")


def test_a_broken_override_falls_back_to_the_default_and_says_why() -> None:
    for source in (
        "{{ alarm.nope }}",
        "{% if %}",
        "{{ alarm.__class__.__mro__ }}",
        "{{ alarm.fingerprint.__globals__ }}",
        "{{ group.__init__.__globals__ }}",
        "{{ group.members.__class__.__subclasses__() }}",
        "{{ ''.__class__.__subclasses__() }}",
    ):
        group = Group(id="chenmin", level="3", templates={"native/text.j2": source})
        text, error = Renderer([TEMPLATES]).render("native/text.j2", SEED, group)
        assert text.startswith("部门:xx\n"), source
        assert "native/text.j2" in error


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "of CPU to render"),
        (
            '{% set s = "x" * 1000 %}{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}'
            "{% endfor %}",
            "of CPU to render",
        ),  # loops that make no call
        ("{% for a in range(100000) %}{{ 'x' * 5000 }}{% endfor %}", "characters of output"),
        ("{{ 'x' * 10 ** 10 }}", "repeated sequence"),
        ("{{ [alarm] * 10 ** 9 }}", "repeated sequence"),
        ('{{ (["x" * 1000000] * 1000)|join }}', "repeated sequence"),
        ("{{ 9 ** 99999999 }}", "bits"),
        ("{% set a = 10 ** 64 %}{% set b = a ** 64 %}{% set c = b ** 64 %}{{ c > 1 }}", "bits"),
        ("{{ alarm.alert_business|center(1500000000) }}", "a width above"),
        ("{{ alarm.alert_business.ljust(1500000000) }}", "a width above"),
        ('{{ "%0500000000d" % 1 }}', "a format wider"),
        ('{{ "%0500000000d"|format(1) }}', "a format wider"),
        ('{{ "{:>1000000000}".format(1) }}', "a format wider"),
        ("{{ '{:{}}'.format('', 999999999)|length }}", "a format wider"),
        ("{{ ('%(a)999999999s' % {'a': ''})|length }}", "a format wider"),
        ("{{ ('%.999999999d' % 1)|length }}", "a format wider"),
        ("{{ ([[0]] * 500000)|sum(start=[])|length }}", "a sum that does not start from a number"),
        ("{{ ('a' * 1000)|replace('a', 'a' * 999999)|length }}", "a replacement of more than"),
        ("{{ ('a' * 1000).join([''] * 500000)|length }}", "a join of more than"),
        ("{{ [alarm.dep * 300000, alarm.dep * 300000, alarm.dep * 300000]|join('-')|length }}", "a join of more than"),
        ("{{ ('x\n' * 400000)|indent('    ')|length }}", "an indent of more than"),
        ("{% set l = [1] %}{% for i in range(30) %}{% set _ = l.extend(l) %}{% endfor %}{{ l|length }}", "unsafe"),
        ("{{ lipsum(50000)|length }}", "'lipsum' is undefined"),
        ("{{ ('a ' * 400000)|wordwrap(1) }}", "a filter that goes word by word"),
        ("{{ ('a.com ' * 100000)|urlize }}", "a filter that goes word by word"),
        ("{{ ('%999999d' * 300) % ((1,) * 300) }}", "a format wider"),
        ("{{ ('{0:>999999}' * 300).format(1) }}", "a format wider"),
        ("{% set n = namespace(s='ab') %}{% for i in range(40) %}{% set n.s = n.s ~ n.s %}{% endfor %}", "more than"),
        ("{% set n = namespace(s=[1]) %}{% for i in range(40) %}{% set n.s = n.s + n.s %}{% endfor %}", "more than"),
    ],
)
def test_a_runaway_override_ends_soon_and_the_default_is_used(source: str, why: str) -> None:
    """Without the bound, each of these would hold the event loop, and so every group's deliveries, for hours or
    take gigabytes."""
    renderer = Renderer([TEMPLATES])
    group = Group(id="chenmin", level="3", templates={"native/title.j2": source})
    for _ in range(2):  # the second time too (an override that overran its CPU time is not run again)
        text, error = renderer.render("native/title.j2", SEED, group)
        assert text == renderer.render("native/title.j2", SEED, Group(id="chenmin", level="3"))[0]
        assert "native/title.j2" in error and why in error


def test_an_override_that_overran_keeps_nothing_of_its_renders_alive() -> None:
    renderer = Renderer([TEMPLATES])
    loops = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    group = Group(id="chenmin", level="3", templates={"native/title.j2": loops})
    alarm = Alarm(**SEED.__dict__)
    alive = weakref.ref(alarm)
    errors = {renderer.render("native/title.j2", alarm, group)[1] for _ in range(3)}  # overran, then not run again
    assert len(errors) == 1 and "of CPU to render" in errors.pop()
    del alarm
    gc.collect()
    assert alive() is None


def test_an_override_that_overran_runs_again_after_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = Renderer([TEMPLATES])
    source = "{% for a in alarm.extra.get('rows', []) %}{% for b in range(100000) %}{% endfor %}{% endfor %}ok"
    group = Group(id="chenmin", level="3", templates={"native/title.j2": source})
    big = Alarm(**SEED.__dict__ | {"extra": {"rows": list(range(10000))}})
    assert "of CPU to render" in renderer.render("native/title.j2", big, group)[1]  # one message that large
    assert "of CPU to render" in renderer.render("native/title.j2", SEED, group)[1]  # the next: not run at all
    later = time.monotonic() + OVERRUN_PAUSE + 1
    monkeypatch.setattr("bridge.render.time.monotonic", lambda: later)
    assert renderer.render("native/title.j2", SEED, group) == ("ok", "")  # after the pause, run again


def test_an_override_that_overran_is_paused_even_when_its_source_changes() -> None:
    renderer = Renderer([TEMPLATES])
    loops = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    assert (
        "of CPU"
        in renderer.render("native/title.j2", SEED, Group(id="c", level="3", templates={"native/title.j2": loops}))[1]
    )
    changed = Group(id="c", level="3", templates={"native/title.j2": loops + " "})
    started = time.process_time()
    assert "of CPU" in renderer.render("native/title.j2", SEED, changed)[1]
    assert time.process_time() - started < 0.05  # not run at all: the pause is the group's, not the source's


def test_the_bounds_leave_ordinary_overrides_alone() -> None:
    source = (
        "{{ 1.5 ** 100 > 1 }} {{ 2 ** 64 }} {{ 1 ** 200000 }} {{ '%05d' % 42 }} {{ '%-4s|' % 'x' }} {{ '%.2f' % 1.5 }}"
        " {{ '{:>8}'.format('x') }} {{ alarm.dep|center(9) }}"
        "{% for c in alarm.env %}{{ loop.index }}/{{ loop.length }}{% endfor %} {{ 'ab' * 3 }}"
        " {{ alarm.exception_spec|truncate(200) }} {{ '%s'|format(alarm.exception_spec) }} {{ 1700000000|center(12) }}"
        " {{ ['a', 'b']|join(',') }} {{ [1, 2]|sum }} {{ alarm.dep|replace('x', 'yy') }}"
    )
    data = SEED.__dict__ | {"exception_spec": '服务异常 {"phone": "13800138000", "code": 500}'}
    group = Group(id="chenmin", level="3", templates={"native/title.j2": source})
    text, error = Renderer([TEMPLATES]).render("native/title.j2", Alarm(**data), group)
    spec = data["exception_spec"]
    assert error == ""
    assert text == (
        f"True {2**64} 1 00042 x   | 1.50 {'x':>8} {'xx'.center(9)}1/22/2 ababab {spec} {spec}"
        f" {'1700000000'.center(12)} a,b 3 yyyy"
    )


def test_an_override_that_does_not_compile_fails_the_same_way_each_time() -> None:
    renderer = Renderer([TEMPLATES])
    group = Group(id="chenmin", level="3", templates={"native/title.j2": "{% if %}"})
    first, again = (renderer.render("native/title.j2", SEED, group)[1] for _ in range(2))
    assert first == again and "native/title.j2" in first


@pytest.mark.parametrize(
    "source",
    [
        "{{ group.targets[0].webhook }}",
        "{{ (group|attr('targets'))[0]|attr('secret') }}",
        "{{ group['targets'][0].secret }}",
        "{{ group.encoded }}",
        "{{ group.to_dict() }}",
    ],
)
def test_an_override_cannot_read_the_groups_webhooks_or_secrets(source: str) -> None:
    robot = DingTalkRobot(webhook="https://oapi.dingtalk.com/robot/send?access_token=tok3n", secret="SECs3cret")
    group = Group(id="chenmin", level="3", targets=(robot,), templates={"native/title.j2": source})
    text, error = Renderer([TEMPLATES]).render("native/title.j2", SEED, group)
    assert "tok3n" not in text + error and "s3cret" not in text + error
    assert "native/title.j2" in error  # the override failed, and the default was used


@pytest.mark.parametrize("source", ["{{ group }}", "{{ group|pprint }}", "{{ group|string }}"])
def test_a_group_printed_whole_shows_no_webhook_or_secret(source: str) -> None:
    robot = DingTalkRobot(webhook="https://oapi.dingtalk.com/robot/send?access_token=tok3n", secret="SECs3cret")
    wecom = WeComRobot(webhook="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k3y")
    group = Group(id="chenmin", level="3", targets=(robot, wecom), templates={"native/title.j2": source})
    text, error = Renderer([TEMPLATES]).render("native/title.j2", SEED, group)
    assert "DingTalkRobot" in text + error and "tok3n" not in text + error and "s3cret" not in text + error
    assert "k3y" not in text + error


GOLDEN = Path(__file__).parent / "golden"
FULL = Alarm(
    **{**SEED.__dict__, "dep": "du-srv", "env": "prod", "alert_host": "du-ftp-qd-2", "alert_ip": "10.27.23.65"}
)
MARKDOWN_GROUP = Group(id="chenmin", level="3", name="陈敏测试告警组", format=Format.MARKDOWN)


@pytest.mark.parametrize("name", ["title", "text", "dingtalk.md", "wecom.md", "feishu.md", "email.html"])
def test_every_default_template_matches_its_golden_file(name: str) -> None:
    text, error = Renderer([TEMPLATES]).render(f"native/{name}.j2", FULL, MARKDOWN_GROUP)
    assert error == ""
    assert text + "\n" == (GOLDEN / f"native-{name}.txt").read_text(encoding="utf-8")


def test_the_digest_matches_its_golden_file() -> None:
    resolved = Alarm(**{**FULL.__dict__, "alert_level": "低", "exception_spec": "恢复"})
    message, count = Renderer([TEMPLATES]).digest([FULL, resolved], MARKDOWN_GROUP, Channel.DINGTALK, 18000)
    assert count == 2
    expected = (GOLDEN / "native-digest-markdown.txt").read_text(encoding="utf-8")
    assert f"{message.title}\n---\n{message.body}\n" == expected


def test_a_digest_lists_only_what_fits_in_the_budget() -> None:
    alarms = [Alarm(**{**FULL.__dict__, "exception_spec": f"第 {n} 分区"}) for n in range(100)]
    message, count = Renderer([TEMPLATES]).digest(alarms, MARKDOWN_GROUP, Channel.WECOM, 2000)
    assert 1 < count < 100
    assert len(message.body.encode()) <= 2000
    assert f"第 {count - 1} 分区" in message.body and f"第 {count} 分区" not in message.body


def test_html_is_escaped_in_email_and_not_in_text() -> None:
    hostile = Alarm(**{**FULL.__dict__, "exception_spec": "<script>alert(1)</script>"})
    html, _ = Renderer([TEMPLATES]).render("native/email.html.j2", hostile, MARKDOWN_GROUP)
    text, _ = Renderer([TEMPLATES]).render("native/text.j2", hostile, MARKDOWN_GROUP)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "异常说明:<script>alert(1)</script>" in text


def test_split_keeps_every_part_within_the_limit_past_a_hundred_parts() -> None:
    text = "告警" * 3000  # one line, so every part is filled up to the limit
    parts = split(text, 60)
    assert len(parts) > 100
    assert all(len(part.encode()) <= 60 for part in parts)
    assert parts[0].startswith(f"(1/{len(parts)})\n") and parts[-1].startswith(f"({len(parts)}/{len(parts)})\n")
    assert "".join(part.split("\n", 1)[1] for part in parts) == text


@pytest.mark.parametrize("limit", [-100, 0, 5])
def test_split_ends_even_when_the_limit_leaves_no_room_for_a_character(limit: int) -> None:
    parts = split("磁盘告警", limit)
    assert "".join(part.split("\n", 1)[1] for part in parts) == "磁盘告警"


def test_each_part_of_a_split_wecom_markdown_message_opens_and_closes_its_own_font_tags() -> None:
    spec = "\n".join(f"第{i}行: 进程 java 占用内存过高" for i in range(400))  # inside <font color="comment">
    alarm = Alarm(**{**FULL.__dict__, "exception_spec": spec})
    body, _ = Renderer([TEMPLATES]).render("native/wecom.md.j2", alarm, MARKDOWN_GROUP)
    parts = split(body, 4096)
    assert len(parts) > 2
    for part in parts:
        assert len(part.encode()) <= 4096
        tags = re.findall(r"<font\b[^>]*>|</font>", part)
        depth = 0
        for tag in tags:  # never a close before its open, and nothing left open at the end
            depth += -1 if tag == "</font>" else 1
            assert depth >= 0, part
        assert depth == 0, part
    middle = parts[1].split("\n", 1)[1]
    assert middle.startswith('<font color="comment">第') and middle.endswith("</font>")
    shown = [re.sub(r"<font\b[^>]*>|</font>", "", part.split("\n", 1)[1]) for part in parts]
    assert "\n".join(shown).count("进程 java 占用内存过高") == 400  # every line, once


def test_a_feishu_message_carries_its_level_for_the_cards_colour_and_its_override_is_used() -> None:
    renderer = Renderer([TEMPLATES])
    message, errors = renderer.message(FULL, MARKDOWN_GROUP, Channel.FEISHU)
    assert (message.format, message.level, errors) == (Format.MARKDOWN, "高", [])
    assert message.body == (GOLDEN / "native-feishu.md.txt").read_text(encoding="utf-8").strip()
    overridden = replace(MARKDOWN_GROUP, templates={"native/feishu.md.j2": "**{{ alarm.alert_host }}** 坏了"})
    assert renderer.message(FULL, overridden, Channel.FEISHU)[0].body == "**du-ftp-qd-2** 坏了"
    low = Alarm(**{**FULL.__dict__, "alert_level": "低"})
    digest, count = renderer.digest([low, FULL, low], MARKDOWN_GROUP, Channel.FEISHU, 18000)
    assert (count, digest.level) == (3, "高")  # the highest of its alarms
    assert not digest.body.startswith("###")  # lark_md has no headings


def test_a_garbage_collection_during_a_render_does_not_count_against_the_override() -> None:
    heap = [[i] for i in range(3_000_000)]  # a large heap, which a full collection walks for longer than the bound
    env = Bounded([TEMPLATES])
    spent = []

    def work() -> str:
        started = time.thread_time()
        gc.collect()  # as one may come, at any allocation, in the middle of a render
        spent.append(time.thread_time() - started)
        env.check()  # the override itself has used next to nothing
        return "rendered"

    assert env.bound(work) == "rendered"
    assert spent[0] > OVERRIDE_SECONDS, "the collection was too short to tell: make the heap larger"
    assert len(heap) == 3_000_000
