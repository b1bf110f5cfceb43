"""Dampening (runbook step 2): flags off, workers paused, read-only mode — and undoing it.

Each action is an HTTP call or a command (argv, no shell). A failure that may pass on retry
(timeout, connection error, 5xx, 429) is ``ActionRetryable``; an unexpected answer is final.
"""

from __future__ import annotations

import subprocess
from typing import Any

import httpx

from watchdog.config import DampeningAction
from watchdog.errors import ActionFailed, ActionRetryable


def run_action(client: httpx.Client, action: DampeningAction) -> dict[str, Any]:
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
    headers = {k: v.get_secret_value() for k, v in action.headers.items()}
    try:
        resp = client.request(
            action.method, action.url, headers=headers, json=action.json_body, timeout=action.timeout_s
        )
    except httpx.HTTPError as exc:
        raise ActionRetryable(f"{action.name}: {type(exc).__name__}") from exc
    if resp.status_code in action.expect_status:
        return {"action": action.name, "kind": "http", "status": resp.status_code}
    if resp.status_code >= 500 or resp.status_code == 429:
        raise ActionRetryable(f"{action.name}: {action.method} answered {resp.status_code}")
    raise ActionFailed(
        f"{action.name}: {action.method} answered {resp.status_code}, expected {action.expect_status}"
    )
