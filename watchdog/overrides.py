"""A human's levers: veto, approve, pause and resume, promote now, extend a watch, acknowledge.

The CLI and the API call these and nothing else, so a lever behaves the same wherever it is
pulled. Each one checks what it may do, writes in one transition with its decision-log entry
(actor, reason, time), and refuses with ``OverrideRefused`` (naming why) without writing anything.
Conflicting levers are settled by the database: each is a compare-and-set on the phase it expects,
so of two racing levers the first to commit wins and the second is refused (the table is in
docs/operating.md, "When overrides meet").
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from watchdog.engine import Engine
from watchdog.errors import InputError, StepConflict, StoreError, WatchdogError
from watchdog.observability import report_exception
from watchdog.phases import (
    Actor,
    DecisionKind,
    DecisionResult,
    IncidentPhase,
    ReleaseStatus,
    StepPhase,
    WatchKind,
    WatchPhase,
)
from watchdog.pipeline import notices
from watchdog.pipeline.steps import GO_AHEAD
from watchdog.store import Incident, Pause, Quarantine, ReleaseRef, Watch

log = structlog.get_logger("watchdog.overrides")

#: The longest pause: a pause must end (it is never forgotten), at the latest after a week.
MAX_PAUSE_S = 7 * 86_400


class OverrideRefused(InputError):
    """The override cannot apply now (the state does not allow it): nothing was written."""


@dataclass
class Overrides:
    engine: Engine

    def __post_init__(self) -> None:
        self.cfg, self.store, self.clock = self.engine.cfg, self.engine.store, self.engine.clock
        self.decisions = self.engine.decisions

    # ------------------------------------------------------------------ helpers

    def _incident(self, incident_id: int) -> Incident:
        try:
            return self.store.incident(incident_id)
        except StoreError as exc:
            raise InputError("no such incident", argument="incident", value=incident_id) from exc

    def _scope(self, env: str, service: str | None) -> str:
        """What a pause covers, checked against the configuration, as the log names it."""
        self.cfg.env(env)
        if service is None:
            return env
        self.cfg.service(service)
        return f"{service} in {env}"

    def _running_watch(self, env: str, service: str) -> Watch:
        self.cfg.env(env)
        self.cfg.service(service)
        watches = [w for w in self.store.running_watches(env, service) if w.kind == WatchKind.DEPLOY]
        if not watches:
            raise OverrideRefused(f"no watch of {service} in {env} is running")
        return watches[-1]

    def _record_incident(
        self, incident: Incident, kind: DecisionKind, reason: str, result: DecisionResult, actor: str
    ) -> None:
        from_release = self.store.release(incident.from_release_id)
        to_release = self.store.release(incident.to_release_id) if incident.to_release_id else None
        self.decisions.record(
            kind,
            reason,
            result,
            env=incident.env,
            service=incident.service,
            actor=actor,
            incident_id=incident.id,
            from_release=from_release,
            to_release=to_release,
        )

    # ------------------------------------------------------------------ veto and approval

    def veto(self, incident_id: int, *, actor: str, reason: str) -> Incident:
        """Cancel an automatic rollback inside its veto window (or a proposal): nothing it would
        have changed is changed, the release is marked vetoed (neither stable nor failed), the page
        and the ticket say so, and the release's watch goes on."""
        incident = self._incident(incident_id)
        if incident.actor != Actor.AUTOMATIC.value:
            raise OverrideRefused(
                f"incident {incident.id} was requested by {incident.actor}: a human's rollback has no "
                "veto window (it runs at once)"
            )
        if incident.phase not in (IncidentPhase.PROPOSED, IncidentPhase.RUNNING):
            raise OverrideRefused(
                f"incident {incident.id} is {incident.phase.value}: there is nothing to veto"
            )
        now = self.clock.now()
        deadline = notices.veto_deadline(self.cfg, incident)
        gate = self.store.step(incident.id, GO_AHEAD.name)
        proposed = incident.phase == IncidentPhase.PROPOSED
        if not proposed:
            if deadline is None:
                raise OverrideRefused(
                    f"{incident.env} has no veto window (veto_window_s: 0): the rollback of incident "
                    f"{incident.id} started at once"
                )
            if gate.phase == StepPhase.SUCCESSFUL or now >= deadline:
                raise OverrideRefused(
                    f"the veto window of incident {incident.id} closed at {notices.utc(deadline)}: the "
                    "rollback is changing things now; a human takes over from the ticket instead"
                )
        release = self.store.release(incident.from_release_id)
        text = f"vetoed by {actor}: {reason}"
        try:
            with self.decisions.transition():
                # compare-and-set on the gate the pipeline would pass and on the incident's phase:
                # of a veto and the pipeline (or an approval) the first to commit wins
                self.store.update_step(
                    gate.id, phase=StepPhase.FAILED, now=now, outcome=text, expect=(gate.phase, gate.attempts)
                )
                self.store.set_incident_phase(
                    incident.id,
                    IncidentPhase.VETOING,
                    now,
                    expect=(incident.phase,),  # a proposal approved meanwhile is not vetoed
                )
                notice = self.store.step(incident.id, "veto_notice")
                self.store.update_step(notice.id, phase=StepPhase.RUNNING, now=now, evidence={"text": text})
                self.store.set_release_status(release.id, ReleaseStatus.VETOED)
                self._record_incident(incident, DecisionKind.VETO, text, DecisionResult.VETOED, actor)
                # the watch goes on: the release is still watched (and paged on), never rolled back
                # automatically again in this environment
                ref = ReleaseRef(release.tag, release.sha, release.run_id, release.build_url)
                self.engine.start_watch(incident.env, incident.service, ref, now, actor=actor, source="veto")
        except StepConflict as exc:
            raise OverrideRefused(
                f"incident {incident.id} moved on before the veto: the window closed ({exc})"
            ) from exc
        return self.store.incident(incident.id)

    def approve(self, incident_id: int, *, actor: str, reason: str) -> Incident:
        """Start a proposed rollback (``rollback_policy: propose``)."""
        incident = self._incident(incident_id)
        if incident.phase != IncidentPhase.PROPOSED:
            raise OverrideRefused(
                f"incident {incident.id} is {incident.phase.value}, not proposed: there is nothing to approve"
            )
        try:
            with self.decisions.transition():
                self.store.set_incident_phase(
                    incident.id, IncidentPhase.RUNNING, self.clock.now(), expect=(IncidentPhase.PROPOSED,)
                )
                self.store.set_incident_evidence(incident.id, approved_by=actor)
                self._record_incident(
                    incident,
                    DecisionKind.APPROVAL,
                    f"rollback approved by {actor}: {reason}",
                    DecisionResult.APPROVED,
                    actor,
                )
        except StepConflict as exc:
            raise OverrideRefused(f"incident {incident.id} changed before the approval ({exc})") from exc
        return self.store.incident(incident.id)

    def acknowledge(self, incident_id: int, *, actor: str, reason: str) -> Incident:
        """A human has the escalation: PagerDuty's alert is acknowledged (paging stops)."""
        incident = self._incident(incident_id)
        if incident.phase not in (IncidentPhase.ESCALATING, IncidentPhase.ESCALATED):
            raise OverrideRefused(
                f"incident {incident.id} is {incident.phase.value}, not escalated: nothing to acknowledge"
            )
        already = [
            e for e in self.store.decisions(incident_id=incident.id) if e.kind == DecisionKind.ACKNOWLEDGED
        ]
        if already:
            raise OverrideRefused(f"incident {incident.id} was acknowledged by {already[0].actor} already")
        pager = self.engine.pager
        paged = "no pager configured"
        if pager is not None:
            try:
                pager.acknowledge(notices.dedup_key(incident))
                paged = "the page is acknowledged"
            except WatchdogError as exc:  # recorded either way: the human has it
                report_exception(log, "page acknowledge failed", exc, incident=incident.id)
                paged = f"acknowledging the page failed ({exc}); acknowledge it in PagerDuty"
        self._record_incident(
            incident,
            DecisionKind.ACKNOWLEDGED,
            f"escalation acknowledged by {actor}: {reason}; {paged}",
            DecisionResult.ACKNOWLEDGED,
            actor,
        )
        return incident

    # ------------------------------------------------------------------ pause and resume

    def pause(self, env: str, service: str | None, *, for_s: float, actor: str, reason: str) -> Pause:
        """Hold automatic rollbacks for an environment or one service until ``for_s`` from now:
        a release that fails its watch meanwhile is logged as "would roll back" and oncall paged."""
        scope = self._scope(env, service)
        if not 0 < for_s <= MAX_PAUSE_S:
            raise InputError(
                f"a pause lasts more than 0 s and at most {MAX_PAUSE_S} s (a week): it must end",
                argument="for_s",
                value=for_s,
            )
        now = self.clock.now()
        with self.decisions.transition():
            pause = self.store.add_pause(env, service, actor, reason, now, now + for_s)
            self.decisions.record(
                DecisionKind.PAUSE,
                f"automation for {scope} paused by {actor} until {notices.utc(now + for_s)}: {reason}",
                DecisionResult.PAUSED,
                env=env,
                service=service or "*",
                actor=actor,
                evidence={"pause": pause.id, "until": pause.until},
            )
        return pause

    def resume(self, env: str, service: str | None, *, actor: str, reason: str) -> list[Pause]:
        scope = self._scope(env, service)
        now = self.clock.now()
        with self.decisions.transition():
            ended = self.store.end_pauses(env, service, now, actor)
            if not ended:
                raise OverrideRefused(f"automation for {scope} is not paused")
            self.decisions.record(
                DecisionKind.RESUME,
                f"automation for {scope} resumed by {actor}: {reason}",
                DecisionResult.RESUMED,
                env=env,
                service=service or "*",
                actor=actor,
                evidence={"pauses": [p.id for p in ended]},
            )
        return ended

    # ------------------------------------------------------------------ the watch

    def promote(self, env: str, service: str, *, actor: str, reason: str) -> Watch:
        """End the running watch now and pin its release as stable (a human's lever: it pins in
        shadow mode too); the watch after promotion follows as after an automatic promotion."""
        watch = self._running_watch(env, service)
        if any(i.env == env and i.service == service for i in self.store.open_incidents()):
            raise OverrideRefused(f"a rollback of {service} in {env} is in progress: it is not promoted")
        release = self.store.release(watch.release_id)
        if release.status == ReleaseStatus.FAILED:
            raise OverrideRefused(f"{release.tag} failed its watch in {env}: it is never promoted")
        now = self.clock.now()
        with self.decisions.transition():
            if not self.store.end_watch(watch.id, WatchPhase.SUCCESSFUL, now, f"promoted by {actor}"):
                raise OverrideRefused(f"the watch of {release.tag} ended meanwhile")
            previous = self.store.current_pin(env, service)
            self.store.set_release_status(release.id, ReleaseStatus.STABLE)
            self.store.pin(env, service, release.id, now, actor, f"promoted by {actor}: {reason}")
            self.decisions.record(
                DecisionKind.PROMOTED,
                f"{release.tag} promoted by {actor} before its watch ended: {reason}",
                DecisionResult.SUCCESSFUL,
                env=env,
                service=service,
                actor=actor,
                watch_id=watch.id,
                from_release=previous,
                to_release=release,
            )
            self.engine.watch_after_promotion(env, service, release, previous, now)
        return self.store.watch(watch.id)

    def extend(self, env: str, service: str, *, by_s: float, actor: str, reason: str) -> Watch:
        """Watch the release longer: the running watch ends ``by_s`` later."""
        if not 0 < by_s <= 7 * 86_400:
            raise InputError("extend by more than 0 s and at most a week", argument="by_s", value=by_s)
        watch = self._running_watch(env, service)
        release = self.store.release(watch.release_id)
        with self.decisions.transition():
            self.store.extend_watch(watch.id, watch.ends_at + by_s)
            self.decisions.record(
                DecisionKind.WATCH_EXTENDED,
                f"watch of {release.tag} extended by {by_s:.0f}s by {actor}: {reason}",
                DecisionResult.EXTENDED,
                env=env,
                service=service,
                actor=actor,
                watch_id=watch.id,
                to_release=release,
                evidence={"ends_at": watch.ends_at + by_s},
            )
        return self.store.watch(watch.id)

    # ------------------------------------------------------------------ quarantine

    def lift_quarantine(self, env: str, service: str, tag: str, *, actor: str, reason: str) -> Quarantine:
        """Let a rolled-back release be deployed again like any other (it is watched, not rolled
        back at once). Needs a reason, which the decision log keeps."""
        self.cfg.env(env)
        self.cfg.service(service)
        if not reason.strip():
            raise InputError("lifting a quarantine needs a reason", argument="reason", value=reason)
        found = self.store.quarantined(env, service, tag)
        if found is None:
            raise OverrideRefused(f"{tag} of {service} is not quarantined in {env}")
        with self.decisions.transition():
            if not self.store.lift_quarantine(found.id, actor, reason, self.clock.now()):
                raise OverrideRefused(f"the quarantine of {tag} in {env} was lifted meanwhile")
            release = self.store.find_release(env, service, tag)
            self.decisions.record(
                DecisionKind.QUARANTINE,
                f"quarantine of {tag} in {env} lifted by {actor}: {reason}",
                DecisionResult.LIFTED,
                env=env,
                service=service,
                actor=actor,
                from_release=release,
                evidence={"quarantine": found.id, "incident_id": found.incident_id},
            )
        lifted = self.store.quarantines(env)
        return next(q for q in lifted if q.id == found.id)
