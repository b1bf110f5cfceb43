"""The dashboard's screenshots in the docs (``docs/img/dashboard-*.png``), from a real demo rollback.

Regenerate them (Debian's Chromium and the ``browser`` extra installed) from the repository root::

    .venv/bin/python benchmarks/screenshots.py                 # runs the demo first (~40 s)
    .venv/bin/python benchmarks/screenshots.py --workdir /tmp/demo   # reuses a demo's store there

It runs ``rollback-watchdog demo`` (unless ``--workdir`` already holds ``demo-watchdog.db``),
serves the API over a copy of the demo's store (the original is never written), on a simulated
clock stopped just after the demo's last decision, and saves the environments page, the failed
deploy watch's page and the incident's page to ``--out`` (``docs/img`` by default).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from watchdog.api import ApiContext, ApiServer
from watchdog.app import App
from watchdog.clock import SimClock
from watchdog.config import load_config
from watchdog.demo.runner import default_config_path, run_demo
from watchdog.phases import WatchKind
from watchdog.store import Incident

CHROMIUM = "/usr/bin/chromium"
#: The demo config's own sandbox default (``demo.yaml``): not a secret.
TOKEN = "demo-operator-token-not-a-secret"
DB = "demo-watchdog.db"
#: The pictures' width, and how far down a long page they reach (the watch page's first signals).
WIDTH, MAX_HEIGHT = 1360, 1500


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="a demo's workdir (its store is reused when there)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="where the PNGs go")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="watchdog-screenshots-") as tmp:
        workdir = args.workdir or Path(tmp) / "demo"
        if not (workdir / DB).exists() and run_demo(workdir=str(workdir), out=io.StringIO()) != 0:
            print("the demo did not roll back; no screenshots", file=sys.stderr)
            return 1
        copy = Path(tmp) / DB
        source = sqlite3.connect(f"file:{workdir / DB}?mode=ro", uri=True)
        dest = sqlite3.connect(copy)
        try:
            source.backup(dest)  # consistent even with the demo's WAL beside it
        finally:
            dest.close()
            source.close()
        shoot(copy, args.out)
    return 0


def shoot(db: Path, out: Path) -> None:
    cfg = load_config(
        default_config_path(), env={"DEMO_STORE_URL": f"sqlite:///{db}", "DEMO_API_LISTEN": "127.0.0.1:0"}
    )
    clock = SimClock(0.0)
    app = App.build(cfg, clock)
    try:
        entries = app.store.decisions()
        clock.advance(entries[-1].at + 1.0)  # the page says "as of" the demo's end
        incident = app.store.page(Incident, limit=1)[-1]
        watch = next(
            e.watch_id
            for e in app.store.decisions(incident_id=incident.id)
            if e.watch_id is not None and app.store.watch(e.watch_id).kind == WatchKind.DEPLOY
        )
        server = ApiServer(ApiContext(cfg, app.store, clock, app.engine))
        server.start()
        out.mkdir(parents=True, exist_ok=True)
        pages = {
            "environments": "/ui/",
            "watch": f"/ui/watches/{watch}",
            "incident": f"/ui/incidents/{incident.id}",
        }
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                context = browser.new_context(
                    viewport={"width": WIDTH, "height": 900},
                    device_scale_factor=1,
                    extra_http_headers={"Authorization": f"Bearer {TOKEN}"},
                )
                page = context.new_page()
                for name, path in pages.items():
                    answer = page.goto(server.url + path)
                    assert answer is not None and answer.ok, (path, answer and answer.status)
                    target = out / f"dashboard-{name}.png"
                    height = min(page.evaluate("document.body.scrollHeight"), MAX_HEIGHT)
                    page.screenshot(
                        path=str(target),
                        full_page=True,
                        clip={"x": 0, "y": 0, "width": WIDTH, "height": height},
                    )
                    print(target)
                browser.close()
        finally:
            server.stop()
    finally:
        app.close()


if __name__ == "__main__":
    if shutil.which(CHROMIUM) is None:
        sys.exit(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    sys.exit(main())
