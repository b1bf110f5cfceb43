"""The dashboard, as a person sees it: a real rollback run on a simulated clock (a release that fails
its healthcheck, rolled back through the GitHub emulator, whose deploy run restarts the service on
the stable tag), served by the API and opened in Debian's Chromium through Playwright."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.fixtures.github import MANIFEST_V1, default_seed
from tests.fixtures.pipeline import CONFIG, START, build, drive, finished
from watchdog.api import ApiContext, ApiServer
from watchdog.api.dashboard import COOKIE
from watchdog.app import App
from watchdog.clock import SimClock
from watchdog.config import TrustedProxy, WatchdogConfig
from watchdog.demo.service import ServiceProcess
from watchdog.emulator.github import GitHubEmulator, RunContext
from watchdog.overrides import Overrides
from watchdog.phases import IncidentPhase, WatchKind
from watchdog.store import Incident, ReleaseRef

CHROMIUM = "/usr/bin/chromium"
VIEWER_TOKEN = "viewer-token-0123456789abcdefghij"
OPERATOR_TOKEN = "operator-token-0123456789abcdefgh"
HOSTILE = '<script>alert("pwned")</script> & <b>bold</b>'
STEPS = ("pin", "dispatch", "follow_run", "smoke", "post_rollback_watch", "resolve")

# Not skipped without Chromium: the browser fixture then fails, saying to install Debian's chromium
# (`./.ci/install-system-deps` does), as tests/actions/test_browser.py does.


@dataclass
class Rolled:
    """A finished rollback of v1.3.0 (its healthcheck failed) back to v1.0.0, in the store."""

    app: App
    incident: int
    deploy_watch: int
    after_watch: int


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rolled]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with ServiceProcess("v1.3.0", "canary", seed=5) as svc:

        def deploy_run(run: RunContext) -> bool:  # the deploy workflow: the service runs the tag
            svc.restart(run.inputs["tag"])
            return True

        seed = default_seed()
        seed["tags"] = {**seed["tags"], "v1.3.0": "4" * 40}
        seed["files"] = {**seed["files"], "v1.3.0": {"migrations/manifest.json": MANIFEST_V1}}
        gh = GitHubEmulator(
            **{**seed, "environments": ["dev", "stage", "prod"]},
            clock=SimClock(START),
            hook=deploy_run,
            hook_grace=15,
        ).start()
        tokens = (
            'api: {listen: "127.0.0.1:0", tokens: [{name: vic, token: "${VIEWER}", role: viewer},'
            ' {name: olga, token: "${OPERATOR}", role: operator}]}'
        )
        config = CONFIG.replace('api: {listen: "127.0.0.1:0"}', tokens)
        app = build(tmp, svc, gh, config, {"VIEWER": VIEWER_TOKEN, "OPERATOR": OPERATOR_TOKEN})
        try:
            ref = ReleaseRef("v1.3.0", "4" * 40)
            watch_id = app.engine.start_watch("prod", "stamps-api", ref, app.clock.now()).id
            drive(app, 0, lambda: bool(app.store.page(Incident, limit=1)))
            (incident,) = app.store.page(Incident, limit=1)
            drive(app, incident.id, finished(app, incident.id))
            assert app.store.incident(incident.id).phase == IncidentPhase.RESOLVED
            after = app.store.incident_watch(incident.id, WatchKind.POST_ROLLBACK.value)
            assert after is not None
            # a pause whose reason came from outside: it must be shown, never run
            Overrides(app.engine).pause("prod", None, for_s=3600, actor="api:olga", reason=HOSTILE)
            yield Rolled(app, incident.id, watch_id, after.id)
        finally:
            app.close()
            gh.stop()


def _serve(app: App, cfg: WatchdogConfig | None = None) -> ApiServer:
    server = ApiServer(ApiContext(cfg or app.cfg, app.store, app.clock, app.engine))
    server.start()
    return server


@pytest.fixture(scope="module")
def server(rolled: Rolled) -> Iterator[ApiServer]:
    api = _serve(rolled.app)
    yield api
    api.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM), (
        f"{CHROMIUM} is missing: install Debian's chromium (./.ci/install-system-deps)"
    )
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Watched:
    """A browser context whose every console error, page error and failed request is kept."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.problems: list[str] = []
        context.on("requestfailed", lambda r: self.problems.append(f"failed {r.url}: {r.failure}"))
        self.page = context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def open(self, url: str, status: int = 200) -> Page:
        response = self.page.goto(url)
        assert response is not None and response.status == status, (url, response and response.status)
        if status >= 400:  # Chromium reports the page's own refusal, which is the point here
            expected = f"the server responded with a status of {status}"
            self.problems = [p for p in self.problems if expected not in p]
        assert not self.problems, self.problems
        return self.page


@pytest.fixture
def open_browser(browser: Browser) -> Iterator[Callable[..., Watched]]:
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> Watched:
        context = browser.new_context(**options)
        contexts.append(context)
        return Watched(context)

    yield make
    for context in contexts:
        context.close()


def _bearer(token: str = VIEWER_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_page_shows_the_rollback_with_its_charts(
    rolled: Rolled, server: ApiServer, open_browser: Callable[..., Watched]
) -> None:
    b = open_browser(extra_http_headers=_bearer())
    base = server.url

    page = b.open(f"{base}/")  # the root sends a browser to the dashboard
    assert page.url == f"{base}/ui/"
    env = page.locator("#env-prod")
    assert "stamps-api" in env.inner_text() and "v1.0.0" in env.inner_text()  # pinned again
    assert "healthcheck" in env.inner_text() and "fail" in env.inner_text()  # the watch that failed
    assert "Automation paused" in env.inner_text() and HOSTILE in env.inner_text()  # shown as text
    recent = page.locator("table").last.inner_text()
    assert re.search(r"v1\.3\.0\s.*→\s*v1\.0\.0", recent) and "resolved" in recent
    assert "signed in as api:vic" in page.locator("header").inner_text()

    page = b.open(f"{base}/ui/watches/{rolled.deploy_watch}")
    assert "v1.3.0" in page.locator("main").inner_text()
    chart = page.locator("#signal-healthcheck")
    assert "fail" in chart.locator("h2").inner_text()
    assert chart.locator("svg.chart").count() == 2
    assert chart.locator("svg line.threshold").count() == 1  # the statistic against its threshold
    assert chart.locator("svg polyline.series").count() >= 1
    assert chart.locator("svg line.marker-deploy").count() == 2  # in both charts
    assert chart.locator("svg line.marker-rollback_decided").count() == 2
    assert chart.locator("svg line.marker-step").count() >= 2 * 5
    markers = page.locator("table").first.inner_text()
    assert all(f"{step} (successful)" in markers for step in ("pin", "dispatch", "smoke"))
    verdicts = page.locator("table").nth(1).inner_text()
    assert "healthcheck" in verdicts and "fail" in verdicts
    page.click(f"a[href='/ui/incidents/{rolled.incident}']")
    page.wait_for_url(f"**/ui/incidents/{rolled.incident}")

    page = b.open(f"{base}/ui/incidents/{rolled.incident}")
    assert re.search(r"from\s+v1\.3\.0.*to\s+v1\.0\.0", page.locator(".releases").inner_text())
    steps = page.locator("table.steps")
    for step in STEPS:
        row = steps.locator(f"#step-{step}")
        assert step in row.inner_text() and "successful" in row.inner_text()
    evidence = steps.locator("#step-dispatch details")
    assert not evidence.locator("pre").is_visible()  # collapsed until asked for
    evidence.locator("summary").click()
    assert evidence.locator("pre").is_visible() and "v1.0.0" in evidence.locator("pre").inner_text()
    log = page.locator("table").nth(1).inner_text()
    assert "rollback decided" in log and "rollback resolved" in log
    assert page.locator(f"a[href='/ui/watches/{rolled.deploy_watch}']").count() == 1
    assert page.locator(f"a[href='/ui/watches/{rolled.after_watch}']").count() == 1

    page = b.open(f"{base}/ui/decisions")
    assert "rollback decided" in page.inner_text("table") and HOSTILE in page.inner_text("table")
    page.select_option("select[name=kind]", "rollback_resolved")
    page.fill("input[name=incident]", str(rolled.incident))
    page.click("form.filters button")
    page.wait_for_url("**/ui/decisions?*kind=rollback_resolved*")
    rows = page.locator("table tr")
    assert rows.count() == 2 and "rollback resolved" in rows.nth(1).inner_text()
    assert not b.problems, b.problems


def test_the_decision_log_pages_through_every_entry(rolled: Rolled, server: ApiServer) -> None:
    every = [e.id for e in rolled.app.store.decisions()]
    assert len(every) > 20
    seen: list[int] = []
    url: str | None = "/ui/decisions?limit=10"
    with httpx.Client(base_url=server.url, headers=_bearer()) as http:
        while url:
            html = http.get(url).text
            seen += [int(i) for i in re.findall(r"<tr><td>(\d+)</td>", html)]
            found = re.search(r'href="(/ui/decisions\?[^"]*before=\d+)">older', html)
            url = found.group(1).replace("&amp;", "&") if found else None
        assert sorted(seen, reverse=True) == seen and sorted(seen) == sorted(every)
        assert url is None and "limit=10" in html
        for query, field in ({"kind": "nonsense"}, "query.kind"), ({"incident": "x"}, "query.incident"):
            bad = http.get("/ui/decisions", params=query)
            assert bad.status_code == 422 and field in bad.text


def test_text_from_outside_is_escaped(rolled: Rolled, server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, headers=_bearer()) as http:
        for path in ("/ui/", "/ui/decisions"):
            html = http.get(path).text
            assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
            assert "<script" not in html and "<b>bold" not in html
        answer = http.get("/ui/")
        assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_without_credentials_a_login_page_answers_401_and_the_refusal_is_audited(
    server: ApiServer, open_browser: Callable[..., Watched]
) -> None:
    with structlog.testing.capture_logs() as logs, httpx.Client(base_url=server.url) as http:
        for path in ("/ui/", "/ui/watches/1", "/ui/incidents/1", "/ui/decisions"):
            answer = http.get(path)
            assert answer.status_code == 401 and answer.headers["content-type"].startswith("text/html")
            assert '<form method="post" action="/ui/login">' in answer.text
        wrong = http.get("/ui/", headers=_bearer("not-a-token"))
        assert wrong.status_code == 401 and "a token that is not valid" in wrong.text
        assert http.get("/v1/incidents").status_code == 401  # the API still answers JSON
    refused = [e for e in logs if e.get("event") == "request refused"]
    assert [e["status"] for e in refused] == [401] * 6
    assert refused[0]["reason"] == "no credentials" and refused[4]["reason"] == "a token that is not valid"
    assert VIEWER_TOKEN not in str(logs) and "not-a-token" not in str(logs)

    b = open_browser()
    page = b.open(f"{server.url}/ui/incidents/1", status=401)
    assert page.locator("input[name=token]").is_visible()


def test_the_login_form_sets_a_strict_httponly_session_and_sign_out_ends_it(
    rolled: Rolled, server: ApiServer, open_browser: Callable[..., Watched]
) -> None:
    b = open_browser()
    page = b.open(f"{server.url}/ui/incidents/{rolled.incident}", status=401)
    page.fill("input[name=token]", "wrong-token")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "a token that is not valid" in page.inner_text("main")
    assert all("status of 401" in p for p in b.problems)  # the refused login's own answer
    b.problems.clear()

    page.fill("input[name=token]", VIEWER_TOKEN)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url.endswith(f"/ui/incidents/{rolled.incident}")  # back where the person was going
    assert "resolved" in page.inner_text("h1")
    (cookie,) = [c for c in b.context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert not cookie["secure"]  # plain http on the loopback; https gets Secure
    assert "signed in as api:vic" in b.open(f"{server.url}/ui/decisions").inner_text("header")

    with page.expect_navigation():
        page.click("header button")  # sign out: a POST
    assert page.url.endswith("/ui/login")
    assert not [c for c in b.context.cookies() if c["name"] == COOKIE]
    b.open(f"{server.url}/ui/", status=401)
    # a login posted from another site is refused
    with httpx.Client(base_url=server.url) as http:
        cross = http.post(
            "/ui/login", data={"token": VIEWER_TOKEN}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403 and COOKIE not in cross.headers.get("set-cookie", "")
        sent = http.post("/ui/login", data={"token": VIEWER_TOKEN, "next": "https://evil.example/"})
        assert sent.status_code == 303 and sent.headers["location"] == "/ui/"  # no open redirect


def _proxied(rolled: Rolled, sources: list[str] | None) -> WatchdogConfig:
    cfg = rolled.app.cfg
    proxy = None if sources is None else TrustedProxy.model_validate({"sources": sources})
    return cfg.model_copy(update={"api": cfg.api.model_copy(update={"trusted_proxy": proxy})})


def test_a_proxy_identity_header_is_believed_only_when_configured_and_from_its_sources(
    rolled: Rolled, server: ApiServer, open_browser: Callable[..., Watched]
) -> None:
    header = {"X-Auth-Request-User": "alice@example.com"}
    with httpx.Client(base_url=server.url) as http:  # not configured: ignored
        assert http.get("/ui/", headers=header).status_code == 401

    trusted = _serve(rolled.app, _proxied(rolled, ["127.0.0.1/32"]))
    elsewhere = _serve(rolled.app, _proxied(rolled, ["10.0.0.0/8", "::1/128"]))
    try:
        b = open_browser(extra_http_headers=header)
        page = b.open(f"{trusted.url}/ui/incidents/{rolled.incident}")
        assert "signed in as proxy:alice@example.com" in page.inner_text("header")
        with httpx.Client(base_url=trusted.url) as http:  # a proxy names the browser's address too
            forwarded = {**header, "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
            assert http.get("/ui/", headers=forwarded).status_code == 200
            signed = http.post("/ui/login", data={"token": VIEWER_TOKEN}, headers=forwarded)
            assert "secure" in signed.headers["set-cookie"].lower()  # TLS ended at the proxy
        assert page.locator("header button").count() == 0  # nothing to sign out of
        with structlog.testing.capture_logs() as logs, httpx.Client(base_url=elsewhere.url) as http:
            answer = http.get("/ui/", headers=header)
        assert answer.status_code == 401 and "not api.trusted_proxy.sources" in answer.text
        (refused,) = [e for e in logs if e.get("event") == "request refused"]
        assert refused["client"] == "127.0.0.1"
        with httpx.Client(base_url=trusted.url) as http:  # a viewer only: the API's writes still need a token
            assert http.post("/v1/pauses", headers=header, json={}).status_code == 401
    finally:
        trusted.stop()
        elsewhere.stop()


def test_an_unknown_watch_or_incident_is_a_404_page(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, headers=_bearer()) as http:
        for path in ("/ui/watches/999", "/ui/incidents/999"):
            answer = http.get(path)
            assert answer.status_code == 404 and "There is no" in answer.text
