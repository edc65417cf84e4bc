"""Leased jobs read back as work per target, an email job's mail made again for some of its recipients, and the
progress a job keeps of a split message."""

from __future__ import annotations

import json

from bridge.intake import jobs_for
from bridge.model import Alarm, DingTalkRobot, Email, Format, Group, Member, Message, Outcome
from bridge.store import Job
from bridge.work import mailed_again, progress, read_leased, resumed
from tests.helpers import seed_alarm

GROUP = Group(
    id="chenmin",
    level="3",
    members=(Member(name="陈敏", mail="chenmin@example.com"),),
    targets=(DingTalkRobot(webhook="https://robot.example/send?access_token=t"), Email(to=("ops@example.com",))),
)


def alarm(n: int) -> Alarm:
    return Alarm.from_fields({k: v for k, v in seed_alarm(exception_spec=f"alarm {n}").items() if k != "sign"})


def test_jobs_are_read_back_per_target_and_an_unreadable_one_is_set_apart() -> None:
    jobs = [job for n in range(3) for job in jobs_for(alarm(n), GROUP)]
    broken = Job(id="broken:0", payload='{"target": 0}', created=1.0)
    works, unreadable = read_leased([*jobs, broken], leased_until=5.0)
    assert [(w.target, len(w.jobs), [a.exception_spec for a in w.alarms]) for w in works] == [
        (GROUP.targets[0], 3, ["alarm 0", "alarm 1", "alarm 2"]),
        (GROUP.targets[1], 3, ["alarm 0", "alarm 1", "alarm 2"]),
    ]
    assert [(job.id, type(error)) for job, error in unreadable] == [("broken:0", KeyError)]


def test_a_mail_made_again_goes_to_the_given_addresses_alone() -> None:
    email_job = jobs_for(alarm(1), GROUP)[1]
    again = mailed_again(email_job, ["chenmin@example.com"])
    (work,), _ = read_leased([again], leased_until=5.0)
    assert work.target == Email(to=("chenmin@example.com",)) and work.group.members == ()
    assert work.alarms == [alarm(1)] and again.created == email_job.created
    assert again.id == f"{email_job.id}+1" and json.loads(again.payload)["target"] == 1


def test_a_mail_made_again_is_never_merged_with_the_groups_other_mails() -> None:
    group = Group(id="chenmin", level="3", members=GROUP.members, targets=(Email(to=("oncall@example.com",)),))
    ordinary = jobs_for(alarm(2), group)[0]
    again = mailed_again(jobs_for(alarm(1), group)[0], ["oncall@example.com"])  # the same target, members left out
    works, _ = read_leased([again, ordinary], leased_until=5.0)
    assert [(len(w.group.members), [a.exception_spec for a in w.alarms]) for w in works] == [
        (0, ["alarm 1"]),
        (1, ["alarm 2"]),
    ]


MESSAGE = Message("【高】磁盘", "(1/3)\n...\n(2/3)\n...\n(3/3)\n...", Format.TEXT)


def test_a_message_resumes_after_the_parts_the_upstream_has_and_only_the_same_message() -> None:
    failed_at_3 = progress(MESSAGE, Outcome("robot", False, 4002, True, sent=2), 3)
    assert resumed(MESSAGE, failed_at_3, 3).skip == 2
    assert resumed(MESSAGE, "", 3).skip == 0
    assert resumed(MESSAGE, "x" + failed_at_3, 3).skip == 0  # damaged: sent whole, never an error that stops delivery
    # Made differently on the retry (a template changed meanwhile): every part is sent, none is lost.
    assert resumed(Message(MESSAGE.title, MESSAGE.body + "!", Format.TEXT), failed_at_3, 3).skip == 0
    assert resumed(Message(MESSAGE.title, MESSAGE.body, Format.MARKDOWN), failed_at_3, 3).skip == 0
    # Split otherwise (delivery.split or the group's mentions changed): its parts are not the parts sent.
    assert resumed(MESSAGE, failed_at_3, 2).skip == 0
    assert resumed(MESSAGE, failed_at_3, 4).skip == 0


def test_a_message_resumes_only_in_the_app_chat_that_has_its_first_parts() -> None:
    in_chat = progress(MESSAGE, Outcome("dingtalk-app ops", False, 4002, True, sent=1, chat="chat-a"), 3)
    again = resumed(MESSAGE, in_chat, 3)
    assert (again.skip, again.chat) == (1, "chat-a")  # the sender sends it whole to any other chat


def test_progress_is_kept_by_an_attempt_that_sent_no_part_and_dropped_once_delivered() -> None:
    failed = Outcome("dingtalk-app ops", False, 4002, True, sent=2, chat="chat-a")
    resumed_at_3 = resumed(MESSAGE, progress(MESSAGE, failed, 3), 3)
    no_part = Outcome("dingtalk-app ops", False, 4002, True)  # e.g. the token could not be had
    kept = resumed(MESSAGE, progress(resumed_at_3, no_part, 3), 3)
    assert (kept.skip, kept.chat) == (2, "chat-a")
    assert progress(resumed_at_3, Outcome("dingtalk-app ops", True), 3) == ""
    assert progress(MESSAGE, Outcome("robot", False, 4002, True, sent=0), 3) == ""
