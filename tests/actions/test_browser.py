"""Browser smoke checks in the system's Chromium: the demo PWA, and small local sites that break.

Not skipped without Chromium: every check then fails saying to install Debian's chromium
(``.ci/install-system-deps`` does).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from actions.smoke import SmokeResult, run_checks
from tests.fixtures.static import Routes, serve
from watchdog.clock import RealClock
from watchdog.config import SmokeCheck
from watchdog.demo.service import ServiceProcess

pytestmark = pytest.mark.timeout(120)

SW_JS = "self.addEventListener('fetch', () => {});"
#: path -> (status, content type, body)


def page(script: str) -> str:
    return f"""<!doctype html><html><head><link rel="manifest" href="/manifest.webmanifest"></head>
<body><p>Claim: <span id="claim">checking…</span></p><script>{script}</script></body></html>"""


REGISTER = 'navigator.serviceWorker.register("/sw.js");'


def serve_pwa(routes: Routes) -> AbstractContextManager[str]:
    """A real server answering ``routes`` plus a service worker at /sw.js; yields its base URL."""
    return serve({"/sw.js": (200, "text/javascript", SW_JS), **routes})


def browser(**fields: Any) -> SmokeCheck:
    return SmokeCheck.model_validate(
        {"name": "browser", "kind": "browser", "path": "/", "retries": 0, "latency_budget_s": 5.0, **fields}
    )


def run(base_url: str, check: SmokeCheck) -> SmokeResult:
    with httpx.Client() as client:
        (result,) = run_checks(client, base_url, [check], RealClock(), retry_delay_s=0)
    return result


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_pwa_passes_from_a_worker_thread_inside_an_event_loop() -> None:
    """As the daemon runs it (a scheduler thread), and even where an asyncio loop is running."""
    check = browser(retries=2, expect_selector="#claim", expect_text="would claim", latency_budget_s=10.0)
    results: list[SmokeResult] = []

    async def in_loop(url: str) -> None:
        results.append(run(url, check))

    with ServiceProcess("v1.2.0", "baseline", seed=11) as demo:
        worker = threading.Thread(target=lambda: asyncio.run(in_loop(demo.url)))
        worker.start()
        worker.join()
    (result,) = results
    assert result.ok, result.problems
    assert result.status == 200
    ev = result.evidence
    assert ev["sw_scope"] == f"{demo.url}/"
    assert sorted((c["method"], c["path"], c["status"]) for c in ev["api_calls"]) == [
        ("GET", "/health", 200),
        ("POST", "/v1/stamps/claim", 200),
    ]
    assert ev["console_errors"] == [] and ev["page_errors"] == []
    assert {
        "method": "GET",
        "url": "/",
        "same_origin": True,
        "type": "document",
        "by": "page",
        "status": 200,
    } in (ev["requests"])


def test_uncaught_error_in_the_page_fails() -> None:
    script = REGISTER + 'throw new Error("boom at startup");'
    with serve_pwa({"/": (200, "text/html", page(script))}) as url:
        result = run(url, browser())
    assert result.problems == ["uncaught error in the page: boom at startup"]
    assert result.evidence["page_errors"] == ["boom at startup"]


def test_page_that_registers_no_service_worker_fails() -> None:
    with serve_pwa({"/": (200, "text/html", page("console.log('no worker here');"))}) as url:
        result = run(url, browser(latency_budget_s=1.0))
    assert result.problems == ["no service worker became ready within 2.0s"]
    assert result.evidence["sw_scope"] is None


def test_failing_api_calls_fail() -> None:
    dead = f"http://127.0.0.1:{closed_port()}/ping"
    script = (
        REGISTER
        + f"""
fetch("/api/claim", {{method: "POST", body: "{{}}"}}).catch(() => {{}});
fetch("{dead}").catch(() => {{}});"""
    )
    routes = {
        "/": (200, "text/html", page(script)),
        "/api/claim": (500, "application/json", '{"error": "internal"}'),
    }
    with serve_pwa(routes) as url:
        result = run(url, browser())
    assert sorted(result.problems) == [
        f"GET {dead} failed: net::ERR_CONNECTION_REFUSED",
        "POST /api/claim answered 500 (fetch, page)",
    ]
    calls = sorted((c["method"], c["path"], c["status"]) for c in result.evidence["api_calls"])
    assert calls == [("GET", dead, None), ("POST", "/api/claim", 500)]
    assert any("500" in e for e in result.evidence["console_errors"])


def test_expected_text_mismatch_fails() -> None:
    script = REGISTER + 'document.getElementById("claim").textContent = "refused";'
    with serve_pwa({"/": (200, "text/html", page(script))}) as url:
        # Each waits for its element until the page's time is up (budget + 1 s), then judges.
        wrong_text = run(
            url, browser(expect_selector="#claim", expect_text="would claim", latency_budget_s=2.0)
        )
        no_element = run(url, browser(expect_selector="#reward", latency_budget_s=2.0))
    assert wrong_text.problems == ["#claim shows 'refused', expected it to contain 'would claim'"]
    assert no_element.problems == ["no element matches '#reward'"]


def test_missing_chromium_fails_clearly_without_retrying() -> None:
    result = run("http://127.0.0.1:9", browser(retries=2, chromium="/nonexistent/chromium"))
    assert (result.ok, result.attempts) == (False, 1)
    assert result.problems == [
        "chromium '/nonexistent/chromium' is not an executable: "
        "install Debian's chromium (apt-get install chromium) or set chromium: to its path"
    ]


def test_missing_playwright_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    result = run("http://127.0.0.1:9", browser(retries=2, chromium=sys.executable))
    assert (result.ok, result.attempts) == (False, 1)
    assert result.problems == ["Playwright is not installed: pip install 'rollback-watchdog[browser]'"]
