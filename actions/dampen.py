"""Dampening (runbook step 2): flags off, workers paused, read-only mode — and undoing it.

Each action is an HTTP call, a command (argv, no shell) or a set of Unleash feature flags
(``actions.unleash``). A failure that may pass on retry (timeout, connection error, 5xx, 429) is
``ActionRetryable``; an unexpected answer is final.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from actions import unleash
from actions.http import retry_after
from watchdog.config import DampeningAction
from watchdog.errors import ActionFailed, ActionRetryable, action_error


def run_action(
    client: httpx.Client,
    action: DampeningAction,
    prior: Mapping[str, bool] | None = None,
    on_prior: unleash.PriorCallback | None = None,
) -> dict[str, Any]:
    """Run one action; returns its evidence (for ``kind: unleash`` what :func:`undo_action` needs).

    ``prior`` and ``on_prior`` matter to ``kind: unleash`` only: persist the flag states handed to
    ``on_prior`` (before any flag is switched) and pass them back as ``prior`` when the action runs
    again after a crash, so the undo restores the original states (see ``actions.unleash.dampen``).
    """
    if action.kind == "unleash":
        assert action.unleash is not None
        with _named(action):
            flags = unleash.dampen(client, action.unleash, action.timeout_s, prior=prior, on_prior=on_prior)
        return {"action": action.name, "kind": "unleash", **flags}
    if action.kind == "command":
        assert action.argv is not None
        try:
            done = subprocess.run(
                action.argv, capture_output=True, text=True, timeout=action.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ActionRetryable(f"{action.name}: command timed out after {action.timeout_s}s") from exc
        except OSError as exc:
            raise ActionFailed(f"{action.name}: cannot run {action.argv[0]}: {exc.strerror}") from exc
        if done.returncode != 0:
            raise ActionFailed(f"{action.name}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
        return {"action": action.name, "kind": "command", "exit": 0}
    assert action.url is not None
    headers = action.request_headers()
    try:
        resp = client.request(
            action.method, action.url, headers=headers, json=action.json_body, timeout=action.timeout_s
        )
    except httpx.HTTPError as exc:
        raise action_error(f"{action.name}: {type(exc).__name__}", service=action.name) from exc
    if resp.status_code in action.expect_status:
        return {"action": action.name, "kind": "http", "status": resp.status_code}
    raise action_error(
        f"{action.name}: {action.method} answered {resp.status_code}, expected {action.expect_status}",
        service=action.name,
        status=resp.status_code,
        retry_after=retry_after(resp),
    )


def undo_action(
    client: httpx.Client, action: DampeningAction, evidence: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Undo one dampening action; returns the undo's evidence, or None when there is nothing to undo.

    ``kind: unleash`` restores the flags to the prior states in ``evidence`` (what ``run_action``
    returned, or at least ``{"prior": …}`` as persisted through ``on_prior``); None when no prior
    states were recorded, because then no flag was switched. Other kinds run ``action.undo``.
    """
    if action.kind != "unleash":
        return None if action.undo is None else run_action(client, action.undo)
    assert action.unleash is not None
    prior = (evidence or {}).get("prior")
    if prior is None:
        return None
    if not isinstance(prior, Mapping) or not all(
        isinstance(k, str) and isinstance(v, bool) for k, v in prior.items()
    ):
        raise ActionFailed(f"{action.name}: the recorded prior flag states are not flag → true/false")
    with _named(action):
        flags = unleash.restore(client, action.unleash, prior, action.timeout_s)
    return {"action": action.name, "kind": "unleash", **flags}


@contextmanager
def _named(action: DampeningAction) -> Iterator[None]:
    """Prefix failures with the action's name, keeping whether they are retryable."""
    try:
        yield
    except ActionFailed as exc:
        kind = ActionRetryable if exc.retryable else ActionFailed
        raise kind(
            f"{action.name}: {exc}", service=exc.service, status=exc.status, retry_after=exc.retry_after
        ) from exc
