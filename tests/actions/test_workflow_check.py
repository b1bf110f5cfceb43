"""The deploy workflow is checked before a rollback needs it: it declares every input a dispatch
sends, and its run-name carries the correlation id (else a run GitHub does not name is never found).
Through the contents API of the GitHub emulator (every exchange checked against GitHub's spec),
in the daemon's start, and in ``validate --workflow``."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from actions.github import DeployWorkflow
from actions.workflow_check import run_name_line, workflow_problems
from tests.fixtures.github import TOKEN
from watchdog.app import App
from watchdog.cli import main
from watchdog.clock import RealClock
from watchdog.config import parse_config
from watchdog.emulator.github import GitHubEmulator, WorkflowInput, deploy_workflow, workflow_yaml
from watchdog.observability import configure_logging

INPUTS = ["environment", "tag", "correlation_id", "migrate_down"]
GOOD = """\
name: deploy
run-name: deploy ${{ inputs.environment }} ${{ github.ref_name }} [${{ github.event.inputs.correlation_id }}]
on:
  workflow_dispatch:
    inputs:
      environment: {type: choice, options: [dev, stage, prod], required: true}
      tag: {type: string}
      correlation_id: {type: string, default: ""}
      migrate_down: {type: string, default: ""}
jobs:
  deploy: {runs-on: ubuntu-latest, steps: [{run: ./deploy.sh}]}
"""


def test_a_workflow_that_declares_the_inputs_and_names_its_runs_passes() -> None:
    assert workflow_problems(GOOD, "deploy.yml", "correlation_id", INPUTS) == []
    assert workflow_problems(workflow_yaml(deploy_workflow()), "deploy.yml", "correlation_id", INPUTS) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t.replace("run-name: deploy ${{ inputs.environment }}", "# no run-name").replace(
                " ${{ github.ref_name }} [${{ github.event.inputs.correlation_id }}]", ""
            ),
            f"it has no run-name carrying the correlation_id input, so a dispatched run cannot be found "
            f"again when GitHub's answer does not name it; add: {run_name_line('correlation_id')}",
        ),
        (
            lambda t: t.replace("github.event.inputs.correlation_id", "inputs.correlation_idx"),
            "its run-name 'deploy ${{ inputs.environment }} ${{ github.ref_name }} "
            "[${{ inputs.correlation_idx }}]' does not carry the correlation_id input",
        ),
        (
            lambda t: t.replace('      correlation_id: {type: string, default: ""}\n', ""),
            "on.workflow_dispatch.inputs does not declare correlation_id (GitHub refuses a dispatch "
            "with undeclared inputs); add under on.workflow_dispatch.inputs: "
            'correlation_id: {type: string, default: ""}',
        ),
        (
            lambda t: t.replace("  workflow_dispatch:\n    inputs:", "  push:\n    x:"),
            "the workflow has no workflow_dispatch trigger",
        ),
        (
            lambda t: "on: [workflow_dispatch]\n",
            "on.workflow_dispatch.inputs does not declare correlation_id, ",
        ),
        (lambda t: "on: {\n", "not valid YAML"),
        (lambda t: "- a list\n", "not a workflow (the file is not a YAML mapping)"),
    ],
)
def test_what_is_missing_is_named_with_what_to_add(change: Callable[[str], str], expected: str) -> None:
    problems = workflow_problems(change(GOOD), "deploy.yml", "correlation_id", INPUTS)
    assert any(p.startswith("deploy.yml: ") and expected in p for p in problems), problems


def test_every_input_a_dispatch_sends_must_be_declared() -> None:
    (problem,) = workflow_problems(GOOD, "deploy.yml", "correlation_id", [*INPUTS, "down_migrations"])
    assert "does not declare down_migrations" in problem


def test_the_deployer_reads_the_workflow_through_the_contents_api(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> None:
    good = make_github_emulator()
    deployer = DeployWorkflow(good.url, "acme/stamps", "deploy.yml", TOKEN, RealClock())
    assert deployer.workflow_problems("correlation_id", INPUTS) == []
    assert good.requests("GET", r"/contents/\.github/workflows/deploy\.yml$")
    lacking = dataclasses.replace(
        deploy_workflow(),
        run_name="deploy {environment}",
        inputs={"environment": WorkflowInput(required=True)},
    )
    bad = make_github_emulator(workflows=[lacking])
    deployer = DeployWorkflow(bad.url, "acme/stamps", "deploy.yml", TOKEN, RealClock())
    problems = deployer.workflow_problems("correlation_id", INPUTS)
    assert [p.split(": ", 1)[0] for p in problems] == ["acme/stamps/.github/workflows/deploy.yml@main"] * 2
    assert (
        "does not declare correlation_id, tag, migrate_down" in problems[0]
        and run_name_line("correlation_id") in problems[1]
    )


CONFIG = f"""\
version: 1
sandbox: true
source: {{kind: scrape, scrape: {{targets: [{{url: "http://127.0.0.1:9/metrics", labels: {{job: api}}}}]}}}}
github: {{api_url: "@GH@", repo: acme/stamps, token: "${{WD_TEST_TOKEN:-{TOKEN}}}", request_interval_s: 0}}
store: {{url: "@STORE@"}}
environments: {{prod: {{approval: none}}}}
services:
  - name: api
    match: {{job: api}}
    signals:
      - name: http_5xx
        kind: ratio
        bad: {{metric: r, match: {{code: "=~5.."}}}}
        total: {{metric: r}}
        slo: 0.01
"""


def test_the_daemon_says_at_start_what_the_workflow_lacks(
    tmp_path: Path, make_github_emulator: Callable[..., GitHubEmulator], capsys: pytest.CaptureFixture[str]
) -> None:
    gh = make_github_emulator(workflows=[dataclasses.replace(deploy_workflow(), run_name=None)])
    text = CONFIG.replace("@GH@", gh.url).replace("@STORE@", f"sqlite:///{tmp_path / 'wd.db'}")
    app = App.build(parse_config(text, "w.yaml"), RealClock())
    configure_logging("json", "info", stream=sys.stdout)
    try:
        (problem,) = app.check_workflow()
    finally:
        app.close()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (logged,) = [e for e in lines if e["event"] == "deploy workflow check"]
    assert logged["level"] == "error" and logged["problem"] == problem
    assert run_name_line("correlation_id") in problem


def test_the_daemon_start_check_survives_github_being_down(
    tmp_path: Path, make_github_emulator: Callable[..., GitHubEmulator], capsys: pytest.CaptureFixture[str]
) -> None:
    gh = make_github_emulator()
    gh.inject_error("GET", r"/actions/workflows/", status=503, times=5)
    text = CONFIG.replace("@GH@", gh.url).replace("@STORE@", f"sqlite:///{tmp_path / 'wd.db'}")
    app = App.build(parse_config(text, "w.yaml"), RealClock())
    configure_logging("json", "info", stream=sys.stdout)
    try:
        assert app.check_workflow() == []
    finally:
        app.close()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["level"] for e in lines if e["event"] == "cannot check the deploy workflow"] == ["warning"]


def test_validate_checks_a_workflow_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "watchdog.yaml"
    config.write_text(CONFIG.replace("@GH@", "http://127.0.0.1:9").replace("@STORE@", "sqlite:///wd.db"))
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("github.event.inputs.correlation_id", "github.sha"))
    assert main(["validate", str(config), "--workflow", str(good)]) == 0
    assert capsys.readouterr().err == ""
    assert main(["validate", str(config), "--workflow", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: its run-name ") and run_name_line("correlation_id") in err
    assert main(["validate", str(config), "--workflow", str(tmp_path / "none.yml")]) == 2
    assert "none.yml: cannot be read" in capsys.readouterr().err
