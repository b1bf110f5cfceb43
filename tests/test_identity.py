"""`watchdog` is also the import name of a filesystem-events package: make sure ours is imported."""

import importlib.metadata
from pathlib import Path

import watchdog


def test_import_watchdog_is_this_project() -> None:
    assert watchdog.PROJECT == "rollback-watchdog"
    assert Path(watchdog.__file__).resolve().parent == Path(__file__).resolve().parents[1] / "watchdog"


def test_filesystem_watchdog_is_not_installed() -> None:
    try:
        dist = importlib.metadata.distribution("watchdog")
    except importlib.metadata.PackageNotFoundError:
        return
    raise AssertionError(
        f"the filesystem-events package 'watchdog' {dist.version} is installed and would "
        "shadow or clash with ours: remove whatever depends on it"
    )
