"""What a rollback step is: its outcome, its own typed state, and the context it runs in.

A step is declared once, as a ``StepSpec`` (name, handler, state model). The handler receives a
``StepContext`` and returns one of four outcomes, and the driver (``watchdog.pipeline``) persists
it: ``Done`` completes the step, ``Wait`` leaves it running until a time or the next tick,
``Retry`` counts a failed attempt and backs off, ``Fail`` escalates to humans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from watchdog.errors import ActionFailed
from watchdog.phases import DecisionKind, DecisionResult, IncidentPhase
from watchdog.store import DecisionEntry, Incident, Release, Step

if TYPE_CHECKING:
    from watchdog.pipeline import RollbackPipeline


@dataclass(frozen=True)
class Entry:
    """A decision-log entry about the incident that a ``Done`` commits with the step."""

    kind: DecisionKind
    reason: str
    result: DecisionResult
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Done:
    """The step completed; ``evidence`` is kept on the step and logged. ``incident_phase`` and
    ``entry`` commit in the same transaction as the completion (the last step resolves the
    incident, the escalation notice marks it escalated)."""

    evidence: dict[str, Any] = field(default_factory=dict)
    incident_phase: IncidentPhase | None = None
    entry: Entry | None = None


@dataclass(frozen=True)
class Wait:
    """The outside world is not there yet (a run in progress, a watch running): run the step again
    at ``until``, or at the next tick when None."""

    until: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Retry:
    """An attempt failed in a way that may pass later: try again after ``after`` seconds (the
    server's ask), else after the driver's backoff; the step escalates after too many."""

    after: float | None
    error: ActionFailed


@dataclass(frozen=True)
class Fail:
    """The step's outcome is negative (``error`` False: the release or the runbook says no) or the
    outside system broke for good (``error`` True): humans take over."""

    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    error: bool = False


Outcome = Done | Wait | Retry | Fail


class StepState(BaseModel):
    """A step's own state, kept in its row's ``evidence``. Unknown keys (a newer or older
    version's) are ignored, never an error."""

    model_config = ConfigDict(extra="ignore")


S = TypeVar("S", bound=StepState)
T = TypeVar("T", bound=StepState)


@dataclass(frozen=True)
class StepSpec(Generic[S]):
    """One step of the runbook, declared once."""

    name: str
    handler: Callable[[StepContext[S]], Outcome]
    state: type[S]

    def load(self, evidence: dict[str, Any]) -> S:
        return self.state.model_validate(evidence)


class StepContext(Generic[S]):
    """What a handler works with: the incident, its two releases (``from_release`` the bad one,
    ``to_release`` the target), the step's typed state, the other steps' states, the actions, and
    the decision log."""

    def __init__(self, pipeline: RollbackPipeline, incident: Incident, spec: StepSpec[S], row: Step) -> None:
        self.pipeline = pipeline
        self.cfg = pipeline.cfg
        self.store = pipeline.store
        self.clock = pipeline.clock
        self.incident = incident
        self.spec = spec
        self.row = row
        self.state: S = spec.load(row.evidence)
        self.from_release, self.to_release = pipeline.releases(incident)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def attempts(self) -> int:
        """Failed attempts of this step so far."""
        return self.row.attempts

    def now(self) -> float:
        return self.clock.now()

    def save(self, **changes: Any) -> S:
        """Change the step's state and persist it now (progress inside a step: what is done is never
        done again after a crash). Fenced and compare-and-set like every step write."""
        self.state = self.spec.state.model_validate({**self.state.model_dump(), **changes})
        self.row = self.pipeline.write_step(self.row, evidence=self.state.model_dump(mode="json"))
        return self.state

    def state_of(self, spec: StepSpec[T]) -> T:
        """Another step's state, as it was persisted (this step's own: ``self.state``)."""
        if spec.name == self.spec.name:
            return self.state  # type: ignore[return-value]
        return spec.load(self.store.step(self.incident.id, spec.name).evidence)

    @contextmanager
    def transition(self) -> Iterator[None]:
        """Writes and decision-log entries that commit together."""
        with self.pipeline.decisions.transition():
            yield

    def log(
        self,
        kind: DecisionKind,
        reason: str,
        result: DecisionResult,
        evidence: dict[str, Any] | None = None,
        **extra: Any,
    ) -> DecisionEntry:
        """An entry about the incident, naming this step in its evidence."""
        return self.pipeline.log(
            self.incident, kind, reason, result, {"step": self.name, **(evidence or {})}, **extra
        )

    def releases(self) -> tuple[Release, Release | None]:
        return self.from_release, self.to_release
