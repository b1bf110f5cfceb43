"""The overrides through the CLI: the same levers as the API, logged with --actor and --reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchdog.cli import main
from watchdog.phases import DecisionKind, WatchKind, WatchPhase
from watchdog.store import Store, Watch

CONFIG = """
version: 1
source:
  kind: scrape
  scrape: {targets: [{url: "http://127.0.0.1:9/metrics"}]}
github: {api_url: "http://127.0.0.1:9", repo: acme/stamps, token: "${GH_TOKEN}"}
store: {url: "sqlite:///%s"}
environments:
  prod: {approval: none, watch_s: 600}
services:
  - name: stamps-api
    signals:
      - {name: healthcheck, kind: probe, probe: {metric: probe_success}, k: 2, n: 3}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "watchdog.yaml"
    path.write_text(CONFIG % (tmp_path / "wd.db"))
    monkeypatch.setenv("GH_TOKEN", "ghp_cli_overrides_000000000000000000000")
    return str(path)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_pause_resume_promote_and_extend_from_the_cli(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("-c", config, "--actor", "alice")
    assert (
        cli(
            capsys,
            "pin",
            *common,
            "--env",
            "prod",
            "--service",
            "stamps-api",
            "--tag",
            "v1",
            "--reason",
            "seed",
        )[0]
        == 0
    )
    code, out = cli(capsys, "pause", *common, "--env", "prod", "--for", "30m", "--reason", "maintenance")
    assert code == 0 and "automation for prod paused until" in out
    code, out = cli(capsys, "pause", *common, "--env", "prod", "--for", "8d", "--reason", "too long")
    assert code == 2 and "--for-s 691200.0: a pause lasts more than 0 s and at most 604800 s" in out
    with pytest.raises(SystemExit) as exit_:  # argparse's own refusal: exit 2, the value named
        main(["pause", *common, "--env", "prod", "--for", "soon", "--reason", "r"])
    assert exit_.value.code == 2
    assert "a positive duration such as 90s, 10m, 1h or 2d" in capsys.readouterr().err
    assert cli(capsys, "resume", *common, "--env", "prod", "--reason", "done")[0] == 0
    code, out = cli(capsys, "resume", *common, "--env", "prod", "--reason", "again")
    assert code == 2 and "automation for prod is not paused" in out

    code, out = cli(capsys, "promote", *common, "--env", "prod", "--reason", "r")
    assert code == 2 and "no watch of stamps-api in prod is running" in out
    assert cli(capsys, "announce", *common, "--env", "prod", "--service", "stamps-api", "--tag", "v2")[0] == 0
    store = Store.open(f"sqlite:///{Path(config).parent / 'wd.db'}")
    from watchdog.app import App  # the daemon's tick starts the watch from the announced deploy
    from watchdog.clock import RealClock
    from watchdog.config import load_config

    app = App.build(load_config(config), RealClock(), store=store)
    app.engine._consume_deploys(app.clock.now())
    code, out = cli(capsys, "extend", *common, "--env", "prod", "--by", "10m", "--reason", "quiet night")
    assert code == 0 and "now ends at" in out
    code, out = cli(capsys, "promote", *common, "--env", "prod", "--reason", "verified")
    assert code == 0 and "its release is pinned as stable" in out
    (watch,) = store.page(Watch, limit=5, kind=WatchKind.DEPLOY)
    assert watch.phase == WatchPhase.SUCCESSFUL and watch.ends_at - watch.started_at == 1200
    pinned = store.current_pin("prod", "stamps-api")
    assert pinned is not None and pinned.tag == "v2"
    kinds = [(e.kind, e.actor) for e in store.decisions()]
    for kind in (DecisionKind.PAUSE, DecisionKind.RESUME, DecisionKind.WATCH_EXTENDED, DecisionKind.PROMOTED):
        assert (kind, "alice") in kinds
    app.close()


def test_incident_levers_refuse_with_the_reason(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    common = ("-c", config, "--actor", "bob", "--reason", "r")
    assert (
        cli(
            capsys,
            "pin",
            "-c",
            config,
            "--env",
            "prod",
            "--service",
            "stamps-api",
            "--tag",
            "v1",
            "--reason",
            "s",
        )[0]
        == 0
    )
    code, out = cli(capsys, "veto", *common, "--incident", "999")
    assert code == 2 and "--incident 999: no such incident" in out
    assert (
        cli(capsys, "announce", "-c", config, "--env", "prod", "--service", "stamps-api", "--tag", "v2")[0]
        == 0
    )
    from watchdog.app import App
    from watchdog.clock import RealClock
    from watchdog.config import load_config

    app = App.build(load_config(config), RealClock())
    app.engine._consume_deploys(app.clock.now())
    assert (
        cli(capsys, "rollback", "-c", config, "--env", "prod", "--reason", "P1", "--actor", "carol")[0] == 0
    )
    (incident,) = app.store.open_incidents()
    code, out = cli(capsys, "veto", *common, "--incident", str(incident.id))
    assert code == 2 and "requested by carol: a human's rollback has no veto window" in out
    code, out = cli(capsys, "approve", *common, "--incident", str(incident.id))
    assert code == 2 and "not proposed: there is nothing to approve" in out
    code, out = cli(capsys, "acknowledge", *common, "--incident", str(incident.id))
    assert code == 2 and "not escalated: nothing to acknowledge" in out
    app.close()
