"""The PagerDuty client against the Events API v2 emulator; every exchange is checked against the spec."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from actions.pagerduty import MAX_SUMMARY_CHARS, PagerDuty
from watchdog.emulator.pagerduty import ROUTING_KEY, PagerDutyEmulator
from watchdog.errors import ActionFailed, ActionRetryable

UNKNOWN_KEY = "fedcba9876543210fedcba9876543210"
MAY_1_NOON = 1_714_564_800.0  # 2024-05-01T12:00:00Z


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def pager(
    emulator: PagerDutyEmulator, http: httpx.Client, key: str = ROUTING_KEY, **kwargs: Any
) -> PagerDuty:
    return PagerDuty(emulator.url, key, http, **kwargs)


def page(client: PagerDuty, severity: str = "error") -> str:
    return client.trigger("rollback-42", "rolling back stamps in prod", severity=severity, source="watchdog")


# ----------------------------------------------------------------------------- the happy path


def test_a_rollback_pages_escalates_and_resolves_one_alert(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    client = pager(pagerduty_emulator, http, client_url="https://watchdog.example.com")
    ticket = [{"href": "https://github.com/acme/stamps/issues/7", "text": "Ticket #7"}]

    key = client.trigger(
        "rollback-42",
        "rolling back stamps in prod",
        severity="error",
        source="rollback-watchdog",
        component="stamps",
        group="prod",
        class_="deploy-rollback",
        custom_details={"from": "v1.2.0", "to": "v1.1.0"},
        links=ticket,
        timestamp=MAY_1_NOON,
    )
    client.trigger(
        "rollback-42", "rollback of stamps escalated", severity="critical", source="rollback-watchdog"
    )
    escalated = pagerduty_emulator.alert("rollback-42")
    client.acknowledge("rollback-42")
    client.resolve("rollback-42")

    assert key == "rollback-42"
    assert (escalated.status, escalated.severity, escalated.summary, escalated.triggers) == (
        "triggered",
        "critical",
        "rollback of stamps escalated",
        2,
    )
    [alert] = pagerduty_emulator.alerts()
    assert alert.status == "resolved"
    assert [e.action for e in alert.events] == ["trigger", "trigger", "acknowledge", "resolve"]
    first = alert.events[0].body
    assert first["payload"] == {
        "summary": "rolling back stamps in prod",
        "source": "rollback-watchdog",
        "severity": "error",
        "component": "stamps",
        "group": "prod",
        "class": "deploy-rollback",
        "custom_details": {"from": "v1.2.0", "to": "v1.1.0"},
        "timestamp": "2024-05-01T12:00:00.000+00:00",
    }
    assert (first["client"], first["client_url"], first["links"]) == (
        "rollback-watchdog",
        "https://watchdog.example.com",
        ticket,
    )
    assert alert.events[3].body == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "rollback-42",
    }


def test_a_long_summary_is_cut_to_pagerdutys_limit(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    client = pager(pagerduty_emulator, http)
    long = "canary 5xx share above baseline; " * 100

    client.trigger("rollback-42", long, severity="error", source="watchdog")
    client.change(long)

    summary = pagerduty_emulator.alert("rollback-42").summary
    assert len(summary) == MAX_SUMMARY_CHARS == 1024
    assert summary.endswith("…") and long.startswith(summary[:-1])
    assert pagerduty_emulator.change_events()[0].summary == summary


def test_a_summary_at_the_limit_is_sent_whole(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    exact = "x" * MAX_SUMMARY_CHARS

    pager(pagerduty_emulator, http).trigger("rollback-42", exact, severity="info", source="watchdog")

    assert pagerduty_emulator.alert("rollback-42").summary == exact


def test_a_change_event_goes_to_the_change_endpoint_and_pages_nobody(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    pager(pagerduty_emulator, http).change(
        "rolled back stamps to v1.1.0",
        source="rollback-watchdog",
        custom_details={"env": "prod"},
        links=[{"href": "https://github.com/acme/stamps/actions/runs/9"}],
        timestamp=MAY_1_NOON,
    )

    [change] = pagerduty_emulator.change_events()
    assert (change.summary, change.source, change.custom_details) == (
        "rolled back stamps to v1.1.0",
        "rollback-watchdog",
        {"env": "prod"},
    )
    assert change.body["payload"]["timestamp"] == "2024-05-01T12:00:00.000+00:00"
    assert pagerduty_emulator.alerts() == []


def test_a_severity_pagerduty_does_not_know_is_refused_before_sending(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    with pytest.raises(ValueError, match="severity"):
        page(pager(pagerduty_emulator, http), severity="CRITICAL")

    assert pagerduty_emulator.exchanges == []


# ----------------------------------------------------------------------------- errors


def test_a_400_is_final_and_says_what_pagerduty_found_wrong(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    with pytest.raises(ActionFailed) as unknown:
        page(pager(pagerduty_emulator, http, key=UNKNOWN_KEY))
    with pytest.raises(ActionFailed) as malformed:
        page(pager(pagerduty_emulator, http, key="not-a-routing-key"))

    assert not isinstance(unknown.value, ActionRetryable)
    assert "400" in str(unknown.value) and "Invalid routing key" in str(unknown.value)
    assert "Length of 'routing_key' is incorrect" in str(malformed.value)
    assert pagerduty_emulator.alerts() == []


def test_a_429_is_retryable_after_the_time_pagerduty_names(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    pagerduty_emulator.inject_rate_limit("POST", "/enqueue", retry_after=30)
    pagerduty_emulator.inject_rate_limit("POST", "/enqueue")
    client = pager(pagerduty_emulator, http)

    with pytest.raises(ActionRetryable) as with_hint:
        page(client)
    with pytest.raises(ActionRetryable) as without_hint:
        page(client)

    assert with_hint.value.retry_after == 30.0
    assert "429" in str(with_hint.value)
    assert without_hint.value.retry_after is None
    assert page(client) == "rollback-42"


def test_a_retry_after_date_is_measured_from_the_answers_date() -> None:
    def throttled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            headers={"retry-after": "Wed, 01 May 2024 12:01:30 GMT", "date": "Wed, 01 May 2024 12:00:00 GMT"},
        )

    with httpx.Client(transport=httpx.MockTransport(throttled)) as http:
        client = PagerDuty("https://events.pagerduty.com/v2", ROUTING_KEY, http)
        with pytest.raises(ActionRetryable) as error:
            client.resolve("rollback-42")

    assert error.value.retry_after == 90.0


def test_a_502_is_retryable(pagerduty_emulator: PagerDutyEmulator, http: httpx.Client) -> None:
    pagerduty_emulator.inject_error("POST", "/enqueue", 502)

    with pytest.raises(ActionRetryable) as error:
        pager(pagerduty_emulator, http).resolve("rollback-42")

    assert "502" in str(error.value) and error.value.retry_after is None


def test_an_answer_slower_than_the_timeout_is_retryable(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    pagerduty_emulator.inject_delay("POST", "/enqueue", 5)

    with pytest.raises(ActionRetryable) as error:
        page(pager(pagerduty_emulator, http, timeout_s=0.2))

    assert isinstance(error.value.__cause__, httpx.TimeoutException)


def test_a_dropped_connection_is_retryable(pagerduty_emulator: PagerDutyEmulator, http: httpx.Client) -> None:
    pagerduty_emulator.inject_drop("POST", "/enqueue")

    with pytest.raises(ActionRetryable):
        page(pager(pagerduty_emulator, http))

    assert pagerduty_emulator.alerts() == []


def test_retrying_a_trigger_whose_answer_was_lost_does_not_page_twice(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    pagerduty_emulator.inject_accept_then_drop("POST", "/enqueue")
    client = pager(pagerduty_emulator, http)

    with pytest.raises(ActionRetryable):
        page(client)
    page(client)

    [alert] = pagerduty_emulator.alerts()
    assert (alert.status, alert.triggers) == ("triggered", 2)


def test_an_unreachable_pagerduty_is_retryable(
    make_pagerduty_emulator: Callable[..., PagerDutyEmulator], http: httpx.Client
) -> None:
    emulator = make_pagerduty_emulator()
    client = pager(emulator, http)
    emulator.stop()

    with pytest.raises(ActionRetryable):
        client.resolve("rollback-42")


# ----------------------------------------------------------------------------- the secret


def test_the_routing_key_stays_out_of_errors_logs_and_repr(
    pagerduty_emulator: PagerDutyEmulator, http: httpx.Client
) -> None:
    echoed = {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": [f"unknown {ROUTING_KEY}"],
    }
    pagerduty_emulator.inject("POST", "/enqueue", status=400, body=echoed)
    pagerduty_emulator.inject("POST", "/enqueue", status=503, body=f"<html>no route for {ROUTING_KEY}</html>")
    pagerduty_emulator.inject_rate_limit("POST", "/enqueue", retry_after=1)
    pagerduty_emulator.inject_delay("POST", "/enqueue", 5)
    pagerduty_emulator.inject_drop("POST", "/enqueue")
    client = pager(pagerduty_emulator, http, timeout_s=0.2)

    errors: list[ActionFailed] = []
    with capture_logs() as logs:
        for _ in range(5):
            with pytest.raises(ActionFailed) as error:
                page(client)
            errors.append(error.value)
        page(client)

    assert len(logs) == 6
    assert "unknown [routing key]" in str(errors[0])
    seen = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(client), str(logs)]
    assert [text for text in seen if ROUTING_KEY in text] == []
