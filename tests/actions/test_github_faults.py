"""Every GitHub call the watchdog makes, under every fault the pipeline must survive.

A server error, a primary or secondary rate limit, a timeout and a dropped connection each become
``ActionRetryable`` (with GitHub's ``retry-after`` or ``x-ratelimit-reset`` as the hint), which the
pipeline waits out and retries; a client error stays final. The retry itself is the pipeline's and
is tested there (tests/core/test_pipeline.py); here each call is checked against the real
PyGithub client and the GitHub emulator (every exchange checked against GitHub's spec).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from actions.github import DeployWorkflow
from actions.tickets import IncidentTickets
from tests.fixtures.github import TOKEN
from watchdog.clock import RealClock
from watchdog.emulator.github import Exchange, GitHubEmulator
from watchdog.errors import ActionFailed, ActionRetryable

CID = "wd-faults-0001"


@dataclass
class World:
    """The clients under test, with a waiting prod run and an open ticket to act on."""

    gh: GitHubEmulator
    deploy: DeployWorkflow
    tickets: IncidentTickets
    run_id: int
    ticket: int
    prod_id: int


def deploy_workflow(gh: GitHubEmulator, timeout_s: float) -> DeployWorkflow:
    """As the App builds it, without the pauses between requests (GitHub's advice; slow tests)."""
    return DeployWorkflow(
        gh.url,
        gh.full_name,
        "deploy.yml",
        TOKEN,
        RealClock(),
        timeout_s=timeout_s,
        request_interval_s=0,
        write_interval_s=0,
    )


def world(gh: GitHubEmulator, timeout_s: float = 5.0) -> World:
    clock = RealClock()
    setup = deploy_workflow(gh, 5.0)
    run = setup.dispatch("v1.0.0", {"environment": "prod", "tag": "v1.0.0", "correlation_id": CID})
    assert run is not None
    gh.wait_for_run(run.id, ("waiting",))
    ticket = IncidentTickets(setup.github, gh.full_name, ["rollback"], clock).open(CID, "Rollback", "body")
    fresh = deploy_workflow(gh, timeout_s)
    tickets = IncidentTickets(fresh.github, gh.full_name, ["rollback"], clock)
    (pending,) = setup.pending_deployments(run.id)
    return World(gh, fresh, tickets, run.id, ticket.number, int(pending["environment"]["id"]))


#: name → (HTTP method, path pattern of the call, the call). Faults hit only that request.
CALLS: dict[str, tuple[str, str, Callable[[World], Any]]] = {
    "dispatch": (
        "POST",
        r"/dispatches$",
        lambda w: w.deploy.dispatch("v1.0.0", {"environment": "dev", "tag": "v1.0.0", "correlation_id": "x"}),
    ),
    "find_run": ("GET", r"/workflows/[^/]+/runs$", lambda w: w.deploy.find_run(CID)),
    "run": ("GET", r"/actions/runs/\d+$", lambda w: w.deploy.run(w.run_id)),
    "read_file": ("GET", r"/contents/", lambda w: w.deploy.read_file("migrations/manifest.json", "v1.0.0")),
    "required_reviewers": ("GET", r"/environments/prod$", lambda w: w.deploy.required_reviewers("prod")),
    "pending_deployments": (
        "GET",
        r"/pending_deployments$",
        lambda w: w.deploy.pending_deployments(w.run_id),
    ),
    "approve": ("POST", r"/pending_deployments$", lambda w: w.deploy.approve(w.run_id, [w.prod_id], "ok")),
    "cancel": ("POST", r"/cancel$", lambda w: w.deploy.cancel(w.run_id)),
    "last_successful_deployment": (
        "GET",
        r"/deployments$",
        lambda w: w.deploy.last_successful_deployment("prod"),
    ),
    "ticket_find": ("GET", r"/issues$", lambda w: w.tickets.find(CID)),
    "ticket_open": ("POST", r"/issues$", lambda w: w.tickets.open("wd-other", "Rollback", "body")),
    "ticket_comment": ("POST", r"/comments$", lambda w: w.tickets.comment(w.ticket, CID, "k", "text")),
    "ticket_close": ("PATCH", r"/issues/\d+$", lambda w: w.tickets.close(w.ticket)),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_call_succeeds_without_faults(
    call: str, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    w = world(make_github_emulator())
    CALLS[call][2](w)  # the baseline: the calls below fail only because of the fault


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("fault", ["502", "secondary-429", "primary-403", "timeout", "dropped"])
def test_transient_faults_are_retryable_with_githubs_hint(
    call: str, fault: str, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator()
    w = world(gh, timeout_s=1.0)
    method, path, do = CALLS[call]
    if fault == "502":
        gh.inject_error(method, path, 502)
    elif fault == "secondary-429":
        gh.inject_secondary_rate_limit(method, path, retry_after=7, status=429)
    elif fault == "primary-403":
        gh.inject_rate_limit(method, path, reset_in=90)
    elif fault == "timeout":
        gh.inject_delay(method, path, 2.5)  # past the 1 s request timeout
    else:
        gh.inject_drop(method, path)
    with pytest.raises(ActionRetryable) as err:
        do(w)
    assert not gh.pending_faults, f"the fault never hit {call}"
    if fault == "secondary-429":
        assert err.value.retry_after == 7
    elif fault == "primary-403":
        assert err.value.retry_after is not None and 80 <= err.value.retry_after <= 91
    else:
        assert err.value.retry_after is None
    assert TOKEN not in str(err.value)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_client_errors_are_final(call: str, make_github_emulator: Callable[..., GitHubEmulator]) -> None:
    gh = make_github_emulator()
    w = world(gh)
    method, path, do = CALLS[call]
    gh.inject(method, path, status=422, body={"message": "Validation Failed", "documentation_url": "x"})
    with pytest.raises(ActionFailed) as err:
        do(w)
    assert not isinstance(err.value, ActionRetryable)
    assert "422" in str(err.value)


def test_a_timed_out_dispatch_that_github_accepted_is_found_by_its_correlation_id(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    gh = make_github_emulator()
    w = world(gh, timeout_s=1.0)
    gh.inject_delay("POST", r"/dispatches$", 2.5)
    served = threading.Event()

    def heard(exchange: Exchange) -> None:
        if exchange.operation == "actions/create-workflow-dispatch":
            served.set()

    gh.add_listener(heard)
    inputs = {"environment": "dev", "tag": "v1.0.0", "correlation_id": "wd-late-answer"}
    with pytest.raises(ActionRetryable):
        w.deploy.dispatch("v1.0.0", inputs)
    assert served.wait(timeout=10)  # GitHub took it after the client had given up
    found = w.deploy.find_run("wd-late-answer")
    assert found is not None  # so the pipeline looks it up instead of dispatching twice
