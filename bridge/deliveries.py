"""alarm-bridge render and deliveries: a delivery before it is made (what each target of an alarm's group would
receive) and after (the outbox's list, and a dead delivery put back)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import aiohttp

from bridge.app import senders
from bridge.channels.email import Connections
from bridge.config import Settings
from bridge.gateway import find_group
from bridge.model import REQUIRED_FIELDS, Alarm, label
from bridge.store import State, open_store
from bridge.web import activity


async def render(settings: Settings, fields: dict[str, str]) -> int:
    """What each target of the alarm's group would receive, request by request, as the channel sends it."""
    if missing := [k for k in REQUIRED_FIELDS if k not in fields and k != "sign"]:
        print(f"alarm-bridge: the alarm lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    alarm = Alarm.from_fields(fields)
    store = open_store(settings.store)
    failed = 0
    try:
        group = await find_group(settings, store, alarm.id, alarm.level)
        if group is None:
            print(f"alarm-bridge: no group id={alarm.id!r} level={alarm.level!r}", file=sys.stderr)
            return 1
        sending = replace(settings, delivery=replace(settings.delivery, dry_run=False))  # what would really go
        async with aiohttp.ClientSession() as session:  # never used: nothing is sent
            channels = senders(sending, session, Connections(), store)
            for target in group.targets:
                message, errors = settings.renderer.preview(alarm, group, target.channel)
                if message is None:  # a shipped template failed: errors says why
                    print(f"alarm-bridge: {label(target)}: {errors[0]}", file=sys.stderr)
                    failed += 1
                    continue
                bodies = channels[target.channel].preview(target, group, message)
                print(f"=== {label(target)} ({message.format}, {len(bodies)} message(s)) ===")
                for i, body in enumerate(bodies, 1):
                    print(f"--- {i}/{len(bodies)} ---\n{body}" if len(bodies) > 1 else body)
                for error in errors:
                    print(f"!!! {error}")
    finally:
        await store.close()
    return 1 if failed else 0


async def listing(settings: Settings, failed: bool, limit: int, words: list[str]) -> int:
    """The outbox's deliveries (only the dead ones when ``failed``), or ``retry ID`` re-queuing one."""
    store = open_store(settings.store)
    try:
        if words:
            if len(words) != 2 or words[0] != "retry":
                print("alarm-bridge: expected `deliveries retry ID`", file=sys.stderr)
                return 2
            job = await activity.retry(store, words[1])
            if job is None:  # a done or pending delivery is not sent again: that would be a duplicate
                print(f"alarm-bridge: no dead delivery {words[1]!r}", file=sys.stderr)
                return 1
            print(f"{job.id}: back in the outbox; a running gateway delivers it")
            return 0
        for job in await store.jobs(State.DEAD if failed else None, limit):
            read = activity.read(job)
            where = f"{read.group[0]}/{read.group[1]} {read.target}"
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created))
            print(f"{job.id}  {job.state:<7} {created}  attempts={job.attempts}  {where}  {job.detail}")
        return 0
    finally:
        await store.close()
