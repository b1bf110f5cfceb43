"""Smoke check ``kind: browser``: the PWA in a real Chromium, driven by Playwright.

The pwa check shows over plain HTTP that the files are there; only a browser shows that the page
works: its scripts run without an uncaught error, its service worker installs and becomes ready,
and the API calls it makes succeed. Playwright is optional (the ``browser`` extra) and imported
only when such a check runs; the browser is the system's Chromium (Debian's ``chromium``), since
Playwright's own download is not available everywhere the watchdog runs.

Timing: the page gets ``latency_budget_s`` to load, have its service worker ready and go network
idle (taking longer is a problem); the waits give up ``PAGE_GRACE_S`` after that. Starting and
closing Chromium is not the release's fault and has its own bounds; ``attempt_timeout_s`` is
the sum, the most one attempt can take.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from actions.smoke import Attempt
from watchdog.clock import Clock
from watchdog.config import SmokeCheck

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request, Response

LAUNCH_TIMEOUT_S = 30.0
PAGE_GRACE_S = 1.0
CLOSE_TIMEOUT_S = 10.0
API_TYPES = ("fetch", "xhr")
INSTALL_HINT = "install Debian's chromium (apt-get install chromium) or set chromium: to its path"

# Resolves with the ready registration's scope, or says why there is none, within ``ms``.
_SW_READY_JS = """async (ms) => {
  if (!("serviceWorker" in navigator)) return {error: "unsupported"};
  const late = new Promise((resolve) => setTimeout(() => resolve(null), ms));
  const reg = await Promise.race([navigator.serviceWorker.ready, late]);
  return reg ? {scope: reg.scope} : {error: "timeout"};
}"""
_NO_SW: dict[str, Any] = {"sw_scope": None}
_SELECTOR_TEXT_JS = """(sel) => {
  const el = document.querySelector(sel);
  return el ? el.textContent : null;
}"""
_SELECTOR_WAIT_JS = """([sel, text]) => {
  const el = document.querySelector(sel);
  return el !== null && (text === null || el.textContent.includes(text));
}"""


def find_chromium(configured: str | None) -> str | None:
    """The Chromium to launch: the configured one, else ``chromium`` or ``chromium-browser`` on PATH."""
    if configured:
        return shutil.which(configured)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def attempt_timeout_s(check: SmokeCheck) -> float:
    """The most one attempt of ``check`` may take: start Chromium, the page's time, close it."""
    return LAUNCH_TIMEOUT_S + check.latency_budget_s + PAGE_GRACE_S + CLOSE_TIMEOUT_S


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def browser_attempt(base_url: str, check: SmokeCheck, clock: Clock) -> Attempt:
    """One attempt of a browser check.

    Playwright's sync API refuses to run inside an asyncio event loop, and the caller may be any
    thread (the daemon's scheduler worker, a test, async code), so the browser is driven from a
    fresh thread of its own, which this one waits for.
    """
    configured = check.chromium
    chromium = find_chromium(configured)
    if chromium is None:
        missing = f"chromium {configured!r} is not an executable" if configured else "no Chromium on PATH"
        return Attempt(None, None, [f"{missing}: {INSTALL_HINT}"], retryable=False)
    url = base_url.rstrip("/") + check.path
    outcome: list[Attempt] = []

    def run() -> None:
        try:
            outcome.append(_session(url, check, chromium, clock))
        except ImportError:
            problem = "Playwright is not installed: pip install 'rollback-watchdog[browser]'"
            outcome.append(Attempt(None, None, [problem], retryable=False))
        except Exception as exc:  # the driver or the browser broke: the check failed, the daemon goes on
            outcome.append(Attempt(None, None, [f"browser failed: {type(exc).__name__}: {exc}"]))

    limit = attempt_timeout_s(check)
    worker = threading.Thread(target=run, name=f"smoke-browser-{check.name}", daemon=True)
    worker.start()
    worker.join(limit)
    if not outcome:
        return Attempt(None, None, [f"the browser check did not finish within {limit:.0f}s"])
    return outcome[0]


@dataclass
class _Recorder:
    """Everything the page (and its service worker) did on the network and in the console."""

    origin: tuple[str, str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def _entry(self, req: Request) -> dict[str, Any]:
        parts = urlsplit(req.url)
        same = (parts.scheme, parts.netloc) == self.origin
        return {
            "method": req.method,
            "url": parts.path if same else req.url,
            "same_origin": same,
            "type": req.resource_type,
            "by": "service_worker" if req.service_worker else "page",
        }

    def on_response(self, resp: Response) -> None:
        self.requests.append({**self._entry(resp.request), "status": resp.status})

    def on_failed(self, req: Request) -> None:
        self.requests.append({**self._entry(req), "failure": req.failure})

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def on_page_error(self, exc: Exception) -> None:
        self.page_errors.append(str(exc))

    def problems(self) -> list[str]:
        out = [f"uncaught error in the page: {e}" for e in self.page_errors]
        for r in self.requests:
            if "failure" in r:
                out.append(f"{r['method']} {r['url']} failed: {r['failure']}")
            elif r["same_origin"] and r["status"] >= 400:
                out.append(f"{r['method']} {r['url']} answered {r['status']} ({r['type']}, {r['by']})")
        return out

    def api_calls(self) -> list[dict[str, Any]]:
        return [
            {"method": r["method"], "path": r["url"], "status": r.get("status"), **_failure(r)}
            for r in self.requests
            if r["type"] in API_TYPES and r["by"] == "page"
        ]


def _failure(entry: dict[str, Any]) -> dict[str, Any]:
    return {"failure": entry["failure"]} if "failure" in entry else {}


def _session(url: str, check: SmokeCheck, chromium: str, clock: Clock) -> Attempt:
    """Launch Chromium, load the page in a fresh context, judge it, close everything."""
    from playwright.sync_api import sync_playwright

    parts = urlsplit(url)
    rec = _Recorder((parts.scheme, parts.netloc))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox"] if _running_as_root() else [],
            timeout=LAUNCH_TIMEOUT_S * 1000,
        )
        try:
            context = browser.new_context()
            context.on("response", rec.on_response)
            context.on("requestfailed", rec.on_failed)
            page = context.new_page()
            page.on("console", rec.on_console)
            page.on("pageerror", rec.on_page_error)
            seen = _drive(page, url, check, clock)
        finally:
            browser.close()
    evidence = {
        "url": url,
        "chromium": chromium,
        "sw_scope": seen.evidence["sw_scope"],
        "api_calls": rec.api_calls(),
        "requests": rec.requests,
        "console_errors": rec.console_errors,
        "page_errors": rec.page_errors,
    }
    return Attempt(seen.status, seen.latency_s, seen.problems + rec.problems(), evidence)


def _drive(page: Page, url: str, check: SmokeCheck, clock: Clock) -> Attempt:
    """Load, wait for the service worker and network idle, check the selector.

    The attempt's status is the document's, its latency the time until the page settled.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    budget = check.latency_budget_s
    t0 = clock.now()
    deadline = t0 + budget + PAGE_GRACE_S

    def left_ms() -> float:
        return max(1.0, (deadline - clock.now()) * 1000)

    try:
        response = page.goto(url, wait_until="load", timeout=left_ms())
    except PlaywrightTimeout:
        return Attempt(None, None, [f"the page did not load within {budget + PAGE_GRACE_S:.1f}s"], _NO_SW)
    except PlaywrightError as exc:
        return Attempt(None, None, [f"the page could not be loaded: {exc.message.splitlines()[0]}"], _NO_SW)
    problems: list[str] = []
    status = response.status if response is not None else None
    if status not in check.expect_status:
        problems.append(f"status {status}, expected {check.expect_status}")
    ready = page.evaluate(_SW_READY_JS, left_ms())
    scope = ready.get("scope")
    waited_out = False
    if ready.get("error") == "unsupported":
        problems.append(
            "navigator.serviceWorker is missing: the page is not a secure context (serve it over https)"
        )
    elif scope is None:
        waited_out = True
        problems.append(f"no service worker became ready within {budget + PAGE_GRACE_S:.1f}s")
    try:
        page.wait_for_load_state("networkidle", timeout=left_ms())
    except PlaywrightTimeout:
        waited_out = True
        problems.append(f"the network did not go idle within {budget + PAGE_GRACE_S:.1f}s")
    latency = clock.now() - t0
    if latency > budget and not waited_out:  # a wait that gave up already says the page was late
        problems.append(f"took {latency:.3f}s to settle, budget {budget}s")
    if check.expect_selector:
        problems.extend(_selector_problems(page, check.expect_selector, check.expect_text, left_ms()))
    if check.expect_body_contains:
        html = page.content()
        problems.extend(f"page lacks {text!r}" for text in check.expect_body_contains if text not in html)
    return Attempt(status, latency, problems, {"sw_scope": scope})


def _selector_problems(page: Page, selector: str, text: str | None, timeout_ms: float) -> list[str]:
    """Wait (within the page's time) for the element and its text, then judge what is there."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(_SELECTOR_WAIT_JS, arg=[selector, text], timeout=timeout_ms)
    except PlaywrightTimeout:
        pass  # judged below, from what the page shows now
    except PlaywrightError:
        return [f"expect_selector {selector!r} is not a valid CSS selector"]
    actual = page.evaluate(_SELECTOR_TEXT_JS, selector)
    if actual is None:
        return [f"no element matches {selector!r}"]
    if text is not None and text not in actual:
        return [f"{selector} shows {actual.strip()!r}, expected it to contain {text!r}"]
    return []
