"""Start-up (issue 13): ``--version`` and ``--help`` answer at once, because they load none of
the heavy libraries; each command loads what it needs when it runs.

Each case runs the real entry point — the function ``pyproject.toml``'s ``[project.scripts]``
names, or ``python -m watchdog`` — in a fresh interpreter and looks at what it imported. No
timings here: ``sys.modules`` says the same on every machine.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest

import watchdog
from watchdog import bench, cli, config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "rollback-watchdog"
ENTRY_POINT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"][SCRIPT]

#: Top-level modules that cost tens to hundreds of milliseconds to import.
HEAVY = frozenset(
    {
        "alembic",
        "apscheduler",
        "fastapi",
        "github",
        "httpx",
        "jinja2",
        "matplotlib",
        "numpy",
        "pandas",
        "playwright",
        "prometheus_api_client",
        "prometheus_client",
        "pydantic",
        "pydantic_core",
        "requests",
        "ruamel",
        "scipy",
        "sentry_sdk",
        "slack_sdk",
        "sqlalchemy",
        "starlette",
        "structlog",
        "uvicorn",
    }
)

#: Runs the entry point as the console script does (``-m``: as ``python -m watchdog``) and, however
#: it exits, writes the names in ``sys.modules`` to a file: stdout and stderr are the command's.
PROBE = """\
import importlib, json, runpy, sys
target, out, *argv = sys.argv[1:]
sys.argv = ["rollback-watchdog", *argv]
code = 0
try:
    if target == "-m":
        runpy.run_module("watchdog", run_name="__main__", alter_sys=True)
    else:
        module, _, function = target.partition(":")
        code = getattr(importlib.import_module(module), function)()
except SystemExit as exc:
    code = exc.code
finally:
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
sys.exit(code)
"""


def start(tmp_path: Path, target: str, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The command's outcome and the top-level modules its interpreter had loaded at the end."""
    modules = tmp_path / "modules.json"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, target, str(modules), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    loaded = {name.partition(".")[0] for name in json.loads(modules.read_text())}
    return out, loaded


def subcommands() -> list[str]:
    (action,) = (a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def test_the_installed_script_runs_the_function_pyproject_names() -> None:
    (ep,) = importlib.metadata.entry_points(group="console_scripts", name=SCRIPT)
    assert ep.value == ENTRY_POINT  # else the environment's install is stale: pip install -e .


@pytest.mark.parametrize("target", [ENTRY_POINT, "-m"])
def test_version_loads_no_heavy_module(tmp_path: Path, target: str) -> None:
    out, loaded = start(tmp_path, target, "--version")
    assert (out.returncode, out.stdout, out.stderr) == (0, f"{SCRIPT} {watchdog.__version__}\n", "")
    assert loaded & HEAVY == set()


@pytest.mark.parametrize("target", [ENTRY_POINT, "-m"])
def test_help_lists_every_command_and_loads_no_heavy_module(tmp_path: Path, target: str) -> None:
    out, loaded = start(tmp_path, target, "--help")
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.startswith(f"usage: {SCRIPT} ")
    names = subcommands()
    assert {"validate", "run", "log", "announce", "rollback", "demo"} <= set(names)
    for name in names:
        assert name in out.stdout, name
    assert loaded & HEAVY == set()


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["log", "--help"], "rollback_decided"),  # --kind's choices: the decision kinds
        (["announce", "--help"], "--token-env"),
        (["quarantine", "lift", "--help"], "{dev,stage,prod}"),
        (["bench", "--help"], "kayenta"),
    ],
)
def test_a_commands_help_loads_no_heavy_module(tmp_path: Path, argv: list[str], shown: str) -> None:
    out, loaded = start(tmp_path, ENTRY_POINT, *argv)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.startswith(f"usage: {SCRIPT} {' '.join(argv[:-1])} ")
    assert shown in out.stdout
    assert loaded & HEAVY == set()


def test_bad_arguments_are_refused_as_before_without_loading_heavy_modules(tmp_path: Path) -> None:
    out, loaded = start(tmp_path, ENTRY_POINT, "rollback", "-c", "x.yaml", "--env", "qa", "--reason", "r")
    assert out.returncode == 2 and out.stdout == ""
    assert "argument --env: invalid choice: 'qa'" in out.stderr
    assert loaded & HEAVY == set()


def test_a_command_loads_what_it_needs(tmp_path: Path) -> None:
    """The probe sees imports: validate needs the configuration's models."""
    out, loaded = start(tmp_path, ENTRY_POINT, "validate", str(ROOT / "config" / "stamps.yaml"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: ")
    assert {"pydantic", "ruamel"} <= loaded
    assert loaded & {"scipy", "sqlalchemy", "alembic", "github"} == set()


def test_the_parsers_choices_are_the_models() -> None:
    assert typing.get_args(config.EnvName) == cli.ENVIRONMENTS
    assert bench.DETECTORS == cli.DETECTORS


def test_the_version_is_the_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert watchdog.__version__ == project["version"] == importlib.metadata.version(SCRIPT)
