"""The ``rollback-watchdog`` console script: make sure ``import watchdog`` is ours, then run it.

Our import package is called ``watchdog``, and so is the filesystem-events package on PyPI (a
dependency of many developer tools). pip installs either one's files over the other's without a
warning, so an environment that has both runs half of one and half of the other — or, when theirs
has replaced ours, has no ``watchdog.cli`` at all. That is why this check lives in a module with
a top-level name of its own. It refuses, with exit 2 and what it found, when

- a distribution named ``watchdog`` is installed anywhere on the path (``importlib.metadata``):
  even where ours still wins the import today, the next ``pip install`` decides which files stay;
- ``import watchdog`` fails, or loads a package without our marker ``watchdog.PROJECT``;
- our package's directory holds modules only the other package has (``observers``, …), as when
  its files were copied over ours without metadata.

``python -m watchdog`` skips the check; it is for a checkout, where ``watchdog`` is the source.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

PROJECT = "rollback-watchdog"
#: Exit code for a refused environment: 2, like ``watchdog.cli``'s bad input (it cannot be imported
#: from there: the check runs before ``watchdog`` is trusted).
EXIT_FOREIGN = 2
#: Names in the filesystem-events package's ``watchdog/`` that ours never uses; keep it so.
FOREIGN_NAMES = ("observers", "tricks", "watchmedo.py")

ADVICE = """\
rollback-watchdog uses the import name `watchdog`, like the filesystem-events package `watchdog`
from PyPI, and pip lets one overwrite the other's files without a warning. Install
rollback-watchdog in an environment of its own:
  pipx install rollback-watchdog              (from a checkout: pipx install .)
  python -m venv /opt/rollback-watchdog && /opt/rollback-watchdog/bin/pip install rollback-watchdog
  or run the container image (docker build -t rollback-watchdog .)"""


def problems() -> list[str]:
    """What is wrong with ``watchdog`` in this environment, one finding a line; empty when it is ours."""
    found = []
    try:
        dist = importlib.metadata.distribution("watchdog")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        found.append(
            f"the distribution `watchdog` {dist.version} (filesystem events) is installed in "
            f"{dist.locate_file('')}"
        )
    try:
        import watchdog
    except ImportError as exc:
        found.append(f"`import watchdog` fails: {exc}")
        return found
    dirs = [Path(d) for d in getattr(watchdog, "__path__", ())]
    where = getattr(watchdog, "__file__", None) or ", ".join(map(str, dirs))
    if getattr(watchdog, "PROJECT", None) != PROJECT:
        found.append(f"`import watchdog` loads {where}, which is not rollback-watchdog's")
    for d in dirs:
        foreign = [name for name in FOREIGN_NAMES if (d / name).exists()]
        if foreign:
            found.append(f"{d} holds the filesystem-events package's {', '.join(foreign)}")
    return found


def main() -> int:
    found = problems()
    if found:
        lines = ["rollback-watchdog: refusing to start: `watchdog` here is not (only) rollback-watchdog's:"]
        lines += [f"  - {line}" for line in found]
        print("\n".join([*lines, ADVICE]), file=sys.stderr)
        return EXIT_FOREIGN
    from watchdog.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
