"""The Statuspage notifier against the Statuspage emulator: what customers read during a rollback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from actions.notify import EvidenceLine, Link, Notice, NoticeEvent, NoticeSeverity, NoticeStatus
from actions.statuspage import StatuspageNotifier, incident_marker
from watchdog.clock import SimClock
from watchdog.config import StatuspageNotifierConfig
from watchdog.emulator.statuspage import API_KEY, COMPONENT_ID, PAGE_ID, StatuspageEmulator
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
    emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock, **overrides: Any
) -> StatuspageNotifier:
    options: dict[str, Any] = {
        "kind": "statuspage",
        "api_url": emulator.url,
        "page_id": PAGE_ID,
        "api_key": SecretStr(API_KEY),
        "components": {"stamps": COMPONENT_ID},
        **overrides,
    }
    return StatuspageNotifier("status", StatuspageNotifierConfig(**options), http, clock)


def notice(
    event: NoticeEvent,
    clock: SimClock,
    *,
    status: NoticeStatus = NoticeStatus.OPEN,
    env: str = "prod",
    incident_id: int | None = 7,
    facts: dict[str, Any] | None = None,
    evidence: tuple[EvidenceLine, ...] = (),
) -> Notice:
    return Notice(
        key=f"decision-{event.value}-{clock.now():.0f}",
        subject="incident-7" if incident_id is not None else "watch-3",
        event=event,
        severity=NoticeSeverity.CRITICAL,
        status=status,
        at=clock.now(),
        env=env,
        service="stamps",
        title=f"stamps v1.2.0 in {env}: {event.value}",
        text=f"Internal: rolling back v1.2.0 to v1.1.0, see ticket; key {API_KEY[:4]}",
        release="v1.2.0",
        target="v1.1.0",
        incident_id=incident_id,
        correlation_id="c0ffee42" if incident_id is not None else None,
        evidence=evidence,
        links=(Link("Ticket #7", "https://github.com/acme/stamps/issues/7"),),
        facts=facts or {},
    )


def start(sp: StatuspageNotifier, clock: SimClock) -> dict[str, Any]:
    return sp.deliver(notice(NoticeEvent.ROLLBACK_STARTED, clock, evidence=EVIDENCE), {})


# ----------------------------------------------------------------------------- the customers' view


def test_a_prod_rollback_is_identified_then_monitored_then_resolved(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock)

    memo = start(sp, clock)
    opened = statuspage_emulator.incident(memo["incident_id"])
    components_while_open = statuspage_emulator.component_statuses()
    clock.advance(120)
    watch = {"milestone": "post_rollback_watch"}
    memo = sp.deliver(notice(NoticeEvent.ROLLBACK_STEP, clock, facts=watch), memo)
    clock.advance(600)
    memo = sp.deliver(notice(NoticeEvent.ROLLBACK_RESOLVED, clock, status=NoticeStatus.RESOLVED), memo)

    [incident] = statuspage_emulator.incidents()
    assert incident.statuses == ["identified", "monitoring", "resolved"]
    assert (opened.impact, opened.component_ids) == ("minor", (COMPONENT_ID,))
    assert components_while_open == {COMPONENT_ID: "degraded_performance"}
    assert statuspage_emulator.component_statuses() == {COMPONENT_ID: "operational"}
    assert incident.name == "Degraded performance of stamps: rolling back a release [rw-c0ffee42]"
    assert [dict(c) for u in incident.updates for c in u.affected_components] == [
        {
            "code": COMPONENT_ID,
            "name": "stamps",
            "old_status": "operational",
            "new_status": "degraded_performance",
        },
        {
            "code": COMPONENT_ID,
            "name": "stamps",
            "old_status": "degraded_performance",
            "new_status": "operational",
        },
    ]
    assert memo == {"incident_id": incident.id, "status": "resolved", "resolved": True}
    customers_read = " ".join([incident.name, *(u.body for u in incident.updates)])
    for internal in ("4.1 %", "812", "v1.2.0", "v1.1.0", "Internal", "github.com"):
        assert internal not in customers_read
    [create] = statuspage_emulator.requests("POST")
    assert create.request_headers["authorization"] == f"OAuth {API_KEY}"
    assert create.request_json["incident"]["impact_override"] == "minor"


def test_an_escalation_says_engineers_are_on_it_and_more_steps_say_nothing_new(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock, impact="major", component_status="partial_outage")
    memo = start(sp, clock)
    memo = sp.deliver(notice(NoticeEvent.ROLLBACK_STEP, clock, facts={"milestone": "dispatched"}), memo)
    memo = sp.deliver(notice(NoticeEvent.ESCALATED, clock), memo)

    [incident] = statuspage_emulator.incidents()
    assert incident.statuses == ["identified", "identified"]
    assert "engineers" in incident.updates[-1].body
    assert incident.name.startswith("Partial outage of stamps")
    assert (incident.impact, statuspage_emulator.component_statuses()) == (
        "major",
        {COMPONENT_ID: "partial_outage"},
    )
    assert memo["status"] == "identified" and not memo["resolved"]


@pytest.mark.parametrize(
    ("event", "env", "incident_id"),
    [
        (NoticeEvent.ROLLBACK_STARTED, "stage", 7),
        (NoticeEvent.ROLLBACK_STARTED, "dev", 7),
        (NoticeEvent.ROLLBACK_PROPOSED, "prod", 7),
        (NoticeEvent.ROLLBACK_HELD, "prod", 7),
        (NoticeEvent.DEPLOY, "prod", None),
        (NoticeEvent.PROMOTED, "prod", None),
        (NoticeEvent.ROLLBACK_STEP, "prod", 7),  # no incident was opened for it
        (NoticeEvent.ROLLBACK_RESOLVED, "prod", 7),
    ],
)
def test_what_is_not_a_customer_incident_sends_nothing(
    statuspage_emulator: StatuspageEmulator,
    http: httpx.Client,
    clock: SimClock,
    event: NoticeEvent,
    env: str,
    incident_id: int | None,
) -> None:
    sp = notifier(statuspage_emulator, http, clock)
    memo = {"earlier": "kept"}

    assert sp.deliver(notice(event, clock, env=env, incident_id=incident_id), memo) == memo
    assert sp.recover(notice(event, clock, env=env, incident_id=incident_id), memo) == memo
    assert statuspage_emulator.requests() == []


def test_stage_reaches_the_page_when_configured(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock, environments=["stage", "prod"], components={})
    sp.deliver(notice(NoticeEvent.ROLLBACK_STARTED, clock, env="stage"), {})

    [incident] = statuspage_emulator.incidents()
    assert (incident.status, incident.component_ids) == ("identified", ())


def test_a_vetoed_rollback_resolves_the_incident_saying_nothing_was_changed(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock)
    memo = start(sp, clock)
    clock.advance(30)
    memo = sp.deliver(notice(NoticeEvent.OVERRIDE, clock, status=NoticeStatus.CLOSED), memo)
    after = sp.deliver(
        notice(NoticeEvent.ROLLBACK_STEP, clock, facts={"milestone": "post_rollback_watch"}), memo
    )

    [incident] = statuspage_emulator.incidents()
    assert incident.statuses == ["identified", "resolved"]
    assert "No change was made" in incident.updates[-1].body
    assert statuspage_emulator.component_statuses() == {COMPONENT_ID: "operational"}
    assert memo["resolved"] and after == memo


def test_a_veto_before_any_incident_sends_nothing(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock)
    assert sp.deliver(notice(NoticeEvent.OVERRIDE, clock, status=NoticeStatus.CLOSED), {}) == {}
    assert statuspage_emulator.requests() == []


# ----------------------------------------------------------------------------- lost answers


def test_a_create_whose_answer_was_lost_is_recovered_not_repeated(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock)
    started = notice(NoticeEvent.ROLLBACK_STARTED, clock)
    assert sp.recover(started, {}) is None  # nothing there yet: deliver it
    statuspage_emulator.inject_accept_then_drop("POST", "/incidents$")

    with pytest.raises(ActionRetryable) as lost:
        sp.deliver(started, {})
    memo = sp.recover(started, {})

    [incident] = statuspage_emulator.incidents()
    assert lost.value.status is None
    assert memo == {"incident_id": incident.id, "status": "identified", "resolved": False}
    assert incident.name.endswith(incident_marker(started))
    assert sp.deliver(started, memo) == memo  # opened already: no second incident
    assert len(statuspage_emulator.requests("POST")) == 1


def test_an_update_or_resolve_whose_answer_was_lost_is_recovered(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock)
    memo = start(sp, clock)
    watching = notice(NoticeEvent.ROLLBACK_STEP, clock, facts={"milestone": "post_rollback_watch"})
    resolved = notice(NoticeEvent.ROLLBACK_RESOLVED, clock, status=NoticeStatus.RESOLVED)
    assert sp.recover(watching, memo) is None

    statuspage_emulator.inject_accept_then_drop("PATCH", "/incidents/")
    with pytest.raises(ActionRetryable):
        sp.deliver(watching, memo)
    memo = sp.recover(watching, memo) or {}
    assert memo["status"] == "monitoring"
    assert sp.recover(resolved, memo) is None
    statuspage_emulator.inject_accept_then_drop("PATCH", "/incidents/")
    with pytest.raises(ActionRetryable):
        sp.deliver(resolved, memo)
    memo = sp.recover(resolved, memo) or {}

    [incident] = statuspage_emulator.incidents()
    assert memo == {"incident_id": incident.id, "status": "resolved", "resolved": True}
    assert incident.statuses == ["identified", "monitoring", "resolved"]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", [420, 429, 503])
def test_rate_limits_and_outages_may_pass_later(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock, status: int
) -> None:
    sp = notifier(statuspage_emulator, http, clock)
    statuspage_emulator.inject_rate_limit("POST", "/incidents$", status=status, retry_after=30)

    with pytest.raises(ActionRetryable) as raised:
        start(sp, clock)

    assert (raised.value.status, raised.value.retry_after, raised.value.service) == (
        status,
        30.0,
        "Statuspage",
    )
    assert statuspage_emulator.incidents() == []


def test_a_request_statuspage_refuses_is_final_and_says_why(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock, components={"stamps": "nosuchcompnt"})

    with pytest.raises(ActionFailed) as raised:
        start(sp, clock)

    assert not raised.value.retryable and raised.value.status == 422
    assert "Component nosuchcompnt not found" in str(raised.value)


def test_a_wrong_key_is_final(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock, api_key=SecretStr("not-the-key"))

    with pytest.raises(ActionFailed) as raised:
        start(sp, clock)

    assert (raised.value.retryable, raised.value.status) == (False, 401)


def test_an_unreachable_page_may_pass_later(http: httpx.Client, clock: SimClock) -> None:
    with StatuspageEmulator() as gone:
        url = gone.url
    cfg = StatuspageNotifierConfig(
        kind="statuspage", api_url=url, page_id=PAGE_ID, api_key=SecretStr(API_KEY)
    )

    with pytest.raises(ActionRetryable) as raised:
        StatuspageNotifier("status", cfg, http, clock).deliver(
            notice(NoticeEvent.ROLLBACK_STARTED, clock), {}
        )

    assert raised.value.status is None


def test_the_api_key_appears_in_no_error_log_line_body_or_repr(
    statuspage_emulator: StatuspageEmulator, http: httpx.Client, clock: SimClock
) -> None:
    sp = notifier(statuspage_emulator, http, clock)
    statuspage_emulator.inject(
        "POST", "/incidents$", status=503, body=f"<html>no route for OAuth {API_KEY}</html>"
    )
    statuspage_emulator.inject("POST", "/incidents$", status=422, body={"error": [f"key {API_KEY} is odd"]})
    seen: list[str] = [repr(sp)]

    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(ActionFailed) as raised:
                start(sp, clock)
            seen += [str(raised.value), repr(raised.value.as_dict())]
        memo = start(sp, clock)
        sp.deliver(notice(NoticeEvent.ROLLBACK_RESOLVED, clock, status=NoticeStatus.RESOLVED), memo)

    seen += [repr(line) for line in logs]
    seen += [ex.request_body.decode() for ex in statuspage_emulator.requests()]
    assert [text for text in seen if API_KEY in text] == []
    assert any("[api key]" in text for text in seen)


# ----------------------------------------------------------------------------- the emulator


def test_the_emulator_checks_requests_as_statuspage_documents(
    statuspage_emulator: StatuspageEmulator,
) -> None:
    url = f"{statuspage_emulator.url}/pages/{PAGE_ID}/incidents"
    auth = {"Authorization": f"OAuth {API_KEY}"}
    with httpx.Client() as client:
        anonymous = client.post(url, json={"incident": {"name": "x"}})
        unwrapped = client.post(url, json={"name": "x"}, headers=auth)
        wrong = client.post(
            url,
            json={
                "incident": {
                    "status": "on fire",
                    "impact_override": "huge",
                    "components": {COMPONENT_ID: "meh"},
                }
            },
            headers=auth,
        )
        other_page = client.get(f"{statuspage_emulator.url}/pages/otherpage000/incidents", headers=auth)
        made = client.post(url, json={"incident": {"name": "Slow"}}, headers=auth)
        listed = client.get(f"{url}/unresolved", headers=auth)

    assert (anonymous.status_code, anonymous.json()) == (401, {"error": "Couldn't authenticate you"})
    assert unwrapped.status_code == 400
    assert (wrong.status_code, wrong.json()["error"]) == (
        422,
        [
            "Name can't be blank",
            "Status is not included in the list",
            "Impact override is not included in the list",
            f"Component {COMPONENT_ID} status is not included in the list",
        ],
    )
    assert other_page.status_code == 404
    assert (made.status_code, made.json()["status"], made.json()["impact"]) == (201, "investigating", "none")
    assert [i["id"] for i in listed.json()] == [made.json()["id"]]
