"""What the API answers and accepts: pydantic models, so the OpenAPI document says it exactly."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from watchdog.phases import (
    DecisionKind,
    DecisionResult,
    IncidentPhase,
    ReleaseStatus,
    StepPhase,
    WatchKind,
    WatchPhase,
)

T = TypeVar("T")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ReleaseOut(Out):
    id: int
    env: str
    service: str
    tag: str
    sha: str | None
    run_id: int | None
    build_url: str | None
    status: ReleaseStatus
    created_at: float
    migrations: list[dict[str, Any]] | None = None


class PinOut(BaseModel):
    env: str
    service: str
    pinned_at: float
    actor: str
    reason: str
    release: ReleaseOut


class VerdictOut(Out):
    at: float
    signal: str
    state: str
    detector: str
    statistic: float | None
    threshold: float | None
    summary: str
    evidence: dict[str, Any]


class WatchOut(Out):
    id: int
    env: str
    service: str
    kind: WatchKind
    phase: WatchPhase
    release_id: int
    previous_release_id: int | None
    incident_id: int | None
    started_at: float
    ends_at: float
    ended_at: float | None
    summary: str | None


class WatchDetail(WatchOut):
    release: ReleaseOut
    signals: list[VerdictOut] = Field(description="Each signal's newest verdict in this watch.")


class PointOut(Out):
    at: float
    state: str
    statistic: float | None
    threshold: float | None
    canary: float | None = Field(description="The canary's figure (a bad fraction; a gauge's worst value).")
    baseline: float | None = Field(description="The baseline's figure (a gauge's limit).")


class SignalSeries(BaseModel):
    signal: str
    points: list[PointOut]


class Marker(BaseModel):
    """Something that happened at a time: the deploy, a decision, a pipeline step."""

    at: float
    kind: str
    label: str


class SeriesOut(BaseModel):
    """A watch as it went: each signal's path tick by tick, and the markers along it."""

    watch: WatchOut
    signals: list[SignalSeries]
    markers: list[Marker]


class StepOut(Out):
    name: str
    phase: StepPhase
    attempts: int
    next_attempt_at: float | None
    started_at: float | None
    ended_at: float | None
    outcome: str | None
    evidence: dict[str, Any]


class IncidentOut(Out):
    id: int
    env: str
    service: str
    from_release_id: int
    to_release_id: int | None
    trigger: str
    reason: str
    actor: str
    correlation_id: str
    phase: IncidentPhase
    created_at: float
    ended_at: float | None


class IncidentDetail(IncidentOut):
    from_release: ReleaseOut
    to_release: ReleaseOut | None
    steps: list[StepOut]


class DecisionOut(Out):
    id: int
    at: float
    env: str
    service: str
    kind: DecisionKind
    result: DecisionResult
    actor: str
    reason: str
    from_tag: str | None
    from_sha: str | None
    from_run_id: int | None
    from_build_url: str | None
    to_tag: str | None
    to_sha: str | None
    to_run_id: int | None
    to_build_url: str | None
    watch_id: int | None
    incident_id: int | None
    evidence: dict[str, Any]


class ServiceState(BaseModel):
    service: str
    pinned: ReleaseOut | None = Field(description="The stable release a rollback returns to.")
    watch: WatchDetail | None = Field(description="The watch running now, with each signal's state.")
    open_incident: IncidentOut | None


class EnvironmentOut(BaseModel):
    env: str
    approval: str
    auto_rollback: bool
    services: list[ServiceState]


class Page(BaseModel, Generic[T]):
    """One page, newest first; pass ``next`` as ``before`` for the one after it (None: the last)."""

    items: list[T]
    next: int | None


class Health(BaseModel):
    status: str = Field(description="ok, or what is wrong")


class Ready(BaseModel):
    ready: bool
    role: str = Field(description="leader (acts) or standby (scrapes, takes over when the leader stops)")
    leader: str | None = Field(description="The replica that holds the lease, when known.")
    problems: list[str]


class ApiError(BaseModel):
    error: str = Field(description="What is wrong, in one line.")
    field: str | None = Field(default=None, description="The request part at fault (body.tag, query.limit).")


class MigrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200)
    reversible: bool


class DeployIn(BaseModel):
    """What the deploy workflow sends when it has deployed a release."""

    model_config = ConfigDict(extra="forbid")
    env: str
    service: str
    tag: str = Field(min_length=1, max_length=256)
    sha: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,64}$")
    run_id: int | None = Field(default=None, ge=1)
    build_url: str | None = Field(default=None, max_length=2000)
    deployed_at: float | None = Field(default=None, description="Unix seconds; now when absent.")
    migrations: list[MigrationIn] | None = Field(
        default=None, description="The release's migration manifest."
    )


class DeployOut(BaseModel):
    deploy_event: int = Field(
        description="The queued deploy event; the leader starts its watch at its next tick."
    )


class RollbackIn(BaseModel):
    """A human's rollback: the same pipeline as an automatic one, logged with the token's holder."""

    model_config = ConfigDict(extra="forbid")
    env: str
    service: str
    reason: str = Field(min_length=1, max_length=2000)
    to_tag: str | None = Field(default=None, description="The target; the pinned stable release when absent.")
    trigger: Literal["manual", "incident", "security"] = Field(
        default="manual", description="Why a human forces it: by hand, an incident, a security finding."
    )
    reference: str | None = Field(
        default=None,
        max_length=500,
        description="What it refers to (an incident link, an advisory id); needed for incident, security.",
    )

    @model_validator(mode="after")
    def _referenced(self) -> RollbackIn:
        if self.trigger != "manual" and not self.reference:
            raise ValueError(
                f"a {self.trigger} rollback needs a reference (an incident link, an advisory id)"
            )
        return self


class RollbackOut(BaseModel):
    incident: int


class OverrideIn(BaseModel):
    """Why (logged with the token's holder and the time)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    env: str
    service: str | None = Field(default=None, description="One service; the whole environment when absent.")
    for_s: float = Field(gt=0, le=7 * 86_400, description="How long: a pause always ends (at most a week).")
    reason: str = Field(min_length=1, max_length=2000)


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    env: str
    service: str | None = None
    reason: str = Field(min_length=1, max_length=2000)


class PauseOut(Out):
    id: int
    env: str
    service: str | None
    actor: str
    reason: str
    created_at: float
    until: float
    ended_at: float | None
    ended_by: str | None


class QuarantineOut(Out):
    """A release rolled back in an environment: a later deploy of it is rolled back at once."""

    id: int
    env: str
    service: str
    tag: str
    sha: str | None
    incident_id: int | None
    reason: str
    created_at: float
    lifted_at: float | None
    lifted_by: str | None
    lift_reason: str | None


class LiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    env: str
    service: str
    tag: str = Field(min_length=1, max_length=256)
    reason: str = Field(min_length=1, max_length=2000)


class WatchOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    env: str
    service: str
    reason: str = Field(min_length=1, max_length=2000)


class ExtendIn(WatchOverrideIn):
    by_s: float = Field(gt=0, le=7 * 86_400)
