"""The Grafana notifier against the Grafana annotations emulator: what engineers see on the graphs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from actions.grafana import GrafanaNotifier, notice_tag
from actions.notify import EvidenceLine, Link, Notice, NoticeEvent, NoticeSeverity, NoticeStatus
from watchdog.clock import SimClock
from watchdog.config import GrafanaNotifierConfig
from watchdog.emulator.grafana import DASHBOARD_UID, TOKEN, GrafanaEmulator
from watchdog.errors import ActionFailed, ActionRetryable

MAY_1_NOON = 1_714_564_800.0
EVIDENCE = (
    EvidenceLine("5xx_rate", "fail", canary="4.1 %", baseline="0.2 %", statistic="e-value 812", bound="100"),
)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def clock() -> SimClock:
    return SimClock(MAY_1_NOON)


def notifier(
    emulator: GrafanaEmulator, http: httpx.Client, clock: SimClock, **overrides: Any
) -> GrafanaNotifier:
    options: dict[str, Any] = {
        "kind": "grafana",
        "url": emulator.url,
        "token": SecretStr(TOKEN),
        "dashboard_uid": DASHBOARD_UID,
        **overrides,
    }
    return GrafanaNotifier("graphs", GrafanaNotifierConfig(**options), http, clock)


def notice(
    event: NoticeEvent,
    clock: SimClock,
    *,
    status: NoticeStatus = NoticeStatus.OPEN,
    facts: dict[str, Any] | None = None,
    evidence: tuple[EvidenceLine, ...] = (),
    target: str | None = "v1.1.0",
) -> Notice:
    return Notice(
        key=f"decision-{event.value}-{clock.now():.0f}",
        subject="incident-7",
        event=event,
        severity=NoticeSeverity.CRITICAL,
        status=status,
        at=clock.now(),
        env="prod",
        service="stamps",
        title=f"stamps v1.2.0 in prod: {event.value} <now>",
        text="rolling back",
        release="v1.2.0",
        target=target,
        incident_id=7,
        correlation_id="c0ffee42",
        evidence=evidence,
        links=(Link("Ticket #7", "https://github.com/acme/stamps/issues/7"),),
        facts=facts or {},
    )


# ----------------------------------------------------------------------------- the graphs


def test_a_rollback_is_a_region_from_its_start_to_its_resolution(
    grafana_emulator: GrafanaEmulator, http: httpx.Client, clock: SimClock
) -> None:
    graphs = notifier(grafana_emulator, http, clock)
    started = notice(NoticeEvent.ROLLBACK_STARTED, clock, evidence=EVIDENCE)
    memo = graphs.deliver(started, {})
    clock.advance(60)
    memo = graphs.deliver(
        notice(NoticeEvent.ROLLBACK_STEP, clock, facts={"milestone": "post_rollback_watch"}), memo
    )
    clock.advance(5)
    memo = graphs.deliver(notice(NoticeEvent.ROLLBACK_STEP, clock), memo)  # not a milestone: not drawn
    clock.advance(535)
    resolved = notice(NoticeEvent.ROLLBACK_RESOLVED, clock, status=NoticeStatus.RESOLVED)
    memo = graphs.deliver(resolved, memo)

    start, step, end = grafana_emulator.annotations()
    assert (start.time, start.time_end) == (1_714_564_800_000, 1_714_565_400_000)
    assert start.is_region and not step.is_region and not end.is_region
    assert (step.time, end.time) == (1_714_564_860_000, 1_714_565_400_000)
    assert list(start.tags) == [
        "rollback-watchdog",
        "env:prod",
        "service:stamps",
        "release:v1.2.0",
        "event:rollback_started",
        "target:v1.1.0",
        notice_tag(started),
    ]
    assert start.text == (
        "<b>stamps v1.2.0 in prod: rollback_started &lt;now&gt;</b>"
        "<br>5xx_rate fail: canary 4.1 % vs baseline 0.2 %; e-value 812 vs bound 100"
        '<br><a href="https://github.com/acme/stamps/issues/7">Ticket #7</a>'
    )
    assert start.dashboard_uid == DASHBOARD_UID
    assert memo == {"annotation_id": end.id, "region_id": start.id, "region_closed": True}
    [patch] = grafana_emulator.requests("PATCH")
    assert patch.request_json == {"timeEnd": 1_714_565_400_000}
    assert patch.request_headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("event", "facts", "drawn"),
    [
        (NoticeEvent.DEPLOY, {}, True),
        (NoticeEvent.PROMOTED, {}, True),
        (NoticeEvent.ROLLBACK_PROPOSED, {}, True),
        (NoticeEvent.ROLLBACK_HELD, {}, True),
        (NoticeEvent.ESCALATED, {}, True),
        (NoticeEvent.OVERRIDE, {}, True),
        (NoticeEvent.QUARANTINE, {}, True),
        (NoticeEvent.ROLLBACK_STEP, {"milestone": "smoke_passed"}, True),
        (NoticeEvent.ROLLBACK_STEP, {}, False),
        (NoticeEvent.INCONCLUSIVE, {}, False),
        (NoticeEvent.BLIND, {}, False),
    ],
)
def test_which_notices_are_drawn(
    grafana_emulator: GrafanaEmulator,
    http: httpx.Client,
    clock: SimClock,
    event: NoticeEvent,
    facts: dict[str, Any],
    drawn: bool,
) -> None:
    graphs = notifier(grafana_emulator, http, clock, dashboard_uid=None, tags=["deploys"])
    memo = graphs.deliver(notice(event, clock, facts=facts, target=None), {"earlier": "kept"})

    annotations = grafana_emulator.annotations()
    assert len(annotations) == int(drawn)
    if drawn:
        [annotation] = annotations
        assert annotation.dashboard_uid is None  # organisation-wide
        assert annotation.tags[:2] == ("deploys", "env:prod") and f"event:{event.value}" in annotation.tags
        assert not any(t.startswith("target:") for t in annotation.tags)
        assert memo == {"earlier": "kept", "annotation_id": annotation.id}
    else:
        assert memo == {"earlier": "kept"} and grafana_emulator.requests() == []


def test_a_resolution_whose_start_annotation_was_deleted_is_still_drawn(
    grafana_emulator: GrafanaEmulator, http: httpx.Client, clock: SimClock
) -> None:
    graphs = notifier(grafana_emulator, http, clock)
    memo = graphs.deliver(notice(NoticeEvent.ROLLBACK_STARTED, clock), {})
    httpx.delete(
        f"{grafana_emulator.url}/api/annotations/{memo['region_id']}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    clock.advance(300)

    memo = graphs.deliver(notice(NoticeEvent.ROLLBACK_RESOLVED, clock, status=NoticeStatus.RESOLVED), memo)

    [end] = grafana_emulator.annotations()
    assert "event:rollback_resolved" in end.tags and memo["annotation_id"] == end.id


# ----------------------------------------------------------------------------- lost answers


def test_an_annotation_whose_answer_was_lost_is_found_by_its_notice_tag(
    grafana_emulator: GrafanaEmulator, http: httpx.Client, clock: SimClock
) -> None:
    graphs = notifier(grafana_emulator, http, clock)
    started = notice(NoticeEvent.ROLLBACK_STARTED, clock)
    graphs.deliver(notice(NoticeEvent.DEPLOY, clock), {})  # another annotation, another tag
    assert graphs.recover(started, {}) is None
    grafana_emulator.inject_accept_then_drop("POST", "/api/annotations$")

    with pytest.raises(ActionRetryable) as lost:
        graphs.deliver(started, {})
    memo = graphs.recover(started, {})

    _deploy, annotation = grafana_emulator.annotations()
    assert lost.value.status is None
    assert memo == {"annotation_id": annotation.id, "region_id": annotation.id, "region_closed": False}
    [lookup, *_] = grafana_emulator.requests("GET")
    assert lookup.query["tags"] == [notice_tag(started)] and lookup.query["type"] == ["annotation"]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_outages_may_pass_later(
    grafana_emulator: GrafanaEmulator, http: httpx.Client, clock: SimClock, status: int
) -> None:
    graphs = notifier(grafana_emulator, http, clock)
    grafana_emulator.inject("POST", "/api/annotations$", status=status, headers={"Retry-After": "15"})

    with pytest.raises(ActionRetryable) as raised:
        graphs.deliver(notice(NoticeEvent.DEPLOY, clock), {})

    assert (raised.value.status, raised.value.retry_after, raised.value.service) == (status, 15.0, "Grafana")
    assert grafana_emulator.annotations() == []


@pytest.mark.parametrize(
    ("overrides", "status", "says"),
    [
        ({"dashboard_uid": "no-such-dashboard"}, 404, "Dashboard not found"),
        ({"token": SecretStr("glsa_wrong")}, 401, "Unauthorized"),
    ],
)
def test_what_grafana_refuses_is_final(
    grafana_emulator: GrafanaEmulator,
    http: httpx.Client,
    clock: SimClock,
    overrides: dict[str, Any],
    status: int,
    says: str,
) -> None:
    graphs = notifier(grafana_emulator, http, clock, **overrides)

    with pytest.raises(ActionFailed) as raised:
        graphs.deliver(notice(NoticeEvent.DEPLOY, clock), {})

    assert (raised.value.retryable, raised.value.status) == (False, status)
    assert says in str(raised.value)


def test_the_token_appears_in_no_error_log_line_body_or_repr(
    grafana_emulator: GrafanaEmulator, http: httpx.Client, clock: SimClock
) -> None:
    graphs = notifier(grafana_emulator, http, clock)
    grafana_emulator.inject(
        "POST", "/api/annotations$", status=502, body=f"<html>upstream said {TOKEN}</html>"
    )
    grafana_emulator.inject("POST", "/api/annotations$", status=400, body={"message": f"bad token {TOKEN}"})
    seen: list[str] = [repr(graphs)]

    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(ActionFailed) as raised:
                graphs.deliver(notice(NoticeEvent.DEPLOY, clock), {})
            seen += [str(raised.value), repr(raised.value.as_dict())]
        graphs.deliver(notice(NoticeEvent.DEPLOY, clock), {})

    seen += [repr(line) for line in logs]
    seen += [ex.request_body.decode() for ex in grafana_emulator.requests()]
    assert [text for text in seen if TOKEN in text] == []
    assert any("[token]" in text for text in seen)


# ----------------------------------------------------------------------------- the emulator


def test_the_emulator_checks_fields_and_matches_every_tag(grafana_emulator: GrafanaEmulator) -> None:
    url = f"{grafana_emulator.url}/api/annotations"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(headers=auth) as client:
        anonymous = httpx.post(url, json={"text": "x"})
        seconds = client.post(url, json={"time": 1_714_564_800.5, "text": "x"})
        tags = client.post(url, json={"tags": "env:prod", "text": "x"})
        text = client.post(url, json={"text": 42})
        both = client.post(url, json={"time": 1000, "tags": ["a", "b"], "text": "both"}).json()["id"]
        only_a = client.post(url, json={"time": 2000, "tags": ["a"], "text": "a"}).json()["id"]
        every = client.get(url, params={"tags": ["a", "b"]}).json()
        any_ = client.get(url, params={"tags": ["a", "b"], "matchAny": "true"}).json()
        patched = client.patch(f"{url}/{only_a}", json={"timeEnd": 3000})
        missing = client.patch(f"{url}/999", json={"timeEnd": 3000})

    assert (anonymous.status_code, anonymous.json()) == (401, {"message": "Unauthorized"})
    assert [r.status_code for r in (seconds, tags, text)] == [400, 400, 400]
    assert [a["id"] for a in every] == [both]
    assert [a["id"] for a in any_] == [only_a, both]
    assert (
        patched.json() == {"message": "Annotation patched"} and grafana_emulator.annotation(only_a).is_region
    )
    assert missing.status_code == 404
