"""The Unleash emulator, driven over real HTTP with httpx: Unleash's routes, codes, bodies and faults."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.unleash import ADMIN_TOKEN, CLIENT_TOKEN, VIEWER_TOKEN
from watchdog.emulator.unleash import FeatureDef, UnleashEmulator

FEATURES = "/api/admin/projects/default/features"


def api(emulator: UnleashEmulator, token: str | None = ADMIN_TOKEN, timeout: float = 5) -> httpx.Client:
    headers = {"Authorization": token} if token is not None else {}
    return httpx.Client(base_url=emulator.url, headers=headers, timeout=timeout)


def toggle(client: httpx.Client, feature: str, verb: str, env: str = "production") -> httpx.Response:
    return client.post(f"{FEATURES}/{feature}/environments/{env}/{verb}")


def assert_unleash_error(resp: httpx.Response, status: int, name: str) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()
    assert (resp.status_code, body["name"]) == (status, name)
    assert body["details"] == [{"message": body["message"]}] and body["id"]
    return body


# ----------------------------------------------------------------------------- reading and toggling


def test_a_feature_lists_its_project_environments_with_their_states(
    unleash_emulator: UnleashEmulator,
) -> None:
    resp = api(unleash_emulator).get(f"{FEATURES}/checkout")

    assert resp.status_code == 200
    body = resp.json()
    assert (body["name"], body["project"], body["type"], body["archived"]) == (
        "checkout",
        "default",
        "release",
        False,
    )
    assert [(e["name"], e["type"], e["enabled"]) for e in body["environments"]] == [
        ("development", "development", True),
        ("production", "production", True),
    ]
    env = api(unleash_emulator).get(f"{FEATURES}/new-pricing/environments/production").json()
    assert (env["name"], env["featureName"], env["enabled"]) == ("production", "new-pricing", False)


def test_off_and_on_answer_200_without_a_body_and_only_real_changes_are_events(
    unleash_emulator: UnleashEmulator,
) -> None:
    client = api(unleash_emulator)

    off = toggle(client, "checkout", "off")
    again = toggle(client, "checkout", "off")

    assert (off.status_code, off.content, again.status_code) == (200, b"", 200)
    assert unleash_emulator.enabled("default", "checkout", "production") is False
    assert unleash_emulator.enabled("default", "checkout", "development") is True
    [event] = unleash_emulator.toggles()
    assert (event.type, event.feature, event.environment, event.enabled, event.role) == (
        "feature-environment-disabled",
        "checkout",
        "production",
        False,
        "admin",
    )
    assert toggle(client, "checkout", "on").status_code == 200
    assert [e.enabled for e in unleash_emulator.toggles()] == [False, True]
    assert [ex.operation for ex in unleash_emulator.exchanges("POST")] == [
        "toggleFeatureEnvironmentOff"
    ] * 2 + ["toggleFeatureEnvironmentOn"]


def test_set_enabled_changes_a_flag_behind_the_apis_back(unleash_emulator: UnleashEmulator) -> None:
    unleash_emulator.set_enabled("default", "read-only", "production", True)

    assert api(unleash_emulator).get(f"{FEATURES}/read-only").json()["environments"][1]["enabled"] is True
    assert unleash_emulator.toggles() == []
    with pytest.raises(KeyError):
        unleash_emulator.enabled("default", "payments-v2", "production")


def test_a_bearer_prefix_is_accepted_like_unleash_does(unleash_emulator: UnleashEmulator) -> None:
    assert api(unleash_emulator, f"Bearer {ADMIN_TOKEN}").get(f"{FEATURES}/checkout").status_code == 200


# ----------------------------------------------------------------------------- authentication and permissions


def test_no_token_and_an_unknown_token_get_401(unleash_emulator: UnleashEmulator) -> None:
    missing = assert_unleash_error(
        api(unleash_emulator, None).get(f"{FEATURES}/checkout"), 401, "AuthenticationRequired"
    )
    wrong = assert_unleash_error(
        toggle(api(unleash_emulator, "*:*.not-a-token"), "checkout", "off"), 401, "UnauthorizedError"
    )

    assert missing["path"] == "/auth/simple/login" and "no authorization header" in missing["message"]
    assert wrong["message"] == "You must log in to use Unleash."
    assert unleash_emulator.enabled("default", "checkout", "production") is True


def test_a_client_token_is_refused_on_the_admin_api(unleash_emulator: UnleashEmulator) -> None:
    resp = api(unleash_emulator, CLIENT_TOKEN).get(f"{FEATURES}/checkout")

    assert resp.status_code == 403
    assert resp.json() == {"message": "invalid token: expected a different token type for this endpoint"}


def test_a_viewer_reads_but_may_not_toggle(unleash_emulator: UnleashEmulator) -> None:
    viewer = api(unleash_emulator, VIEWER_TOKEN)

    assert viewer.get(f"{FEATURES}/checkout").status_code == 200
    body = assert_unleash_error(toggle(viewer, "checkout", "off"), 403, "PermissionError")
    assert body["permissions"] == ["UPDATE_FEATURE_ENVIRONMENT"]
    assert '"production" environment' in body["message"]
    assert unleash_emulator.enabled("default", "checkout", "production") is True
    assert unleash_emulator.toggles() == []


# ----------------------------------------------------------------------------- not found


def test_unknown_features_projects_and_environments_are_404_with_unleashs_messages(
    unleash_emulator: UnleashEmulator,
) -> None:
    client = api(unleash_emulator)

    missing = assert_unleash_error(client.get(f"{FEATURES}/nope"), 404, "NotFoundError")
    elsewhere = assert_unleash_error(
        client.post("/api/admin/projects/payments/features/checkout/environments/production/off"),
        404,
        "NotFoundError",
    )
    no_env = assert_unleash_error(toggle(client, "checkout", "off", env="staging"), 404, "NotFoundError")
    no_route = assert_unleash_error(
        client.delete(f"{FEATURES}/checkout/environments/production"), 404, "NotFoundError"
    )

    assert missing["message"] == 'There\'s no feature named "nope" in project "default".'
    assert elsewhere["message"] == (
        'There\'s no feature named "checkout" in project "payments", '
        'but there\'s a feature with that name in project "default"'
    )
    assert no_env["message"] == "Could not find environment staging for feature: checkout"
    assert "DELETE" in no_route["message"]
    assert unleash_emulator.toggles() == []


def test_the_seed_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown environments: staging"):
        UnleashEmulator(projects={"default": ["staging"]})
    with pytest.raises(ValueError, match="no environment 'staging'"):
        UnleashEmulator(features=[FeatureDef("x", {"staging"})])
    with pytest.raises(ValueError, match="no project 'other'"):
        UnleashEmulator(features=[FeatureDef("x", project="other")])


# ----------------------------------------------------------------------------- faults


def test_an_injected_error_answers_instead_of_unleash_for_its_count(
    unleash_emulator: UnleashEmulator,
) -> None:
    unleash_emulator.inject("POST", r"/checkout/.*/off$", status=429, headers={"Retry-After": "7"}, times=2)
    client = api(unleash_emulator)

    first, second, third = (toggle(client, "checkout", "off") for _ in range(3))

    assert (first.status_code, first.headers["retry-after"], second.status_code, third.status_code) == (
        429,
        "7",
        429,
        200,
    )
    assert first.json()["message"] == "Too Many Requests"
    assert [ex.fault is not None for ex in unleash_emulator.exchanges()] == [True, True, False]
    assert len(unleash_emulator.toggles()) == 1


def test_inject_error_defaults_to_503_and_does_not_process(unleash_emulator: UnleashEmulator) -> None:
    unleash_emulator.inject_error("*", "/checkout")

    resp = toggle(api(unleash_emulator), "checkout", "off")

    assert_unleash_error(resp, 503, "InternalError")
    assert unleash_emulator.enabled("default", "checkout", "production") is True


def test_a_delayed_answer_times_the_client_out(unleash_emulator: UnleashEmulator) -> None:
    unleash_emulator.inject_delay("GET", "/checkout$", 30)

    with pytest.raises(httpx.ReadTimeout):
        api(unleash_emulator, timeout=0.2).get(f"{FEATURES}/checkout")


def test_a_dropped_connection_is_not_processed_and_accept_then_drop_is(
    unleash_emulator: UnleashEmulator,
) -> None:
    unleash_emulator.inject_drop("POST", "/checkout/")
    unleash_emulator.inject_accept_then_drop("POST", "/recommendations/")
    client = api(unleash_emulator)

    with pytest.raises(httpx.RemoteProtocolError):
        toggle(client, "checkout", "off")
    with pytest.raises(httpx.RemoteProtocolError):
        toggle(client, "recommendations", "off")

    assert unleash_emulator.enabled("default", "checkout", "production") is True
    assert unleash_emulator.enabled("default", "recommendations", "production") is False
    dropped, processed = unleash_emulator.exchanges()
    assert (dropped.dropped, dropped.status, processed.dropped, processed.status) == (True, None, True, 200)
