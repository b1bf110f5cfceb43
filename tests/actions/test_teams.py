"""The Teams notifier against a Workflows webhook stand-in that validates every card against the schema."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from actions.notify import (
    Button,
    EvidenceLine,
    Link,
    Notice,
    NoticeEvent,
    NoticeSeverity,
    NoticeStatus,
)
from actions.teams import CARD_CONTENT_TYPE, HISTORY_LINES, MEMO_KEYS, TeamsNotifier
from watchdog.clock import SimClock
from watchdog.config import TeamsNotifierConfig
from watchdog.emulator.teams import SIGNATURE, WORKFLOW_PATH, TeamsReceiver
from watchdog.errors import ActionFailed, ActionRetryable

MAY_1_NOON = 1_714_564_800.0

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
    evidence=(
        EvidenceLine(
            "5xx_rate", "fail", canary="4.1 %", baseline="0.2 %", statistic="e-value 812", bound="100"
        ),
        EvidenceLine("latency_p99", "pass", value="0.412 s", threshold="0.500 s"),
    ),
    links=(
        Link("Ticket #7", "https://github.com/acme/stamps/issues/7"),
        Link("Veto the rollback", "https://watchdog.example.com/v1/incidents/7/veto"),
    ),
    buttons=(Button("veto", "Veto", style="danger", confirm="Stop the rollback?"),),
    history=("12:00:05 rollback started by watchdog",),
)
STEP = replace(
    STARTED,
    key="decision-102",
    event=NoticeEvent.ROLLBACK_STEP,
    severity=NoticeSeverity.INFO,
    title="Rollback of stamps: workflow run 42 dispatched",
    text="Deploying v1.1.0.",
    evidence=(),
    history=(*STARTED.history, "12:00:09 dispatched run 42 by watchdog"),
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
    severity=NoticeSeverity.WARNING,
    status=NoticeStatus.CLOSED,
    actor="alice",
    title="alice vetoed the rollback of stamps v1.2.0",
    text="The rollback stops; v1.2.0 stays deployed.",
    links=(),
    buttons=(),
)


@pytest.fixture
def receiver() -> Iterator[TeamsReceiver]:
    with TeamsReceiver() as teams:
        yield teams
    assert not teams.internal_errors, teams.internal_errors
    assert not teams.refusals, teams.refusals  # a card our notifier made was refused


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def notifier(http: httpx.Client, url: str) -> TeamsNotifier:
    cfg = TeamsNotifierConfig.model_validate({"kind": "teams", "webhook_url": url, "timeout_s": 5})
    return TeamsNotifier("teams", cfg, http, SimClock(MAY_1_NOON))


def texts(card: dict[str, Any]) -> list[str]:
    return [block["text"] for block in card["body"] if block["type"] == "TextBlock"]


# ----------------------------------------------------------------------------- what arrives


def test_a_rollback_start_arrives_as_a_valid_card_with_facts_evidence_history_and_links(
    receiver: TeamsReceiver, http: httpx.Client
) -> None:
    memo = notifier(http, receiver.webhook_url).deliver(STARTED, {})

    [message] = receiver.messages()
    assert message["type"] == "message"
    assert message["attachments"][0]["contentType"] == CARD_CONTENT_TYPE
    assert message["attachments"][0]["contentUrl"] is None
    [card] = receiver.cards()
    assert receiver.problems(card) == []
    assert (card["type"], card["version"], card["$schema"]) == (
        "AdaptiveCard",
        "1.5",
        "http://adaptivecards.io/schemas/adaptive-card.json",
    )
    title = card["body"][0]
    assert (title["text"], title["weight"], title["color"]) == (STARTED.title, "bolder", "attention")
    [facts] = [block["facts"] for block in card["body"] if block["type"] == "FactSet"]
    assert {f["title"]: f["value"] for f in facts} == {
        "Environment": "prod",
        "Service": "stamps",
        "Release": "v1.2.0 → v1.1.0",
        "Status": "open",
        "Actor": "watchdog",
        "Correlation id": "rb-7f3a",
    }
    shown = texts(card)
    assert STARTED.text in shown
    assert "5xx_rate fail: canary 4.1 % vs baseline 0.2 %; e-value 812 vs bound 100" in shown
    assert "latency_p99 pass: 0.412 s vs 0.500 s" in shown
    assert "12:00:05 rollback started by watchdog" in shown
    # overrides are links: a Workflows webhook cannot call back, so no Action.Submit/Execute buttons
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Ticket #7", "url": "https://github.com/acme/stamps/issues/7"},
        {
            "type": "Action.OpenUrl",
            "title": "Veto the rollback",
            "url": "https://watchdog.example.com/v1/incidents/7/veto",
        },
    ]
    assert memo == {"posted": ["decision-101"]}


def test_each_notice_of_a_thread_is_a_new_card_coloured_by_severity_and_a_resent_key_is_dropped(
    receiver: TeamsReceiver, http: httpx.Client
) -> None:
    teams = notifier(http, receiver.webhook_url)
    memo: dict[str, Any] = {}
    for notice in (STARTED, STEP, RESOLVED, VETOED):
        memo = teams.deliver(notice, memo)
    again = teams.deliver(STARTED, memo)

    cards = receiver.cards()
    assert [c["body"][0]["text"] for c in cards] == [n.title for n in (STARTED, STEP, RESOLVED, VETOED)]
    assert [c["body"][0]["color"] for c in cards] == ["attention", "default", "default", "warning"]
    assert "actions" not in cards[3]  # no links, no action bar
    assert again == memo == {"posted": ["decision-101", "decision-102", "decision-103", "decision-104"]}


def test_a_card_shows_the_last_history_lines_and_the_memo_keeps_the_last_keys(
    receiver: TeamsReceiver, http: httpx.Client
) -> None:
    long = replace(STEP, history=tuple(f"12:{i:02d}:00 step {i}" for i in range(25)))
    memo = {"posted": [f"decision-{i}" for i in range(MEMO_KEYS)]}

    memo = notifier(http, receiver.webhook_url).deliver(long, memo)

    shown = texts(receiver.cards()[0])
    assert [t for t in shown if " step " in t] == list(long.history[-HISTORY_LINES:])
    assert len(memo["posted"]) == MEMO_KEYS
    assert memo["posted"][-1] == long.key and "decision-0" not in memo["posted"]


def test_the_receiver_refuses_an_invalid_card_naming_the_problem(
    receiver: TeamsReceiver, http: httpx.Client
) -> None:
    bad_card = {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [{"type": "TextBlock", "color": "red"}],  # no text, and no such colour
    }
    envelope = {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": bad_card}],
    }

    answer = http.post(receiver.webhook_url, json=envelope)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidCard"
    assert "attachments[0].card.body[0]" in answer.json()["error"]["message"]
    assert receiver.cards() == []
    assert receiver.problems(bad_card)
    receiver.refusals.clear()  # refused on purpose


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "wait"),
    [
        (429, {"retry-after": "7"}, True, 7.0),
        (503, {}, True, None),
        (400, {}, False, None),
        (404, {}, False, None),
    ],
)
def test_answers_map_to_retryable_or_final_without_the_webhook_url(
    receiver: TeamsReceiver,
    http: httpx.Client,
    status: int,
    headers: dict[str, str],
    retryable: bool,
    wait: float | None,
) -> None:
    receiver.inject("POST", WORKFLOW_PATH, status=status, headers=headers)

    with capture_logs() as logs, pytest.raises(ActionFailed) as caught:
        notifier(http, receiver.webhook_url).deliver(STARTED, {})

    error = caught.value
    assert (error.retryable, error.status, error.retry_after, error.service) == (
        retryable,
        status,
        wait,
        "Teams",
    )
    assert isinstance(error, ActionRetryable) is retryable
    assert SIGNATURE not in str(error) and SIGNATURE not in repr(logs)
    assert receiver.cards() == []


def test_an_unreachable_webhook_is_retryable_and_its_url_stays_secret(http: httpx.Client) -> None:
    with TeamsReceiver() as gone:
        url = gone.webhook_url
    teams = notifier(http, url)

    with pytest.raises(ActionRetryable) as caught:
        teams.deliver(STARTED, {})

    assert caught.value.status is None
    assert SIGNATURE not in str(caught.value) and SIGNATURE not in repr(teams)
    assert teams.recover(STARTED, {}) is None  # Teams has no lookup: the card goes again


def test_a_wrong_signature_is_refused_for_good(receiver: TeamsReceiver, http: httpx.Client) -> None:
    forged = receiver.webhook_url.replace(SIGNATURE, "forged")

    with pytest.raises(ActionFailed) as caught:
        notifier(http, forged).deliver(STARTED, {})

    assert (caught.value.retryable, caught.value.status) == (False, 401)
    assert "forged" not in str(caught.value)


def test_no_secret_travels_in_the_card(receiver: TeamsReceiver, http: httpx.Client) -> None:
    notifier(http, receiver.webhook_url).deliver(STARTED, {})

    [exchange] = receiver.requests("POST")
    assert SIGNATURE not in exchange.request_body.decode()
