"""The configuration page under /ui: groups, a template preview, test alarms, recent alarms and the audit log."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.responses import Response
from starlette.routing import Route

from bridge.codes import Code
from bridge.model import ALERT_LEVELS, Channel, Group
from bridge.web import activity, audit, forms, groups, listing, samples
from bridge.web.login import login, logout, stylesheet
from bridge.web.pages import Page, display_zone, page, see_other

logger = logging.getLogger(__name__)


@page
async def home(p: Page) -> Response:
    return see_other("/ui/groups")


@page
async def group_list(p: Page) -> Response:
    query = p.query("q").strip().lower()
    rows = []
    last = activity.last_alarms(await listing.recent(p.gateway.store, limit=listing.SCANNED))
    for group, provisioned in await groups.everything(p.gateway):
        text = " ".join([group.id, group.level, group.name, *(m.name for m in group.members)]).lower()
        if query and query not in text:
            continue
        rows.append({"group": group, "provisioned": provisioned, "last": last.get(group.key)})
    return p.render("groups.html", rows=rows, q=p.query("q"), notice=p.query("notice"))


def _group_context(p: Page, form: forms.GroupForm, group: Group | None, provisioned: bool) -> dict[str, Any]:
    settings = p.gateway.settings
    names = forms.template_names(settings.renderer.directories)
    return {
        "form": form,
        "group": group,
        "provisioned": provisioned,
        "template_names": names,
        "defaults": {name: settings.renderer.source(name) for name in names},
        "apps": sorted({name for _, apps in settings.apps.values() for name in apps}),
        "departments": sorted(settings.native.departments) or ["test"],
        "environments": sorted(settings.native.environments),
        "alert_levels": ALERT_LEVELS,
        "global_window": settings.dedup_window,
        "rejected": {},
    }


@page
async def group_new(p: Page) -> Response:
    context = _group_context(p, forms.from_group(None), None, False)
    if p.request.method == "GET":
        return p.render("group.html", **context)
    names = context["template_names"]
    posted = forms.read(p.form, names, None)
    result = groups.build(posted.data, None, p.gateway.settings, posted.refs, names)
    if isinstance(result, Group) and (
        await groups.find(p.gateway, result.id, result.level)
        or not await groups.save(p.gateway, p.session.user, result, None)
    ):
        result = {"id": f"a group {result.id}/{result.level} already exists"}
    if not isinstance(result, Group):
        posted.form.errors = forms.form_errors(result)
        context["form"] = forms.with_blank_rows(posted.form)
        return p.render("group.html", status=400, **context)
    return see_other(f"{_url(result)}?notice=created")


async def _path_group(p: Page) -> tuple[Group, bool] | Response:
    """The group the URL names and whether it is provisioned, or the 404 page."""
    found = await groups.find(p.gateway, p.request.path_params["id"], p.request.path_params["level"])
    if found is None:
        return p.error(404, "No such group", "There is no such group: it may have been deleted.")
    return found


def _url(group: Group) -> str:
    return "/ui/groups/" + "/".join(quote(v, safe="") for v in group.key)


async def _page_context(p: Page, group: Group, provisioned: bool) -> dict[str, Any]:
    form = forms.from_group(group, groups.version(group), blank_rows=not provisioned)
    context = _group_context(p, form, group, provisioned)
    recent = await listing.recent(p.gateway.store, listing.Filters(group=f"{group.id}/{group.level}"), limit=500)
    rejected = activity.rejected_userids(recent, group, display_zone(p.gateway))
    return context | {"rejected": rejected, "recent": recent[:5]}


def _not_saved(p: Page, context: dict[str, Any]) -> Response:
    """The group page of ``context`` (the group as it is now), saying that the user's changes were not saved."""
    context["form"].errors[""] = (
        "Someone changed this group after you opened it, so your changes were not saved. "
        "This is the group as it is now."
    )
    return p.render("group.html", status=409, **context)


@page
async def group_page(p: Page) -> Response:
    found = await _path_group(p)
    if isinstance(found, Response):
        return found
    group, provisioned = found
    context = await _page_context(p, group, provisioned)
    notice = {"created": "Group created.", "saved": "Saved.", "unchanged": "Nothing changed."}.get(p.query("notice"))
    if p.request.method == "GET":
        return p.render("group.html", notice=notice, **context)
    if provisioned:
        return p.error(403, "Read-only group", f"This group is provisioned from {group.source}: change it there.")
    if p.value("version") != groups.version(group):
        return _not_saved(p, context)
    names = context["template_names"]
    posted = forms.read(p.form, names, group)
    posted.data.update(id=group.id, level=group.level)
    result = groups.build(posted.data, group, p.gateway.settings, posted.refs, names)
    if not isinstance(result, Group):
        posted.form.errors = forms.form_errors(result)
        posted.form.values |= {"id": group.id, "level": group.level}
        context["form"] = forms.with_blank_rows(posted.form)
        return p.render("group.html", status=400, **context)
    if result == group:
        return see_other(f"{_url(group)}?notice=unchanged")
    if not await groups.save(p.gateway, p.session.user, result, group):  # changed since it was read above
        found = await _path_group(p)
        return found if isinstance(found, Response) else _not_saved(p, await _page_context(p, *found))
    return see_other(f"{_url(group)}?notice=saved")


@page
async def group_delete(p: Page) -> Response:
    found = await _path_group(p)
    if isinstance(found, Response):
        return found
    group, provisioned = found
    if provisioned:
        return p.error(403, "Read-only group", f"This group is provisioned from {group.source}: change it there.")
    await groups.remove(p.gateway, p.session.user, group)
    return see_other(f"/ui/groups?notice=deleted+{group.id}/{group.level}")


@page
async def group_test(p: Page) -> Response:
    found = await _path_group(p)
    if isinstance(found, Response):
        return found
    group, _ = found
    level = p.value("alert_level", "低")
    alarm = samples.test_alarm(
        group, p.session.user, p.value("dep", "test"), p.value("env", "dev"),
        level if level in ALERT_LEVELS else "低", p.value("alert_business").strip(), display_zone(p.gateway),
    )  # fmt: skip
    result, deliveries = await samples.send_test(p.gateway, alarm)
    await audit.record(p.gateway.store, p.session.user, "test.send", f"{group.id}/{group.level}",
                       f"code {int(result.code)}")  # fmt: skip
    return p.render("test_result.html", group=group, result=result, meaning=result.code.meaning,
                    deliveries=deliveries, alarm=alarm)  # fmt: skip


@page
async def preview(p: Page) -> Response:
    everything = await groups.everything(p.gateway)
    choice = p.query("group") or (f"{everything[0][0].id}/{everything[0][0].level}" if everything else "")
    group = next((g for g, _ in everything if f"{g.id}/{g.level}" == choice), None)
    default_channel = group.targets[0].channel.value if group and group.targets else Channel.DINGTALK.value
    channel = p.query("channel") or default_channel
    sample = p.query("sample") if p.query("sample") in samples.SAMPLES else "seed"
    message, errors, alarm = None, list[str](), None
    if group is not None and channel in tuple(Channel):
        alarm = samples.sample_alarm(sample, group, p.gateway.settings.delivery.storm)
        message, errors = p.gateway.settings.renderer.preview(alarm, group, Channel(channel))
    return p.render("preview.html", groups=[g for g, _ in everything], choice=choice, group=group, channel=channel,
                    channels=[c.value for c in Channel], sample=sample, samples=samples.SAMPLE_NAMES,
                    message=message, errors=errors, alarm=alarm)  # fmt: skip


def _time(value: str, p: Page) -> float | None:
    """A datetime-local value, in the page's time zone."""
    return datetime.fromisoformat(value).replace(tzinfo=display_zone(p.gateway)).timestamp() if value else None


@page
async def alarm_list(p: Page) -> Response:
    problems = []
    code_text = p.query("code").strip()
    try:
        since, until = _time(p.query("since"), p), _time(p.query("until"), p)
    except ValueError:
        since = until = None
        problems.append("times are written 2024-05-20T09:30")
    if code_text and not code_text.isdecimal():
        problems.append("a code is a number such as 0 or 4001")
    try:
        before = listing.cursor(p.query("before"))
    except ValueError:
        before = None
        problems.append("that page link is damaged: showing the newest alarms")
    query = {name: p.query(name) for name in (*listing.TEXT_FILTERS, "state")}
    filters = listing.filters(query, int(code_text) if code_text.isdecimal() else None, since, until)
    found = await listing.page(p.gateway.store, filters, PAGE_SIZE, before)
    await activity.with_acknowledgements(p.gateway.store, found.alarms)
    codes = {int(c): c.meaning for c in Code if c >= Code.DINGTALK_TOKEN or c is Code.OK}
    link = p.request.url.include_query_params(before=repr(found.next))
    older = None if found.next is None else f"{link.path}?{link.query}"
    return p.render("alarms.html", alarms=found.alarms, filters=filters, query=p.request.query_params,
                    problems=problems, codes=codes, scanned=found.scanned, older=older, notice=p.query("notice"),
                    levels=("高", "中", "低"))  # fmt: skip


@page
async def delivery_retry(p: Page) -> Response:
    job_id = p.request.path_params["job"]
    job = await activity.retry(p.gateway.store, job_id)
    if job is None:
        return p.error(409, "Not retried", "Only a dead delivery can be retried; this one is not dead (any more).")
    await audit.record(p.gateway.store, p.session.user, "delivery.retry", job_id)
    return see_other("/ui/alarms?notice=retrying")


@page
async def mute_list(p: Page) -> Response:
    notice = {"lifted": "Mute lifted.", "gone": "That mute had ended already."}.get(p.query("notice"))
    return p.render("mutes.html", mutes=await p.gateway.mutes.active(), notice=notice)


@page
async def mute_lift(p: Page) -> Response:
    lifted = await p.gateway.mutes.lift(p.request.path_params["mute"])
    if lifted is not None:
        await audit.record(p.gateway.store, p.session.user, "mute.lift", lifted.title, f"mute {lifted.id}")
    return see_other(f"/ui/mutes?notice={'lifted' if lifted else 'gone'}")


@page
async def audit_log(p: Page) -> Response:
    before = p.query("before")
    entries = await audit.entries(p.gateway.store, 100, int(before) if before.isdecimal() else None)
    return p.render("audit.html", entries=entries)


PAGE_SIZE = 100  # alarms on one page of the list
KEY = "/ui/groups/{id}/{level}"
routes = [
    Route("/ui/static/style.css", stylesheet, methods=["GET"]),
    Route("/ui/login", login, methods=["GET", "POST"]),
    Route("/ui/logout", logout, methods=["POST"]),
    Route("/ui", home, methods=["GET"]),
    Route("/ui/", home, methods=["GET"]),
    Route("/ui/groups", group_list, methods=["GET"]),
    Route("/ui/groups/new", group_new, methods=["GET", "POST"]),
    Route(KEY, group_page, methods=["GET", "POST"]),
    Route(f"{KEY}/delete", group_delete, methods=["POST"]),
    Route(f"{KEY}/test", group_test, methods=["POST"]),
    Route("/ui/preview", preview, methods=["GET"]),
    Route("/ui/alarms", alarm_list, methods=["GET"]),
    Route("/ui/deliveries/{job}/retry", delivery_retry, methods=["POST"]),
    Route("/ui/mutes", mute_list, methods=["GET"]),
    Route("/ui/mutes/{mute}/lift", mute_lift, methods=["POST"]),
    Route("/ui/audit", audit_log, methods=["GET"]),
]
