"""Leased jobs read back as work per target, and an email job's mail made again for some of its recipients."""

from __future__ import annotations

import json

from bridge.intake import jobs_for
from bridge.model import Alarm, DingTalkRobot, Email, Group, Member
from bridge.store import Job
from bridge.work import mailed_again, read_leased
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
