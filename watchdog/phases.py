"""The watchdog's vocabulary, named once. Logs, the API, the store and the docs use these values.

Like Argo Rollouts: *error* (a provider broke: Prometheus down, GitHub 5xx) is never confused with
*failed* (the release is bad, or a step's outcome is negative).
"""

from __future__ import annotations

import enum

from detectors.verdict import Outcome

__all__ = [
    "Actor",
    "DecisionKind",
    "DecisionResult",
    "IncidentPhase",
    "Outcome",
    "ReleaseStatus",
    "SignalState",
    "StepPhase",
    "WatchKind",
    "WatchPhase",
]


class SignalState(enum.StrEnum):
    """A signal's state in a watch at one tick: a detector ``Outcome`` or ``error`` (source broke)."""

    PASS = Outcome.PASS.value
    FAIL = Outcome.FAIL.value
    INCONCLUSIVE = Outcome.INCONCLUSIVE.value
    NO_DATA = Outcome.NO_DATA.value
    ERROR = "error"


class WatchKind(enum.StrEnum):
    DEPLOY = "deploy"  # a new release is being watched after its deploy
    POST_ROLLBACK = "post_rollback"  # the stable release is watched after a rollback
    #: a promoted release is watched a while longer, before/after against its pre-deploy window
    POST_PROMOTION = "post_promotion"


class WatchPhase(enum.StrEnum):
    RUNNING = "running"
    SUCCESSFUL = "successful"  # watch ended healthy: the release is promoted / recovery confirmed
    FAILED = "failed"  # a rollback-severity signal failed
    INCONCLUSIVE = "inconclusive"  # watch ended without enough evidence either way
    SUPERSEDED = "superseded"  # a newer deploy to the same environment replaced it
    ABORTED = "aborted"  # stopped by a human


class ReleaseStatus(enum.StrEnum):
    DEPLOYED = "deployed"  # announced, being watched
    STABLE = "stable"  # passed its watch (or pinned by a human)
    FAILED = "failed"  # failed its watch: never pinned, never a rollback target
    ROLLED_BACK = "rolled_back"
    #: A human vetoed its automatic rollback: neither stable nor failed, and never rolled back
    #: automatically again in that environment (a human still can).
    VETOED = "vetoed"


class IncidentPhase(enum.StrEnum):
    """A rollback incident: the pipeline run that undoes one bad release."""

    PROPOSED = "proposed"  # rollback_policy propose: paged, waiting for an operator's approval
    RUNNING = "running"
    WATCHING = "watching"  # rollback done, post-rollback watch running
    RESOLVED = "resolved"
    ESCALATING = "escalating"  # escalated in the decision log; the page and ticket update are going out
    ESCALATED = "escalated"  # a step failed or the release did not recover: humans take over
    VETOING = "vetoing"  # vetoed in the decision log; the page and ticket update are going out
    VETOED = "vetoed"  # a human vetoed it inside the veto window: nothing was changed

    @classmethod
    def closed(cls) -> tuple[IncidentPhase, ...]:
        """Phases of an incident that is over (a second rollback of its service may open)."""
        return (cls.RESOLVED, cls.ESCALATED, cls.VETOED)


class StepPhase(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    ERROR = "error"  # the outside system broke (after retries); escalate


class Actor(enum.StrEnum):
    AUTOMATIC = "watchdog"


class DecisionKind(enum.StrEnum):
    """The entries the decision log holds."""

    DEPLOY_ANNOUNCED = "deploy_announced"
    WATCH_STARTED = "watch_started"
    WATCH_SUPERSEDED = "watch_superseded"
    PROMOTED = "promoted"
    INCONCLUSIVE = "inconclusive"
    ROLLBACK_DECIDED = "rollback_decided"
    STEP = "step"
    ROLLBACK_RESOLVED = "rollback_resolved"
    ESCALATED = "escalated"
    PIN = "pin"
    BLIND = "blind"  # the metric source is unavailable: nothing is decided
    # a human's overrides
    VETO = "veto"
    APPROVAL = "approval"
    PAUSE = "pause"
    RESUME = "resume"
    WATCH_EXTENDED = "watch_extended"
    ACKNOWLEDGED = "acknowledged"
    # quarantine, incidents reported from outside, notices
    QUARANTINED = "quarantined"
    REDEPLOYED = "redeployed"  # a quarantined release was deployed again
    LIFTED = "lifted"
    IGNORED = "ignored"  # an outside report that does not lead to a rollback (and why)
    SENT = "sent"
    OPENED = "opened"
    QUARANTINE = "quarantine"  # a rolled-back release deployed again, or its quarantine lifted
    INCIDENT_REPORTED = "incident_reported"  # an oncall incident (PagerDuty) named a recent deploy
    NOTICE = "notice"  # a notice was delivered to a notifier, or given up
    POSTMORTEM = "postmortem"  # the follow-up issue was opened


class DecisionResult(enum.StrEnum):
    """What a decision-log entry says came of it (the ``result`` column)."""

    # a watch's own phases, as its start and end entries record them
    RUNNING = WatchPhase.RUNNING.value
    SUCCESSFUL = WatchPhase.SUCCESSFUL.value  # also: a step completed
    FAILED = WatchPhase.FAILED.value
    INCONCLUSIVE = WatchPhase.INCONCLUSIVE.value
    SUPERSEDED = WatchPhase.SUPERSEDED.value
    ABORTED = WatchPhase.ABORTED.value
    EXTENDED = "extended"  # an inconclusive watch runs once more
    PAGED = "paged"  # oncall was paged (a page-severity signal, an SLO breach, blindness)
    BLIND = "blind"
    SEEING = "seeing"  # the data is back after blindness
    PINNED = "pinned"
    ROLLBACK_STARTED = "rollback_started"
    NOT_STARTED = "not_started"  # a rollback was due but the guard said no
    # the rollback pipeline's steps
    STARTED = "started"
    AWAITING_APPROVAL = "awaiting_approval"
    REMINDED = "reminded"
    APPROVED = "approved"
    NOTIFY_FAILED = "notify_failed"  # a notice could not go out; the rollback went on without it
    ESCALATED = "escalated"
    ESCALATION_SENT = "escalation_sent"
    RESOLVED = "resolved"
    # overrides
    PROPOSED = "proposed"  # rollback_policy propose: a rollback waits for an operator
    WOULD_ROLL_BACK = "would_roll_back"  # automation is paused: logged and paged, nothing done
    # shadow mode: decided and logged with the evidence, nothing changed (no incident, pin, page)
    SHADOW_ROLLBACK = "shadow_rollback"  # would have rolled back
    SHADOW = "shadow"  # would have promoted (the pin stays where the team's process put it)
    VETOED = "vetoed"
    VETO_SENT = "veto_sent"
    PAUSED = "paused"
    RESUMED = "resumed"
    EXPIRED = "expired"
    ACKNOWLEDGED = "acknowledged"
    # quarantine, incidents reported from outside, notices
    QUARANTINED = "quarantined"
    REDEPLOYED = "redeployed"  # a quarantined release was deployed again
    LIFTED = "lifted"
    IGNORED = "ignored"  # an outside report that does not lead to a rollback (and why)
    SENT = "sent"
    OPENED = "opened"
