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


def test_exception_text_and_tracebacks_are_masked_in_both_renderers() -> None:
    """The traceback is rendered before redaction runs, in console and JSON output alike."""
    import structlog

    from watchdog.observability import report_exception

    register_secrets(["tb-s3cret-in-exception"])
    for fmt in ("json", "console"):
        out = io.StringIO()
        configure_logging(fmt, "info", stream=out)
        try:
            raise RuntimeError("GitHub said 401 to tb-s3cret-in-exception")
        except RuntimeError as exc:
            report_exception(structlog.get_logger("t"), "tick failed", exc, service="svc")
        text = out.getvalue()
        assert "RuntimeError" in text and "GitHub said 401 to ***" in text, text
        assert "tb-s3cret-in-exception" not in text
        assert "Traceback" in text  # the traceback is there, only masked
    configure_logging("console", "warning")
