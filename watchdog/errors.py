"""One small hierarchy naming every way the watchdog's work can fail, so callers can act on it.

``Retryable`` marks failures where trying the same thing again later may succeed (timeouts,
5xx, rate limits); everything else is final for that attempt.
"""

from __future__ import annotations


class WatchdogError(Exception):
    """Base of every error the watchdog raises on purpose."""


class Retryable(WatchdogError):
    """Mixin: the same call may succeed later. ``retry_after`` is a hint in seconds, if known."""

    retry_after: float | None = None


class ConfigError(WatchdogError):
    """The configuration is invalid. ``problems`` lists each one with file, line and field path;
    ``warnings`` what was found besides (unresolved references, when they are not errors)."""

    def __init__(self, problems: list[str], warnings: list[str] | None = None) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or ())
        super().__init__("\n".join(self.problems))


class SourceUnavailable(Retryable):
    """A metric source could not answer. Never evidence about a release: the watchdog is blind."""


class SourceGarbled(SourceUnavailable):
    """A metric source answered, but with something that is not a valid answer (wrong result type,
    missing keys, HTML, truncated JSON, the same series twice). Blind, exactly like no answer."""


class ActionFailed(WatchdogError):
    """An action on the outside world (GitHub, a smoke check, a notifier) failed for good."""


class ActionRetryable(ActionFailed, Retryable):
    """An action failed in a way that may pass on retry (timeout, 5xx, 429/403 rate limit)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(WatchdogError):
    """The store refused an operation (e.g. an attempt to change the append-only decision log)."""


class RollbackInProgress(StoreError, ValueError):
    """A rollback of this service in this environment is open already: a second is never opened."""


class LeaseLost(StoreError):
    """This replica's lease was taken over: it is a standby now and writes nothing."""


class StoreUnavailable(WatchdogError):
    """The store cannot be opened, reached or written: a missing SQLite file (a read never creates
    one), a database that is down or refuses the login, a schema this version cannot read. The
    message is one line naming the store, its password hidden, and the cause."""


class InputError(WatchdogError):
    """A request is wrong and changes nothing. ``argument`` names the argument at fault as the
    caller passed it (``service``, ``tag``, ``deployed_at``), ``value`` is what was given; the
    message reads ``service 'nope': no service named 'nope' (have: api)``."""

    def __init__(self, problem: str, *, argument: str | None = None, value: object = None) -> None:
        self.problem, self.argument, self.value = problem, argument, value
        super().__init__(problem if argument is None else f"{argument} {value!r}: {problem}")
