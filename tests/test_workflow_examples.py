"""The deploy workflow example and the announce action a team copies: they pass actionlint and
GitHub's JSON Schemas, the workflow lets the watchdog find the runs it dispatches, and the
action's script, run as GitHub runs it, queues the deploy on a real API and says why when refused.

The tools come from the test extra (actionlint, check-jsonschema) and from Debian (.ci/
install-system-deps: jq, curl, shellcheck); a missing one fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from actions.workflow_check import run_name_line, workflow_problems
from tests.fixtures.deploy_api import SERVICE, TOKENS, DeployApi, deploy_api

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "docs" / "examples" / "deploy.yml"
ACTION = ROOT / ".github" / "actions" / "announce" / "action.yml"
DISPATCH_INPUTS = ["environment", "tag", "correlation_id", "migrate_down"]


def tool(name: str) -> str:
    """A tool beside this Python (the test extra's) or on PATH (Debian's); missing fails the test."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]' and .ci/install-system-deps install it"
    return found


def load(path: Path) -> dict[str, Any]:
    doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


# --------------------------------------------------------------------------- the workflow


def test_the_workflow_lets_the_watchdog_dispatch_it_and_find_its_run() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert workflow_problems(text, str(WORKFLOW), "correlation_id", DISPATCH_INPUTS) == []
    assert run_name_line("correlation_id") in text.splitlines()
    inputs = load(WORKFLOW)["on"]["workflow_dispatch"]["inputs"]  # YAML 1.2: `on` is a string
    assert inputs["environment"]["options"] == ["dev", "stage", "prod"]
    assert [name for name, spec in inputs.items() if spec.get("required")] == ["environment", "tag"]


def test_the_workflow_announces_with_the_action_and_its_secret() -> None:
    (job,) = load(WORKFLOW)["jobs"].values()
    assert job["environment"] == "${{ inputs.environment }}"
    assert "${{ inputs.environment }}" in job["concurrency"]["group"]
    announce = job["steps"][-1]
    assert announce["uses"] == "./.github/actions/announce"
    assert announce["with"]["api-url"] == "${{ vars.ROLLBACK_WATCHDOG_URL }}"
    assert announce["with"]["token"] == "${{ secrets.ROLLBACK_WATCHDOG_TOKEN }}"
    assert load(WORKFLOW)["permissions"] == {"contents": "read"}


def project(tmp_path: Path, workflow: str) -> Path:
    """A repository laid out as the team's: the workflow and the action it uses, found by path."""
    (tmp_path / ".git").mkdir(
        parents=True
    )  # actionlint resolves ./.github/actions/... from the repository root
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "deploy.yml").write_text(workflow)
    shutil.copytree(ACTION.parent, tmp_path / ".github" / "actions" / "announce")
    return tmp_path


def actionlint(root: Path) -> subprocess.CompletedProcess[str]:
    command = [tool("actionlint"), "-shellcheck", tool("shellcheck"), "-pyflakes=", "-oneline", "-no-color"]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)


def test_the_workflow_and_the_action_it_uses_pass_actionlint(tmp_path: Path) -> None:
    checked = actionlint(project(tmp_path / "good", WORKFLOW.read_text()))
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    # actionlint did read the action: a misspelt input of it is found
    misspelt = WORKFLOW.read_text().replace("service: stamps-api", "servce: stamps-api")
    bad = actionlint(project(tmp_path / "bad", misspelt))
    assert bad.returncode == 1 and 'input "servce" is not defined in action' in bad.stdout, bad.stdout


@pytest.mark.parametrize(
    ("path", "schema"),
    [(WORKFLOW, "vendor.github-workflows"), (ACTION, "vendor.github-actions")],
    ids=["workflow", "action"],
)
def test_github_s_json_schema_accepts_it(path: Path, schema: str) -> None:
    # the schemas are vendored in check-jsonschema: nothing is downloaded
    out = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "ok -- validation done" in out.stdout, out.stdout + out.stderr


# --------------------------------------------------------------------------- the action's script


def the_step() -> dict[str, Any]:
    runs = load(ACTION)["runs"]
    assert runs["using"] == "composite"
    (step,) = runs["steps"]
    assert step["shell"] == "bash"
    return step  # type: ignore[no-any-return]


def test_the_action_s_script_reads_every_input_from_its_environment_only() -> None:
    """No ``${{ }}`` in the script (GitHub would paste the value into its text), each input mapped once."""
    step = the_step()
    assert "${{" not in step["run"]
    mapped = {
        var: re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", value) for var, value in step["env"].items()
    }
    assert all(mapped.values()), step["env"]
    assert sorted(m.group(1) for m in mapped.values() if m) == sorted(load(ACTION)["inputs"])


def test_the_action_s_script_passes_shellcheck(tmp_path: Path) -> None:
    script = tmp_path / "announce.sh"
    script.write_text(the_step()["run"])
    out = subprocess.run(
        [tool("shellcheck"), "--shell=bash", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout


@pytest.fixture
def api(tmp_path: Path) -> Iterator[DeployApi]:
    with deploy_api(tmp_path) as live:
        yield live


def run_action(tmp_path: Path, **inputs: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """The step as a runner runs it (``bash --noprofile --norc -eo pipefail``), its inputs in the
    environment variables its ``env:`` maps them to, defaults for the rest; also GITHUB_OUTPUT."""
    tool("jq"), tool("curl")
    step, declared = the_step(), load(ACTION)["inputs"]
    env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(tmp_path / "github_output")}
    for var, value in step["env"].items():
        name = value.removeprefix("${{ inputs.").removesuffix(" }}")
        env[var] = inputs.pop(name.replace("-", "_"), declared[name].get("default", ""))
    assert not inputs, f"the action has no inputs {sorted(inputs)}"
    script = tmp_path / "announce.sh"
    script.write_text(step["run"])
    (tmp_path / "github_output").write_text("")
    out = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for token in TOKENS.values():
        assert token not in out.stdout + out.stderr
    return out, (tmp_path / "github_output").read_text()


def test_the_action_queues_the_deploy_with_every_field(api: DeployApi, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({"migrations": [{"id": 7, "reversible": True}, {"id": "0008", "reversible": False}]})
    )
    build_url = "https://github.com/acme/stamps/actions/runs/9100000042"
    out, outputs = run_action(
        tmp_path,
        api_url=api.url + "/",
        token=TOKENS["DEPLOYER"],
        environment="prod",
        service=SERVICE,
        tag="v1.4.0",
        sha="4" * 40,
        run_id="9100000042",
        build_url=build_url,
        migrations_file=str(manifest),
    )
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    (event,) = api.store.pending_deploy_events()
    assert out.stdout == (
        f"announced deploy of v1.4.0 to prod (event {event.id}); the watchdog watches it from its next tick\n"
    )
    assert outputs == f"deploy-event={event.id}\n"
    got = (event.env, event.service, event.tag, event.sha, event.run_id, event.build_url, event.actor)
    assert got == ("prod", SERVICE, "v1.4.0", "4" * 40, 9100000042, build_url, "api:ci")
    assert event.migrations == [{"id": "7", "reversible": True}, {"id": "0008", "reversible": False}]


def test_a_viewer_token_fails_the_step_with_the_api_s_reason(api: DeployApi, tmp_path: Path) -> None:
    out, outputs = run_action(
        tmp_path, api_url=api.url, token=TOKENS["VIEWER"], environment="prod", service=SERVICE, tag="v1.4.0"
    )
    assert out.returncode == 1 and out.stdout == "" and outputs == ""
    (annotation,) = [line for line in out.stderr.splitlines() if line.startswith("::error")]
    assert annotation.startswith(
        "::error title=rollback watchdog::the watchdog API refused the deploy (HTTP 403): "
    )
    assert "deployer" in annotation
    assert api.store.pending_deploy_events() == []


def test_a_field_the_api_refuses_is_named_and_nothing_is_queued(api: DeployApi, tmp_path: Path) -> None:
    out, _ = run_action(
        tmp_path,
        api_url=api.url,
        token=TOKENS["DEPLOYER"],
        environment="prod",
        service="nope",
        tag="v1.4.0",
    )
    assert out.returncode == 1
    assert (
        "::error title=rollback watchdog::the watchdog API refused the deploy (HTTP 422): service 'nope': "
        "no service named 'nope'"
    ) in out.stderr
    assert "(field body.service)" in out.stderr
    assert api.store.pending_deploy_events() == []


def test_an_empty_token_fails_the_step_before_anything_is_sent(api: DeployApi, tmp_path: Path) -> None:
    out, _ = run_action(tmp_path, api_url=api.url, token="", environment="prod", service=SERVICE, tag="v1")
    assert out.returncode == 1
    assert out.stderr == "::error title=rollback watchdog::the token input is empty\n"
    assert api.store.pending_deploy_events() == []
