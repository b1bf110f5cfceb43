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


def retryable_status(status: int) -> bool:
    """The one rule for HTTP answers: a 5xx, a 429 or a 408 (the server timed out waiting for the
    request) may pass later; any other status is final. (A vendor's own rate-limit signal on another
    status, like GitHub's 403 with an exhausted ``x-ratelimit-remaining``, is mapped by that
    vendor's client.)"""
    return status >= 500 or status in (408, 429)


class ActionFailed(WatchdogError):
    """An action on the outside world (GitHub, a smoke check, a notifier) failed for good.

    ``service`` names the outside system (``GitHub``, ``PagerDuty``, ``Unleash``, a dampening
    action's name), ``status`` its HTTP status when it answered, ``retry_after`` the wait it asked
    for, in seconds."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        service: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.service, self.status, self.retry_after = service, status, retry_after

    def as_dict(self) -> dict[str, object]:
        """What the step's evidence and the decision log keep of it."""
        return {
            "error": str(self),
            "service": self.service,
            "status": self.status,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
        }


class ActionRetryable(ActionFailed, Retryable):
    """An action failed in a way that may pass on retry (timeout, 5xx, 429/403 rate limit)."""

    retryable = True

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        service: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, service=service, status=status, retry_after=retry_after)


def action_error(
    message: str, *, service: str, status: int | None = None, retry_after: float | None = None
) -> ActionFailed:
    """The error for an answer (``status``) or for no answer (``status`` None: a timeout, a refused
    connection, which may pass later): retryable by ``retryable_status``, final otherwise."""
    if status is None or retryable_status(status):
        return ActionRetryable(message, retry_after, service=service, status=status)
    return ActionFailed(message, service=service, status=status)


class StepFailed(WatchdogError):
    """A rollback step's outcome is negative (smoke checks red, an irreversible migration, a run
    that ended in failure): the pipeline escalates. ``evidence`` says what was seen."""

    def __init__(self, message: str, evidence: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.evidence = dict(evidence or {})


class StoreError(WatchdogError):
    """The store refused an operation (e.g. an attempt to change the append-only decision log)."""


class StepConflict(StoreError):
    """A step changed under this process (its phase or attempt is not what it read): another
    process moved it on, and this one writes nothing."""


class LeaseLost(StoreError):
    """This replica's lease was taken over: it is a standby now and writes nothing."""


class StoreUnavailable(WatchdogError):
    """The store cannot be opened, reached or written: a missing SQLite file (a read never creates
    one), a database that is down or refuses the login, a schema this version cannot read. The
    message is one line naming the store, its password hidden, and the cause."""


class ApiUnavailable(WatchdogError):
    """The HTTP API cannot serve (its address is taken, or not ours to bind)."""


class InputError(WatchdogError):
    """A request is wrong and changes nothing. ``argument`` names the argument at fault as the
    caller passed it (``service``, ``tag``, ``deployed_at``), ``value`` is what was given; the
    message reads ``service 'nope': no service named 'nope' (have: api)``."""

    def __init__(self, problem: str, *, argument: str | None = None, value: object = None) -> None:
        self.problem, self.argument, self.value = problem, argument, value
        super().__init__(problem if argument is None else f"{argument} {value!r}: {problem}")


class UnknownName(InputError, KeyError):
    """No environment or service of that name in the configuration."""

    def __str__(self) -> str:  # not KeyError's repr of the message
        return InputError.__str__(self)


class RollbackRefused(InputError, ValueError):
    """A rollback a human asked for cannot start: nothing deployed, no target, a target that failed."""


class RollbackInProgress(RollbackRefused, StoreError):
    """A rollback of this service in this environment is open already: a second is never opened
    (the store's unique index says so, also to concurrent callers)."""
