"""The Slack notifier against the Slack emulator on loopback: one message per subject, edited in place."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs

import httpx
import pytest
from slack_sdk.models.blocks import Block

from actions.notify import Button, EvidenceLine, Link, Notice, NoticeEvent, NoticeSeverity, NoticeStatus
from actions.slack import EVENT_TYPE, OVERRIDES_BLOCK_ID, SlackNotifier, render
from watchdog.clock import SimClock
from watchdog.config import SlackNotifierConfig
from watchdog.emulator.slack import BOT_TOKEN, DEPLOYS_CHANNEL, SIGNING_SECRET, SlackEmulator, sign
from watchdog.errors import ActionFailed, ActionRetryable

MAY_1_NOON = 1_714_564_800.0  # 2024-05-01T12:00:00Z
ALICE = "U0ALICE0001"


@pytest.fixture
def clock() -> SimClock:
    return SimClock(MAY_1_NOON)


@pytest.fixture
def slack(make_slack_emulator: Callable[..., SlackEmulator], clock: SimClock) -> SlackEmulator:
    return make_slack_emulator(clock=clock)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def bot(slack: SlackEmulator, http: httpx.Client, clock: SimClock, **options: Any) -> SlackNotifier:
    cfg = SlackNotifierConfig.model_validate(
        {"kind": "slack", "api_url": slack.api_url, "token": BOT_TOKEN, "channel": DEPLOYS_CHANNEL, **options}
    )
    return SlackNotifier("deploys", cfg, http, clock)


def hook(url: str, http: httpx.Client, clock: SimClock, **options: Any) -> SlackNotifier:
    cfg = SlackNotifierConfig.model_validate({"kind": "slack", "webhook_url": url, **options})
    return SlackNotifier("deploys-hook", cfg, http, clock)


BUTTONS = (
    Button("veto", "Veto", style="danger", confirm="Stop this rollback and keep v1.2.0?"),
    Button("approve", "Approve", style="primary"),
    Button("promote", "Promote", confirm="Promote v1.2.0 as the new stable release?"),
    Button("acknowledge", "Acknowledge"),
)

STARTED = Notice(
    key="decision-41",
    subject="incident-7",
    event=NoticeEvent.ROLLBACK_STARTED,
    severity=NoticeSeverity.CRITICAL,
    status=NoticeStatus.OPEN,
    at=MAY_1_NOON,
    env="prod",
    service="stamps",
    title="Rolling back stamps in prod: v1.2.0 → v1.1.0",
    text="The canary's 5xx rate is 4.1 % against 0.2 % for the baseline. Dispatching the rollback.",
    release="v1.2.0",
    target="v1.1.0",
    incident_id=7,
    watch_id=3,
    correlation_id="rb-7f3a",
    evidence=(
        EvidenceLine(
            "5xx_rate", "fail", canary="4.1 %", baseline="0.2 %", statistic="e-value 812", bound="100"
        ),
        EvidenceLine("p99_latency", "pass", value="0.310 s", threshold="0.500 s"),
    ),
    links=(
        Link("Ticket #7", "https://github.com/acme/stamps/issues/7"),
        Link("Run 42", "https://github.com/acme/stamps/actions/runs/42?check=1&x=<y>"),
    ),
    buttons=BUTTONS,
    history=("12:00:00 rollback started by watchdog",),
)
STEP = replace(
    STARTED,
    key="decision-42",
    event=NoticeEvent.ROLLBACK_STEP,
    severity=NoticeSeverity.INFO,
    at=MAY_1_NOON + 60,
    title="Rolling back stamps in prod: approved by alice",
    text="alice approved the rollback; run 42 is deploying v1.1.0.",
    actor="alice",
    history=(*STARTED.history, "12:01:00 approved by alice", "12:01:02 dispatched run 42"),
)
RESOLVED = replace(
    STEP,
    key="decision-43",
    event=NoticeEvent.ROLLBACK_RESOLVED,
    status=NoticeStatus.RESOLVED,
    at=MAY_1_NOON + 600,
    title="stamps in prod is back on v1.1.0",
    text="Run 42 succeeded and the smoke checks passed; the 5xx rate is 0.1 %.",
    actor="watchdog",
    history=(*STEP.history, "12:09:40 smoke checks passed", "12:10:00 resolved"),
)


def actions_block(blocks: Any) -> dict[str, Any] | None:
    return next((b for b in blocks if b.get("type") == "actions"), None)


def all_text(blocks: Any) -> str:
    return json.dumps(list(blocks), ensure_ascii=False)


# ----------------------------------------------------------------------------- a rollback thread


def test_a_rollback_is_one_message_updated_in_place_with_a_thread_reply_when_it_resolves(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    notifier = bot(slack, http, clock)

    memo = notifier.deliver(STARTED, {})
    clock.advance(60)
    memo = notifier.deliver(STEP, memo)
    clock.advance(540)
    memo = notifier.deliver(RESOLVED, memo)

    [message] = slack.messages()
    assert memo == {
        "channel": DEPLOYS_CHANNEL,
        "ts": message.ts,
        "keys": [STARTED.key, STEP.key, RESOLVED.key],
    }
    assert len(slack.requests("POST", r"/api/chat\.update$")) == 2
    first, step = message.edits
    assert message.metadata == {
        "event_type": EVENT_TYPE,
        "event_payload": {"subject": "incident-7", "key": RESOLVED.key},
    }

    started_buttons = actions_block(first.blocks)
    assert started_buttons is not None and started_buttons["block_id"] == OVERRIDES_BLOCK_ID
    assert [e["action_id"] for e in started_buttons["elements"]] == [
        "veto",
        "approve",
        "promote",
        "acknowledge",
    ]
    veto = started_buttons["elements"][0]
    assert json.loads(veto["value"]) == {"subject": "incident-7", "incident_id": 7, "watch_id": 3}
    assert veto["style"] == "danger" and "confirm" in veto
    assert "canary 4.1 % vs baseline 0.2 %; e-value 812 vs bound 100" in all_text(first.blocks)
    assert "0.310 s vs 0.500 s" in all_text(first.blocks)

    assert actions_block(step.blocks) is not None
    assert "approved by alice" in all_text(step.blocks)

    assert actions_block(message.blocks) is None  # the thread is over: nothing left to press
    assert "12:10:00 resolved" in all_text(message.blocks)
    assert message.text.startswith("stamps in prod is back on v1.1.0")

    [reply] = slack.replies(message.ts)
    assert "back on v1.1.0" in reply.text


def test_a_notice_delivered_twice_is_sent_once(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    notifier = bot(slack, http, clock)
    memo = notifier.deliver(STARTED, {})
    again = notifier.deliver(STARTED, memo)
    assert again == memo
    assert len(slack.requests("POST", "/api/chat")) == 1


def test_an_escalation_is_replied_in_the_thread_so_the_channel_hears_of_it(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    notifier = bot(slack, http, clock)
    memo = notifier.deliver(STARTED, {})
    escalated = replace(
        STEP,
        key="decision-44",
        event=NoticeEvent.ESCALATED,
        severity=NoticeSeverity.CRITICAL,
        title="Escalated",
    )
    notifier.deliver(escalated, memo)
    [message] = slack.messages()
    assert [r.text.split("*")[1] for r in slack.replies(message.ts)] == ["Escalated"]


def test_a_deleted_message_is_posted_anew_for_the_next_notice(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    notifier = bot(slack, http, clock)
    memo = notifier.deliver(STARTED, {})
    slack.delete(memo["ts"])
    clock.advance(60)
    again = notifier.deliver(STEP, memo)
    [message] = slack.messages()
    assert again == {"channel": DEPLOYS_CHANNEL, "ts": message.ts, "keys": [STEP.key]}
    assert message.ts != memo["ts"] and "approved by alice" in all_text(message.blocks)


# ----------------------------------------------------------------------------- blocks


def test_rendered_blocks_parse_with_slack_sdk_and_the_emulator_refuses_invalid_ones(
    slack: SlackEmulator, http: httpx.Client
) -> None:
    body = render(STARTED)
    assert json.loads(json.dumps(body)) == body
    for raw in body["blocks"]:
        block = Block.parse(raw)
        assert block is not None
        block.validate_json()
        assert block.to_dict() == raw

    auth = {"Authorization": f"Bearer {BOT_TOKEN}"}

    def post(blocks: list[dict[str, Any]]) -> dict[str, Any]:
        answer = http.post(
            f"{slack.api_url}/chat.postMessage",
            json={"channel": DEPLOYS_CHANNEL, "text": "x", "blocks": blocks},
            headers=auth,
        )
        assert answer.status_code == 200
        result: dict[str, Any] = answer.json()
        return result

    assert post(body["blocks"])["ok"] is True
    too_long_header = {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}
    empty_section = {"type": "section"}
    unknown_field = {"type": "divider", "colour": "red"}
    unknown_type = {"type": "marquee", "text": "hi"}
    for bad in (too_long_header, empty_section, unknown_field, unknown_type):
        answer = post([*body["blocks"], bad])
        assert (answer["ok"], answer["error"]) == (False, "invalid_blocks"), bad
    assert post([{"type": "divider"}] * 51)["error"] == "invalid_blocks"
    assert len(slack.messages()) == 1


def test_a_closed_notice_has_no_buttons_and_buttons_can_be_switched_off() -> None:
    closed = replace(STARTED, status=NoticeStatus.CLOSED)
    assert actions_block(render(closed)["blocks"]) is None
    assert actions_block(render(STARTED, buttons=False)["blocks"]) is None
    assert actions_block(render(STARTED)["blocks"]) is not None


def test_long_and_marked_up_text_is_cut_and_escaped() -> None:
    noisy = replace(
        STARTED, title="T" * 400, text="a < b & c > d " * 400, history=tuple(f"l{i}" for i in range(30))
    )
    body = render(noisy)
    for raw in body["blocks"]:
        Block.parse(raw).validate_json()  # type: ignore[union-attr]
    assert len(body["blocks"][0]["text"]["text"]) == 150
    assert "a &lt; b &amp; c &gt; d" in body["blocks"][1]["text"]["text"]
    history = next(b for b in body["blocks"] if b["type"] == "context")["elements"][0]["text"]
    assert history.splitlines() == [f"l{i}" for i in range(20, 30)]


# ----------------------------------------------------------------------------- errors


def test_a_wrong_token_is_final_and_never_shown(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    wrong = "xoxb-999999999999-999999999999-notthetokenatall000"
    with pytest.raises(ActionFailed) as caught:
        bot(slack, http, clock, token=wrong).deliver(STARTED, {})
    assert not caught.value.retryable
    assert "invalid_auth" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(caught.value.as_dict())


def test_a_rate_limit_is_retryable_with_slacks_retry_after(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    slack.inject_rate_limit("POST", r"/api/chat\.postMessage$", retry_after=30)
    notifier = bot(slack, http, clock)
    with pytest.raises(ActionRetryable) as caught:
        notifier.deliver(STARTED, {})
    assert (caught.value.status, caught.value.retry_after) == (429, 30.0)
    assert "ratelimited" in str(caught.value)
    notifier.deliver(STARTED, {})
    assert len(slack.messages()) == 1


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        ("fatal_error", True),
        ("service_unavailable", True),
        ("not_in_channel", False),
        ("msg_too_long", False),
    ],
)
def test_ok_false_errors_are_mapped_by_slacks_code(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock, error: str, retryable: bool
) -> None:
    slack.inject_slack_error("POST", r"/api/chat\.postMessage$", error)
    with pytest.raises(ActionFailed) as caught:
        bot(slack, http, clock).deliver(STARTED, {})
    assert caught.value.retryable is retryable
    assert error in str(caught.value) and BOT_TOKEN not in str(caught.value)


def test_an_unknown_channel_is_final(slack: SlackEmulator, http: httpx.Client, clock: SimClock) -> None:
    with pytest.raises(ActionFailed) as caught:
        bot(slack, http, clock, channel="C9999999999").deliver(STARTED, {})
    assert not caught.value.retryable and "channel_not_found" in str(caught.value)


def test_a_5xx_and_no_answer_at_all_are_retryable(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    slack.inject_error("POST", r"/api/chat\.postMessage$", 503)
    notifier = bot(slack, http, clock)
    with pytest.raises(ActionRetryable):
        notifier.deliver(STARTED, {})
    slack.inject_drop("POST", r"/api/chat\.postMessage$")
    with pytest.raises(ActionRetryable) as caught:
        notifier.deliver(STARTED, {})
    assert caught.value.status is None and BOT_TOKEN not in str(caught.value)
    assert slack.messages() == []


# ----------------------------------------------------------------------------- lost answers


def test_a_post_whose_answer_was_lost_is_recovered_by_its_key_and_not_posted_twice(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    notifier = bot(slack, http, clock)
    assert notifier.recover(STARTED, {}) is None  # nothing there yet

    slack.inject_accept_then_drop("POST", r"/api/chat\.postMessage$")
    with pytest.raises(ActionRetryable):
        notifier.deliver(STARTED, {})
    clock.advance(30)
    memo = notifier.recover(STARTED, {})

    [message] = slack.messages()
    assert memo == {"channel": DEPLOYS_CHANNEL, "ts": message.ts, "keys": [STARTED.key]}
    history = slack.requests("GET", r"/api/conversations\.history$")[-1]
    assert history.query["include_all_metadata"] == ["true"]
    assert float(history.query["oldest"][0]) == STARTED.at - 3600

    notifier.deliver(STEP, memo)
    assert len(slack.messages()) == 1
    assert slack.message(message.ts).metadata["event_payload"]["key"] == STEP.key  # type: ignore[index]


def test_an_update_whose_answer_was_lost_is_recovered_from_the_message_itself(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    notifier = bot(slack, http, clock)
    memo = notifier.deliver(STARTED, {})
    assert notifier.recover(STEP, memo) is None  # not updated yet

    slack.inject_accept_then_drop("POST", r"/api/chat\.update$")
    with pytest.raises(ActionRetryable):
        notifier.deliver(STEP, memo)
    recovered = notifier.recover(STEP, memo)
    assert recovered == {**memo, "keys": [STARTED.key, STEP.key]}


def test_recover_finds_the_message_among_many(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    notifier = bot(slack, http, clock)
    memo = notifier.deliver(STARTED, {})
    for i in range(150):  # more than one page of history
        http.post(
            f"{slack.api_url}/chat.postMessage",
            json={"channel": DEPLOYS_CHANNEL, "text": f"chatter {i}"},
            headers={"Authorization": f"Bearer {BOT_TOKEN}"},
        )
    assert notifier.recover(STARTED, {}) == memo


# ----------------------------------------------------------------------------- webhook mode


def test_webhook_mode_posts_each_notice_and_cannot_recover(
    slack: SlackEmulator, http: httpx.Client, clock: SimClock
) -> None:
    notifier = hook(slack.webhook_url, http, clock, buttons=False)
    memo = notifier.deliver(STARTED, {})
    memo = notifier.deliver(RESOLVED, memo)
    assert memo == {"keys": [STARTED.key, RESOLVED.key]}
    started, resolved = slack.messages()
    assert (started.via, resolved.via) == ("webhook", "webhook")
    assert actions_block(started.blocks) is None  # buttons: false
    assert notifier.recover(STEP, memo) is None
    assert notifier.deliver(RESOLVED, memo) == memo
    assert len(slack.messages()) == 2


def test_webhook_errors_never_show_the_url(slack: SlackEmulator, http: httpx.Client, clock: SimClock) -> None:
    gone = slack.url + "/services/T000/B000/REVOKED0000000000"
    with pytest.raises(ActionFailed) as caught:
        hook(gone, http, clock).deliver(STARTED, {})
    assert not caught.value.retryable and caught.value.status == 404
    assert "REVOKED" not in str(caught.value)

    slack.inject_rate_limit("POST", "/services/", retry_after=5)
    with pytest.raises(ActionRetryable) as limited:
        hook(slack.webhook_url, http, clock).deliver(STARTED, {})
    assert limited.value.retry_after == 5.0

    with socket_closed() as url:
        with pytest.raises(ActionRetryable) as refused:
            hook(url + "/services/T000/B000/SECRETPATH000", http, clock).deliver(STARTED, {})
        assert "SECRETPATH000" not in str(refused.value) and url not in str(refused.value)
    notifier = hook(slack.webhook_url, http, clock)
    assert slack.webhook_url not in repr(notifier) and "XXXX" not in repr(notifier)


class socket_closed:
    """A loopback URL where nobody listens (the port was just released)."""

    def __enter__(self) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        port = server.server_address[1]
        server.server_close()
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        return None


# ----------------------------------------------------------------------------- the user pressing buttons


class _Receiver(BaseHTTPRequestHandler):
    """Our interactivity endpoint's stand-in: keeps the request, answers on the response_url."""

    received: ClassVar[list[tuple[dict[str, str], bytes]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        httpx.post(payload["response_url"], json={"response_type": "ephemeral", "text": "Vetoed."})
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slack/interactivity", received
    server.shutdown()
    server.server_close()


def test_press_sends_a_signed_block_actions_payload_like_slack(
    slack: SlackEmulator,
    http: httpx.Client,
    clock: SimClock,
    receiver: tuple[str, list[tuple[dict[str, str], bytes]]],
) -> None:
    url, received = receiver
    memo = bot(slack, http, clock).deliver(STARTED, {})
    clock.advance(5)

    answer = slack.press(memo["ts"], "veto", ALICE, url=url)

    assert answer.status_code == 200
    [(headers, body)] = received
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    stamp = headers["x-slack-request-timestamp"]
    assert stamp == str(int(MAY_1_NOON + 5))
    assert headers["x-slack-signature"] == sign(SIGNING_SECRET, stamp, body)
    assert headers["x-slack-signature"] != sign("another-secret", stamp, body)

    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == ALICE and payload["user"]["username"] == "alice"
    assert payload["container"] == {
        "type": "message",
        "message_ts": memo["ts"],
        "channel_id": DEPLOYS_CHANNEL,
        "is_ephemeral": False,
    }
    assert payload["channel"] == {"id": DEPLOYS_CHANNEL, "name": "deploys"}
    [action] = payload["actions"]
    assert (action["action_id"], action["block_id"], action["type"]) == ("veto", OVERRIDES_BLOCK_ID, "button")
    assert json.loads(action["value"]) == {"subject": "incident-7", "incident_id": 7, "watch_id": 3}
    assert payload["message"]["ts"] == memo["ts"] and actions_block(payload["message"]["blocks"]) is not None
    assert payload["response_url"].startswith(slack.url + "/actions/")
    assert payload["api_app_id"] and payload["team"]["id"] and payload["trigger_id"] and payload["token"]

    [response] = slack.responses
    assert (response.action_id, response.user_id, response.body) == (
        "veto",
        ALICE,
        {"response_type": "ephemeral", "text": "Vetoed."},
    )


def test_press_signs_with_the_secret_and_time_it_is_given_and_needs_the_button(
    slack: SlackEmulator,
    http: httpx.Client,
    clock: SimClock,
    receiver: tuple[str, list[tuple[dict[str, str], bytes]]],
) -> None:
    url, received = receiver
    memo = bot(slack, http, clock).deliver(RESOLVED, {})
    with pytest.raises(LookupError):
        slack.press(memo["ts"], "veto", ALICE, url=url)  # a resolved thread shows no buttons

    memo = bot(slack, http, clock).deliver(replace(STARTED, subject="incident-8"), {})
    slack.press(memo["ts"], "approve", ALICE, url=url, signing_secret="forged", timestamp=MAY_1_NOON - 3600)
    [(headers, body)] = received
    assert headers["x-slack-request-timestamp"] == str(int(MAY_1_NOON - 3600))
    assert headers["x-slack-signature"] == sign("forged", headers["x-slack-request-timestamp"], body)
    assert headers["x-slack-signature"] != sign(SIGNING_SECRET, headers["x-slack-request-timestamp"], body)
