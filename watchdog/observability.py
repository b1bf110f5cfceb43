"""Logging (structlog), error reporting and cron check-ins (Sentry), scrubbed of secrets.

Context travels with the log line: bind ``env``, ``release``, ``watch_id`` once and every line
carries them. JSON in production, readable in a terminal. Every secret value from the
configuration is registered here and replaced by ``***`` in log lines and Sentry events.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO, cast

import structlog

if TYPE_CHECKING:
    from sentry_sdk._types import MonitorConfig

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


class CheckIn:
    """The run a Sentry Crons check-in reports on; ``fail()`` marks one that caught its own error."""

    def __init__(self) -> None:
        self.failed = False

    def fail(self) -> None:
        self.failed = True


def cron_monitor_config(interval_s: float) -> MonitorConfig:
    """A Sentry Crons monitor for a job run every ``interval_s``: Sentry's schedule is counted in
    whole minutes, so a job more frequent than that is checked once a minute at least; a check-in
    is missed after about five runs (the ``RollbackWatchdogNotTicking`` alert's threshold)."""
    minutes = max(1, math.ceil(interval_s / 60))
    return {
        "schedule": {"type": "interval", "value": minutes, "unit": "minute"},
        "checkin_margin": max(1, math.ceil(5 * interval_s / 60)),
        "max_runtime": max(10, math.ceil(10 * interval_s / 60)),
    }


@contextmanager
def cron_checkin(
    monitor_slug: str,
    *,
    interval_s: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[CheckIn]:
    """A Sentry Crons check-in around one run of a scheduled job: ``in_progress`` as it starts,
    then ``ok``, or ``error`` when it raised or called ``fail()``. Sentry then says when the job
    stopped running, which no error event can. Does nothing where Sentry was not set up."""
    run = CheckIn()
    import sentry_sdk

    if not sentry_sdk.get_client().is_active():
        yield run
        return
    from sentry_sdk.crons import MonitorStatus, capture_checkin

    config = cron_monitor_config(interval_s) if interval_s is not None else None
    started = monotonic()
    check_in_id = capture_checkin(monitor_slug, status=MonitorStatus.IN_PROGRESS, monitor_config=config)
    try:
        yield run
    except BaseException:
        run.fail()
        raise
    finally:
        capture_checkin(
            monitor_slug,
            check_in_id=check_in_id,
            status=MonitorStatus.ERROR if run.failed else MonitorStatus.OK,
            duration=monotonic() - started,
            monitor_config=config,
        )
