"""The GitHub emulator, driven over real HTTP by PyGithub and httpx, checked against GitHub's spec."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from github import BadCredentialsException, Github, GithubException, RateLimitExceededException
from github.GithubRetry import GithubRetry

from tests.fixtures.github import MANIFEST_V1, MANIFEST_V2, SHAS, TOKEN, client
from tests.openapi_check import ExchangeValidator, SpecRecorder
from watchdog.clock import SimClock
from watchdog.emulator.github import (
    Exchange,
    GitHubEmulator,
    RunContext,
    WorkflowDef,
    WorkflowInput,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where a simulated clock starts: on it, runs move only when the test advances it.
T0 = 1_800_000_000.0


def iso(t: float) -> str:
    """A clock time as GitHub writes timestamps."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Gate:
    """A hook that records its runs and holds each one until the test lets it finish."""

    def __init__(self, outcome: bool = True, *, hold: bool = False) -> None:
        self.outcome = outcome
        self.calls: list[RunContext] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, run: RunContext) -> bool:
        self.calls.append(run)
        self.release.wait(timeout=10)
        return self.outcome


def api(emulator: GitHubEmulator, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, headers={"Authorization": f"Bearer {token}"}, timeout=5)


def dispatch(gh: Github, ref: str, inputs: dict[str, str], **kwargs: Any) -> Any:
    workflow = gh.get_repo("acme/stamps").get_workflow("deploy.yml")
    return workflow.create_dispatch(ref, inputs, throw=True, **kwargs)


# ----------------------------------------------------------------------------- PyGithub basics


def test_pygithub_reads_the_repository_and_the_workflow_by_file_name(gh: Github) -> None:
    repo = gh.get_repo("acme/stamps")
    workflow = repo.get_workflow("deploy.yml")

    assert (repo.full_name, repo.default_branch, repo.private) == ("acme/stamps", "main", True)
    assert repo.html_url == "https://github.com/acme/stamps"
    assert (workflow.name, workflow.path, workflow.state) == (
        "deploy",
        ".github/workflows/deploy.yml",
        "active",
    )
    assert repo.get_workflow(workflow.id).name == "deploy"
    with pytest.raises(GithubException) as missing:
        repo.get_workflow("nope.yml")
    assert missing.value.status == 404


def test_a_dispatched_run_goes_queued_in_progress_completed_and_runs_the_hook(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    clock = SimClock(T0)
    hook = Gate()
    emulator = make_github_emulator(hook=hook, clock=clock, queue_delay=30, step_delay=60)
    gh = client(emulator)

    run = dispatch(gh, "v1.1.0", {"environment": "dev", "correlation_id": "wd-1"}, return_run_details=True)

    assert run.html_url == f"https://github.com/acme/stamps/actions/runs/{run.id}"
    assert run.url == f"{emulator.url}/repos/acme/stamps/actions/runs/{run.id}"
    assert run.status == "queued"
    assert (run.event, run.head_branch, run.head_sha) == ("workflow_dispatch", "v1.1.0", SHAS["v1.1.0"])
    assert run.display_title == "deploy dev v1.1.0 [wd-1]"
    assert run.name == "deploy"

    clock.advance(30)
    run.update()
    assert (run.status, run.conclusion) == ("in_progress", None)
    assert hook.calls == []

    clock.advance(60)
    run.update()
    assert (run.status, run.conclusion) == ("completed", "success")
    [context] = hook.calls
    assert (context.run_id, context.ref, context.sha, context.environment) == (
        run.id,
        "v1.1.0",
        SHAS["v1.1.0"],
        "dev",
    )
    assert context.inputs == {
        "environment": "dev",
        "correlation_id": "wd-1",
        "tag": "",
        "reason": "",
        "migrate_down": "",
    }
    [job] = run.jobs()
    assert (job.status, job.conclusion, job.head_sha) == ("completed", "success", SHAS["v1.1.0"])


def test_dispatch_without_run_details_answers_204_and_the_run_is_found_by_its_correlation_id(
    github_emulator: GitHubEmulator, gh: Github
) -> None:
    assert dispatch(gh, "v1.0.0", {"environment": "dev", "correlation_id": "wd-other"}) is True
    assert dispatch(gh, "v1.2.0", {"environment": "dev", "correlation_id": "wd-42"}) is True

    [exchange, _] = github_emulator.requests(operation="actions/create-workflow-dispatch")
    assert (exchange.status, exchange.response_body) == (204, b"")
    workflow = gh.get_repo("acme/stamps").get_workflow("deploy.yml")
    runs = workflow.get_runs(event="workflow_dispatch")
    assert runs.totalCount == 2
    [found] = [r for r in runs if "wd-42" in r.display_title]
    assert (found.head_branch, found.head_sha) == ("v1.2.0", SHAS["v1.2.0"])


def test_a_failing_or_raising_hook_fails_the_run_and_its_deployment(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    def hook(run: RunContext) -> bool:
        if run.inputs["correlation_id"] == "boom":
            raise RuntimeError("deploy script crashed")
        return False

    emulator = make_github_emulator(hook=hook)
    gh = client(emulator)
    failed = dispatch(gh, "v1.1.0", {"environment": "dev", "correlation_id": "no"}, return_run_details=True)
    crashed = dispatch(
        gh, "v1.1.0", {"environment": "dev", "correlation_id": "boom"}, return_run_details=True
    )

    for run in (failed, crashed):
        assert emulator.wait_for_run(run.id)["conclusion"] == "failure"
    assert [str(e) for e in emulator.hook_errors] == ["deploy script crashed"]
    deployments = list(gh.get_repo("acme/stamps").get_deployments(environment="dev"))
    assert [[s.state for s in d.get_statuses()] for d in deployments] == [["failure", "in_progress"]] * 2


# ----------------------------------------------------------------------------- runs move in the clock's time


def test_a_run_stays_queued_until_its_queue_delay_has_passed_on_the_clock(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    clock = SimClock(T0)
    hook = Gate()
    emulator = make_github_emulator(hook=hook, now=clock.now, queue_delay=60, step_delay=5)
    gh = client(emulator)
    run = dispatch(gh, "v1.1.0", {"environment": "dev"}, return_run_details=True)

    clock.advance(59.5)
    run.update()
    assert (run.status, emulator.get_run(run.id)["status"]) == ("queued", "queued")
    _, jobs = gh.requester.requestJsonAndCheck("GET", f"{run.url}/jobs")
    [job] = jobs["jobs"]
    assert (job["status"], job["runner_name"], job["steps"]) == ("queued", None, [])

    clock.advance(0.5)
    assert emulator.get_run(run.id)["status"] == "in_progress"
    clock.advance(4.5)
    assert emulator.get_run(run.id)["status"] == "in_progress"
    assert hook.calls == []
    clock.advance(0.5)
    assert emulator.get_run(run.id)["conclusion"] == "success"
    assert len(hook.calls) == 1


def test_a_runs_timestamps_are_the_clock_times_its_moves_were_due_not_when_someone_looked(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    clock = SimClock(T0)
    emulator = make_github_emulator(clock=clock, queue_delay=10, step_delay=20)
    gh = client(emulator)
    run = dispatch(gh, "v1.0.0", {"environment": "prod"}, return_run_details=True)  # behind reviewers

    clock.advance(100)  # nobody looks meanwhile
    waiting = emulator.get_run(run.id)
    _, [pending] = gh.requester.requestJsonAndCheck("GET", f"{run.url}/pending_deployments")
    emulator.review(run.id, "approved", login="alice")  # at T0 + 100: the job starts now
    clock.advance(500)  # its hook was due at T0 + 120
    done = emulator.get_run(run.id)

    assert (waiting["status"], waiting["created_at"]) == ("waiting", iso(T0))
    assert (waiting["run_started_at"], waiting["updated_at"]) == (iso(T0 + 10), iso(T0 + 10))
    assert pending["wait_timer_started_at"] == iso(T0 + 10)
    assert (done["status"], done["conclusion"], done["updated_at"]) == ("completed", "success", iso(T0 + 120))
    _, jobs = gh.requester.requestJsonAndCheck("GET", f"{run.url}/jobs")
    [job] = jobs["jobs"]
    assert (job["started_at"], job["completed_at"]) == (iso(T0 + 100), iso(T0 + 120))
    _, [deployment] = gh.requester.requestJsonAndCheck("GET", f"{emulator.url}/repos/acme/stamps/deployments")
    _, statuses = gh.requester.requestJsonAndCheck("GET", deployment["statuses_url"])
    assert deployment["created_at"] == iso(T0 + 100)
    assert [(s["state"], s["created_at"]) for s in statuses] == [
        ("success", iso(T0 + 120)),
        ("in_progress", iso(T0 + 100)),
    ]


def test_a_blocking_hook_holds_only_its_run_and_completes_it_when_it_returns(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    release = threading.Event()
    started: list[str] = []

    def hook(run: RunContext) -> bool:
        started.append(run.inputs["correlation_id"])
        return run.inputs["correlation_id"] != "held" or release.wait(timeout=10)

    clock = SimClock(T0)
    emulator = make_github_emulator(hook=hook, clock=clock, queue_delay=1, step_delay=1, hook_grace=1)
    gh = client(emulator)
    held = dispatch(gh, "v1.1.0", {"environment": "dev", "correlation_id": "held"}, return_run_details=True)
    quick = dispatch(gh, "v1.2.0", {"environment": "dev", "correlation_id": "quick"}, return_run_details=True)

    clock.advance(2)
    assert emulator.get_run(held.id)["status"] == "in_progress"  # its hook holds on past the grace
    assert started == ["held", "quick"]
    done = emulator.get_run(quick.id)
    assert (done["conclusion"], done["updated_at"]) == ("success", iso(T0 + 2))

    clock.advance(7)
    release.set()  # the deploy ends at T0 + 9
    final = emulator.wait_for_run(held.id)
    assert (final["conclusion"], final["updated_at"]) == ("success", iso(T0 + 9))


def test_a_hook_may_call_back_into_the_emulator(make_github_emulator: Callable[..., GitHubEmulator]) -> None:
    clock = SimClock(T0)
    emulator = make_github_emulator(clock=clock, queue_delay=1, step_delay=1)
    gh = client(emulator)
    seen: list[str] = []
    staged = dispatch(gh, "v1.0.0", {"environment": "stage"}, return_run_details=True)  # waits for alice

    def hook(run: RunContext) -> bool:
        if run.environment == "dev":
            seen.append(emulator.get_run(run.run_id)["status"])
            emulator.review(staged.id, "approved", login="alice")
        return True

    emulator.set_hook(hook)
    dev = dispatch(gh, "v1.1.0", {"environment": "dev"}, return_run_details=True)
    clock.advance(2)  # dev's hook is due: it approves stage's job, which starts now

    assert emulator.get_run(dev.id)["conclusion"] == "success"
    assert seen == ["in_progress"]
    assert emulator.get_run(staged.id)["status"] == "in_progress"
    clock.advance(1)
    assert emulator.get_run(staged.id)["conclusion"] == "success"


def test_on_the_wall_clock_runs_move_while_someone_waits_for_them(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    """The default clock, as the demo and the daemon's end-to-end tests use it: a run moves
    whenever it is looked at, so waiting for it (polling, as a client does) sees it finish."""
    hook = Gate()
    emulator = make_github_emulator(hook=hook)  # 0.05 s queued, 0.05 s in progress
    gh = client(emulator)
    run = dispatch(gh, "v1.1.0", {"environment": "dev"}, return_run_details=True)

    assert emulator.wait_for_run(run.id)["conclusion"] == "success"
    run.update()
    assert (run.status, run.conclusion, len(hook.calls)) == ("completed", "success", 1)


def test_a_clock_or_its_now_but_not_both() -> None:
    clock = SimClock(T0)
    with pytest.raises(ValueError, match="not both"):
        GitHubEmulator(clock=clock, now=clock.now)


# ----------------------------------------------------------------------------- environment approval


def test_a_run_for_an_environment_with_reviewers_waits_until_approved(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    clock = SimClock(T0)
    hook = Gate()
    emulator = make_github_emulator(hook=hook, clock=clock, queue_delay=1, step_delay=1)
    gh = client(emulator)
    run = dispatch(gh, "v1.0.0", {"environment": "prod", "correlation_id": "wd-7"}, return_run_details=True)

    clock.advance(3600)  # an hour later, nobody has approved it yet
    run.update()
    assert run.status == "waiting"
    _, pending = gh.requester.requestJsonAndCheck("GET", f"{run.url}/pending_deployments")
    [request] = pending
    assert request["environment"]["name"] == "prod"
    assert request["current_user_can_approve"] is True
    assert [r["reviewer"]["login"] for r in request["reviewers"]] == ["alice", "watchdog-bot"]
    assert hook.calls == []

    _, deployments = gh.requester.requestJsonAndCheck(
        "POST",
        f"{run.url}/pending_deployments",
        input={"environment_ids": [request["environment"]["id"]], "state": "approved", "comment": "rollback"},
    )

    assert [(d["environment"], d["ref"], d["sha"]) for d in deployments] == [
        ("prod", "v1.0.0", SHAS["v1.0.0"])
    ]
    assert emulator.get_run(run.id)["status"] == "in_progress"
    clock.advance(1)
    assert emulator.get_run(run.id)["conclusion"] == "success"
    assert [c.environment for c in hook.calls] == ["prod"]
    _, after = gh.requester.requestJsonAndCheck("GET", f"{run.url}/pending_deployments")
    assert after == []


def test_a_rejected_run_fails_without_deploying_and_only_reviewers_may_review(
    make_github_emulator: Callable[..., GitHubEmulator], spec_recorder: SpecRecorder
) -> None:
    clock = SimClock(T0)
    hook = Gate()
    emulator = make_github_emulator(hook=hook, clock=clock)
    watchdog, alice = client(emulator), client(emulator, "ghp_alice")
    run = dispatch(watchdog, "v1.0.0", {"environment": "stage"}, return_run_details=True)
    clock.advance(1)
    _, [request] = watchdog.requester.requestJsonAndCheck("GET", f"{run.url}/pending_deployments")
    assert request["current_user_can_approve"] is False
    review = {"environment_ids": [request["environment"]["id"]], "state": "approved", "comment": "lgtm"}

    with pytest.raises(GithubException) as refused:
        watchdog.requester.requestJsonAndCheck("POST", f"{run.url}/pending_deployments", input=review)
    assert refused.value.status == 422
    clock.advance(5)
    _, deployments = alice.requester.requestJsonAndCheck(
        "POST", f"{run.url}/pending_deployments", input={**review, "state": "rejected"}
    )

    assert deployments == []
    final = emulator.get_run(run.id)
    assert (final["status"], final["conclusion"], final["updated_at"]) == (
        "completed",
        "failure",
        iso(T0 + 6),
    )
    clock.advance(60)
    assert hook.calls == []
    assert list(watchdog.get_repo("acme/stamps").get_deployments(environment="stage")) == []


def test_a_reviewer_can_also_approve_from_python(make_github_emulator: Callable[..., GitHubEmulator]) -> None:
    emulator = make_github_emulator()
    run = dispatch(client(emulator), "v1.2.0", {"environment": "stage"}, return_run_details=True)
    emulator.wait_for_run(run.id, ("waiting",))

    with pytest.raises(ValueError, match="not a required reviewer"):
        emulator.review(run.id, "approved", login="mallory")
    emulator.review(run.id, "approved", login="alice")

    assert emulator.wait_for_run(run.id)["conclusion"] == "success"


def test_environments_show_required_reviewers_and_can_be_updated(github_emulator: GitHubEmulator) -> None:
    gh = client(github_emulator)
    repo = gh.get_repo("acme/stamps")
    prod = repo.get_environment("prod")
    [rule] = prod.protection_rules
    assert rule.type == "required_reviewers"
    assert sorted(e.name for e in repo.get_environments()) == ["dev", "prod", "stage"]

    alice_id = (
        gh.get_repo("acme/stamps")
        .get_environment("stage")
        .protection_rules[0]
        .raw_data["reviewers"][0]["reviewer"]["id"]
    )
    with api(github_emulator) as http:
        answer = http.put(
            "/repos/acme/stamps/environments/dev",
            json={"wait_timer": 5, "reviewers": [{"type": "User", "id": alice_id}]},
        )
    assert answer.status_code == 200
    rules = {r["type"]: r for r in answer.json()["protection_rules"]}
    assert rules["wait_timer"]["wait_timer"] == 5
    assert [r["reviewer"]["login"] for r in rules["required_reviewers"]["reviewers"]] == ["alice"]


# ----------------------------------------------------------------------------- runs: cancel, rerun, lists


def test_cancel_stops_a_waiting_run_and_a_completed_run_cannot_be_cancelled(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    clock = SimClock(T0)
    emulator = make_github_emulator(clock=clock)
    gh = client(emulator)
    run = dispatch(gh, "v1.0.0", {"environment": "stage"}, return_run_details=True)
    clock.advance(1)
    assert emulator.get_run(run.id)["status"] == "waiting"

    assert run.cancel() is True
    assert emulator.get_run(run.id)["conclusion"] == "cancelled"
    with pytest.raises(GithubException) as conflict:
        gh.requester.requestJsonAndCheck("POST", f"{run.url}/cancel")
    assert conflict.value.status == 409


def test_cancelling_a_queued_run_ends_it_at_once_and_its_job_never_runs(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    clock = SimClock(T0)
    hook = Gate()
    emulator = make_github_emulator(hook=hook, clock=clock, queue_delay=60)
    gh = client(emulator)
    run = dispatch(gh, "v1.1.0", {"environment": "dev"}, return_run_details=True)

    clock.advance(30)
    assert run.cancel() is True
    cancelled = emulator.get_run(run.id)
    clock.advance(600)

    assert (cancelled["status"], cancelled["conclusion"], cancelled["updated_at"]) == (
        "completed",
        "cancelled",
        iso(T0 + 30),
    )
    assert emulator.get_run(run.id) == cancelled
    assert hook.calls == []
    assert list(gh.get_repo("acme/stamps").get_deployments(environment="dev")) == []


def test_cancelling_while_the_hook_runs_tells_the_hook_and_concludes_cancelled(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    seen = threading.Event()

    def hook(run: RunContext) -> bool:
        seen.set()
        return not run.cancelled.wait(timeout=10)

    clock = SimClock(T0)
    emulator = make_github_emulator(hook=hook, clock=clock, hook_grace=0.2)
    run = dispatch(client(emulator), "v1.0.0", {"environment": "dev"}, return_run_details=True)
    clock.advance(1)
    assert emulator.get_run(run.id)["status"] == "in_progress"  # the hook started, and holds on
    assert seen.wait(timeout=5)

    clock.advance(3)
    assert run.cancel() is True
    final = emulator.wait_for_run(run.id)
    assert (final["conclusion"], final["updated_at"]) == ("cancelled", iso(T0 + 4))


def test_rerun_starts_a_new_attempt_of_a_completed_run(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    clock = SimClock(T0)
    hook = Gate()
    emulator = make_github_emulator(hook=hook, clock=clock, queue_delay=5, step_delay=5)
    run = dispatch(client(emulator), "v1.1.0", {"environment": "dev"}, return_run_details=True)
    clock.advance(10)
    assert emulator.get_run(run.id)["conclusion"] == "success"

    clock.advance(50)
    assert run.rerun() is True
    again = emulator.get_run(run.id)
    clock.advance(10)
    final = emulator.get_run(run.id)

    assert (again["run_attempt"], again["status"], again["updated_at"]) == (2, "queued", iso(T0 + 60))
    assert (final["run_attempt"], final["conclusion"]) == (2, "success")
    assert (final["run_started_at"], final["updated_at"]) == (iso(T0 + 65), iso(T0 + 70))
    assert final["previous_attempt_url"].endswith(f"/actions/runs/{run.id}/attempts/1")
    assert [c.run_attempt for c in hook.calls] == [1, 2]


def test_run_lists_filter_and_paginate_like_github(github_emulator: GitHubEmulator) -> None:
    gh = client(github_emulator)
    ids = [
        dispatch(gh, tag, {"environment": "dev", "correlation_id": f"c{n}"}, return_run_details=True).id
        for n, tag in enumerate(["v1.0.0", "v1.1.0", "v1.2.0"])
    ]
    for run_id in ids:
        github_emulator.wait_for_run(run_id)
    newest_first = list(reversed(ids))

    with api(github_emulator) as http:
        page = http.get("/repos/acme/stamps/actions/runs", params={"per_page": 2})
        assert page.json()["total_count"] == 3
        assert [r["id"] for r in page.json()["workflow_runs"]] == newest_first[:2]
        assert 'rel="next"' in page.headers["link"] and 'rel="last"' in page.headers["link"]
        nxt = http.get(page.links["next"]["url"])
        assert [r["id"] for r in nxt.json()["workflow_runs"]] == newest_first[2:]

        def ids_for(**params: str) -> list[int]:
            answer = http.get("/repos/acme/stamps/actions/workflows/deploy.yml/runs", params=params)
            assert answer.status_code == 200
            return [r["id"] for r in answer.json()["workflow_runs"]]

        created = github_emulator.get_run(ids[0])["created_at"]
        assert ids_for(branch="v1.1.0") == [ids[1]]
        assert ids_for(status="success") == newest_first
        assert ids_for(status="completed", event="workflow_dispatch") == newest_first
        assert ids_for(status="in_progress") == []
        assert ids_for(event="push") == []
        assert ids_for(created=f">={created}") == newest_first
        assert ids_for(created=f"<{created}") == []
        assert ids_for(created=f"{created[:10]}..*") == newest_first
    assert len(list(gh.get_repo("acme/stamps").get_workflow_runs(branch="v1.2.0"))) == 1  # type: ignore[arg-type]  # a name works too


# ----------------------------------------------------------------------------- deployments


def test_a_deploying_run_creates_a_deployment_with_statuses_for_its_environment(
    github_emulator: GitHubEmulator, gh: Github
) -> None:
    first = dispatch(gh, "v1.1.0", {"environment": "dev", "correlation_id": "a"}, return_run_details=True)
    github_emulator.wait_for_run(first.id)
    second = dispatch(gh, "v1.2.0", {"environment": "dev", "correlation_id": "b"}, return_run_details=True)
    github_emulator.wait_for_run(second.id)

    repo = gh.get_repo("acme/stamps")
    newer, older = repo.get_deployments(environment="dev")
    assert (newer.ref, newer.sha, newer.task, newer.environment) == (
        "v1.2.0",
        SHAS["v1.2.0"],
        "deploy",
        "dev",
    )
    assert newer.payload == {
        "environment": "dev",
        "correlation_id": "b",
        "tag": "",
        "reason": "",
        "migrate_down": "",
    }
    assert [s.state for s in newer.get_statuses()] == ["success", "in_progress"]
    assert [s.state for s in older.get_statuses()] == ["inactive", "success", "in_progress"]
    assert newer.get_statuses()[0].log_url.startswith(
        f"https://github.com/acme/stamps/actions/runs/{second.id}/"
    )
    assert [d.id for d in repo.get_deployments(sha=SHAS["v1.1.0"])] == [older.id]
    assert [d.id for d in repo.get_deployments(ref="v1.2.0")] == [newer.id]
    assert repo.get_deployment(older.id).ref == "v1.1.0"


def test_deployments_and_statuses_can_be_created_through_the_api(gh: Github) -> None:
    repo = gh.get_repo("acme/stamps")
    deployment = repo.create_deployment(
        "v1.0.0", environment="stage", payload={"by": "watchdog"}, required_contexts=[], auto_merge=False
    )
    status = deployment.create_status("success", target_url="https://ci.example/1", description="rolled back")

    assert (deployment.sha, deployment.environment, deployment.payload) == (
        SHAS["v1.0.0"],
        "stage",
        {"by": "watchdog"},
    )
    assert (status.state, status.target_url, status.description) == (
        "success",
        "https://ci.example/1",
        "rolled back",
    )
    assert [s.id for s in deployment.get_statuses()] == [status.id]
    with pytest.raises(GithubException) as unknown:
        repo.create_deployment("v9.9.9", required_contexts=[])
    assert unknown.value.status == 422


# ----------------------------------------------------------------------------- contents, releases, issues


def test_contents_returns_each_file_as_it_is_at_the_requested_ref(gh: Github) -> None:
    repo = gh.get_repo("acme/stamps")

    old = repo.get_contents("migrations/manifest.json", ref="v1.0.0")
    new = repo.get_contents("migrations/manifest.json", ref="v1.2.0")
    by_sha = repo.get_contents("migrations/manifest.json", ref=SHAS["v1.2.0"])

    assert not isinstance(old, list) and not isinstance(new, list) and not isinstance(by_sha, list)
    assert old.decoded_content.decode() == MANIFEST_V1
    assert new.decoded_content.decode() == MANIFEST_V2 == by_sha.decoded_content.decode()
    assert (new.encoding, new.path, new.name) == ("base64", "migrations/manifest.json", "manifest.json")
    assert base64.b64decode(new.content) == MANIFEST_V2.encode()
    listing = repo.get_contents("migrations", ref="v1.2.0")
    assert isinstance(listing, list)
    assert sorted(f.path for f in listing) == ["migrations/0002_drop.sql", "migrations/manifest.json"]
    with pytest.raises(GithubException) as absent:
        repo.get_contents("migrations/manifest.json")
    assert absent.value.status == 404
    with pytest.raises(GithubException) as bad_ref:
        repo.get_contents("migrations/manifest.json", ref="v7")
    assert (bad_ref.value.status, bad_ref.value.data["message"]) == (404, "No commit found for the ref v7")


def test_releases_and_tags(gh: Github) -> None:
    repo = gh.get_repo("acme/stamps")

    assert repo.get_latest_release().tag_name == "v1.2.0"
    assert repo.get_release("v1.1.0").tag_name == "v1.1.0"
    assert [t.name for t in repo.get_tags()] == ["v1.2.0", "v1.1.0", "v1.0.0"]
    assert {t.name: t.commit.sha for t in repo.get_tags()} == SHAS

    created = repo.create_git_release("v1.3.0", "v1.3.0", "fixes", target_commitish="main")
    prerelease = repo.create_git_release("v1.4.0-rc1", "rc", "", prerelease=True)

    assert repo.get_latest_release().id == created.id != prerelease.id
    assert [r.tag_name for r in repo.get_releases()][:2] == ["v1.4.0-rc1", "v1.3.0"]
    assert "v1.3.0" in [t.name for t in repo.get_tags()]
    with pytest.raises(GithubException) as duplicate:
        repo.create_git_release("v1.3.0", "again", "")
    assert duplicate.value.status == 422
    assert duplicate.value.data["errors"][0]["code"] == "already_exists"
    with pytest.raises(GithubException) as missing:
        repo.get_release("v0.0.1")
    assert missing.value.status == 404


def test_issues_can_be_opened_commented_on_and_closed(gh: Github) -> None:
    repo = gh.get_repo("acme/stamps")

    issue = repo.create_issue("Rollback of v1.2.0 in prod", body="5xx rate", labels=["rollback", "prod"])
    comment = issue.create_comment("post-rollback watch started")
    issue.edit(state="closed", labels=["rollback"])

    again = repo.get_issue(issue.number)
    assert (again.state, again.state_reason, again.comments) == ("closed", "completed", 1)
    assert [label.name for label in again.labels] == ["rollback"]
    assert [c.body for c in again.get_comments()] == ["post-rollback watch started"]
    assert (
        comment.html_url == f"https://github.com/acme/stamps/issues/{issue.number}#issuecomment-{comment.id}"
    )
    assert [i.number for i in repo.get_issues(state="open")] == []
    assert [i.number for i in repo.get_issues(state="all", labels=["rollback"])] == [issue.number]
    issue.edit(state="open")
    assert repo.get_issue(issue.number).state_reason == "reopened"


def test_the_repository_can_be_edited(gh: Github) -> None:
    repo = gh.get_repo("acme/stamps")
    repo.edit(description="stamp cards", has_wiki=True)

    again = gh.get_repo("acme/stamps")
    assert (again.description, again.has_wiki) == ("stamp cards", True)


# ----------------------------------------------------------------------------- headers, rate limit, auth


def test_every_response_carries_githubs_headers_and_rate_limit_accounting(
    github_emulator: GitHubEmulator,
) -> None:
    with api(github_emulator) as http:
        first = http.get("/repos/acme/stamps")
        second = http.get("/repos/acme/stamps/tags")
        overview = http.get("/rate_limit")

    for answer in (first, second, overview):
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        for name in ("limit", "remaining", "reset", "used", "resource"):
            assert f"x-ratelimit-{name}" in answer.headers
        assert answer.headers["x-github-request-id"]
    assert first.headers["x-github-request-id"] != second.headers["x-github-request-id"]
    assert int(first.headers["x-ratelimit-remaining"]) - int(second.headers["x-ratelimit-remaining"]) == 1
    core = overview.json()["resources"]["core"]
    assert core["remaining"] == int(second.headers["x-ratelimit-remaining"])
    assert core["used"] == 2 == int(overview.headers["x-ratelimit-used"])
    assert overview.json()["rate"] == core


def test_an_exhausted_rate_limit_answers_403_until_the_window_resets(github_emulator: GitHubEmulator) -> None:
    gh = client(github_emulator)
    github_emulator.set_rate_limit(remaining=0, reset_in=3600)

    with pytest.raises(RateLimitExceededException) as limited:
        gh.get_repo("acme/stamps")
    assert limited.value.status == 403
    assert limited.value.headers is not None and limited.value.headers["x-ratelimit-remaining"] == "0"
    assert gh.get_rate_limit().resources.core.remaining == 0

    github_emulator.set_rate_limit(reset_in=-1)
    assert gh.get_repo("acme/stamps").name == "stamps"


def test_a_get_carries_an_etag_and_a_conditional_request_for_it_is_a_free_304(
    github_emulator: GitHubEmulator, gh: Github
) -> None:
    number = gh.get_repo("acme/stamps").create_issue("Rollback of v1.2.0 in prod").number
    with api(github_emulator) as http:
        first = http.get(f"/repos/acme/stamps/issues/{number}")
        etag = first.headers["etag"]
        used = github_emulator.rate_limit["used"]
        unchanged = http.get(f"/repos/acme/stamps/issues/{number}", headers={"If-None-Match": etag})
        assert github_emulator.rate_limit["used"] == used  # GitHub: a 304 costs no rate limit
        again = http.get(f"/repos/acme/stamps/issues/{number}")

    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 16  # strong, quoted
    assert again.headers["etag"] == etag  # the same answer, the same tag
    assert (unchanged.status_code, unchanged.content, unchanged.headers["etag"]) == (304, b"", etag)
    assert "content-type" not in unchanged.headers
    assert unchanged.headers["x-ratelimit-remaining"] == first.headers["x-ratelimit-remaining"]
    assert github_emulator.rate_limit["used"] == used + 1  # the unconditional one after it counted
    assert [e.status for e in github_emulator.requests("GET", r"/issues/\d+$")] == [200, 304, 200]


def test_a_conditional_request_for_a_changed_resource_is_answered_in_full_and_counts(
    github_emulator: GitHubEmulator, gh: Github
) -> None:
    issue = gh.get_repo("acme/stamps").create_issue("Rollback of v1.2.0 in prod")
    with api(github_emulator) as http:
        etag = http.get(f"/repos/acme/stamps/issues/{issue.number}").headers["etag"]
        issue.create_comment("post-rollback watch started")
        used = github_emulator.rate_limit["used"]
        changed = http.get(f"/repos/acme/stamps/issues/{issue.number}", headers={"If-None-Match": etag})

    assert changed.status_code == 200 and changed.json()["comments"] == 1
    assert changed.headers["etag"] != etag
    assert github_emulator.rate_limit["used"] == used + 1


@pytest.mark.parametrize("form", ["W/{etag}", '"other", {etag}', "*"])
def test_if_none_match_compares_weakly_and_takes_a_list_or_a_star(
    github_emulator: GitHubEmulator, gh: Github, form: str
) -> None:
    url = f"/repos/acme/stamps/issues/{gh.get_repo('acme/stamps').create_issue('t').number}"
    with api(github_emulator) as http:
        etag = http.get(url).headers["etag"]
        answer = http.get(url, headers={"If-None-Match": form.format(etag=etag)})
        stale = http.get(url, headers={"If-None-Match": '"not-this-one"'})

    assert answer.status_code == 304
    assert stale.status_code == 200 and stale.headers["etag"] == etag


def test_pygithubs_conditional_update_gets_a_304_for_an_unchanged_object(
    github_emulator: GitHubEmulator, gh: Github
) -> None:
    issue = gh.get_repo("acme/stamps").create_issue("Rollback of v1.2.0 in prod")
    issue = gh.get_repo("acme/stamps").get_issue(issue.number)  # a GET: the object holds its ETag
    used = github_emulator.rate_limit["used"]

    assert issue.update() is False  # PyGithub sends the ETag back; unchanged: 304, free
    assert github_emulator.rate_limit["used"] == used
    issue.create_comment("post-rollback watch started")
    assert issue.update() is True and issue.comments == 1


def test_a_wrong_or_missing_token_is_refused_with_401(github_emulator: GitHubEmulator) -> None:
    with pytest.raises(BadCredentialsException) as refused:
        client(github_emulator, "ghp_wrong").get_repo("acme/stamps")
    assert refused.value.data == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    anonymous = httpx.get(f"{github_emulator.url}/repos/acme/stamps")
    assert (anonymous.status_code, anonymous.json()["message"]) == (401, "Requires authentication")


def test_token_scheme_is_accepted_as_well_as_bearer(github_emulator: GitHubEmulator) -> None:
    answer = httpx.get(
        f"{github_emulator.url}/repos/acme/stamps", headers={"Authorization": f"token {TOKEN}"}
    )
    assert answer.status_code == 200


def test_unknown_paths_answer_404_like_github(
    github_emulator: GitHubEmulator, spec_recorder: SpecRecorder
) -> None:
    with api(github_emulator) as http:
        answer = http.get("/repos/acme/stamps/pulls")
        other_repo = http.get("/repos/acme/other/tags")

    assert answer.status_code == 404
    assert answer.json() == {
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest",
        "status": "404",
    }
    assert other_repo.status_code == 404
    [violation] = spec_recorder.take()  # /pulls is outside the spec subset: the validator says so
    assert (violation.side, violation.path) == ("request", "/repos/acme/stamps/pulls")


# ----------------------------------------------------------------------------- bad requests


def test_dispatch_checks_inputs_and_ref_like_github(
    github_emulator: GitHubEmulator, gh: Github, spec_recorder: SpecRecorder
) -> None:
    def refused(ref: str, inputs: dict[str, Any]) -> str:
        with pytest.raises(GithubException) as error:
            dispatch(gh, ref, inputs)
        assert error.value.status == 422
        return str(error.value.data["message"])

    assert (
        refused("v1.0.0", {"environment": "dev", "colour": "red"}) == 'Unexpected inputs provided: ["colour"]'
    )
    assert refused("v1.0.0", {}) == "Required input 'environment' not provided"
    assert refused("v1.0.0", {"environment": "qa"}) == (
        "Provided value 'qa' for input 'environment' not in the list of allowed values"
    )
    assert refused("v9.9.9", {"environment": "dev"}) == "No ref found for: v9.9.9"
    assert refused("v1.0.0", {"environment": 3}).startswith("Invalid request.")
    assert github_emulator.list_runs() == []
    assert spec_recorder.violations == []


def test_bad_bodies_are_answered_422_and_the_validator_flags_the_request(
    github_emulator: GitHubEmulator, spec_recorder: SpecRecorder
) -> None:
    with api(github_emulator) as http:
        no_ref = http.post("/repos/acme/stamps/actions/workflows/deploy.yml/dispatches", json={"inputs": {}})
        no_title = http.post("/repos/acme/stamps/issues", json={"body": "x"})
        not_json = http.post(
            "/repos/acme/stamps/issues", content=b"{oops", headers={"content-type": "application/json"}
        )

    assert (no_ref.status_code, no_ref.json()["message"]) == (
        422,
        'Invalid request.\n\n"ref" wasn\'t supplied.',
    )
    assert (no_title.status_code, no_title.json()["message"]) == (
        422,
        'Invalid request.\n\n"title" wasn\'t supplied.',
    )
    assert (not_json.status_code, not_json.json()["message"]) == (400, "Problems parsing JSON")
    flagged = spec_recorder.take()
    assert {v.path for v in flagged if v.side == "request"} == {
        "/repos/acme/stamps/actions/workflows/deploy.yml/dispatches",
        "/repos/acme/stamps/issues",
    }
    assert [v for v in flagged if v.side == "response"] == []


# ----------------------------------------------------------------------------- fault injection


def test_a_502_fires_once_then_the_api_answers_again(github_emulator: GitHubEmulator, gh: Github) -> None:
    fault = github_emulator.inject_error("GET", r"/repos/acme/stamps$")

    with pytest.raises(GithubException) as failed:
        gh.get_repo("acme/stamps")
    assert failed.value.status == 502
    assert gh.get_repo("acme/stamps").name == "stamps"
    assert fault.fired == 1 and github_emulator.pending_faults == []
    assert [e.status for e in github_emulator.requests("GET", r"/repos/acme/stamps$")] == [502, 200]


def test_pygithubs_default_retry_rides_over_a_502(github_emulator: GitHubEmulator) -> None:
    github_emulator.inject_error("GET", r"/repos/acme/stamps$", 502, times=2)
    gh = client(github_emulator, retry=GithubRetry(total=3))  # no backoff before the first retries

    assert gh.get_repo("acme/stamps").name == "stamps"
    assert [e.status for e in github_emulator.requests("GET", r"/repos/acme/stamps$")] == [502, 502, 200]


def test_an_injected_primary_rate_limit_names_when_it_resets(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    emulator = make_github_emulator(clock=SimClock(T0))
    emulator.inject_rate_limit("*", r"/actions/runs$", reset_in=30)

    with pytest.raises(RateLimitExceededException) as limited:
        client(emulator).get_repo("acme/stamps").get_workflow_runs().totalCount  # noqa: B018
    headers = limited.value.headers or {}
    assert (limited.value.status, headers["x-ratelimit-remaining"]) == (403, "0")
    assert int(headers["x-ratelimit-reset"]) == T0 + 30


@pytest.mark.parametrize("status", [429, 403])
def test_a_secondary_rate_limit_carries_retry_after(github_emulator: GitHubEmulator, status: int) -> None:
    github_emulator.inject_secondary_rate_limit("POST", r"/dispatches$", retry_after=7, status=status)

    with pytest.raises(GithubException) as limited:
        dispatch(client(github_emulator), "v1.0.0", {"environment": "dev"})
    assert limited.value.status == status
    assert (limited.value.headers or {})["retry-after"] == "7"
    assert "secondary rate limit" in limited.value.data["message"]
    assert github_emulator.list_runs() == []


def test_accept_then_drop_creates_the_run_but_the_client_gets_no_answer(
    github_emulator: GitHubEmulator, gh: Github
) -> None:
    github_emulator.inject_accept_then_drop("POST", r"/actions/workflows/[^/]+/dispatches$")

    with pytest.raises(requests.exceptions.ConnectionError):
        dispatch(gh, "v1.1.0", {"environment": "dev", "correlation_id": "wd-lost"}, return_run_details=True)

    [exchange] = github_emulator.requests(operation="actions/create-workflow-dispatch")
    assert exchange.dropped and exchange.status == 200
    [run] = [r for r in gh.get_repo("acme/stamps").get_workflow_runs() if "wd-lost" in r.display_title]
    assert run.id == exchange.response_json["workflow_run_id"]
    assert github_emulator.wait_for_run(run.id)["conclusion"] == "success"


def test_pygithubs_default_retry_resends_a_dispatch_whose_answer_was_lost(
    github_emulator: GitHubEmulator,
) -> None:
    """Why the watchdog builds PyGithub with ``retry=None``: a lost answer plus a retry is a second deploy."""
    github_emulator.inject_accept_then_drop("POST", r"/dispatches$")
    gh = client(github_emulator, retry=GithubRetry())

    dispatch(gh, "v1.0.0", {"environment": "dev"}, return_run_details=True)

    assert len(github_emulator.requests(operation="actions/create-workflow-dispatch")) == 2
    assert len(github_emulator.list_runs()) == 2


def test_a_dropped_request_is_not_processed(github_emulator: GitHubEmulator) -> None:
    github_emulator.inject_drop("POST", r"/issues$")

    with api(github_emulator) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/repos/acme/stamps/issues", json={"title": "lost"})
    assert github_emulator.requests("POST", r"/issues$")[0].status is None
    assert client(github_emulator).get_repo("acme/stamps").get_issues(state="all").totalCount == 0


def test_a_delay_makes_a_client_time_out(github_emulator: GitHubEmulator) -> None:
    github_emulator.inject_delay("GET", r"/rate_limit$", 1.0)

    with api(github_emulator) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.get("/rate_limit", timeout=0.2)
        assert http.get("/rate_limit").status_code == 200


def test_a_fault_can_answer_with_a_non_github_body(github_emulator: GitHubEmulator) -> None:
    github_emulator.inject(
        "GET",
        r"/tags$",
        status=503,
        body="<html>upstream unavailable</html>",
        headers={"content-type": "text/html"},
    )
    with api(github_emulator) as http:
        answer = http.get("/repos/acme/stamps/tags")
    assert (answer.status_code, answer.text) == (503, "<html>upstream unavailable</html>")


# ----------------------------------------------------------------------------- request log


def test_the_request_log_records_every_exchange_and_calls_the_listener(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    heard: list[Exchange] = []
    emulator = make_github_emulator()
    emulator.add_listener(heard.append)

    dispatch(client(emulator), "v1.0.0", {"environment": "dev", "correlation_id": "log"})

    [sent] = emulator.requests("POST", operation="actions/create-workflow-dispatch")
    assert sent.request_json == {"ref": "v1.0.0", "inputs": {"environment": "dev", "correlation_id": "log"}}
    assert sent.request_headers["authorization"] == f"token {TOKEN}"
    assert sent.status == 204 and sent.fault is None and not sent.dropped
    assert [e.operation for e in emulator.exchanges] == [
        "repos/get",
        "actions/get-workflow",
        "actions/create-workflow-dispatch",
    ]
    assert heard[-1] is sent
    emulator.clear_log()
    assert emulator.exchanges == []


# ----------------------------------------------------------------------------- the validator itself


def _good_run_exchange(emulator: GitHubEmulator) -> Exchange:
    run = dispatch(client(emulator), "v1.0.0", {"environment": "dev"}, return_run_details=True)
    client(emulator).get_repo("acme/stamps").get_workflow_run(run.id)
    return emulator.requests("GET", operation="actions/get-workflow-run")[-1]


def test_the_validator_rejects_a_response_missing_a_required_field(
    github_emulator: GitHubEmulator, github_spec_validator: ExchangeValidator
) -> None:
    good = _good_run_exchange(github_emulator)
    assert github_spec_validator.check(good) == []

    body = dict(good.response_json)
    del body["status"]
    body["run_number"] = "seven"
    broken = replace(good, response_body=json.dumps(body).encode(), response_json=body)

    messages = [v.message for v in github_spec_validator.check(broken)]
    assert any("'status' is a required property" in m for m in messages), messages
    assert any("'seven' is not of type 'integer'" in m for m in messages), messages


def test_the_validator_rejects_bad_error_bodies_and_undocumented_success_statuses(
    github_emulator: GitHubEmulator, github_spec_validator: ExchangeValidator
) -> None:
    good = _good_run_exchange(github_emulator)

    no_message = replace(good, status=401, response_body=b'{"error": "nope"}')
    html_error = replace(good, status=500, response_body=b"<html>oops</html>")
    odd_success = replace(good, status=201)

    assert any("'message'" in v.message for v in github_spec_validator.check(no_message))
    assert any("not JSON" in v.message for v in github_spec_validator.check(html_error))
    assert github_spec_validator.check(odd_success) != []


def test_the_validator_checks_the_created_filter_syntax(
    github_emulator: GitHubEmulator, github_spec_validator: ExchangeValidator
) -> None:
    with api(github_emulator) as http:
        http.get("/repos/acme/stamps/actions/runs", params={"created": ">=2025-01-01T00:00:00Z"})
    good = github_emulator.requests(operation="actions/list-workflow-runs-for-repo")[-1]
    assert github_spec_validator.check(good) == []

    assert github_spec_validator.check(replace(good, query={"created": ["2025-01-01..*"]})) == []
    assert github_spec_validator.check(replace(good, query={"created": [">=yesterday"]})) != []
    assert github_spec_validator.check(replace(good, query={"status": ["sleeping"]})) != []


# ----------------------------------------------------------------------------- seeding and standalone


def test_workflows_declare_their_own_inputs_and_run_name(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    workflow = WorkflowDef(
        name="ship",
        path=".github/workflows/ship.yaml",
        inputs={
            "target": WorkflowInput(required=True),
            "dry_run": WorkflowInput(type="boolean", default="false"),
        },
        run_name="ship {target} dry={dry_run}",
        environment_input="target",
    )
    emulator = make_github_emulator(workflows=[workflow], environments=[])
    gh = client(emulator)
    ship = gh.get_repo("acme/stamps").get_workflow("ship.yaml")

    run = ship.create_dispatch("main", {"target": "qa"}, throw=True, return_run_details=True)
    final = emulator.wait_for_run(run.id)

    assert final["display_title"] == "ship qa dry=false"
    assert final["head_branch"] == "main"
    assert [e.name for e in gh.get_repo("acme/stamps").get_environments()] == ["qa"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_module_runs_standalone(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps({"tags": {"v2.0.0": "a" * 40}, "environments": [{"name": "prod", "reviewers": ["bob"]}]})
    )
    port = _free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "watchdog.emulator.github", "--port", str(port), "--token", "T"),
            *("--repo", "acme/stamps", "--seed", str(seed), "--queue-delay", "0", "--step-delay", "0"),
        ],
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/repos/acme/stamps/tags", headers={"Authorization": "Bearer T"}
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the standalone emulator did not come up"
                assert server.poll() is None, "the standalone emulator exited"
                time.sleep(0.05)
        assert [t["name"] for t in answer.json()] == ["v2.0.0"]
        prod = httpx.get(
            f"http://127.0.0.1:{port}/repos/acme/stamps/environments/prod",
            headers={"Authorization": "token T"},
        )
        assert prod.json()["protection_rules"][0]["reviewers"][0]["reviewer"]["login"] == "bob"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_request_cut_off_mid_body_is_not_handled(github_emulator: GitHubEmulator) -> None:
    """A client killed while sending: the server never saw a whole request, so nothing happens."""
    host, port = github_emulator.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /repos/acme/stamps/actions/workflows/deploy.yml/dispatches HTTP/1.1\r\n"
            b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"ref": "v1'
        )
        conn.shutdown(socket.SHUT_WR)  # the rest never comes
        assert conn.recv(1024) == b""  # the server closed without an answer: its handler is done
    assert github_emulator.requests("POST") == [] and github_emulator.list_runs() == []
