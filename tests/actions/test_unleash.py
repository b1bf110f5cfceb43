"""Dampening through Unleash flags, against the Unleash emulator over real HTTP: the flags are
switched, the undo puts back exactly what was there before, a crash mid-way is recoverable, and
every failure is classified and explained without the token."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from actions.dampen import run_action, undo_action
from actions.unleash import Unleash
from tests.fixtures.unleash import ADMIN_TOKEN, CLIENT_TOKEN, VIEWER_TOKEN
from watchdog.config import DampeningAction
from watchdog.emulator.unleash import UnleashEmulator
from watchdog.errors import ActionFailed, ActionRetryable

#: Before dampening in production: checkout and recommendations on, new-pricing already off,
#: the read-only kill switch off.
BEFORE = {"checkout": True, "recommendations": True, "new-pricing": False, "read-only": False}


def flags_action(
    emulator: UnleashEmulator, token: str = ADMIN_TOKEN, timeout_s: float = 2, **target: Any
) -> DampeningAction:
    unleash = {
        "url": emulator.url,
        "token": token,
        "environment": "production",
        "disable": ["checkout", "recommendations", "new-pricing"],
        "enable": ["read-only"],
        **target,
    }
    return DampeningAction.model_validate(
        {"name": "flags", "kind": "unleash", "timeout_s": timeout_s, "unleash": unleash}
    )


def states(emulator: UnleashEmulator, project: str = "default", env: str = "production") -> dict[str, bool]:
    return {flag: emulator.enabled(project, flag, env) for flag in BEFORE}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


# ----------------------------------------------------------------------------- dampen and restore


def test_dampen_switches_the_listed_flags_and_returns_their_prior_states(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    evidence = run_action(http, flags_action(unleash_emulator))

    assert evidence == {
        "action": "flags",
        "kind": "unleash",
        "project": "default",
        "environment": "production",
        "prior": BEFORE,
        "switched": {"checkout": False, "recommendations": False, "read-only": True},
    }
    assert states(unleash_emulator) == {
        "checkout": False,
        "recommendations": False,
        "new-pricing": False,
        "read-only": True,
    }
    assert (
        unleash_emulator.enabled("default", "checkout", "development") is True
    )  # other environments untouched


def test_undo_restores_each_flag_to_its_prior_state_not_blindly_on(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    action = flags_action(unleash_emulator)
    evidence = json.loads(json.dumps(run_action(http, action)))  # as the store keeps it

    undone = undo_action(http, action, evidence)

    assert states(unleash_emulator) == BEFORE  # new-pricing stays off, read-only back off
    assert undone is not None and undone["restored"] == BEFORE
    assert not any(e.feature == "new-pricing" and e.enabled for e in unleash_emulator.toggles())
    assert undo_action(http, action, evidence) == undone  # idempotent: a re-run changes nothing
    assert states(unleash_emulator) == BEFORE


def test_a_flag_changed_by_a_human_meanwhile_goes_back_to_the_state_before_dampening(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    action = flags_action(unleash_emulator)
    evidence = run_action(http, action)
    unleash_emulator.set_enabled("default", "new-pricing", "production", True)

    undo_action(http, action, evidence)

    assert states(unleash_emulator) == BEFORE


def test_a_resumed_dampen_after_a_crash_mid_way_keeps_the_original_prior_states(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    action = flags_action(unleash_emulator)
    persisted: dict[str, bool] = {}
    # the second switch reaches Unleash, then the connection dies: a crash after one flag changed
    unleash_emulator.inject_accept_then_drop("POST", "/recommendations/environments/production/off$")
    with pytest.raises(ActionRetryable):
        run_action(http, action, on_prior=persisted.update)
    assert persisted == BEFORE
    assert states(unleash_emulator)["checkout"] is False  # already switched: reading it now would lie
    reads_before_resume = len(unleash_emulator.exchanges("GET"))

    evidence = run_action(http, action, prior=json.loads(json.dumps(persisted)))

    assert len(unleash_emulator.exchanges("GET")) == reads_before_resume  # nothing read again
    assert evidence["prior"] == BEFORE
    assert states(unleash_emulator)["read-only"] is True
    undo_action(http, action, evidence)
    assert states(unleash_emulator) == BEFORE


def test_the_prior_states_are_handed_over_before_any_flag_is_switched(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    def crash(prior: dict[str, bool]) -> None:
        raise KeyboardInterrupt  # the process dies while persisting

    with pytest.raises(KeyboardInterrupt):
        run_action(http, flags_action(unleash_emulator), on_prior=crash)

    assert unleash_emulator.toggles() == []


def test_a_crash_before_the_dampen_finished_is_undone_from_the_persisted_prior_alone(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    action = flags_action(unleash_emulator)
    persisted: dict[str, bool] = {}
    unleash_emulator.inject_drop("POST", "/read-only/")
    with pytest.raises(ActionRetryable):
        run_action(http, action, on_prior=persisted.update)

    undone = undo_action(http, action, {"prior": persisted})

    assert undone is not None and states(unleash_emulator) == BEFORE
    assert undo_action(http, action, None) is None  # nothing recorded: nothing was switched


def test_flags_added_to_the_config_after_a_crash_are_read_before_they_are_switched(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    seen: list[dict[str, bool]] = []
    run_action(http, flags_action(unleash_emulator), prior={"checkout": True}, on_prior=seen.append)

    assert seen == [BEFORE]


# ----------------------------------------------------------------------------- failures


def fail(
    emulator: UnleashEmulator, http: httpx.Client, action: DampeningAction, error: type[ActionFailed]
) -> str:
    """Run the action expecting ``error`` (exactly: ActionFailed is not ActionRetryable); returns
    every message of the failure chain, checked to be free of the action's token."""
    with pytest.raises(ActionFailed) as caught:
        run_action(http, action)
    assert type(caught.value) is error
    chain, exc = [], caught.value
    while isinstance(exc, BaseException):
        chain += [str(exc), repr(exc)]
        exc = exc.__cause__
    text = "\n".join(chain)
    assert action.unleash is not None
    assert action.unleash.token.get_secret_value() not in text
    return str(caught.value)


def test_an_unknown_token_fails_for_good_naming_flag_project_and_environment(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    message = fail(
        unleash_emulator, http, flags_action(unleash_emulator, token="*:*.revoked-5ecret"), ActionFailed
    )

    assert message.startswith("flags: Unleash flag 'checkout' (project 'default', environment 'production')")
    assert "401 UnauthorizedError: You must log in to use Unleash." in message
    assert unleash_emulator.toggles() == []


def test_a_token_without_write_permission_fails_for_good(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    viewer = fail(unleash_emulator, http, flags_action(unleash_emulator, token=VIEWER_TOKEN), ActionFailed)
    client = fail(unleash_emulator, http, flags_action(unleash_emulator, token=CLIENT_TOKEN), ActionFailed)

    assert "'checkout'" in viewer and "turning off: Unleash answered 403 PermissionError" in viewer
    assert "UPDATE_FEATURE_ENVIRONMENT" in viewer
    assert "reading: Unleash answered 403 invalid token" in client
    assert unleash_emulator.toggles() == []


def test_a_missing_flag_or_environment_fails_for_good(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    no_flag = fail(
        unleash_emulator, http, flags_action(unleash_emulator, disable=["checkout", "gone"]), ActionFailed
    )
    other_project = fail(
        unleash_emulator,
        http,
        flags_action(unleash_emulator, project="payments", disable=["checkout"]),
        ActionFailed,
    )
    no_env = fail(unleash_emulator, http, flags_action(unleash_emulator, environment="staging"), ActionFailed)

    assert "Unleash flag 'gone' (project 'default', environment 'production')" in no_flag
    assert '404 NotFoundError: There\'s no feature named "gone"' in no_flag
    assert 'in project "default"' in other_project and "project 'payments'" in other_project
    assert "environment 'staging'" in no_env and "no environment 'staging'" in no_env
    assert unleash_emulator.toggles() == []  # every flag is read before any is switched


def test_an_answer_that_is_not_a_feature_fails_for_good(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    unleash_emulator.inject("GET", "/checkout$", status=200, body={"login": "required"})

    message = fail(unleash_emulator, http, flags_action(unleash_emulator), ActionFailed)

    assert "'checkout'" in message and "answered 200 without the feature's environments" in message


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda u: u.inject_error("GET", "/checkout$", 502), id="5xx"),
        pytest.param(lambda u: u.inject_error("POST", "/recommendations/", 503), id="5xx-on-switch"),
        pytest.param(lambda u: u.inject_delay("GET", "/new-pricing$", 30), id="delay-beyond-timeout"),
        pytest.param(lambda u: u.inject_drop("POST", "/read-only/"), id="dropped-connection"),
    ],
)
def test_outages_are_retryable(
    unleash_emulator: UnleashEmulator, http: httpx.Client, fault: Callable[[UnleashEmulator], object]
) -> None:
    fault(unleash_emulator)

    message = fail(unleash_emulator, http, flags_action(unleash_emulator, timeout_s=0.3), ActionRetryable)

    assert (
        message.startswith("flags: Unleash flag ")
        and "(project 'default', environment 'production')" in message
    )


def test_rate_limits_are_retryable_with_unleashs_retry_after(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    unleash_emulator.inject("POST", "/checkout/", status=429, headers={"Retry-After": "7"})

    with pytest.raises(ActionRetryable) as caught:
        run_action(http, flags_action(unleash_emulator))

    assert caught.value.retry_after == 7.0 and "429" in str(caught.value)


def test_restore_puts_back_every_flag_it_can_then_names_those_it_could_not(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    action = flags_action(unleash_emulator)
    evidence = run_action(http, action)

    with pytest.raises(ActionFailed) as caught:
        undo_action(http, action, {**evidence, "prior": {"gone": True, **evidence["prior"]}})

    assert type(caught.value) is ActionFailed and "'gone'" in str(caught.value)
    assert states(unleash_emulator) == BEFORE


def test_undo_refuses_prior_states_that_are_not_flag_booleans(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    with pytest.raises(ActionFailed, match="prior flag states"):
        undo_action(http, flags_action(unleash_emulator), {"prior": {"checkout": "yes"}})


def test_the_token_is_in_no_repr_and_no_evidence(
    unleash_emulator: UnleashEmulator, http: httpx.Client
) -> None:
    action = flags_action(unleash_emulator)
    assert action.unleash is not None
    evidence = run_action(http, action)
    undone = undo_action(http, action, evidence)

    shown = [repr(action), repr(Unleash(http, action.unleash, 1.0)), json.dumps([evidence, undone])]
    assert not any(ADMIN_TOKEN in text for text in shown)
    assert (
        unleash_emulator.exchanges("GET")[0].request_headers["authorization"] == ADMIN_TOKEN
    )  # it does reach Unleash


# ----------------------------------------------------------------------------- other kinds


def test_undo_of_a_command_runs_its_undo_and_without_one_there_is_nothing_to_undo(http: httpx.Client) -> None:
    command = {"kind": "command", "argv": [sys.executable, "-c", "pass"]}
    with_undo = DampeningAction.model_validate(
        {"name": "pause", **command, "undo": {"name": "resume", **command}}
    )
    without = DampeningAction.model_validate({"name": "note", **command})

    assert undo_action(http, with_undo, run_action(http, with_undo)) == {
        "action": "resume",
        "kind": "command",
        "exit": 0,
    }
    assert undo_action(http, without, run_action(http, without)) is None
