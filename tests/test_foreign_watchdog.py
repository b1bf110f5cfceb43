"""The console script refuses an environment where the filesystem-events package ``watchdog`` from
PyPI shares our import name, whichever of the two pip installed last, and runs where ours is alone.

Each case is a scratch venv in which pip installs our wheel (built from what the image copies) and
the pinned foreign wheel for real. Our third-party dependencies (numpy, SQLAlchemy, …) come from
the test's own environment through one ``.pth`` line, after the venv's own site-packages, so that
nothing has to be downloaded or built again; that environment never has the foreign package
(``tests/test_identity.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

import rollback_watchdog_launcher
from tests.fixtures.wheels import PINS, build_wheel, image_context, offline_wheels

FOREIGN = next(line for line in PINS.read_text().splitlines() if line.startswith("watchdog=="))
VERSION = FOREIGN.removeprefix("watchdog==")


@dataclass(frozen=True)
class Venv:
    root: Path
    wheels: Path  # where pip finds our wheel and the pinned ones, offline

    @property
    def site_packages(self) -> Path:
        return next((self.root / "lib").glob("python3*/site-packages"))

    def install(self, *requirements: str) -> None:
        """pip installs into the venv; ``--ignore-installed`` because it also sees the test
        environment's (editable) rollback-watchdog through the ``.pth`` line, and must leave it be."""
        pip = [sys.executable, "-m", "pip", "--python", str(self.root / "bin" / "python"), "install", "-q"]
        offline = ["--no-index", "--find-links", str(self.wheels)]
        out = subprocess.run(
            [*pip, "--no-deps", "--ignore-installed", *offline, *requirements],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        return subprocess.run(
            [str(self.root / "bin" / "rollback-watchdog"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=self.root,
        )


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with our wheel and the pinned foreign one."""
    cache = offline_wheels()
    tmp = tmp_path_factory.mktemp("wheels")
    ours = build_wheel(image_context(tmp / "context"), tmp / "dist", "--no-index", "--find-links", str(cache))
    for wheel in [ours, *cache.glob("*.whl")]:
        shutil.copy(wheel, tmp / wheel.name)
    return tmp


@pytest.fixture
def venv(tmp_path: Path, wheels: Path) -> Venv:
    root = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=60)
    v = Venv(root, wheels)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (v.site_packages / "rollback_watchdog_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return v


def assert_refused(out: subprocess.CompletedProcess[str], *where: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert out.stdout == ""
    assert "refusing to start" in out.stderr
    assert "pipx install rollback-watchdog" in out.stderr
    assert "python -m venv" in out.stderr
    assert "container image" in out.stderr
    for text in where:
        assert text in out.stderr, (text, out.stderr)


def test_this_checkout_is_ours_alone() -> None:
    assert rollback_watchdog_launcher.problems() == []


@pytest.mark.slow
def test_ours_alone_runs_and_the_foreign_package_installed_over_it_is_refused(venv: Venv) -> None:
    venv.install("rollback-watchdog")
    out = venv.run("--version")
    assert (out.returncode, out.stdout.strip()) == (0, "rollback-watchdog 0.1.0"), out.stderr

    venv.install(FOREIGN)  # pip writes its watchdog/__init__.py over ours, without a word
    init = venv.site_packages / "watchdog" / "__init__.py"
    assert_refused(
        venv.run("--version"),
        f"the distribution `watchdog` {VERSION} (filesystem events) is installed in {venv.site_packages}",
        f"`import watchdog` loads {init}, which is not rollback-watchdog's",
        f"{venv.site_packages / 'watchdog'} holds the filesystem-events package's observers, tricks",
    )


@pytest.mark.slow
def test_the_foreign_package_that_replaced_ours_is_refused(venv: Venv) -> None:
    venv.install("rollback-watchdog")
    shutil.rmtree(venv.site_packages / "watchdog")
    venv.install(FOREIGN)
    assert not (venv.site_packages / "watchdog" / "cli.py").exists()
    assert_refused(
        venv.run("--version"),
        f"the distribution `watchdog` {VERSION} (filesystem events) is installed in {venv.site_packages}",
        f"`import watchdog` loads {venv.site_packages / 'watchdog' / '__init__.py'}",
    )


@pytest.mark.slow
def test_ours_installed_over_the_foreign_package_is_refused_even_without_its_metadata(venv: Venv) -> None:
    venv.install(FOREIGN)
    venv.install("rollback-watchdog")  # our __init__.py wins, their modules stay
    assert_refused(venv.run("--version"), f"the distribution `watchdog` {VERSION}")

    shutil.rmtree(next(venv.site_packages.glob("watchdog-*.dist-info")))
    out = venv.run("--version")
    assert_refused(out, f"{venv.site_packages / 'watchdog'} holds the filesystem-events package's observers")
    assert "distribution" not in out.stderr and "`import watchdog` loads" not in out.stderr
