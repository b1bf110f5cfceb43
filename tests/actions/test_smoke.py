"""Smoke checks against real HTTP: the demo stamps service, and small local sites with broken PWAs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from actions.smoke import json_pointer, run_checks
from tests.fixtures.static import Routes, serve
from watchdog.clock import RealClock, SimClock
from watchdog.config import SmokeCheck
from watchdog.demo.service import ServiceProcess

pytestmark = pytest.mark.timeout(60)

JS = "text/javascript"
INDEX = """<!doctype html><html><head>
<link rel="manifest" href="/manifest.webmanifest">
</head><body><script>navigator.serviceWorker.register("/sw.js");</script></body></html>"""
MANIFEST: dict[str, Any] = {
    "name": "Broken shop",
    "start_url": "/",
    "display": "standalone",
    "icons": [{"src": "/icon.png", "sizes": "512x512", "type": "image/png"}],
}
#: (status, content type, body); a path may have a list of them, answered in turn, the last one repeatedly.


def site_routes(changes: Routes | None = None) -> Routes:
    """A working PWA (page, manifest, icon, service worker, one API), with ``changes`` applied."""
    routes: Routes = {
        "/": (200, "text/html", INDEX),
        "/manifest.webmanifest": (200, "application/manifest+json", json.dumps(MANIFEST)),
        "/icon.png": (200, "image/png", "png"),
        "/sw.js": (200, JS, "self.addEventListener('fetch', () => {});"),
        "/api/claim": (200, "application/json", '{"dry_run": true, "flag": 1}'),
    }
    return {**routes, **(changes or {})}


class TickingClock(SimClock):
    """Every reading is ``step_s`` later than the last: each request seems to take that long."""

    def __init__(self, step_s: float) -> None:
        super().__init__()
        self.step_s = step_s

    def now(self) -> float:
        t = super().now()
        self.advance(self.step_s)
        return t


@pytest.fixture(scope="module")
def demo() -> Iterator[ServiceProcess]:
    with ServiceProcess("v1.2.0", "baseline", seed=11) as proc:
        yield proc


@pytest.fixture()
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def pwa(**fields: Any) -> SmokeCheck:
    return SmokeCheck.model_validate({"name": "pwa", "kind": "pwa", "path": "/", "retries": 0, **fields})


def problems_of(client: httpx.Client, base_url: str, check: SmokeCheck) -> list[str]:
    (result,) = run_checks(client, base_url, [check], RealClock(), retry_delay_s=0)
    assert not result.ok
    return result.problems


CLAIM_DRY_RUN: dict[str, Any] = {
    "name": "stamps_claim_dry_run",
    "method": "POST",
    "path": "/v1/stamps/claim",
    "headers": {"X-Dry-Run": "1"},
    "json_body": {"tenant": "smoke", "card": "smoke-card", "token": "smoke-token", "dry_run": True},
}


# --------------------------------------------------------------------------- http and JSON Pointer


def test_json_pointer_follows_rfc_6901() -> None:
    doc = {"a/b": 1, "m~n": 2, "list": [10, 20], "": {"x": None}, "data": {"dry_run": True}}
    assert json_pointer(doc, "") == (True, doc)
    assert json_pointer(doc, "/a~1b") == (True, 1)
    assert json_pointer(doc, "/m~0n") == (True, 2)
    assert json_pointer(doc, "/list/1") == (True, 20)
    assert json_pointer(doc, "//x") == (True, None)
    assert json_pointer(doc, "/data/dry_run") == (True, True)
    assert json_pointer(doc, "/list/01") == (False, None)
    assert json_pointer(doc, "/list/2") == (False, None)
    assert json_pointer(doc, "/list/-") == (False, None)
    assert json_pointer(doc, "/data/dry_run/deeper") == (False, None)


def test_http_checks_pass_on_the_demo_with_keys_and_pointers(
    demo: ServiceProcess, client: httpx.Client
) -> None:
    checks = [
        SmokeCheck(name="health", path="/health", expect_json={"status": "ok", "/version": "v1.2.0"}),
        SmokeCheck.model_validate({**CLAIM_DRY_RUN, "expect_json": {"dry_run": True, "/would_claim": True}}),
        SmokeCheck(
            name="rewards_redeem_dry_run",
            method="POST",
            path="/v1/rewards/redeem",
            json_body={"tenant": "smoke", "card": "smoke-card", "reward": "coffee", "dry_run": True},
            expect_json={"/dry_run": True, "/cost": 5, "/would_redeem": False},
        ),
    ]
    results = run_checks(client, demo.url, checks, RealClock(), retry_delay_s=0)
    assert [(r.name, r.ok, r.status, r.problems) for r in results] == [
        ("health", True, 200, []),
        ("stamps_claim_dry_run", True, 200, []),
        ("rewards_redeem_dry_run", True, 200, []),
    ]
    assert results[0].as_dict()["evidence"] == {}


def test_json_mismatches_name_the_key_or_pointer(demo: ServiceProcess, client: httpx.Client) -> None:
    check = SmokeCheck(
        name="health",
        path="/health",
        retries=0,
        expect_json={"status": "down", "/status": "down", "/build/sha": "abc", "uptime": 1},
    )
    assert problems_of(client, demo.url, check) == [
        "json status='ok', expected 'down'",
        "json /status='ok', expected 'down'",
        "json /build/sha is missing, expected 'abc'",
        "json uptime is missing, expected 1",
    ]


def test_json_true_is_not_one(client: httpx.Client) -> None:
    check = SmokeCheck(name="claim", method="POST", path="/api/claim", retries=0, expect_json={"/flag": True})
    with serve(site_routes()) as url:
        assert problems_of(client, url, check) == ["json /flag=1, expected True"]


def test_a_failing_check_is_retried_and_reports_its_last_attempt(client: httpx.Client) -> None:
    busy = (503, "application/json", '{"status": "starting"}')
    up = (200, "application/json", '{"status": "ok"}')
    clock = SimClock()
    check = SmokeCheck(name="health", path="/health", retries=2, expect_json={"status": "ok"})
    with serve({"/health": [busy, busy, up]}) as url:
        (result,) = run_checks(client, url, [check], clock, retry_delay_s=1.5)
    assert (result.ok, result.attempts, result.status) == (True, 3, 200)
    assert clock.now() == 3.0  # two waits between three attempts
    with serve({"/health": [busy]}) as url:
        (result,) = run_checks(client, url, [check], SimClock(), retry_delay_s=1.5)
    assert (result.ok, result.attempts) == (False, 3)
    assert result.problems == ["status 503, expected [200]", "json status='starting', expected 'ok'"]


# --------------------------------------------------------------------------- pwa


def test_pwa_core_flow_passes_on_the_demo(demo: ServiceProcess, client: httpx.Client) -> None:
    check = pwa(
        retries=2,
        api_calls=[
            {"name": "health", "path": "/health", "expect_json": {"status": "ok"}},
            {**CLAIM_DRY_RUN, "expect_json": {"/dry_run": True}},
        ],
    )
    (result,) = run_checks(client, demo.url, [check], RealClock(), retry_delay_s=0)
    assert result.ok, result.problems
    assert result.status == 200
    steps = result.evidence["steps"]
    assert [(s["step"], s["url"], s["status"], s["problems"]) for s in steps] == [
        ("page", f"{demo.url}/", 200, []),
        ("manifest", f"{demo.url}/manifest.webmanifest", 200, []),
        ("icon", f"{demo.url}/icon-512.png", 200, []),
        ("service_worker", f"{demo.url}/sw.js", 200, []),
        ("api health", f"{demo.url}/health", 200, []),
        ("api stamps_claim_dry_run", f"{demo.url}/v1/stamps/claim", 200, []),
    ]
    assert all(s["latency_s"] >= 0 for s in steps)
    assert steps[-1]["method"] == "POST"
    assert json.loads(json.dumps(result.as_dict())) == result.as_dict()


def test_pwa_resolves_relative_urls_and_finds_the_worker_in_an_external_script(client: httpx.Client) -> None:
    page = """<html><head><base href="/app/"><link rel="icon manifest" href="manifest.json"></head><body>
    <script src="https://cdn.example.invalid/lib.js"></script>
    <script src="js/boot.js"></script></body></html>"""
    icons = [{"src": "icons/big.png", "sizes": "192x192 512x512"}]
    manifest = {**MANIFEST, "start_url": "./", "icons": icons}
    routes: Routes = {
        "/app/index.html": (200, "text/html", page),
        "/app/manifest.json": (200, "application/json", json.dumps(manifest)),
        "/app/icons/big.png": (200, "image/png", "png"),
        "/app/js/boot.js": (200, "application/javascript", "navigator.serviceWorker.register('sw.js', {})"),
        "/app/sw.js": (200, JS, ""),
    }
    with serve(routes) as url:
        (result,) = run_checks(client, url, [pwa(path="/app/index.html")], RealClock(), retry_delay_s=0)
    assert result.ok, result.problems
    assert [(s["step"], s["url"].removeprefix(url)) for s in result.evidence["steps"]] == [
        ("page", "/app/index.html"),
        ("manifest", "/app/manifest.json"),
        ("icon", "/app/icons/big.png"),
        ("script", "/app/js/boot.js"),
        ("service_worker", "/app/sw.js"),
    ]


def test_pwa_without_a_manifest_link_fails(client: httpx.Client) -> None:
    page = INDEX.replace('<link rel="manifest" href="/manifest.webmanifest">', "")
    with serve(site_routes({"/": (200, "text/html", page)})) as url:
        assert problems_of(client, url, pwa()) == ['manifest: the page has no <link rel="manifest" href="…">']


def test_pwa_manifest_without_icons_fails(client: httpx.Client) -> None:
    manifest = json.dumps({k: v for k, v in MANIFEST.items() if k != "icons"})
    with serve(site_routes({"/manifest.webmanifest": (200, "application/json", manifest)})) as url:
        assert problems_of(client, url, pwa()) == ["manifest: has no icons"]


def test_pwa_manifest_that_browsers_would_not_install_names_every_gap(client: httpx.Client) -> None:
    manifest = {
        "display": "browser",
        "start_url": "https://elsewhere.example/",
        "prefer_related_applications": True,
        "icons": [
            {"src": "/small.png", "sizes": "48x48"},
            {"src": "/mask.png", "sizes": "512x512", "purpose": "maskable"},
        ],
    }
    routes = site_routes({"/manifest.webmanifest": (200, "application/json", json.dumps(manifest))})
    with serve(routes) as url:
        assert problems_of(client, url, pwa()) == [
            "manifest: has neither name nor short_name",
            "manifest: start_url 'https://elsewhere.example/' is not on the page's origin",
            "manifest: display is 'browser'; installing needs one of fullscreen, standalone, minimal-ui, "
            "window-controls-overlay",
            "manifest: prefer_related_applications is true: browsers offer the native app instead",
            "manifest: has no icon of at least 144x144 px with purpose 'any'",
        ]


def test_pwa_manifest_that_is_not_json_fails(client: httpx.Client) -> None:
    with serve(site_routes({"/manifest.webmanifest": (200, "text/html", "<html>")})) as url:
        assert problems_of(client, url, pwa()) == ["manifest: is not JSON"]


def test_pwa_service_worker_404_fails(client: httpx.Client) -> None:
    with serve(site_routes({"/sw.js": (404, "text/plain", "not found")})) as url:
        assert problems_of(client, url, pwa()) == ["service_worker: status 404, expected [200]"]


def test_pwa_service_worker_served_as_text_fails(client: httpx.Client) -> None:
    with serve(site_routes({"/sw.js": (200, "text/plain; charset=utf-8", "")})) as url:
        assert problems_of(client, url, pwa()) == [
            "service_worker: content type 'text/plain' is not JavaScript"
        ]


def test_pwa_service_worker_whose_scope_cannot_cover_the_page_fails(client: httpx.Client) -> None:
    page = INDEX.replace('register("/sw.js")', 'register("/static/sw.js")')
    routes = site_routes({"/": (200, "text/html", page), "/static/sw.js": (200, JS, "")})
    with serve(routes) as url:
        assert problems_of(client, url, pwa()) == [
            "service_worker: its scope /static/ cannot control the page / "
            "(serve it higher up or send Service-Worker-Allowed)"
        ]


def test_pwa_page_that_registers_no_service_worker_fails(client: httpx.Client) -> None:
    page = INDEX.replace('navigator.serviceWorker.register("/sw.js");', "console.log('no worker');")
    with serve(site_routes({"/": (200, "text/html", page)})) as url:
        assert problems_of(client, url, pwa()) == [
            "service_worker: the page registers none "
            '(no navigator.serviceWorker.register("…") in its scripts)'
        ]


def test_pwa_failing_api_call_fails(client: httpx.Client) -> None:
    routes = site_routes({"/api/claim": (500, "application/json", '{"error": "internal"}')})
    claim = {"name": "claim", "method": "POST", "path": "/api/claim", "expect_json": {"/dry_run": True}}
    check = pwa(api_calls=[claim])
    with serve(routes) as url:
        (result,) = run_checks(client, url, [check], RealClock(), retry_delay_s=0)
    assert result.problems == [
        "api claim: status 500, expected [200]",
        "api claim: json /dry_run is missing, expected True",
    ]
    assert result.evidence["steps"][-1]["status"] == 500
    assert result.status == 200  # the page itself was fine


def test_pwa_page_that_fails_stops_the_walk(client: httpx.Client) -> None:
    with serve(site_routes({"/": (502, "text/html", "bad gateway")})) as url:
        (result,) = run_checks(client, url, [pwa()], RealClock(), retry_delay_s=0)
    assert result.problems == ["page: status 502, expected [200]"]
    assert [s["step"] for s in result.evidence["steps"]] == ["page"]


def test_pwa_budget_applies_to_every_request(client: httpx.Client) -> None:
    with serve(site_routes()) as url:
        (result,) = run_checks(client, url, [pwa(latency_budget_s=0.5)], TickingClock(1.0), retry_delay_s=0)
    assert [p for p in result.problems if "budget" in p] == [
        "page: took 1.000s, budget 0.5s",
        "manifest: took 1.000s, budget 0.5s",
        "icon: took 1.000s, budget 0.5s",
        "service_worker: took 1.000s, budget 0.5s",
    ]


def test_pwa_sends_the_checks_credentials_only_to_the_services_own_origin(client: httpx.Client) -> None:
    """A release's page may name a manifest (and so an icon) on any host: the watchdog fetches it
    to judge the PWA, but the check's headers — a bearer token, say — never leave the service."""
    seen: list[dict[str, str]] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers.items()))
            body = json.dumps(MANIFEST).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    other = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, args=(0.01,), daemon=True).start()
    try:
        foreign = f"http://127.0.0.1:{other.server_address[1]}/manifest.webmanifest"
        page = INDEX.replace('href="/manifest.webmanifest"', f'href="{foreign}"')
        check = pwa(headers={"Authorization": "Bearer smoke-secret-token"})
        with serve(site_routes({"/": (200, "text/html", page)})) as url:
            run_checks(client, url, [check], RealClock(), retry_delay_s=0)
    finally:
        other.shutdown()
        other.server_close()
    assert seen, "the foreign manifest was not fetched at all"
    assert all("smoke-secret-token" not in " ".join(h.values()) for h in seen)
    assert all("authorization" not in {k.lower() for k in h} for h in seen)
