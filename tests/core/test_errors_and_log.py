"""Errors carry data and are mapped once; the decision log is one object with typed entries."""

from __future__ import annotations

from pathlib import Path

import pytest
from github import GithubException

from actions.github import github_error
from watchdog.clock import SimClock
from watchdog.decisions import DecisionLog
from watchdog.errors import (
    ActionFailed,
    ActionRetryable,
    InputError,
    RollbackInProgress,
    RollbackRefused,
    UnknownName,
    action_error,
    retryable_status,
)
from watchdog.phases import DecisionKind, DecisionResult, StepPhase
from watchdog.store import DecisionEntry, ReleaseRef, Store


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_the_retryable_rule_is_one_rule(status: int, retryable: bool) -> None:
    assert retryable_status(status) is retryable
    err = action_error("boom", service="Unleash", status=status, retry_after=7.0 if retryable else None)
    assert (err.retryable, err.status, err.service) == (retryable, status, "Unleash")
    assert isinstance(err, ActionRetryable) is retryable
    no_answer = action_error("timed out", service="PagerDuty")
    assert no_answer.retryable and no_answer.status is None


def _github(status: int, headers: dict[str, str] | None = None, message: str = "nope") -> GithubException:
    return GithubException(status, {"message": message}, headers or {})


def test_github_errors_are_mapped_in_one_place_with_status_service_and_retry_hint() -> None:
    primary = github_error(
        _github(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1060"}), "dispatch", now=1000.0
    )
    assert (primary.retryable, primary.status, primary.service, primary.retry_after) == (
        True,
        403,
        "GitHub",
        60.0,
    )
    secondary = github_error(_github(403, {"Retry-After": "30"}), "dispatch", now=1000.0)
    assert (secondary.retryable, secondary.retry_after) == (True, 30.0)
    forbidden = github_error(_github(403, message="Resource not accessible by integration"), "dispatch", 0.0)
    assert not forbidden.retryable and "Resource not accessible" in str(forbidden)
    assert github_error(_github(502), "get run 7", 0.0).as_dict() == {
        "error": "get run 7: GitHub answered 502",
        "service": "GitHub",
        "status": 502,
        "retryable": True,
        "retry_after": None,
    }
    unprocessable = github_error(_github(422, message="Unexpected inputs provided"), "dispatch", 0.0)
    assert (unprocessable.retryable, unprocessable.status) == (False, 422)  # the pipeline reads the status
    garbled = github_error(_github(429, {"Retry-After": "soon"}), "list runs", 0.0)
    assert garbled.retryable and garbled.retry_after is None  # an unreadable hint is no hint


def test_domain_errors_are_input_errors_the_cli_maps_to_exit_2() -> None:
    from watchdog.cli import EXIT_BAD_INPUT, EXIT_CODES

    for err in (
        UnknownName("no service named 'x'", argument="service", value="x"),
        RollbackRefused("nothing to roll back"),
        RollbackInProgress("a rollback of api in prod is already in progress"),
    ):
        assert isinstance(err, InputError)
        assert next(code for kind, code in EXIT_CODES if isinstance(err, kind)) == EXIT_BAD_INPUT
    assert str(UnknownName("no service named 'x'", argument="service", value="x")) == (
        "service 'x': no service named 'x'"
    )
    assert not ActionFailed("x").retryable


class Heard:
    def __init__(self) -> None:
        self.entries: list[DecisionEntry] = []

    def decision(self, entry: DecisionEntry) -> None:
        self.entries.append(entry)


def test_entries_of_a_transition_are_told_after_it_commits_and_never_when_it_rolls_back(
    tmp_path: Path,
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'wd.db'}")
    heard = Heard()
    decisions = DecisionLog(store, SimClock(10.0), heard)
    with pytest.raises(RuntimeError), decisions.transition():
        decisions.record(DecisionKind.PIN, "doomed", DecisionResult.PINNED, env="prod", service="api")
        raise RuntimeError("crash before the commit")
    assert store.decisions() == [] and heard.entries == []
    with decisions.transition():
        rel = store.upsert_release("prod", "api", ReleaseRef("v1"), 1.0)
        decisions.record(
            DecisionKind.PIN, "seed", DecisionResult.PINNED, env="prod", service="api", to_release=rel
        )
        assert heard.entries == []  # not before the commit
    (entry,) = store.decisions()
    assert [e.id for e in heard.entries] == [entry.id]
    # the store maps the vocabulary: rows come back as enum members
    assert entry.kind is DecisionKind.PIN and entry.result is DecisionResult.PINNED and entry.at == 10.0
    assert entry.to_tag == "v1"
    with pytest.raises(ValueError, match="'maybe' is not a valid DecisionResult"):
        store.log_decision(
            at=1.0, env="prod", service="api", kind="pin", reason="r", actor="a", result="maybe"
        )
    inc = store.create_incident("prod", "api", rel.id, None, "manual", "r", "alice", 1.0, {})
    assert store.step(inc.id, "pin").phase is StepPhase.PENDING
    store.close()


def test_the_app_builds_one_decision_log_for_engine_and_pipeline(tmp_path: Path) -> None:
    from watchdog.app import App
    from watchdog.config import parse_config

    text = (
        "version: 1\nsource: {kind: scrape, scrape: {targets: [{url: 'http://127.0.0.1:9/metrics'}]}}\n"
        "github: {api_url: 'http://127.0.0.1:9', repo: a/b, token: '${TOKEN}'}\n"
        f"store: {{url: 'sqlite:///{tmp_path / 'wd.db'}'}}\n"
        "environments: {prod: {}}\n"
        "services: [{name: api, signals: [{name: up, kind: probe, probe: {metric: up}}]}]\n"
    )
    app = App.build(parse_config(text, "t.yaml", env={"TOKEN": "ghp_x"}), SimClock(1.0))
    assert app.engine.decisions is app.pipeline.decisions
    app.close()


def test_each_thread_has_its_own_transition(tmp_path: Path) -> None:
    """The API's threads record while the tick is inside a transition: their entries are their own,
    committed and told at once, never held back (or lost) with the tick's."""
    import threading

    store = Store.open(f"sqlite:///{tmp_path / 'wd.db'}")
    heard = Heard()
    decisions = DecisionLog(store, SimClock(10.0), heard)
    inside, recorded = threading.Event(), threading.Event()

    def api_thread() -> None:
        inside.wait(5)
        decisions.record(DecisionKind.PIN, "from the API", DecisionResult.PINNED, env="prod", service="api")
        recorded.set()

    other = threading.Thread(target=api_thread)
    other.start()
    with decisions.transition():
        inside.set()
        assert recorded.wait(5)
        assert [e.reason for e in heard.entries] == ["from the API"]  # told, not held for this one
        decisions.record(DecisionKind.PIN, "from the tick", DecisionResult.PINNED, env="prod", service="api")
    other.join()
    assert [e.reason for e in heard.entries] == ["from the API", "from the tick"]
    assert [e.reason for e in store.decisions()] == ["from the API", "from the tick"]
    store.close()


def test_healthz_fails_when_no_scheduled_job_ran_for_too_long() -> None:
    from watchdog.app import Heartbeats

    clock = SimClock(100.0)
    beats = Heartbeats(clock, stale_after_s=60)
    assert beats.problem() is None
    clock.advance(61)
    assert beats.problem() == "no scheduled job ran for 61s (expected within 60s)"
    beats.beat()
    assert beats.problem() is None
