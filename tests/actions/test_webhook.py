"""The signed webhook notifier against a receiver that verifies like a user's endpoint should."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from actions.notify import Button, EvidenceLine, Link, Notice, NoticeEvent, NoticeSeverity, NoticeStatus
from actions.webhook import MEMO_KEYS, SignatureError, WebhookNotifier, notice_body, sign, verify
from watchdog.clock import SimClock
from watchdog.config import WebhookNotifierConfig
from watchdog.emulator.webhook import PATH, WebhookReceiver
from watchdog.errors import ActionFailed, ActionRetryable

MAY_1_NOON = 1_714_564_800.0
SECRET = "whsec-5ecret-0123456789abcdef"

STARTED = Notice(
    key="decision-101",
    subject="incident-7",
    event=NoticeEvent.ROLLBACK_STARTED,
    severity=NoticeSeverity.CRITICAL,
    status=NoticeStatus.OPEN,
    at=MAY_1_NOON,
    env="prod",
    service="stamps",
    title="Rolling back stamps v1.2.0 in prod — 5xx × 20",
    text="The canary's 5xx rate is 20 times the baseline's. Rolling back to v1.1.0.",
    release="v1.2.0",
    target="v1.1.0",
    incident_id=7,
    correlation_id="rb-7f3a",
    evidence=(EvidenceLine("5xx_rate", "fail", canary="4.1 %", baseline="0.2 %"),),
    links=(Link("Ticket #7", "https://github.com/acme/stamps/issues/7"),),
    buttons=(Button("veto", "Veto", style="danger"),),
    history=("12:00:05 rollback started by watchdog",),
    facts={"dispatch_run": 42},
)
STEP = replace(STARTED, key="decision-102", event=NoticeEvent.ROLLBACK_STEP, severity=NoticeSeverity.INFO)
RESOLVED = replace(
    STEP, key="decision-103", event=NoticeEvent.ROLLBACK_RESOLVED, status=NoticeStatus.RESOLVED
)
VETOED = replace(
    STARTED, key="decision-104", event=NoticeEvent.OVERRIDE, status=NoticeStatus.CLOSED, actor="alice"
)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(MAY_1_NOON)


@pytest.fixture
def receiver(clock: SimClock) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret=SECRET.encode(), clock=clock) as hook:
        yield hook
    assert not hook.internal_errors, hook.internal_errors


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def notifier(url: str, http: httpx.Client, clock: SimClock, secret: str = SECRET) -> WebhookNotifier:
    cfg = WebhookNotifierConfig.model_validate(
        {"kind": "webhook", "url": url, "secret": secret, "timeout_s": 5}
    )
    return WebhookNotifier("hook", cfg, http, clock)


def signed_headers(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Watchdog-Timestamp": str(timestamp),
        "X-Watchdog-Signature-256": sign(secret.encode(), timestamp, body),
        "X-Watchdog-Delivery": "manual-1",
    }


# ----------------------------------------------------------------------------- what arrives


def test_every_notice_arrives_signed_as_the_notices_json(
    receiver: WebhookReceiver, http: httpx.Client, clock: SimClock
) -> None:
    hook = notifier(receiver.url, http, clock)
    memo: dict[str, Any] = {}
    for notice in (STARTED, STEP, RESOLVED, VETOED):
        memo = hook.deliver(notice, memo)
        clock.advance(30)

    deliveries = receiver.deliveries()
    assert [d.notice for d in deliveries] == [n.as_dict() for n in (STARTED, STEP, RESOLVED, VETOED)]
    assert [d.event for d in deliveries] == [
        "rollback_started",
        "rollback_step",
        "rollback_resolved",
        "override",
    ]
    assert [d.timestamp for d in deliveries] == [int(MAY_1_NOON) + 30 * i for i in range(4)]
    assert memo == {"delivered": ["decision-101", "decision-102", "decision-103", "decision-104"]}
    first = receiver.requests("POST")[0]
    assert first.request_body == json.dumps(
        STARTED.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert "— 5xx × 20" in first.request_body.decode("utf-8")  # UTF-8, not \u escapes
    headers = first.request_headers
    assert (headers["content-type"], headers["user-agent"]) == ("application/json", "rollback-watchdog")
    assert (headers["x-watchdog-event"], headers["x-watchdog-delivery"]) == (
        "rollback_started",
        "decision-101",
    )
    assert headers["x-watchdog-signature-256"] == sign(SECRET.encode(), int(MAY_1_NOON), first.request_body)
    assert all(SECRET not in e.request_body.decode() for e in receiver.requests())


def test_a_key_in_the_memo_is_not_sent_again_and_the_memo_keeps_the_last_keys(
    receiver: WebhookReceiver, http: httpx.Client, clock: SimClock
) -> None:
    hook = notifier(receiver.url, http, clock)
    full = {"delivered": [f"decision-{i}" for i in range(MEMO_KEYS)]}

    memo = hook.deliver(STARTED, full)
    again = hook.deliver(STARTED, memo)

    assert len(receiver.requests()) == 1
    assert again == memo and len(memo["delivered"]) == MEMO_KEYS and memo["delivered"][-1] == STARTED.key
    assert hook.recover(STARTED, {}) is None  # a receiver cannot be asked: the notice goes again


# ----------------------------------------------------------------------------- the receiver's checks


def test_a_replayed_delivery_is_answered_but_recorded_as_a_duplicate(
    receiver: WebhookReceiver, http: httpx.Client, clock: SimClock
) -> None:
    hook = notifier(receiver.url, http, clock)
    hook.deliver(STARTED, {})
    clock.advance(5)
    hook.deliver(STARTED, {})  # the memo was lost in a crash: sent again under the same delivery id
    [first, second] = receiver.requests("POST")

    replayed = http.post(receiver.url, content=first.request_body, headers=dict(first.request_headers))

    assert second.response_json == {"ok": True, "duplicate": True}
    assert replayed.status_code == 200 and replayed.json() == {"ok": True, "duplicate": True}
    assert [d.delivery_id for d in receiver.deliveries()] == ["decision-101"]
    assert [d.delivery_id for d in receiver.duplicates()] == ["decision-101", "decision-101"]


def test_a_forged_signature_is_refused(
    receiver: WebhookReceiver, http: httpx.Client, clock: SimClock
) -> None:
    forger = notifier(receiver.url, http, clock, secret="not-the-shared-secret")

    with pytest.raises(ActionFailed) as caught:
        forger.deliver(STARTED, {})

    assert (caught.value.retryable, caught.value.status) == (False, 401)
    assert "does not match" in str(caught.value)
    assert "not-the-shared-secret" not in str(caught.value)
    assert receiver.deliveries() == [] and receiver.refusals == [
        "X-Watchdog-Signature-256 does not match the body"
    ]


def test_a_tampered_body_is_refused(receiver: WebhookReceiver, http: httpx.Client, clock: SimClock) -> None:
    body = notice_body(STARTED)
    headers = signed_headers(body, int(clock.now()))

    answer = http.post(receiver.url, content=body.replace(b"v1.1.0", b"v0.0.1"), headers=headers)

    assert answer.status_code == 401
    assert receiver.deliveries() == []


def test_an_expired_timestamp_is_refused(
    receiver: WebhookReceiver, http: httpx.Client, clock: SimClock
) -> None:
    body = notice_body(STARTED)
    headers = signed_headers(body, int(clock.now()))
    clock.advance(301)

    answer = http.post(receiver.url, content=body, headers=headers)

    assert answer.status_code == 401
    assert answer.json() == {"error": "X-Watchdog-Timestamp is more than 300 s old"}
    assert receiver.deliveries() == []


# ----------------------------------------------------------------------------- sign and verify


def test_verify_accepts_what_sign_made_in_any_header_case() -> None:
    body = notice_body(STARTED)
    headers = {k.lower(): v for k, v in signed_headers(body, 1_000_000).items()}

    verify(SECRET.encode(), headers, body, now=1_000_299.0)
    verify(SECRET.encode(), signed_headers(body, 1_000_000), body, now=999_701.0)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"X-Watchdog-Signature-256": None}, "missing X-Watchdog-Signature-256"),
        ({"X-Watchdog-Timestamp": None}, "missing X-Watchdog-Timestamp"),
        ({"X-Watchdog-Timestamp": "1e6"}, "X-Watchdog-Timestamp is not a whole number of seconds"),
        ({"X-Watchdog-Signature-256": "sha1=abc"}, "X-Watchdog-Signature-256 is not sha256=<64 hex digits>"),
        (
            {"X-Watchdog-Signature-256": "sha256=" + "g" * 64},
            "X-Watchdog-Signature-256 is not sha256=<64 hex digits>",
        ),
        ({"X-Watchdog-Timestamp": "999000"}, "X-Watchdog-Timestamp is more than 300 s old"),
        ({"X-Watchdog-Timestamp": "1001000"}, "X-Watchdog-Timestamp is more than 300 s in the future"),
        ({"X-Watchdog-Timestamp": "1000001"}, "X-Watchdog-Signature-256 does not match the body"),
    ],
)
def test_verify_says_why_a_signature_fails(change: dict[str, str | None], reason: str) -> None:
    body = notice_body(STARTED)
    headers: dict[str, str] = {}
    for name, value in {**signed_headers(body, 1_000_000), **change}.items():
        if value is not None:
            headers[name] = value

    with pytest.raises(SignatureError) as caught:
        verify(SECRET.encode(), headers, body, now=1_000_000.0)

    assert caught.value.reason == reason == str(caught.value)
    assert SECRET not in str(caught.value)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "wait"),
    [
        (503, {}, True, None),
        (429, {"retry-after": "30"}, True, 30.0),
        (408, {}, True, None),
        (400, {}, False, None),
        (410, {}, False, None),
    ],
)
def test_answers_map_to_retryable_or_final_without_the_secret(
    receiver: WebhookReceiver,
    http: httpx.Client,
    clock: SimClock,
    status: int,
    headers: dict[str, str],
    retryable: bool,
    wait: float | None,
) -> None:
    receiver.inject("POST", PATH, status=status, headers=headers, body={"error": f"echo {SECRET}"})

    with capture_logs() as logs, pytest.raises(ActionFailed) as caught:
        notifier(receiver.url, http, clock).deliver(STARTED, {})

    error = caught.value
    assert (error.retryable, error.status, error.retry_after, error.service) == (
        retryable,
        status,
        wait,
        "webhook",
    )
    assert isinstance(error, ActionRetryable) is retryable
    assert SECRET not in str(error) and SECRET not in repr(logs)


def test_an_unreachable_receiver_is_retryable(http: httpx.Client, clock: SimClock) -> None:
    with WebhookReceiver(secret=SECRET.encode(), clock=clock) as gone:
        hook = notifier(gone.url, http, clock)

    with pytest.raises(ActionRetryable) as caught:
        hook.deliver(STARTED, {})

    assert caught.value.status is None
    assert SECRET not in str(caught.value) and SECRET not in repr(hook)
