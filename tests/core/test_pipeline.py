"""The rollback pipeline against the GitHub emulator (every exchange checked against GitHub's spec)
and a real demo service for the smoke checks and the post-rollback watch.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from actions.github import DeployWorkflow
from tests.fixtures.daemon import wait_for
from tests.fixtures.github import MANIFEST_V1, MANIFEST_V2
from tests.fixtures.pipeline import (
    CONFIG,
    NO_REVIEWERS,
    TOKEN,
    build,
    dispatches,
    drive,
    finished,
    on_sim_clock,
    run_cli,
    start_incident,
)
from watchdog.app import App
from watchdog.clock import RealClock, SimClock
from watchdog.config import parse_config
from watchdog.demo.service import ServiceProcess
from watchdog.demo.traffic import Target, TrafficGenerator
from watchdog.emulator.github import GitHubEmulator, RunContext, WorkflowInput, deploy_workflow
from watchdog.phases import DecisionKind, IncidentPhase, StepPhase
from watchdog.pipeline import ESCALATION_NOTICE, MAX_ATTEMPTS, STEPS
from watchdog.store import ReleaseRef


@pytest.fixture
def make_github_emulator(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> Callable[..., GitHubEmulator]:
    """Every emulator here runs on a simulated clock that the app shares (``on_sim_clock``)."""
    return on_sim_clock(make_github_emulator)


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess("v1.0.0", "canary", seed=4) as svc:
        yield svc


def test_full_rollback_dispatches_once_smoke_tests_watches_and_logs(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    seen: list[RunContext] = []
    gh = make_github_emulator(hook=lambda ctx: seen.append(ctx) or True, **NO_REVIEWERS)
    app = build(tmp_path, service, gh)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))

    incident = app.store.incident(incident_id)
    assert incident.phase == IncidentPhase.RESOLVED.value
    assert len(dispatches(gh)) == 1
    body = dispatches(gh)[0].request_json
    assert body["ref"] == "v1.0.0" and body["return_run_details"] is True
    assert body["inputs"] == {
        "environment": "prod",
        "tag": "v1.0.0",
        "correlation_id": incident.correlation_id,
    }
    assert [c.ref for c in seen] == ["v1.0.0"]

    steps = app.store.steps(incident_id)
    assert [s.name for s in steps] == list(STEPS)
    for s in steps:  # recorded before (started_at) and after (ended_at) it ran
        assert s.phase == StepPhase.SUCCESSFUL.value and s.started_at is not None and s.ended_at is not None
    smoke = next(s for s in steps if s.name == "smoke")
    assert {c["name"] for c in smoke.evidence["checks"]} == {"health", "claim_dry_run"}

    log = app.store.decisions(incident_id=incident_id)
    done = [e for e in log if e.kind == DecisionKind.ROLLBACK_RESOLVED.value]
    assert len(done) == 1
    assert done[0].from_tag == "v1.1.0" and done[0].to_tag == "v1.0.0" and done[0].to_sha == "1" * 40
    assert done[0].evidence["rollback_run"]["run_id"] == dispatched_run_id(app, incident_id)
    assert [e.reason for e in log if e.kind == DecisionKind.STEP.value][:2] == [
        "step pin started",
        "step pin successful",
    ]
    app.close()


def dispatched_run_id(app: App, incident_id: int) -> int:
    return int(next(s for s in app.store.steps(incident_id) if s.name == "dispatch").evidence["run_id"])


def test_lost_dispatch_answer_is_found_by_correlation_id_not_dispatched_again(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    gh.inject_accept_then_drop("POST", r"/dispatches$")
    app = build(tmp_path, service, gh)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    assert len(dispatches(gh)) == 1
    dispatch = next(s for s in app.store.steps(incident_id) if s.name == "dispatch")
    assert dispatch.evidence["found_by_correlation_id"] is True
    app.close()


def test_a_process_restart_mid_pipeline_resumes_without_a_second_dispatch(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    release = threading.Event()
    gh = make_github_emulator(hook=lambda ctx: release.wait(10) or True, **NO_REVIEWERS)
    first = build(tmp_path, service, gh)
    incident_id = start_incident(first)
    drive(first, incident_id, lambda: bool(dispatches(gh)))
    first.close()  # the process dies while the run is in progress
    second = App.build(first.cfg, first.clock, smoke_retry_delay_s=0.1)  # only the store is shared
    release.set()
    drive(second, incident_id, finished(second, incident_id))
    assert second.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    assert len(dispatches(gh)) == 1
    second.close()


def test_failed_run_escalates_and_stops_automation(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(hook=lambda ctx: False, **NO_REVIEWERS)
    app = build(tmp_path, service, gh)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    last = [
        e for e in app.store.decisions(incident_id=incident_id) if e.kind == DecisionKind.ESCALATED.value
    ][-1]
    assert "ended failure" in last.reason and "restore-db.md" in last.reason
    follow = next(s for s in app.store.steps(incident_id) if s.name == "follow_run")
    assert follow.phase == StepPhase.FAILED.value
    assert not any(
        s.name == "smoke" and s.phase != StepPhase.PENDING.value for s in app.store.steps(incident_id)
    )
    app.close()


def test_red_smoke_checks_escalate(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    app = build(
        tmp_path, service, gh, CONFIG.replace("expect_json: {status: ok}", "expect_json: {status: down}")
    )
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    smoke = next(s for s in app.store.steps(incident_id) if s.name == "smoke")
    assert smoke.phase == StepPhase.FAILED.value
    assert "json status='ok', expected 'down'" in (smoke.outcome or "")
    app.close()


def test_github_5xx_is_retried_not_escalated(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    gh.inject_error("POST", r"/dispatches$", 502)
    app = build(tmp_path, service, gh)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    assert len(dispatches(gh)) == 2  # the 502 and the retry
    dispatch = next(s for s in app.store.steps(incident_id) if s.name == "dispatch")
    assert dispatch.attempts == 1
    app.close()


def test_a_backoff_is_kept_in_the_store_and_holds_after_a_restart(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    """The failed attempt and the time of the next are columns of the step: a new process on the
    same store waits the backoff out instead of retrying at once."""
    clock = SimClock(1_800_000_000.0)
    gh = make_github_emulator(now=clock.now, **NO_REVIEWERS)
    gh.inject_error("POST", r"/dispatches$", 503, times=2)
    first = build(tmp_path, service, gh, clock=clock)
    incident_id = start_incident(first)
    drive(first, incident_id, lambda: len(dispatches(gh)) == 1, clock=clock)
    step = first.store.step(incident_id, "dispatch")
    failed_at = dispatches(gh)[0].at
    assert (step.phase, step.attempts, step.next_attempt_at) == (StepPhase.RUNNING, 1, failed_at + 2.0)
    assert step.outcome == "retrying: dispatch deploy.yml at v1.0.0: GitHub answered 503"
    first.close()

    second = build(tmp_path, service, gh, clock=clock, seed=False)  # a restart: only the store is kept
    clock.set(failed_at + 1.9)
    second.engine.tick()
    assert len(dispatches(gh)) == 1  # not before the backoff the first process set
    clock.set(failed_at + 2.0)
    second.engine.tick()
    assert len(dispatches(gh)) == 2  # the second 503: 2² s this time
    step = second.store.step(incident_id, "dispatch")
    assert (step.attempts, step.next_attempt_at) == (2, clock.now() + 4.0)
    drive(second, incident_id, finished(second, incident_id), clock=clock)
    assert second.store.incident(incident_id).phase == IncidentPhase.RESOLVED
    assert [ex.status for ex in dispatches(gh)] == [503, 503, 200]
    second.close()


def test_a_step_escalates_after_max_attempts_failed_attempts(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    gh.inject_error("GET", r"/actions/runs/\d+$", 502, times=MAX_ATTEMPTS)  # following the run
    app = build(tmp_path, service, gh)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    step = app.store.step(incident_id, "follow_run")
    assert (step.phase, step.attempts) == (StepPhase.ERROR, MAX_ATTEMPTS)
    polls = [ex.at for ex in gh.requests("GET", r"/actions/runs/\d+$")]
    assert len(polls) == MAX_ATTEMPTS and len(dispatches(gh)) == 1
    waits = [b - a for a, b in itertools.pairwise(polls)]
    assert all(w >= 2.0**n for n, w in enumerate(waits, start=1))  # 2ⁿ s, from the step's row
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED
    app.close()


def test_prod_rollback_waits_for_the_environment_reviewers(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    """Approval mode ``reviewers``: the run waits in GitHub until a prod reviewer approves it."""
    gh = make_github_emulator()  # prod requires alice or watchdog-bot
    app = build(tmp_path, service, gh)
    incident_id = start_incident(app)
    drive(app, incident_id, lambda: bool(dispatches(gh)) and gh.list_runs()[0]["status"] == "waiting")
    drive(app, incident_id, lambda: True)
    assert app.store.incident(incident_id).phase == IncidentPhase.RUNNING.value
    run_id = gh.list_runs()[0]["id"]
    gh.review(run_id, "approved", login="alice")
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    app.close()


def test_manual_rollback_from_the_cli_runs_the_same_pipeline_and_logs_the_human(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    app = build(tmp_path, service, gh)
    app.engine.announce("prod", "stamps-api", ReleaseRef("v1.1.0", "2" * 40))
    app.engine.tick()  # the deploy watch of v1.1.0 is running

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(tmp_path, service, gh, "rollback", "--env", "prod", *args)

    refused = cli("--to", "v9.9.9", "--reason", "x", "--actor", "alice")
    assert refused.returncode == 2 and "v9.9.9 of stamps-api was never deployed to prod" in refused.stderr
    done = cli("--reason", "security finding SEC-42", "--actor", "alice")
    assert done.returncode == 0, done.stderr
    again = cli("--reason", "twice", "--actor", "bob")
    assert again.returncode == 2 and "already in progress" in again.stderr

    incident = app.store.open_incidents()[0]
    assert incident.actor == "alice" and incident.trigger == "manual"
    drive(app, incident.id, finished(app, incident.id))
    assert app.store.incident(incident.id).phase == IncidentPhase.RESOLVED.value
    assert [ex.request_json["ref"] for ex in dispatches(gh)] == ["v1.0.0"]
    decided = next(e for e in app.store.decisions() if e.kind == DecisionKind.ROLLBACK_DECIDED.value)
    assert decided.actor == "alice" and "security finding SEC-42" in decided.reason
    assert decided.from_tag == "v1.1.0" and decided.to_tag == "v1.0.0"
    with pytest.raises(ValueError, match="failed its own watch"):  # never back to a failed release
        app.engine.request_rollback("prod", "stamps-api", reason="x", actor="bob", to_tag="v1.1.0")
    shown = run_cli(tmp_path, service, gh, "log", "--incident", str(incident.id), "--json")
    entries = json.loads(shown.stdout)
    assert {e["incident_id"] for e in entries} == {incident.id}  # what its ticket points people to
    assert entries[0]["kind"] == "rollback_decided" and entries[-1]["kind"] == "rollback_resolved"
    app.close()


def test_first_start_seeds_the_stable_pin_from_githubs_last_successful_deployment(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(now=time.time, **NO_REVIEWERS)  # CI's deploys, before the watchdog starts
    env = {"SVC": service.url, "GH": gh.url, "TOKEN": TOKEN, "DB": f"sqlite:///{tmp_path / 'wd.db'}"}
    cfg = parse_config(CONFIG, "test.yaml", env=env)
    deployer = DeployWorkflow(gh.url, "acme/stamps", "deploy.yml", TOKEN, RealClock())
    for tag in ("v1.0.0", "v1.2.0"):
        run = deployer.dispatch(tag, {"environment": "prod", "tag": tag, "correlation_id": f"ci-{tag}"})
        assert run is not None
        gh.wait_for_run(run.id)
    gh.set_hook(lambda ctx: False)  # a later deploy that failed is not a stable release
    failed = deployer.dispatch("v1.1.0", {"environment": "prod", "tag": "v1.1.0", "correlation_id": "ci-bad"})
    assert failed is not None
    gh.wait_for_run(failed.id)

    gh.inject_error("GET", r"/deployments$", 502)
    offline = App.build(cfg, RealClock())
    assert offline.seed_pins() == []  # GitHub down: logged, not fatal, nothing pinned
    assert offline.store.current_pin("prod", "stamps-api") is None
    offline.close()

    app = App.build(cfg, RealClock())
    assert app.seed_pins() == ["stamps-api/prod=v1.2.0"]
    pin = app.store.current_pin("prod", "stamps-api")
    assert pin is not None and pin.tag == "v1.2.0" and pin.sha == "3" * 40
    entry = app.store.decisions()[-1]
    assert (
        entry.kind == DecisionKind.PIN.value
        and entry.actor == "watchdog"
        and "seeded from GitHub" in entry.reason
    )
    assert app.seed_pins() == []  # only when the store has no pin
    app.close()


@pytest.mark.parametrize("limit", ["primary", "secondary-403", "secondary-429"])
def test_rate_limits_are_waited_out_not_escalated(
    limit: str, tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    start = 1_800_000_000.0
    clock = SimClock(start)  # the watchdog and GitHub share simulated time
    gh = make_github_emulator(now=clock.now, **NO_REVIEWERS)
    # 3 s: longer than the 1 s dispatch lookup grace, which alone would also hold a retry back
    if limit == "primary":
        gh.inject_rate_limit("POST", r"/dispatches$", reset_in=3)
    else:
        gh.inject_secondary_rate_limit("POST", r"/dispatches$", retry_after=3, status=int(limit[-3:]))
    app = build(tmp_path, service, gh, clock=clock)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id), clock=clock)
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    sent = dispatches(gh)
    assert [ex.status for ex in sent] == [403 if limit != "secondary-429" else 429, 200]
    headers = sent[0].response_headers
    if limit == "primary":  # not before the moment GitHub said the limit resets
        assert float(headers["x-ratelimit-reset"]) == start + 3  # injected before the clock moved
        assert sent[1].at >= start + 3
    else:  # not before the seconds GitHub asked for had passed
        assert sent[1].at >= sent[0].at + float(headers["retry-after"])
    assert len(gh.list_runs()) == 1
    app.close()


def test_a_dispatch_github_took_is_never_repeated_and_escalates_when_its_run_is_not_found(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    """A workflow without a run-name carrying the correlation id, and a GitHub that answers 204:
    the run is looked for until dispatch_lookup_timeout_s, then a human is asked; one dispatch."""
    clock = SimClock(1_800_000_000.0)
    nameless = dataclasses.replace(deploy_workflow(), run_name=None)
    gh = make_github_emulator(now=clock.now, workflows=[nameless], run_details=False, **NO_REVIEWERS)
    text = CONFIG.replace(
        "dispatch_lookup_grace_s: 1", "dispatch_lookup_grace_s: 1\n  dispatch_lookup_timeout_s: 5"
    )
    app = build(tmp_path, service, gh, text, clock=clock)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id), clock=clock)
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    assert [ex.status for ex in dispatches(gh)] == [204] and len(gh.list_runs()) == 1
    step = app.store.step(incident_id, "dispatch")
    assert step.phase == StepPhase.FAILED.value and step.evidence["dispatches"] == 1
    assert step.evidence["lookups"] >= 5 / 0.2 - 1  # one per tick for the 5 s
    assert "run-name: deploy ${{ github.ref_name }} [${{ inputs.correlation_id }}]" in step.outcome
    app.close()


def test_dispatches_whose_answers_are_lost_stop_at_max_dispatch_attempts(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    clock = SimClock(1_800_000_000.0)
    gh = make_github_emulator(now=clock.now, **NO_REVIEWERS)
    gh.inject_drop("POST", r"/dispatches$", times=20)  # never processed: no run to find
    text = CONFIG.replace(
        "dispatch_lookup_grace_s: 1", "dispatch_lookup_grace_s: 1\n  max_dispatch_attempts: 2"
    )
    app = build(tmp_path, service, gh, text, clock=clock)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id), clock=clock)
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    assert len(dispatches(gh)) == 2 and gh.list_runs() == []
    step = app.store.step(incident_id, "dispatch")
    assert step.phase == StepPhase.FAILED.value
    assert "dispatched 2 times without an answer" in step.outcome


def test_states_a_crash_can_leave_are_completed_on_the_next_tick(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    """Each step's phase and its log entry commit together (the resolution with its step too);
    a failure and its escalation span two transactions, and the next tick mends that."""
    gh = make_github_emulator(**NO_REVIEWERS)
    app = build(tmp_path, service, gh)
    # a step failed, and the process died before it escalated
    failed = start_incident(app)
    step = app.store.step(failed, "pin")
    app.store.update_step(step.id, phase=StepPhase.FAILED, now=app.clock.now(), outcome="no stable release")
    app.pipeline.advance(failed)
    assert app.store.incident(failed).phase == IncidentPhase.ESCALATED.value
    log = app.store.decisions(incident_id=failed)
    assert [e.kind for e in log][-3:] == [DecisionKind.ESCALATED.value, "step", "step"]
    assert log[-1].result == "escalation_sent"
    assert dispatches(gh) == []  # mending bookkeeping never repeats an external effect
    app.close()


def test_approval_auto_approves_the_pending_deployment_with_the_watchdogs_token(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator()  # prod requires alice or watchdog-bot (the watchdog's token)
    app = build(tmp_path, service, gh, CONFIG.replace("approval: none", "approval: auto"))
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    reviews = gh.requests("POST", r"/pending_deployments$")
    assert len(reviews) == 1 and reviews[0].request_json["state"] == "approved"
    approved = [e for e in app.store.decisions(incident_id=incident_id) if e.result == "approved"]
    assert len(approved) == 1 and "explicit opt-in" in approved[0].reason
    app.close()


def test_approval_reviewers_waits_and_says_so_once(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator()
    app = build(tmp_path, service, gh, CONFIG.replace("approval: none", "approval: reviewers"))
    incident_id = start_incident(app)
    drive(app, incident_id, lambda: bool(gh.list_runs()) and gh.list_runs()[0]["status"] == "waiting")
    for _ in range(5):
        app.engine.tick()
    assert gh.requests("POST", r"/pending_deployments$") == []  # never approves on its own
    waiting = [e for e in app.store.decisions(incident_id=incident_id) if e.result == "awaiting_approval"]
    assert len(waiting) == 1
    gh.review(gh.list_runs()[0]["id"], "rejected", login="alice")
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    approval = app.store.step(incident_id, "approval")
    assert approval.phase == StepPhase.FAILED.value and "a reviewer rejected it" in (approval.outcome or "")
    assert approval.evidence["reviewers"] == ["alice", "watchdog-bot"]
    app.close()


def test_irreversible_migrations_stop_the_automatic_rollback(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    files = {
        "v1.0.0": {"migrations/manifest.json": MANIFEST_V1},
        "v1.1.0": {"migrations/manifest.json": MANIFEST_V2},
    }
    gh = make_github_emulator(files=files, **NO_REVIEWERS)
    app = build(tmp_path, service, gh)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    assert dispatches(gh) == []  # no code rollback over an irreversible migration
    (last,) = [e for e in app.store.decisions(incident_id=incident_id) if e.kind == DecisionKind.ESCALATED]
    assert "irreversible migrations 0002" in last.reason and "restore-db.md" in last.reason
    app.close()


def test_reversible_migrations_go_down_with_the_code(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    v3 = (
        '{"migrations": [{"id": "0001", "reversible": true}, {"id": "0002", "reversible": true}, '
        '{"id": "0003", "reversible": true}]}'
    )
    files = {"v1.0.0": {"migrations/manifest.json": MANIFEST_V1}, "v1.1.0": {"migrations/manifest.json": v3}}
    base = deploy_workflow()
    workflow = dataclasses.replace(base, inputs={**base.inputs, "migrate_down": WorkflowInput(default="")})
    gh = make_github_emulator(files=files, workflows=[workflow], **NO_REVIEWERS)
    app = build(tmp_path, service, gh)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    assert dispatches(gh)[0].request_json["inputs"]["migrate_down"] == "0003,0002"
    app.close()


class _Jobs(BaseHTTPRequestHandler):
    """A stand-in for the jobs service's admin API: records what the watchdog asked."""

    calls: ClassVar[list[tuple[str, str]]] = []
    journal: ClassVar[Path]  # every action, HTTP or command, appends to it: their order

    def do_POST(self) -> None:
        _Jobs.calls.append((self.path, self.headers.get("Authorization", "")))
        with open(_Jobs.journal, "a") as journal:
            print(self.path, file=journal)
        self.send_response(409 if self.path == "/refuse" else 204)  # 409: final, not retried
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads ``calls``, not the server's access log."""


def test_dampening_runs_before_the_dispatch_and_is_undone_after_the_smoke_checks(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    jobs = ThreadingHTTPServer(("127.0.0.1", 0), _Jobs)
    threading.Thread(target=jobs.serve_forever, daemon=True).start()
    _Jobs.calls = []
    url = f"http://127.0.0.1:{jobs.server_address[1]}"
    flag = _Jobs.journal = tmp_path / "journal"

    def mark(word: str) -> str:  # a command that notes that it ran
        return f"print('{word}', file=open('{flag}', 'a'))"

    dampening = f"""    dampening:
      prod:
        - name: pause-workers
          url: {url}/pause
          headers: {{Authorization: "Bearer ${{JOBS_TOKEN}}"}}
          undo:
            name: resume-workers
            url: {url}/resume
            headers: {{Authorization: "Bearer ${{JOBS_TOKEN}}"}}
        - name: read-only
          kind: command
          argv: ["{sys.executable}", "-c", "{mark("on")}"]
          undo:
            name: read-write
            kind: command
            argv: ["{sys.executable}", "-c", "{mark("off")}"]
"""
    during: list[str] = []  # the journal while the rollback run deploys
    gh = make_github_emulator(hook=lambda ctx: during.append(flag.read_text()) or True, **NO_REVIEWERS)
    env = {
        "SVC": service.url,
        "GH": gh.url,
        "TOKEN": TOKEN,
        "DB": f"sqlite:///{tmp_path / 'wd.db'}",
        "JOBS_TOKEN": "jobs-s3cret",
    }
    cfg = parse_config(CONFIG + dampening, "test.yaml", env=env)
    app = App.build(cfg, gh.clock, smoke_retry_delay_s=0.1)
    app.engine.pin("prod", "stamps-api", ReleaseRef("v1.0.0", "1" * 40), actor="alice", reason="seed")
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    (pause, auth), (resume, _) = _Jobs.calls
    assert (pause, resume, auth) == ("/pause", "/resume", "Bearer jobs-s3cret")
    assert during == ["/pause\non\n"]  # dampened before the deploy, undone only after it
    assert flag.read_text().split() == ["/pause", "on", "off", "/resume"]  # undone newest first
    undo = app.store.step(incident_id, "undo_dampening")
    smoke = app.store.step(incident_id, "smoke")
    assert undo.evidence["undone"] == ["read-only", "pause-workers"] and undo.started_at >= smoke.ended_at
    assert "jobs-s3cret" not in json.dumps([e.evidence for e in app.store.decisions()])
    jobs.shutdown()
    app.close()


def test_the_deploy_events_migration_manifest_wins_over_the_file_at_the_tag(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    """The deploy pipeline knows what it migrated: ``announce --migrations`` hands it over."""
    gh = make_github_emulator(**NO_REVIEWERS)  # at the tag, v1.1.0's manifest lists only 0001
    app = build(tmp_path, service, gh)

    def announce(manifest: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "manifest.json"
        path.write_text(manifest)
        args = ["--env", "prod", "--service", "stamps-api", "--tag", "v1.1.0", "--migrations", str(path)]
        return run_cli(tmp_path, service, gh, "announce", *args)

    bad_json = announce('{"migrations": [\n  {"id": "0001", "reversible": true},,\n]}')
    assert bad_json.returncode == 2 and "manifest.json:2: invalid JSON" in bad_json.stderr
    bad_field = announce('{"migrations": [{"id": "0001", "reversible": "yes"}]}')
    assert (
        bad_field.returncode == 2 and "migrations[0].reversible: expected true or false" in bad_field.stderr
    )
    assert app.store.pending_deploy_events() == []  # nothing half-done
    done = announce(MANIFEST_V2)  # 0001 and the irreversible 0002
    assert done.returncode == 0, done.stderr

    app.engine.tick()  # the deploy watch of v1.1.0 starts, its release carries the manifest
    incident_id = app.engine.request_rollback("prod", "stamps-api", reason="P2", actor="alice")
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    assert dispatches(gh) == []
    gate = app.store.step(incident_id, "migration_gate")
    assert gate.evidence["irreversible"] == ["0002"]
    assert gate.evidence["sources"] == {
        "v1.1.0": "deploy event",
        "v1.0.0": "migrations/manifest.json at v1.0.0",
    }
    assert [ex.path for ex in gh.requests("GET", r"/contents/")] == [
        "/repos/acme/stamps/contents/migrations/manifest.json"
    ]  # read once: for the target, which had no deploy-event manifest
    app.close()


def test_a_dispatch_that_timed_out_after_github_accepted_it_is_not_repeated(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    gh.inject_late_answer("POST", r"/dispatches$", 2.5)  # GitHub starts the run; the answer comes too late
    app = build(tmp_path, service, gh, CONFIG.replace("request_timeout_s: 5", "request_timeout_s: 1"))
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    # the emulator logs the exchange once its late answer is written, which may be after the end
    wait_for(lambda: len(dispatches(gh)) >= 1, 10, "the late dispatch answer")
    assert len(dispatches(gh)) == 1 and len(gh.list_runs()) == 1
    dispatch = app.store.step(incident_id, "dispatch")
    assert dispatch.attempts == 1 and dispatch.evidence["found_by_correlation_id"] is True
    app.close()


def test_a_service_still_outside_its_slo_after_the_rollback_escalates(
    tmp_path: Path, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    """The rollback run succeeds but the service stays bad (here: the deploy never changed it).
    Canary and baseline agree, so only the SLO says it: the post-rollback watch fails, a human is called."""
    with (
        ServiceProcess("v1.1.0", "baseline", seed=21) as baseline,
        ServiceProcess("v1.1.0", "canary", seed=22) as canary,
    ):
        config = f"""
version: 1
tick_s: 0.5
demo_note: test timings
source:
  kind: scrape
  lookback_s: 30
  scrape:
    interval_s: 0.5
    targets: [{{url: "{baseline.url}/metrics"}}, {{url: "{canary.url}/metrics"}}]
github: {{api_url: "${{GH}}", repo: acme/stamps, token: "${{TOKEN}}", run_timeout_s: 30}}
store: {{url: "${{DB}}"}}
environments:
  prod: {{approval: none, watch_s: 60, post_rollback_watch_s: 10, calibration_s: 0}}
services:
  - name: stamps-api
    signals:
      - name: http_5xx
        kind: ratio
        bad: {{metric: http_requests_total, match: {{code: "=~5.."}}}}
        total: {{metric: http_requests_total}}
        slo: 0.01
"""
        gh = make_github_emulator(**NO_REVIEWERS)
        app = build(tmp_path, canary, gh, config)
        traffic = TrafficGenerator(
            [Target(baseline.url, 0.5, "baseline"), Target(canary.url, 0.5, "canary")],
            60.0,
            RealClock(),
            np.random.default_rng(3),
        )
        traffic.start()
        try:
            incident_id = start_incident(app)
            # the services and their traffic run in real time: one tick per 0.5 s of it
            drive(app, incident_id, finished(app, incident_id), timeout_s=60, pace_s=0.5)
        finally:
            traffic.stop()
        assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
        watch = app.store.step(incident_id, "post_rollback_watch")
        assert watch.phase == StepPhase.FAILED.value
        assert "did not recover" in (watch.outcome or "") and "not recovered: http_5xx" in (
            watch.outcome or ""
        )
        assert "is above the SLO 1.000%" in (watch.outcome or "") and "CI ≥ 0.000%" not in (
            watch.outcome or ""
        )
        assert app.store.step(incident_id, "resolve").phase == StepPhase.PENDING.value
        app.close()


def test_a_run_that_never_reaches_its_approval_is_cancelled_and_escalated(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(queue_delay=60)  # no runner picks the run up
    config = CONFIG.replace("approval: none,", "approval: reviewers, approval_timeout_s: 1.5,")
    app = build(tmp_path, service, gh, config)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    approval = app.store.step(incident_id, "approval")
    assert approval.phase == StepPhase.FAILED.value
    assert "did not reach its approval within 1.5s (status queued)" in (approval.outcome or "")
    (run,) = gh.list_runs()
    assert run["conclusion"] == "cancelled"
    app.close()


def test_the_escalations_undo_skips_what_the_failed_undo_step_already_did(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    jobs = ThreadingHTTPServer(("127.0.0.1", 0), _Jobs)
    threading.Thread(target=jobs.serve_forever, daemon=True).start()
    _Jobs.calls, _Jobs.journal = [], tmp_path / "journal"
    url = f"http://127.0.0.1:{jobs.server_address[1]}"
    dampening = f"""    dampening:
      prod:
        - {{name: pause-workers, url: {url}/pause, undo: {{name: resume-workers, url: {url}/refuse}}}}
        - {{name: read-only, url: {url}/read-only, undo: {{name: read-write, url: {url}/read-write}}}}
"""
    gh = make_github_emulator(**NO_REVIEWERS)
    config = CONFIG.replace("approval: none,", "approval: none, undo_dampening_on_escalation: true,")
    app = build(tmp_path, service, gh, config + dampening)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    undo = app.store.step(incident_id, "undo_dampening")
    assert undo.phase == StepPhase.ERROR.value and undo.evidence["undone"] == ["read-only"]
    paths = [path for path, _ in _Jobs.calls]
    assert paths == ["/pause", "/read-only", "/read-write", "/refuse", "/refuse"]  # read-write once
    (failed,) = [e for e in app.store.decisions(incident_id=incident_id) if e.result == "notify_failed"]
    assert "resume-workers: POST answered 409" in failed.evidence["problems"]["undo_dampening"]
    assert app.store.step(incident_id, ESCALATION_NOTICE).phase == StepPhase.SUCCESSFUL.value
    jobs.shutdown()
    app.close()
