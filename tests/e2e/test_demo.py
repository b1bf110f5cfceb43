"""The README's demo command, run as a user would: one command, nothing external, exit 0."""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


FLAGS = ([], ["--healthy"], ["--veto"], ["--serve", "60"])


class Demo:
    """One ``rollback-watchdog demo`` in its own process (each waits on wall time, mostly idle)."""

    def __init__(self, flags: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "demo", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._done: subprocess.CompletedProcess[str] | None = None

    def result(self) -> subprocess.CompletedProcess[str]:
        if self._done is None:
            try:
                out, err = self.process.communicate(timeout=300)
            finally:
                if self.process.poll() is None:
                    self.process.kill()
            self._done = subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)
        return self._done


@pytest.fixture(scope="module")
def demos() -> Iterator[dict[str, Demo]]:
    """The three demos side by side: each is a minute of mostly waiting, so together they take as
    long as the longest (they share nothing: each picks its own free ports and a temporary store)."""
    started = {" ".join(flags): Demo(flags) for flags in FLAGS}
    yield started
    for demo in started.values():
        if demo.process.poll() is None:
            demo.process.kill()


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (
            [],
            [
                "rollback_decided v1.1.0 → v1.0.0",
                "rollback_resolved v1.1.0 → v1.0.0",
                "outcome: resolved",
                "stable release pinned now: v1.0.0",
                "workflow runs dispatched at: v1.1.0, v1.0.0",
                "watchdog API: http://127.0.0.1:",
            ],
        ),
        (
            ["--veto"],
            [
                "step go_ahead started",
                "operator vetoes the rollback through the API: POST /v1/incidents/1/veto → 200",
                "veto v1.1.0 → v1.0.0: vetoed",
                "veto v1.1.0 → v1.0.0: veto_sent",
                "nothing was changed; release v1.1.0 is vetoed",
                "workflow runs dispatched at: v1.1.0\n",  # the rollback's run was never dispatched
                "stable release pinned now: v1.0.0",
                "outcome: vetoed",
            ],
        ),
        (
            ["--healthy"],
            ["promoted v1.0.0 → v1.2.0", "outcome: successful", "stable release pinned now: v1.2.0"],
        ),
    ],
)
def test_demo_runs_end_to_end(flags: list[str], expect: list[str], demos: dict[str, Demo]) -> None:
    run = demos[" ".join(flags)].result()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for text in expect:
        assert text in run.stdout, text
    assert "Decision log" in run.stdout
    assert "demo-token-not-a-secret" not in run.stdout + run.stderr
    assert "demo-operator-token-not-a-secret" not in run.stdout + run.stderr
    named = re.search(r"evidence picture: (\S+\.png)", run.stdout)
    if flags != ["--healthy"]:  # a rollback decision: its picture is there after the demo ended
        assert named is not None and Path(named.group(1)).read_bytes()[:4] == b"\x89PNG"


def test_demo_serve_keeps_the_dashboard_up_with_its_rollback_and_evidence_picture(
    demos: dict[str, Demo],
) -> None:
    """``demo --serve``: after the summary the dashboard stays served over the demo's store, shows
    the rollback, and the evidence picture named in the summary is there; Ctrl-C ends it cleanly."""
    import httpx

    demo = demos["--serve 60"]
    assert demo.process.stdout is not None
    seen: list[str] = []
    for line in demo.process.stdout:  # the summary, then the serving line
        seen.append(line)
        if "serving the dashboard at" in line:
            break
    text = "".join(seen)
    url = re.search(r"serving the dashboard at (http://127\.0\.0\.1:\d+)/ui/", text)
    picture = re.search(r"evidence picture: (\S+\.png)", text)
    assert url is not None and picture is not None, text[-3000:]
    assert Path(picture.group(1)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    headers = {"Authorization": "Bearer demo-operator-token-not-a-secret"}
    with httpx.Client(base_url=url.group(1), headers=headers, timeout=10) as http:
        overview = http.get("/ui/")
        incident = http.get("/ui/incidents/1")
        png = http.get("/v1/incidents/1/evidence.png")
        refused = httpx.get(f"{url.group(1)}/ui/", timeout=10)
    assert overview.status_code == 200 and "stamps-api" in overview.text
    assert (
        incident.status_code == 200 and "v1.1.0" in incident.text and "post_rollback_watch" in incident.text
    )
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert refused.status_code == 401
    demo.process.send_signal(signal.SIGINT)
    run = demo.result()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "stopped serving" in run.stdout


def _the_demos_rollback_in_chromium(base: str, headers: dict[str, str]) -> None:
    """The dashboard in Debian's headless Chromium, as oncall would open it: each page of the demo's
    rollback loads with no console error, page error or failed request, and says what happened."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(extra_http_headers=headers)
            context.on("requestfailed", lambda r: problems.append(f"failed {r.url}: {r.failure}"))
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            seen = {}
            for path in ("/ui/", "/ui/incidents/1", "/ui/watches/1", "/ui/decisions"):
                response = page.goto(base + path)
                assert response is not None and response.status == 200, path
                seen[path] = page.inner_text("body")
        finally:
            browser.close()
    assert problems == []
    assert "v1.1.0" in seen["/ui/incidents/1"] and "resolve" in seen["/ui/incidents/1"]
    assert "http_5xx" in seen["/ui/watches/1"] or "latency" in seen["/ui/watches/1"]
    assert "rollback_decided" in seen["/ui/decisions"] or "rollback decided" in seen["/ui/decisions"].lower()
