"""Secrets never reach log lines or Sentry events."""

import io
import json

import sentry_sdk

from watchdog.observability import configure_logging, init_sentry, redact, register_secrets


def test_log_lines_mask_registered_secrets() -> None:
    register_secrets(["s3cr3t-token-value"])
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    import structlog

    structlog.get_logger("t").info("dispatch failed", error="401 for token s3cr3t-token-value", n=1)
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["error"] == "401 for token ***" and line["n"] == 1
    assert redact({"a": ["x s3cr3t-token-value"]}) == {"a": ["x ***"]}


def test_sentry_events_are_scrubbed_before_they_leave() -> None:
    register_secrets(["another-s3cret-dsn-part"])
    sent: list[dict[str, object]] = []

    class Capture(sentry_sdk.transport.Transport):
        def capture_envelope(self, envelope: sentry_sdk.envelope.Envelope) -> None:
            for item in envelope.items:
                if item.payload.json is not None:
                    sent.append(item.payload.json)

    assert init_sentry("https://key@127.0.0.1/1", "test", "0.1.0", transport=Capture()) is True
    try:
        raise RuntimeError("GitHub refused token another-s3cret-dsn-part")
    except RuntimeError as exc:
        sentry_sdk.capture_exception(exc)
    sentry_sdk.flush()
    assert sent, "no event was captured"
    text = json.dumps(sent)
    assert "another-s3cret-dsn-part" not in text and "GitHub refused token ***" in text
    assert init_sentry(None, "test", "0.1.0") is False
