"""Declarative HTTP smoke checks (runbook step 4): health, dry-run claim and redeem, the PWA flow.

Each check is retried a few times before it counts as failed, because a freshly restarted
release may take a moment to accept connections; the latency budget applies to every attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from watchdog.clock import Clock
from watchdog.config import SmokeCheck


@dataclass(frozen=True)
class SmokeResult:
    name: str
    ok: bool
    attempts: int
    status: int | None
    latency_s: float | None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "latency_s": self.latency_s,
            "problems": self.problems,
        }


def _problems(check: SmokeCheck, resp: httpx.Response, latency: float) -> list[str]:
    out = []
    if resp.status_code not in check.expect_status:
        out.append(f"status {resp.status_code}, expected {check.expect_status}")
    if latency > check.latency_budget_s:
        out.append(f"took {latency:.3f}s, budget {check.latency_budget_s}s")
    if check.expect_json:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            out.append("body is not a JSON object")
        else:
            for key, want in check.expect_json.items():
                if body.get(key) != want:
                    out.append(f"json {key}={body.get(key)!r}, expected {want!r}")
    for text in check.expect_body_contains:
        if text not in resp.text:
            out.append(f"body lacks {text!r}")
    return out


def run_check(
    client: httpx.Client, base_url: str, check: SmokeCheck, clock: Clock, retry_delay_s: float = 1.0
) -> SmokeResult:
    problems: list[str] = []
    status: int | None = None
    latency: float | None = None
    for attempt in range(1, check.retries + 2):
        t0 = clock.now()
        try:
            resp = client.request(
                check.method,
                base_url.rstrip("/") + check.path,
                headers=check.headers,
                json=check.json_body,
                timeout=check.latency_budget_s + 1.0,
            )
            latency = clock.now() - t0
            status = resp.status_code
            problems = _problems(check, resp, latency)
        except httpx.HTTPError as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        if not problems:
            return SmokeResult(check.name, True, attempt, status, latency)
        if attempt <= check.retries:
            clock.sleep(retry_delay_s)
    return SmokeResult(check.name, False, check.retries + 1, status, latency, problems)


def run_checks(
    client: httpx.Client, base_url: str, checks: list[SmokeCheck], clock: Clock, retry_delay_s: float = 1.0
) -> list[SmokeResult]:
    """Run every check (not stopping at the first failure: the evidence should be complete)."""
    return [run_check(client, base_url, c, clock, retry_delay_s) for c in checks]
