"""The evidence picture of a rollback: drawn from a real detected rollback's store (the demo's
``v1.3.0`` fails its health check on the GitHub emulator's simulated clock, as in
tests/core/test_notify_all.py), served by the API on loopback, linked from the ticket and the chat.

The picture is checked as a reader would: it decodes, has its size, is the same bytes twice, and
the decision's vertical line stands in every panel at the decision time (its pixels read back)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import matplotlib.style
import pytest
from github import Auth, Github
from PIL import Image

from tests.fixtures.github import MANIFEST_V1, default_seed
from tests.fixtures.pipeline import CONFIG, TOKEN, build, drive, on_sim_clock
from watchdog.api import ApiContext, ApiServer
from watchdog.app import App
from watchdog.demo.service import ServiceProcess
from watchdog.emulator.github import GitHubEmulator, ReleaseDef, RunContext
from watchdog.evidence import DECISION_COLOUR, DPI, HEIGHT_IN, WIDTH_IN, draw, evidence_png, picture_of
from watchdog.notify.render import render
from watchdog.phases import DecisionKind, IncidentPhase
from watchdog.store import Incident, ReleaseRef

BAD, STABLE = "v1.3.0", "v1.0.0"  # the demo's release that fails its health check, and the last good one
BAD_SHA = "4" * 40
VIEWER = "tok-evidence-viewer-0123456789"
PUBLIC = "https://watchdog.example.com"
WITH_API = (
    CONFIG.replace(
        'api: {listen: "127.0.0.1:0"}',
        'api: {listen: "127.0.0.1:0", tokens: [{name: grafana, token: "${VIEWER}", role: viewer}]}',
    )
    + f"notifications: {{public_url: {PUBLIC}}}\n"
)
SIZE = (round(WIDTH_IN * DPI), round(HEIGHT_IN * DPI))


@pytest.fixture
def service() -> Iterator[ServiceProcess]:
    """The service, running the bad release until a rollback run restarts it on its target."""
    with ServiceProcess(BAD, "canary", seed=5) as svc:
        yield svc


@pytest.fixture
def make_github_emulator(
    make_github_emulator: Callable[..., GitHubEmulator], service: ServiceProcess
) -> Callable[..., GitHubEmulator]:
    def deploy(run: RunContext) -> bool:
        service.restart(run.ref)
        return True

    seed = default_seed()
    return on_sim_clock(
        make_github_emulator,
        environments=["dev", "stage", "prod"],
        tags={**seed["tags"], BAD: BAD_SHA},
        releases=[*seed["releases"], ReleaseDef(BAD)],
        files={**seed["files"], BAD: {"migrations/manifest.json": MANIFEST_V1}},
        hook=deploy,
        hook_grace=30.0,
    )


@pytest.fixture
def rolled_back(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> Iterator[tuple[App, GitHubEmulator, Incident]]:
    """A whole detected rollback of v1.3.0, over: the app, GitHub, and the incident."""
    gh = make_github_emulator()
    app = build(tmp_path, service, gh, WITH_API, {"VIEWER": VIEWER})
    app.engine.start_watch("prod", "stamps-api", ReleaseRef(BAD, BAD_SHA), app.clock.now())

    def over() -> bool:
        incidents = app.store.incidents_since("prod", 0.0)
        return bool(incidents) and incidents[-1].phase in IncidentPhase.closed()

    drive(app, 0, over)
    (incident,) = app.store.incidents_since("prod", 0.0)
    assert incident.trigger == "signal:healthcheck" and incident.phase == IncidentPhase.RESOLVED
    yield app, gh, incident
    app.close()


def _rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


def test_the_picture_shows_the_failed_signal_with_the_decision_where_it_was_taken(
    rolled_back: tuple[App, GitHubEmulator, Incident],
) -> None:
    app, gh, incident = rolled_back
    png = evidence_png(app.store, incident.id)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == SIZE
    assert evidence_png(app.store, incident.id) == png  # the same data, the same bytes

    picture = picture_of(app.store, incident.id)
    assert [p.signal for p in picture.panels] == ["healthcheck"]
    assert (picture.release, picture.target) == (BAD, STABLE)
    assert len(picture.panels[0].points) >= 3 and picture.deployed_at < picture.decided_at
    assert any(p.state == "fail" for p in picture.panels[0].points)

    # the decision's line, read back from the PNG: in each panel, the pixel column at the decision
    # time is the decision's colour over most of the panel's height
    with matplotlib.style.context("default"):
        figure = draw(picture)
    pixels = image.convert("RGB")
    red, at = _rgb(DECISION_COLOUR), picture.offset(picture.decided_at)
    for ax in figure.axes:
        x = ax.transData.transform((at, 0.0))[0]
        box = ax.get_window_extent()
        rows = range(SIZE[1] - int(box.y1) + 2, SIZE[1] - int(box.y0) - 2)
        best = max(
            sum(pixels.getpixel((column, row)) == red for row in rows) / len(rows)
            for column in (int(x) - 1, int(x), int(x) + 1)
        )
        assert best > 0.8, (ax.get_title(), best)
        deploy_x = int(ax.transData.transform((0.0, 0.0))[0])
        assert not any(pixels.getpixel((deploy_x, row)) == red for row in rows)  # only there

    # linked from the ticket and from the chat's notice of the rollback
    link = f"{PUBLIC}/v1/incidents/{incident.id}/evidence.png"
    repo = Github(base_url=gh.url, auth=Auth.Token(TOKEN), retry=None).get_repo(gh.full_name)
    (issue,) = [i for i in repo.get_issues(state="all") if incident.correlation_id in i.title]
    assert f"- evidence picture: {link}" in issue.body
    decided = next(
        e for e in app.store.decisions(incident_id=incident.id) if e.kind == DecisionKind.ROLLBACK_DECIDED
    )
    notice = render(app.cfg, app.store, decided, app.clock.now())
    assert notice is not None and ("Evidence picture", link) in [(k.text, k.url) for k in notice.links]


def test_the_api_serves_the_picture_to_a_viewer_and_none_for_a_human_rollback(
    rolled_back: tuple[App, GitHubEmulator, Incident],
) -> None:
    app, _, incident = rolled_back
    manual = app.engine.request_rollback("prod", "stamps-api", reason="P1: checkout broken", actor="carol")
    server = ApiServer(ApiContext(app.cfg, app.store, app.clock, app.engine))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            path = f"/v1/incidents/{incident.id}/evidence.png"
            viewer = {"Authorization": f"Bearer {VIEWER}"}
            answer = http.get(path, headers=viewer)
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
            assert answer.content == evidence_png(app.store, incident.id)
            assert Image.open(io.BytesIO(answer.content)).size == SIZE

            refused = http.get(path)
            assert refused.status_code == 401 and "bearer token" in refused.json()["error"]

            none = http.get(f"/v1/incidents/{manual}/evidence.png", headers=viewer)
            assert none.status_code == 404 and none.headers["content-type"] == "application/json"
            assert none.json() == {
                "error": f"incident {manual}: not decided by a watch (trigger 'manual'): "
                "there are no signal paths to draw",
                "field": "path.incident_id",
            }
            unknown = http.get("/v1/incidents/999/evidence.png", headers=viewer)
            assert unknown.status_code == 404 and "no such incident" in unknown.json()["error"]
    finally:
        server.stop()
    # a human's rollback is no watch's decision: no picture, and no link to one
    assert not any(
        link.text == "Evidence picture"
        for e in app.store.decisions(incident_id=manual)
        if (notice := render(app.cfg, app.store, e, app.clock.now())) is not None
        for link in notice.links
    )
