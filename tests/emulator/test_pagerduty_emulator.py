"""The PagerDuty Events API v2 emulator, driven over real HTTP by httpx, checked against PagerDuty's spec."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.openapi_check import ExchangeValidator, SpecRecorder
from watchdog.emulator.pagerduty import ROUTING_KEY, Exchange, PagerDutyEmulator

OTHER_KEY = "fedcba9876543210fedcba9876543210"
INVALID = {"status": "invalid event", "message": "Event object is invalid"}


def post(emulator: PagerDutyEmulator, body: Any, path: str = "/enqueue", **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{emulator.url}{path}", json=body, timeout=5, **kwargs)


def trigger(
    emulator: PagerDutyEmulator,
    dedup_key: str | None = "rollback-1",
    routing_key: str = ROUTING_KEY,
    **payload: Any,
) -> httpx.Response:
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "payload": {"summary": "rolling back stamps", "source": "watchdog", "severity": "error", **payload},
    }
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    return post(emulator, event)


def follow_up(
    emulator: PagerDutyEmulator, action: str, dedup_key: str = "rollback-1", routing_key: str = ROUTING_KEY
) -> httpx.Response:
    return post(emulator, {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key})


# ----------------------------------------------------------------------------- alert lifecycle


def test_an_alert_is_triggered_acknowledged_and_resolved_with_its_history(
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    opened = trigger(pagerduty_emulator, custom_details={"from": "v1.2.0", "to": "v1.1.0"})
    acked = follow_up(pagerduty_emulator, "acknowledge")
    acknowledged = pagerduty_emulator.alert("rollback-1")
    resolved = follow_up(pagerduty_emulator, "resolve")

    assert (opened.status_code, opened.json()) == (
        202,
        {"status": "success", "message": "Event processed", "dedup_key": "rollback-1"},
    )
    assert (acked.status_code, acked.json()["dedup_key"]) == (202, "rollback-1")
    assert acknowledged.status == "acknowledged"
    assert resolved.status_code == 202
    alert = pagerduty_emulator.alert("rollback-1")
    assert (alert.status, alert.severity, alert.summary, alert.source) == (
        "resolved",
        "error",
        "rolling back stamps",
        "watchdog",
    )
    assert alert.custom_details == {"from": "v1.2.0", "to": "v1.1.0"}
    assert [e.action for e in alert.events] == ["trigger", "acknowledge", "resolve"]
    assert all(e.applied for e in alert.events)
    assert alert.resolved_at is not None
    assert pagerduty_emulator.events() == list(alert.events)


def test_a_trigger_for_an_open_alert_updates_it_instead_of_opening_another(
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    trigger(pagerduty_emulator)
    follow_up(pagerduty_emulator, "acknowledge")
    again = trigger(pagerduty_emulator, severity="critical", summary="rollback escalated")

    assert again.json()["dedup_key"] == "rollback-1"
    [alert] = pagerduty_emulator.alerts()
    assert (alert.status, alert.severity, alert.summary, alert.triggers) == (
        "acknowledged",
        "critical",
        "rollback escalated",
        2,
    )


def test_a_trigger_after_the_resolve_opens_a_new_alert(pagerduty_emulator: PagerDutyEmulator) -> None:
    trigger(pagerduty_emulator)
    follow_up(pagerduty_emulator, "resolve")
    trigger(pagerduty_emulator, summary="it is back")

    first, second = pagerduty_emulator.alerts()
    assert (first.status, second.status) == ("resolved", "triggered")
    assert pagerduty_emulator.alert("rollback-1") == second
    assert pagerduty_emulator.alerts(status="triggered") == [second]


def test_a_trigger_without_dedup_key_gets_a_generated_one(
    make_pagerduty_emulator: Callable[..., PagerDutyEmulator],
) -> None:
    keys = iter(["generated-1", "generated-2"])
    emulator = make_pagerduty_emulator(new_dedup_key=lambda: next(keys))

    first = trigger(emulator, dedup_key=None)
    second = trigger(emulator, dedup_key=None)

    assert [first.json()["dedup_key"], second.json()["dedup_key"]] == ["generated-1", "generated-2"]
    assert [a.dedup_key for a in emulator.alerts()] == ["generated-1", "generated-2"]


def test_generated_dedup_keys_are_unique_by_default(pagerduty_emulator: PagerDutyEmulator) -> None:
    keys = {trigger(pagerduty_emulator, dedup_key=None).json()["dedup_key"] for _ in range(3)}

    assert len(keys) == 3
    assert len(pagerduty_emulator.alerts()) == 3


def test_acknowledge_and_resolve_without_an_open_alert_are_accepted_and_dropped(
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    answer = follow_up(pagerduty_emulator, "resolve", dedup_key="never-triggered")

    assert (answer.status_code, answer.json()["dedup_key"]) == (202, "never-triggered")
    assert pagerduty_emulator.alerts() == []
    [event] = pagerduty_emulator.events()
    assert (event.action, event.applied) == ("resolve", False)


def test_follow_ups_through_another_routing_key_do_not_reach_the_alert(
    make_pagerduty_emulator: Callable[..., PagerDutyEmulator],
) -> None:
    emulator = make_pagerduty_emulator(routing_keys=(ROUTING_KEY, OTHER_KEY))
    trigger(emulator)

    assert follow_up(emulator, "resolve", routing_key=OTHER_KEY).status_code == 202

    assert emulator.alert("rollback-1").status == "triggered"
    with pytest.raises(KeyError):
        emulator.alert("rollback-1", routing_key=OTHER_KEY)


# ----------------------------------------------------------------------------- invalid events


@pytest.mark.parametrize(
    ("event", "errors"),
    [
        (
            {"event_action": "trigger", "payload": {"summary": "s", "severity": "error"}},
            ["'payload.source' is missing or blank"],
        ),
        (
            {"event_action": "trigger", "payload": {"summary": " ", "source": "w"}},
            ["'payload.summary' is missing or blank", "'payload.severity' is missing or blank"],
        ),
        ({"event_action": "trigger"}, ["'payload' is missing or blank"]),
        ({"event_action": "acknowledge"}, ["'dedup_key' is missing or blank"]),
        ({"event_action": "resolve", "dedup_key": ""}, ["'dedup_key' is missing or blank"]),
        (
            {"event_action": "snooze", "dedup_key": "k"},
            [
                "'event_action' is invalid (must be one of the following: "
                "'trigger', 'acknowledge' or 'resolve')"
            ],
        ),
        (
            {"event_action": "trigger", "payload": {"summary": "s", "source": "w", "severity": "fatal"}},
            [
                "'payload.severity' is invalid (must be one of the following: "
                "'critical', 'warning', 'error' or 'info')"
            ],
        ),
        (
            {
                "event_action": "trigger",
                "payload": {"summary": "x" * 1025, "source": "w", "severity": "info", "timestamp": "noon"},
            },
            [
                "Length of 'payload.summary' is too long (maximum is 1024 characters)",
                "'payload.timestamp' is not a valid ISO 8601 timestamp",
            ],
        ),
        (
            {"event_action": "resolve", "dedup_key": "k" * 256},
            ["Length of 'dedup_key' is too long (maximum is 255 characters)"],
        ),
    ],
)
def test_invalid_events_answer_400_with_pagerdutys_error_body(
    pagerduty_emulator: PagerDutyEmulator,
    pagerduty_spec_recorder: SpecRecorder,
    event: dict[str, Any],
    errors: list[str],
) -> None:
    answer = post(pagerduty_emulator, {"routing_key": ROUTING_KEY, **event})

    assert (answer.status_code, answer.json()) == (400, {**INVALID, "errors": errors})
    assert pagerduty_emulator.alerts() == [] and pagerduty_emulator.events() == []
    # Some of these requests break the spec too (a missing required field); the answers never do.
    assert [v for v in pagerduty_spec_recorder.take() if v.side == "response"] == []


def test_routing_keys_are_checked_like_pagerduty(
    pagerduty_emulator: PagerDutyEmulator, pagerduty_spec_recorder: SpecRecorder
) -> None:
    malformed = trigger(pagerduty_emulator, routing_key="e+23rschqsESqk9Q6_-g")
    unknown = trigger(pagerduty_emulator, routing_key=OTHER_KEY)
    missing = post(pagerduty_emulator, {"event_action": "resolve", "dedup_key": "k"})

    assert (malformed.status_code, malformed.json()["errors"]) == (
        400,
        [
            "Length of 'routing_key' is incorrect (should be 32 characters)",
            "'routing_key' cannot contain non-alphanumeric characters.",
        ],
    )
    assert (unknown.status_code, unknown.json()) == (400, {**INVALID, "errors": ["Invalid routing key"]})
    assert (missing.status_code, missing.json()["errors"]) == (400, ["'routing_key' is missing or blank"])
    assert pagerduty_emulator.alerts() == []
    [violation] = pagerduty_spec_recorder.take()  # the spec requires routing_key, not its format
    assert "'routing_key' is a required property" in violation.message


def test_a_body_that_is_not_json_is_an_unrecognized_object(
    pagerduty_emulator: PagerDutyEmulator, pagerduty_spec_recorder: SpecRecorder
) -> None:
    answer = httpx.post(
        f"{pagerduty_emulator.url}/enqueue", content=b"{oops", headers={"content-type": "application/json"}
    )

    assert (answer.status_code, answer.json()) == (
        400,
        {
            "status": "Unrecognized object",
            "message": "Event object format is unrecognized",
            "errors": ["JSON parse error"],
        },
    )
    [violation] = pagerduty_spec_recorder.take()
    assert (violation.side, violation.path) == ("request", "/v2/enqueue")


def test_only_the_two_documented_endpoints_answer(
    pagerduty_emulator: PagerDutyEmulator, pagerduty_spec_recorder: SpecRecorder
) -> None:
    unknown = post(pagerduty_emulator, {"routing_key": ROUTING_KEY}, path="/incidents")
    wrong_method = httpx.get(f"{pagerduty_emulator.url}/enqueue")

    assert unknown.status_code == 404
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
    flagged = pagerduty_spec_recorder.take()
    assert {(v.side, v.method, v.path) for v in flagged} == {
        ("request", "POST", "/v2/incidents"),
        ("request", "GET", "/v2/enqueue"),
    }


# ----------------------------------------------------------------------------- change events


def test_change_events_are_kept_and_open_no_alert(pagerduty_emulator: PagerDutyEmulator) -> None:
    answer = post(
        pagerduty_emulator,
        {
            "routing_key": ROUTING_KEY,
            "payload": {
                "summary": "rolled back stamps to v1.1.0",
                "source": "watchdog",
                "timestamp": "2024-05-01T12:00:00.000+00:00",
                "custom_details": {"env": "prod"},
            },
            "links": [{"href": "https://github.com/acme/stamps/issues/7", "text": "Ticket #7"}],
        },
        path="/change/enqueue",
    )
    no_summary = post(
        pagerduty_emulator, {"routing_key": ROUTING_KEY, "payload": {"summary": ""}}, path="/change/enqueue"
    )

    assert (answer.status_code, answer.json()) == (202, {"status": "success", "message": "Event processed"})
    [change] = pagerduty_emulator.change_events()
    assert (change.summary, change.source, change.custom_details) == (
        "rolled back stamps to v1.1.0",
        "watchdog",
        {"env": "prod"},
    )
    assert (no_summary.status_code, no_summary.json()["errors"]) == (
        400,
        ["'payload.summary' is missing or blank"],
    )
    assert pagerduty_emulator.alerts() == []
    assert [e.operation for e in pagerduty_emulator.exchanges] == ["createChangeEvent", "createChangeEvent"]


# ----------------------------------------------------------------------------- rate limit


def test_events_beyond_the_rate_limit_answer_429_until_the_minute_has_passed(
    make_pagerduty_emulator: Callable[..., PagerDutyEmulator],
) -> None:
    clock = [1_000.0]
    emulator = make_pagerduty_emulator(rate_limit=2, now=lambda: clock[0])

    statuses = [trigger(emulator, dedup_key=f"k{i}").status_code for i in range(3)]
    clock[0] += 61
    later = trigger(emulator, dedup_key="k3")

    assert statuses == [202, 202, 429]
    assert later.status_code == 202
    assert [a.dedup_key for a in emulator.alerts()] == ["k0", "k1", "k3"]


# ----------------------------------------------------------------------------- the spec check


def test_the_validator_flags_an_off_spec_request_sent_past_the_client(
    pagerduty_emulator: PagerDutyEmulator, pagerduty_spec_recorder: SpecRecorder
) -> None:
    assert trigger(pagerduty_emulator).status_code == 202
    assert pagerduty_spec_recorder.violations == []

    shouted = trigger(pagerduty_emulator, severity="CRITICAL")

    assert shouted.status_code == 400
    [violation] = pagerduty_spec_recorder.take()
    assert (violation.side, violation.path, violation.status) == ("request", "/v2/enqueue", 400)
    assert "'CRITICAL' is not one of" in violation.message
    assert pagerduty_spec_recorder.checked == 2


def test_the_validator_flags_off_spec_answers(
    pagerduty_emulator: PagerDutyEmulator, pagerduty_spec_validator: ExchangeValidator
) -> None:
    trigger(pagerduty_emulator)
    [good] = pagerduty_emulator.exchanges
    assert pagerduty_spec_validator.check(good) == []

    def answered(status: int, body: bytes) -> Exchange:
        return replace(good, status=status, response_body=body, response_json=None)

    no_status = pagerduty_spec_validator.check(answered(202, b'{"message": "Event processed"}'))
    bad_error = pagerduty_spec_validator.check(answered(400, b'{"status": "invalid event", "errors": [1]}'))
    html_error = pagerduty_spec_validator.check(answered(400, b"<html>bad</html>"))
    undocumented = pagerduty_spec_validator.check(answered(404, b""))

    assert any("'status' is a required property" in v.message for v in no_status), no_status
    assert any("'message' is a required property" in v.message for v in bad_error), bad_error
    assert any("1 is not of type 'string'" in v.message for v in bad_error), bad_error
    assert any("not JSON" in v.message for v in html_error), html_error
    assert undocumented != []


# ----------------------------------------------------------------------------- faults


def test_an_injected_error_fires_once_in_pagerdutys_error_shape(
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    pagerduty_emulator.inject_error("POST", r"/enqueue$", 502)

    failed = trigger(pagerduty_emulator)
    passed = trigger(pagerduty_emulator)

    assert (failed.status_code, set(failed.json())) == (502, {"status", "message"})
    assert passed.status_code == 202
    assert pagerduty_emulator.alert("rollback-1").triggers == 1
    assert pagerduty_emulator.pending_faults == []


def test_an_injected_rate_limit_carries_retry_after(pagerduty_emulator: PagerDutyEmulator) -> None:
    pagerduty_emulator.inject_rate_limit("POST", "/enqueue", retry_after=30, times=2)

    answers = [trigger(pagerduty_emulator) for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 429, 202]
    assert answers[0].headers["retry-after"] == "30"


def test_a_dropped_request_is_not_processed(pagerduty_emulator: PagerDutyEmulator) -> None:
    pagerduty_emulator.inject_drop("POST", "/enqueue")

    with pytest.raises(httpx.TransportError):
        trigger(pagerduty_emulator)

    assert pagerduty_emulator.alerts() == []
    [exchange] = pagerduty_emulator.exchanges
    assert (exchange.dropped, exchange.status) == (True, None)


def test_accept_then_drop_opens_the_alert_but_the_client_gets_no_answer(
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    pagerduty_emulator.inject_accept_then_drop("POST", "/enqueue")

    with pytest.raises(httpx.TransportError):
        trigger(pagerduty_emulator)

    assert pagerduty_emulator.alert("rollback-1").status == "triggered"
    [exchange] = pagerduty_emulator.exchanges
    assert (exchange.dropped, exchange.status) == (True, 202)


def test_a_delay_makes_a_client_time_out(pagerduty_emulator: PagerDutyEmulator) -> None:
    pagerduty_emulator.inject_delay("POST", "/enqueue", 5)

    with pytest.raises(httpx.TimeoutException):
        httpx.post(
            f"{pagerduty_emulator.url}/enqueue",
            json={"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "k"},
            timeout=0.2,
        )


# ----------------------------------------------------------------------------- request log, lifecycle


def test_the_request_log_records_every_exchange_and_calls_listeners(
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    heard: list[Exchange] = []
    pagerduty_emulator.add_listener(heard.append)

    trigger(pagerduty_emulator)
    follow_up(pagerduty_emulator, "resolve")

    sent = pagerduty_emulator.requests("POST", operation="createV2Event")
    assert [e.request_json["event_action"] for e in sent] == ["trigger", "resolve"]
    assert [e.status for e in sent] == [202, 202]
    assert heard == sent
    pagerduty_emulator.clear_log()
    assert pagerduty_emulator.exchanges == []


def test_the_url_is_the_events_base_and_the_emulator_is_a_context_manager() -> None:
    with PagerDutyEmulator() as emulator:
        assert emulator.url.startswith("http://127.0.0.1:") and emulator.url.endswith("/v2")
        assert trigger(emulator).status_code == 202
    with pytest.raises(RuntimeError):
        emulator.url  # noqa: B018 - stopped: no URL
    with pytest.raises(ValueError):
        PagerDutyEmulator(routing_keys=["too-short"])


def test_the_module_runs_standalone() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchdog.emulator.pagerduty",
            "--port",
            str(port),
            "--routing-key",
            OTHER_KEY,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if "serving at" in line:
                break
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v2/enqueue",
            json={"routing_key": OTHER_KEY, "event_action": "resolve", "dedup_key": "k"},
            timeout=5,
        )
        assert answer.status_code == 202
    finally:
        server.terminate()
        server.wait(timeout=10)
