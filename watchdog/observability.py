"""Logging (structlog) and error reporting (Sentry), both scrubbed of secrets.

Context travels with the log line: bind ``env``, ``release``, ``watch_id`` once and every line
carries them. JSON in production, readable in a terminal. Every secret value from the
configuration is registered here and replaced by ``***`` in log lines and Sentry events.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO, cast

import structlog

_SECRETS: set[str] = set()
REDACTED = "***"


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never appear in a log line or an error report (tokens, DSNs, passwords)."""
    _SECRETS.update(v for v in values if v and len(v) >= 4)


def has_secrets() -> bool:
    return bool(_SECRETS)


def redact(value: Any) -> Any:
    """``value`` (a string, or lists and dicts of them) with every registered secret as ``***``."""
    if not _SECRETS:
        return value
    if isinstance(value, str):
        for s in _SECRETS:
            if s in value:
                value = value.replace(s, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def _redact_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: redact(v) for k, v in event.items()}


class _StandardError:
    """``sys.stderr`` as it is when a line is written, not when logging was configured.

    A test runner, a daemoniser or an embedding application may replace ``sys.stderr``; a logger
    holding the old object would then write into a closed stream and raise out of the caller.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """structlog for our lines and the standard library's (APScheduler, SQLAlchemy) alike.

    Without *stream* the lines go to standard error, looked up at each write.
    """
    out = stream if stream is not None else _StandardError()
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # the traceback becomes text *before* redaction: an exception's message may carry a secret
        structlog.processors.format_exc_info,
    ]
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, _redact_processor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, out)),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _redact_processor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(numeric, logging.WARNING))  # other libraries' info lines are noise here


def sentry_before_send(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    """Scrub every registered secret from a Sentry event before it leaves the process."""
    scrubbed: dict[str, Any] = redact(event)
    return scrubbed


def init_sentry(dsn: str | None, environment: str, release: str, transport: Any = None) -> bool:
    """Report errors to Sentry (no PII by default); ``transport`` is for tests, as httpx's is."""
    if not dsn:
        return False
    import sentry_sdk

    options: dict[str, Any] = {"transport": transport} if transport is not None else {}
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        before_send=cast(Any, sentry_before_send),
        **options,
    )
    return True


def report_exception(logger: Any, event: str, exc: BaseException, **context: Any) -> None:
    """A caught exception, seen: logged with its type and (redacted) message, and sent to Sentry.

    For every place that catches an exception so the daemon can go on: swallowing it silently
    would hide a broken watch behind a running process. Sentry gets it only where it was set up
    (``init_sentry``); its events are scrubbed by ``sentry_before_send``.
    """
    logger.error(event, error_type=type(exc).__name__, error=redact(str(exc)), exc_info=exc, **context)
    import sentry_sdk

    if sentry_sdk.get_client().is_active():
        with sentry_sdk.new_scope() as scope:
            for key, value in context.items():
                scope.set_tag(key, redact(str(value)))
            sentry_sdk.capture_exception(exc)
