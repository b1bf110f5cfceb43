"""What can be checked of the container here (no Docker engine on this machine): the image's install
step works from exactly the files the Dockerfile copies, and the image runs the daemon as a
non-root user with the configuration at the mounted path."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
    copied = re.findall(r"^COPY\s+(.+?)\s+\S+\s*$", dockerfile(), re.M)
    context = tmp_path / "context"
    context.mkdir()
    for line in copied:
        for name in line.split():
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, context / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(src, context / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("rollback_watchdog-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "watchdog/cli.py",
        "watchdog/demo/demo.yaml",
        "watchdog/migrations/env.py",
        "watchdog/migrations/versions/0001_initial_schema.py",
        "detectors/compare.py",
        "actions/github.py",
    ):
        assert needed in names, needed
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "rollback-watchdog = watchdog.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
