"""Dampening through Unleash feature flags: switch flags in one environment, and put them back.

Flags are read and switched through Unleash's admin API (``GET /api/admin/projects/{project}/
features/{feature}``, ``POST …/environments/{environment}/on|off``). The undo restores each
flag to the state it had *before* dampening, never blindly to "on". A crash between switching
flags is safe when the caller persists the prior states (``on_prior``) before anything is switched
and hands them back (``prior``) on the re-run: states already changed are then never mistaken for
the originals.

A failure that may pass on retry (timeout, connection error, 5xx, 429) is ``ActionRetryable``;
any other answer is ``ActionFailed`` naming the flag, project, environment and what Unleash said.
The token goes only into the ``Authorization`` header, never into a message or a repr.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from actions.http import retry_after
from watchdog.config import UnleashTarget
from watchdog.errors import ActionFailed, ActionRetryable, action_error

PriorCallback = Callable[[dict[str, bool]], None]


class Unleash:
    """One Unleash project and environment, reached through a caller's httpx client."""

    def __init__(self, http: httpx.Client, target: UnleashTarget, timeout_s: float) -> None:
        self.http = http
        self.target = target
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return (
            f"Unleash({self.target.url!r}, project={self.target.project!r}, env={self.target.environment!r})"
        )

    def flag_states(self, features: Iterable[str]) -> dict[str, bool]:
        """Whether each feature is enabled in the target's environment."""
        return {feature: self._state(feature) for feature in features}

    def set_flag(self, feature: str, enabled: bool) -> None:
        """Turn a feature on or off in the target's environment (a no-op if it already is)."""
        verb = "on" if enabled else "off"
        env = quote(self.target.environment, safe="")
        self._call("POST", feature, f"/environments/{env}/{verb}", f"turning {verb}")

    def _state(self, feature: str) -> bool:
        resp = self._call("GET", feature, "", "reading")
        try:
            envs = {env["name"]: bool(env["enabled"]) for env in resp.json()["environments"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise ActionFailed(
                f"{self._where(feature)}: reading: Unleash answered {resp.status_code} without the "
                "feature's environments"
            ) from exc
        if self.target.environment not in envs:
            raise ActionFailed(
                f"{self._where(feature)}: the feature has no environment {self.target.environment!r} "
                f"(it has {', '.join(envs) or 'none'}; is the environment enabled for the project?)"
            )
        return envs[self.target.environment]

    def _where(self, feature: str) -> str:
        t = self.target
        return f"Unleash flag {feature!r} (project {t.project!r}, environment {t.environment!r})"

    def _call(self, method: str, feature: str, suffix: str, doing: str) -> httpx.Response:
        t = self.target
        project, name = quote(t.project, safe=""), quote(feature, safe="")
        url = f"{t.url.rstrip('/')}/api/admin/projects/{project}/features/{name}"
        try:
            resp = self.http.request(
                method,
                url + suffix,
                headers={"Authorization": t.token.get_secret_value(), "Accept": "application/json"},
                timeout=self.timeout_s,
            )
        except httpx.TimeoutException as exc:
            raise ActionRetryable(
                f"{self._where(feature)}: {doing}: no answer within {self.timeout_s}s", service="Unleash"
            ) from exc
        except httpx.HTTPError as exc:
            raise ActionRetryable(
                f"{self._where(feature)}: {doing}: {type(exc).__name__}", service="Unleash"
            ) from exc
        if resp.is_success:
            return resp
        said = f"{doing}: Unleash answered {resp.status_code} {_said(resp)}".rstrip()
        raise action_error(
            f"{self._where(feature)}: {said}",
            service="Unleash",
            status=resp.status_code,
            retry_after=retry_after(resp),
        )


def _said(resp: httpx.Response) -> str:
    """Unleash's own words from an error answer: ``name: message``, else the start of the body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:200] or resp.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return f"{body['name']}: {body['message']}" if body.get("name") else str(body["message"])
    return resp.reason_phrase


def wanted_states(target: UnleashTarget) -> dict[str, bool]:
    """The state each configured flag has while dampened: ``disable`` off, ``enable`` on."""
    return {**dict.fromkeys(target.disable, False), **dict.fromkeys(target.enable, True)}


def dampen(
    http: httpx.Client,
    target: UnleashTarget,
    timeout_s: float,
    *,
    prior: Mapping[str, bool] | None = None,
    on_prior: PriorCallback | None = None,
) -> dict[str, Any]:
    """Switch the target's flags; returns ``{"project", "environment", "prior", "switched"}``.

    ``prior`` maps each flag to its state before dampening; ``switched`` the flags this dampening
    changed to their dampened state. States not in ``prior`` (all of them on a first run) are read
    first and handed to ``on_prior`` before any flag is switched, so the caller can persist them; a
    re-run after a crash passes them back as ``prior`` and reads nothing again. Every flag is set
    on each run (idempotent), so a re-run completes whatever a crash left half done.
    """
    wanted = wanted_states(target)
    unleash = Unleash(http, target, timeout_s)
    known = dict(prior or {})
    unread = [feature for feature in wanted if feature not in known]
    if unread:
        known.update(unleash.flag_states(unread))
        if on_prior is not None:
            on_prior(dict(known))
    for feature, enabled in wanted.items():
        unleash.set_flag(feature, enabled)
    return {
        "project": target.project,
        "environment": target.environment,
        "prior": known,
        "switched": {f: on for f, on in wanted.items() if known[f] != on},
    }


def restore(
    http: httpx.Client, target: UnleashTarget, prior: Mapping[str, bool], timeout_s: float
) -> dict[str, Any]:
    """Put every flag in ``prior`` back to its recorded state; returns ``{…, "restored": prior}``.

    Idempotent. A flag Unleash refuses for good (say, deleted meanwhile) does not stop the others:
    they are restored first, then ``ActionFailed`` names every flag that could not be.
    """
    unleash = Unleash(http, target, timeout_s)
    refused: list[str] = []
    for feature, enabled in reversed(list(prior.items())):
        try:
            unleash.set_flag(feature, enabled)
        except ActionRetryable:
            raise
        except ActionFailed as exc:
            refused.append(str(exc))
    if refused:
        raise ActionFailed("; ".join(refused))
    return {"project": target.project, "environment": target.environment, "restored": dict(prior)}
