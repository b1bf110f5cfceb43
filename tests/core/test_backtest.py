"""Backtests: scenarios backfilled into a real Prometheus decide as their replay does.

Scenarios from the benchmark generator are exported with ``rollback-watchdog scenario export``
(moved to the last days, a label per scenario), loaded with promtool's backfill into Debian's
Prometheus, and ``rollback-watchdog backtest`` watches each deploy again through it; ``bench``'s
replay of the same scenario directories must reach the same decision, on the same signal, within
one tick.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.generate import generate_one, scenario_rng
from tests.fixtures.prometheus import run_prometheus
from watchdog.bench import bench_config, run_watchdog
from watchdog.cli import main
from watchdog.openmetrics import export_scenario
from watchdog.sources.replay import ReplaySource
from watchdog.store import Store

#: (family, index): a regression the watchdog catches, a latency regression, a healthy deploy.
PICKS = (("err_step", 3), ("lat_shift", 2), ("aa_basic", 1))
SEED = 3
SPACING_S = 4 * 3600.0  # each scenario in its own stretch of Prometheus's history


def _config(tmp: Path, url: str, sources: list[tuple[str, ReplaySource]]) -> Path:
    """One service per scenario, each selecting its own series by the exported label, with the
    signals and policy ``bench`` gives that scenario, reading Prometheus."""
    services: list[dict[str, Any]] = []
    policy: dict[str, Any] = {}
    for name, src in sources:
        cfg = bench_config(src)
        svc = cfg.services[0].model_dump(mode="json", exclude_none=True)
        svc["match"] = {"backtest": name}
        services.append(svc)
        policy = cfg.environments["prod"].model_dump(mode="json", exclude_none=True)
        tick_s, lookback_s = cfg.tick_s, cfg.source.lookback_s
    doc = {
        "version": 1,
        "sandbox": True,
        "tick_s": tick_s,
        "services": services,
        "environments": {"prod": policy},
        "source": {"kind": "prometheus", "prometheus": {"url": url}, "lookback_s": lookback_s},
        "github": {"repo": "acme/stamps", "token": "${WD_BACKTEST_TOKEN:-unused}"},
        "store": {"url": f"sqlite:///{tmp / 'unused.db'}"},
    }
    path = tmp / "watchdog.yaml"
    path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
    return path


#: Where the backfilled history starts (a whole hour, 2025-11-24), and the backtest window's end.
HISTORY_START = 1_764_000_000
UNTIL = str(HISTORY_START + 10 * 86400)


@pytest.mark.slow
def test_backtest_through_prometheus_decides_as_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "scenarios"
    dirs = [generate_one(corpus, family, scenario_rng(SEED, i), i) for family, i in PICKS]
    replayed = {d.name: run_watchdog(ReplaySource(d), Store.open("sqlite://")) for d in dirs}
    assert replayed["err_step-00003"]["decision"] == "rollback"  # the corpus still has both kinds
    assert replayed["aa_basic-00001"]["decision"] == "promote"

    base = HISTORY_START  # a fixed past hour: Prometheus keeps it (100y retention), --until frames it
    texts, deploys, shifts = [], [], {}
    for k, d in enumerate(dirs):
        out = tmp_path / f"{d.name}.om"
        argv = ["scenario", "export", "--scenario", str(d), "--out", str(out)]
        argv += ["--start", str(base + k * SPACING_S), "--label", f"backtest={d.name}"]
        assert main(argv) == 0
        done = export_scenario(d, start=base + k * SPACING_S)
        shifts[d.name] = done.shift_s
        texts.append(out.read_text())
        truth = json.loads((d / "truth.json").read_text())
        deploys.append(
            {
                "service": bench_config(ReplaySource(d)).services[0].name,
                "tag": done.scenario.release_to,
                "previous": done.scenario.release_from,
                "deployed_at": done.scenario.deploy_at + done.shift_s,
                "outcome": "rolled_back" if truth["regression"] else "kept",
            }
        )
    for text in texts:
        assert text.startswith("# TYPE ") and text.endswith("# EOF\n")
    assert "# TYPE http_requests counter" in texts[0]
    assert "# TYPE http_request_duration_seconds histogram" in texts[0]
    # one exposition for the fixture's backfill: each file's families, without the inner ends
    history = "".join(t.removesuffix("# EOF\n") for t in texts) + "# EOF\n"
    deploys_file = tmp_path / "deploys.json"
    deploys_file.write_text(json.dumps(deploys))

    with run_prometheus([], openmetrics=history) as prom:
        cfg = _config(tmp_path, prom.url, [(d.name, ReplaySource(d)) for d in dirs])
        capsys.readouterr()
        code = main(
            [
                *("backtest", "-c", str(cfg), "--env", "prod", "--since", "30d", "--until", UNTIL),
                *("--deploys", str(deploys_file), "--json"),
            ]
        )
        out = capsys.readouterr().out
        table_code = main(
            ["backtest", "-c", str(cfg), "--env", "prod", "--until", UNTIL, "--deploys", str(deploys_file)]
        )
        table = capsys.readouterr().out
    assert code == 0 and table_code == 0
    report = json.loads(out)
    assert report["totals"]["deploys"] == len(dirs)
    by_service = {r["service"]: r for r in report["deploys"]}
    for d in dirs:
        want = replayed[d.name]
        got = by_service[bench_config(ReplaySource(d)).services[0].name]
        assert got["decision"] == want["decision"], (d.name, got, want)
        assert got["signal"] == want["signal"], d.name
        if want["decided_at"] is None:
            assert got["decided_at"] is None
        else:
            assert abs(got["decided_at"] - shifts[d.name] - want["decided_at"]) <= 15.0, d.name
    bad = by_service["err-step-00003"]
    assert bad["outcome"] == "rolled_back" and bad["verdict"] == "agrees"
    healthy = by_service["aa-basic-00001"]
    assert healthy["decision"] == "promote" and healthy["verdict"] == "agrees"
    line = next(x for x in table.splitlines() if "err-step-00003" in x)
    assert "rollback" in line and "http_5xx" in line and "rolled_back" in line and "agrees" in line
    assert f"{len(dirs)} deploys; would: " in table


# --------------------------------------------------------------------------- bad input


def _plain_config(tmp_path: Path) -> Path:
    path = tmp_path / "watchdog.yaml"
    path.write_text(
        "version: 1\n"
        "sandbox: true\n"
        "services:\n"
        "  - name: stamps-api\n"
        "    signals:\n"
        "      - {name: http_5xx, kind: ratio, bad: {metric: http_requests_total, match: {code: '=~5..'}},"
        " total: {metric: http_requests_total}}\n"
        "source: {kind: prometheus, prometheus: {url: 'http://127.0.0.1:9'}}\n"
        "github: {repo: acme/stamps, token: '${WD_BACKTEST_TOKEN:-unused}'}\n"
        f"store: {{url: 'sqlite:///{tmp_path / 'unused.db'}'}}\n"
    )
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def test_backtest_refuses_an_unknown_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _plain_config(tmp_path)
    code, err = _run(["backtest", "-c", str(cfg), "--env", "qa", "--deploys", "/nonexistent"], capsys)
    assert code == 2
    assert "--env qa" in err and "dev, stage, prod" in err
    assert not (tmp_path / "unused.db").exists()


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (None, "file missing"),
        ('[{"service": "stamps-api", "tag": "v1",\n "deployed_at": }]', ":2: invalid JSON"),
        ('{"service": "stamps-api"}', "expected a JSON list"),
        ('[{"service": "stamps-api", "tag": "v1", "deployed_at": "yesterday"}]', "[0].deployed_at"),
        (
            '[{"service": "stamps-api", "tag": "v1", "deployed_at": 1764300000, "outcome": "bad"}]',
            "[0].outcome",
        ),
        ('[{"service": "nope", "tag": "v1", "deployed_at": 1764300000}]', "[0].service"),
        ('[{"service": "stamps-api", "tag": "v 1", "deployed_at": 1764300000}]', "[0].tag"),
        ('[{"service": "stamps-api", "tag": "v1", "deployed": 1764300000}]', "[0].deployed"),
    ],
)
def test_backtest_names_the_file_and_field_of_a_bad_deploys_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, where: str
) -> None:
    cfg = _plain_config(tmp_path)
    deploys = tmp_path / "deploys.json"
    if content is not None:
        deploys.write_text(content)
    code, err = _run(["backtest", "-c", str(cfg), "--env", "prod", "--deploys", str(deploys)], capsys)
    assert code == 2, err
    assert f"error: {deploys}" in err and where in err, err


def test_scenario_export_refuses_a_missing_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(
        ["scenario", "export", "--scenario", str(tmp_path / "none"), "--out", str(tmp_path / "x.om")], capsys
    )
    assert code == 2
    assert f"{tmp_path / 'none' / 'meta.json'}: file missing" in err
    assert not (tmp_path / "x.om").exists()
