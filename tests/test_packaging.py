"""What can be checked of the container here (no Docker engine on this machine): the image's install
step works from exactly the files the Dockerfile copies, and the image runs the daemon as a
non-root user with the configuration at the mounted path."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.wheels import ROOT, build_wheel, image_context, offline_wheels

pytestmark = pytest.mark.slow


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_the_image_runs_the_daemon_as_a_non_root_user_on_the_mounted_config() -> None:
    text = dockerfile()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["rollback-watchdog"\]', text, re.M)
    assert re.search(r'^CMD \["run", "-c", "/etc/rollback-watchdog/config.yaml"', text, re.M)


def test_the_files_the_image_copies_build_a_complete_package(tmp_path: Path) -> None:
    wheels = offline_wheels()
    context = image_context(tmp_path / "context")
    wheel = build_wheel(context, tmp_path / "dist", "--no-index", "--find-links", str(wheels))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "rollback_watchdog_launcher.py",
        "watchdog/cli.py",
        "watchdog/demo/demo.yaml",
        "watchdog/migrations/env.py",
        "watchdog/migrations/versions/0001_initial_schema.py",
        "detectors/compare.py",
        "actions/github.py",
    ):
        assert needed in names, needed
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    script = "rollback-watchdog = rollback_watchdog_launcher:main"
    assert script in zipfile.ZipFile(wheel).read(entry_points).decode()
