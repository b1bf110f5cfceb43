"""The Opsgenie notifier against the Alert API emulator; every exchange is checked against Opsgenie's spec."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from actions.notify import EvidenceLine, Link, Notice, NoticeEvent, NoticeSeverity, NoticeStatus
from actions.opsgenie import MAX_DESCRIPTION_CHARS, MAX_MESSAGE_CHARS, OpsgenieNotifier
from tests.fixtures.opsgenie import SwaggerRecorder
from watchdog.clock import SimClock
from watchdog.config import OpsgenieNotifierConfig
from watchdog.emulator.opsgenie import API_KEY, OpsgenieEmulator
from watchdog.errors import ActionFailed, ActionRetryable

MAY_1_NOON = 1_714_564_800.0
ALIAS = "rollback-watchdog/rb-7f3a"
ALIAS_PATH = "/v2/alerts/rollback-watchdog%2Frb-7f3a"

STARTED = Notice(
    key="decision-101",
    subject="incident-7",
    event=NoticeEvent.ROLLBACK_STARTED,
    severity=NoticeSeverity.CRITICAL,
    status=NoticeStatus.OPEN,
    at=MAY_1_NOON,
    env="prod",
    service="stamps",
    title="Rolling back stamps v1.2.0 in prod",
    text="The canary's 5xx rate is 20 times the baseline's. Rolling back to v1.1.0.",
    release="v1.2.0",
    target="v1.1.0",
    incident_id=7,
    correlation_id="rb-7f3a",
    evidence=(EvidenceLine("5xx_rate", "fail", canary="4.1 %", baseline="0.2 %"),),
    links=(Link("Ticket #7", "https://github.com/acme/stamps/issues/7"),),
    history=("12:00:05 rollback started by watchdog",),
    facts={"dispatch_run": 42},
)
STEP = replace(
    STARTED,
    key="decision-102",
    event=NoticeEvent.ROLLBACK_STEP,
    severity=NoticeSeverity.INFO,
    title="Rollback of stamps: workflow run 42 dispatched",
    text="Deploying v1.1.0.",
)
RESOLVED = replace(
    STEP,
    key="decision-103",
    event=NoticeEvent.ROLLBACK_RESOLVED,
    status=NoticeStatus.RESOLVED,
    title="stamps recovered on v1.1.0 in prod",
    text="The 5xx rate is back to baseline.",
)
VETOED = replace(
    STARTED,
    key="decision-104",
    event=NoticeEvent.OVERRIDE,
    severity=NoticeSeverity.INFO,
    status=NoticeStatus.CLOSED,
    actor="alice",
    title="alice vetoed the rollback of stamps v1.2.0",
    text="The rollback stops; v1.2.0 stays deployed.",
)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def notifier(emulator: OpsgenieEmulator, http: httpx.Client, key: str = API_KEY) -> OpsgenieNotifier:
    cfg = OpsgenieNotifierConfig.model_validate(
        {
            "kind": "opsgenie",
            "api_url": emulator.url,
            "api_key": key,
            "responders": [{"type": "team", "name": "oncall"}],
            "timeout_s": 5,
        }
    )
    return OpsgenieNotifier("opsgenie", cfg, http, SimClock(MAY_1_NOON))


# ----------------------------------------------------------------------------- the alert's life


def test_a_rollback_start_opens_one_alert_with_what_responders_need(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    memo = notifier(opsgenie_emulator, http).deliver(STARTED, {})

    [alert] = opsgenie_emulator.alerts()
    assert (alert.alias, alert.message, alert.status, alert.priority, alert.entity, alert.source) == (
        ALIAS,
        STARTED.title,
        "open",
        "P1",
        "stamps",
        "rollback-watchdog",
    )
    assert alert.tags == ("rollback-watchdog", "prod", "stamps", "v1.2.0")
    assert alert.details == {
        "env": "prod",
        "service": "stamps",
        "release": "v1.2.0",
        "target": "v1.1.0",
        "incident_id": "7",
        "correlation_id": "rb-7f3a",
        "event": "rollback_started",
        "dispatch_run": "42",
    }
    assert alert.responders == ({"type": "team", "name": "oncall"},)
    assert STARTED.text in alert.description
    assert "5xx_rate fail: canary 4.1 % vs baseline 0.2 %" in alert.description
    assert "12:00:05 rollback started by watchdog" in alert.description
    assert memo["alias"] == ALIAS and (memo["opened"], memo["closed"]) == (True, False)
    assert len(memo["request_ids"]) == 1


def test_a_create_sent_again_is_deduplicated_by_alias(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    opsgenie = notifier(opsgenie_emulator, http)

    opsgenie.deliver(STARTED, {})
    opsgenie.deliver(STARTED, {})  # the memo was lost: the create goes again

    [alert] = opsgenie_emulator.alerts()
    assert (alert.count, alert.log) == (2, ("created", "deduplicated"))


def test_later_notices_become_notes_and_the_resolution_closes_the_alert(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    opsgenie = notifier(opsgenie_emulator, http)

    memo = opsgenie.deliver(STARTED, {})
    memo = opsgenie.deliver(STEP, memo)
    memo = opsgenie.deliver(RESOLVED, memo)
    sent = len(opsgenie_emulator.requests())
    after = opsgenie.deliver(replace(STEP, key="decision-105"), memo)

    [alert] = opsgenie_emulator.alerts()
    assert alert.status == "closed" and alert.log == ("created", "note added", "closed")
    assert [n.note.splitlines()[0] for n in alert.notes] == [STEP.title, RESOLVED.title]
    assert {(n.user, n.source) for n in alert.notes} == {("watchdog", "rollback-watchdog")}
    assert (memo["opened"], memo["closed"], len(memo["request_ids"])) == (True, True, 3)
    assert after == memo and len(opsgenie_emulator.requests()) == sent  # nothing left to tell


def test_a_veto_closes_the_alert_in_the_vetoers_name(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    opsgenie = notifier(opsgenie_emulator, http)

    memo = opsgenie.deliver(VETOED, opsgenie.deliver(STARTED, {}))

    [alert] = opsgenie_emulator.alerts()
    [note] = alert.notes
    assert (alert.status, note.user) == ("closed", "alice")
    assert memo["closed"] is True


def test_info_notices_without_an_alert_send_nothing(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    opsgenie = notifier(opsgenie_emulator, http)
    deploy = replace(STEP, event=NoticeEvent.DEPLOY, key="decision-90")

    assert opsgenie.deliver(deploy, {}) == {}
    assert opsgenie.deliver(RESOLVED, {"note": "kept"}) == {"note": "kept"}
    assert opsgenie_emulator.requests() == []


def test_long_texts_are_cut_to_opsgenies_limits(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    long = replace(STARTED, title="t" * 500, text="x" * 40_000)

    notifier(opsgenie_emulator, http).deliver(long, {})

    [alert] = opsgenie_emulator.alerts()
    assert len(alert.message) == MAX_MESSAGE_CHARS and alert.message.endswith("…")
    assert len(alert.description) == MAX_DESCRIPTION_CHARS


# ----------------------------------------------------------------------------- lost answers


def test_recover_finds_the_alert_a_lost_answer_created(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    opsgenie = notifier(opsgenie_emulator, http)
    opsgenie_emulator.inject_accept_then_drop("POST", r"^/v2/alerts$")

    with pytest.raises(ActionRetryable):
        opsgenie.deliver(STARTED, {})
    memo = opsgenie.recover(STARTED, {})
    assert memo is not None
    memo = opsgenie.deliver(STEP, memo)

    assert (memo["alias"], memo["opened"], memo["closed"]) == (ALIAS, True, False)
    [alert] = opsgenie_emulator.alerts()
    assert (alert.count, len(alert.notes)) == (1, 1)  # not created twice; the step became a note


def test_recover_says_none_when_the_create_never_arrived(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    opsgenie = notifier(opsgenie_emulator, http)
    opsgenie_emulator.inject_drop("POST", r"^/v2/alerts$")

    with pytest.raises(ActionRetryable):
        opsgenie.deliver(STARTED, {})

    assert opsgenie.recover(STARTED, {}) is None
    assert opsgenie_emulator.alerts() == []


def test_recover_finds_a_close_that_arrived(opsgenie_emulator: OpsgenieEmulator, http: httpx.Client) -> None:
    opsgenie = notifier(opsgenie_emulator, http)
    memo = opsgenie.deliver(STARTED, {})
    opsgenie_emulator.inject_accept_then_drop("POST", r"/close$")

    with pytest.raises(ActionRetryable):
        opsgenie.deliver(RESOLVED, memo)

    recovered = opsgenie.recover(RESOLVED, memo)
    assert recovered is not None and recovered["closed"] is True
    assert opsgenie.recover(STEP, recovered) is None  # a note cannot be found again: it is re-sent


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(503, True), (500, True), (422, False), (400, False), (403, False)],
)
def test_answers_map_to_retryable_or_final(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client, status: int, retryable: bool
) -> None:
    opsgenie_emulator.inject_error("POST", r"^/v2/alerts$", status)

    with pytest.raises(ActionFailed) as caught:
        notifier(opsgenie_emulator, http).deliver(STARTED, {})

    assert (caught.value.retryable, caught.value.status, caught.value.service) == (
        retryable,
        status,
        "Opsgenie",
    )
    assert API_KEY not in str(caught.value)


def test_a_rate_limit_is_retryable_after_the_wait_opsgenie_asks_for(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    opsgenie_emulator.inject_rate_limit("POST", r"^/v2/alerts$", retry_after=12)

    with pytest.raises(ActionRetryable) as caught:
        notifier(opsgenie_emulator, http).deliver(STARTED, {})

    assert (caught.value.status, caught.value.retry_after) == (429, 12.0)
    assert "too many requests" in str(caught.value)


def test_an_unknown_key_is_final_and_never_shown(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    wrong = "0b9c0e4e-1111-4a2b-9c3d-5e6f7a8b9c0d"

    with capture_logs() as logs, pytest.raises(ActionFailed) as caught:
        notifier(opsgenie_emulator, http, key=wrong).deliver(STARTED, {})

    assert (caught.value.retryable, caught.value.status) == (False, 401)
    assert "Could not authenticate" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(logs)


def test_an_unreachable_api_is_retryable_and_the_key_stays_secret(http: httpx.Client) -> None:
    with OpsgenieEmulator() as gone:
        opsgenie = notifier(gone, http)

    with pytest.raises(ActionRetryable) as caught:
        opsgenie.deliver(STARTED, {})

    assert caught.value.status is None
    assert API_KEY not in str(caught.value) and API_KEY not in repr(opsgenie)


def test_the_key_travels_only_in_the_authorization_header(
    opsgenie_emulator: OpsgenieEmulator, http: httpx.Client
) -> None:
    opsgenie = notifier(opsgenie_emulator, http)
    opsgenie.deliver(RESOLVED, opsgenie.deliver(STEP, opsgenie.deliver(STARTED, {})))

    exchanges = opsgenie_emulator.requests()
    assert [e.operation for e in exchanges] == ["createAlert", "addNote", "closeAlert"]
    assert {e.path for e in exchanges[1:]} == {f"{ALIAS_PATH}/notes", f"{ALIAS_PATH}/close"}
    assert all(e.query["identifierType"] == ["alias"] for e in exchanges[1:])
    for exchange in exchanges:
        assert exchange.request_headers["authorization"] == f"GenieKey {API_KEY}"
        assert API_KEY not in exchange.request_body.decode()


# ----------------------------------------------------------------------------- the spec check itself


def test_an_off_spec_request_is_caught_by_the_spec_check(
    opsgenie_emulator: OpsgenieEmulator, opsgenie_spec_recorder: SwaggerRecorder, http: httpx.Client
) -> None:
    body: dict[str, Any] = {"alias": "x", "details": {"run": 42}, "priority": "P9"}

    answer = http.post(
        f"{opsgenie_emulator.url}/v2/alerts", json=body, headers={"Authorization": f"GenieKey {API_KEY}"}
    )

    assert answer.status_code == 422
    assert set(answer.json()["errors"]) == {"message", "details", "priority"}
    taken = opsgenie_spec_recorder.take()
    assert any("'message' is a required property" in v for v in taken)
    assert any("42 is not of type 'string'" in v for v in taken)
    assert any("'P9' is not one of" in v for v in taken)
