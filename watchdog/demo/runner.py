"""``rollback-watchdog demo``: the whole loop on loopback, nothing external.

Starts the stamps demo service (a baseline and a canary process), traffic, the GitHub emulator
and the watchdog on the scrape source; deploys a bad release (or, with ``--healthy``, a good one)
through the emulated ``deploy`` workflow; shows each signal's state and evidence as it goes; and
ends with the decision log and a summary. The daemon's HTTP API is served too (its URL is printed);
with ``--veto`` the bad release's rollback is vetoed through it inside the veto window, and the
release is watched on, marked vetoed. The emulated workflow really restarts the canary at
the dispatched tag, so the rollback is a real one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np

from actions.github import DeployWorkflow, RunInfo
from watchdog.api import ApiContext, ApiServer
from watchdog.app import App
from watchdog.cli import format_log_table
from watchdog.clock import RealClock
from watchdog.config import load_config
from watchdog.emulator.github import GitHubEmulator, RunContext
from watchdog.emulator.pagerduty import ROUTING_KEY as DEMO_ROUTING_KEY
from watchdog.emulator.pagerduty import PagerDutyEmulator
from watchdog.emulator.slack import BOT_TOKEN as SLACK_BOT_TOKEN
from watchdog.emulator.slack import DEPLOYS_CHANNEL, Message, SlackEmulator
from watchdog.emulator.slack import SIGNING_SECRET as SLACK_SIGNING_SECRET
from watchdog.errors import InputError
from watchdog.evaluate import SignalResult
from watchdog.evidence import evidence_png
from watchdog.observability import configure_logging
from watchdog.overrides import Overrides
from watchdog.phases import DecisionKind, IncidentPhase, SignalState, StepPhase, WatchKind, WatchPhase
from watchdog.sources.scrape import ScrapeSource
from watchdog.store import DecisionEntry, ReleaseRef, Watch

from .service import ServiceProcess
from .traffic import Target, TrafficGenerator

STABLE, BAD, GOOD = "v1.0.0", "v1.1.0", "v1.2.0"
TAG_SHAS = {STABLE: "1a2b3c4d" * 5, BAD: "5e6f7a8b" * 5, GOOD: "9c0d1e2f" * 5}
DEMO_TOKEN = "demo-token-not-a-secret"
DEMO_API_TOKEN = "demo-operator-token-not-a-secret"
#: ``--veto``: how long an automatic rollback waits for a veto, and how long the demo goes on
#: watching the vetoed release.
VETO_WINDOW_S, WATCH_ON_S = 30.0, 6.0
DEADLINE_S = 240.0
ENV, SERVICE = "prod", "stamps-api"
_STATE_MARK = {
    SignalState.PASS: "ok  ",
    SignalState.FAIL: "FAIL",
    SignalState.INCONCLUSIVE: "... ",
    SignalState.NO_DATA: "none",
    SignalState.ERROR: "ERR ",
}


def default_config_path() -> Path:
    return Path(__file__).resolve().parent / "demo.yaml"


class TerminalReporter:
    """Prints each signal's state and evidence when something changes (and every few ticks)."""

    def __init__(self, out: TextIO, t0: Callable[[], float]) -> None:
        self.out = out
        self.t0 = t0
        self._last: dict[int, tuple[str, ...]] = {}
        self._ticks: dict[int, int] = {}

    def say(self, text: str) -> None:
        print(f"[{time.time() - self.t0():6.1f}s] {text}", file=self.out, flush=True)

    def tick(self, now: float, watch: Watch, results: list[SignalResult]) -> None:
        states = tuple(r.state.value for r in results)
        n = self._ticks[watch.id] = self._ticks.get(watch.id, 0) + 1
        if states == self._last.get(watch.id) and n % 5:
            return
        self._last[watch.id] = states
        label = "post-rollback watch" if watch.kind == WatchKind.POST_ROLLBACK.value else "watch"
        self.say(
            f"{label} #{watch.id}: {now - watch.started_at:5.1f}s of {watch.ends_at - watch.started_at:.0f}s"
        )
        for r in results:
            print(f"           {_STATE_MARK[r.state]} {r.signal:<22} {r.summary}", file=self.out, flush=True)

    def decision(self, entry: DecisionEntry) -> None:
        arrow = f" {entry.from_tag or '-'} → {entry.to_tag or '-'}" if entry.from_tag or entry.to_tag else ""
        self.say(f">> {entry.kind}{arrow}: {entry.result} — {entry.reason}")


def run_demo(
    *,
    healthy: bool = False,
    veto: bool = False,
    config_path: str | None = None,
    workdir: str | None = None,
    out: TextIO | None = None,
    serve_s: float = 0.0,
) -> int:
    """The demo; with ``serve_s``, its dashboard stays served that long after the summary."""
    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="rollback-watchdog-demo-") as tmp:
        demo = _Demo(
            healthy,
            veto,
            Path(config_path) if config_path else default_config_path(),
            Path(workdir) if workdir else Path(tmp),
            out,
            serve_s,
        )
        if workdir is None:  # the store goes with the temporary directory; what it shows stays
            demo.outdir = Path(tempfile.mkdtemp(prefix="rollback-watchdog-demo-output-"))
        return demo.run()


class _Demo:
    def __init__(
        self, healthy: bool, veto: bool, config_path: Path, workdir: Path, out: TextIO, serve_s: float = 0.0
    ) -> None:
        self.serve_s = serve_s
        if healthy and veto:
            raise InputError("--healthy and --veto: a healthy release has no rollback to veto")
        self.healthy = healthy
        self.veto = veto
        self.vetoed: str | None = None  # what the API answered to the veto
        self.config_path = config_path
        self.workdir = workdir
        #: Where the pictures and messages it names are written (they outlive a temporary workdir).
        self.outdir = workdir
        self.out = out
        self.started = time.time()
        self.reporter = TerminalReporter(out, lambda: self.started)
        self.clock = RealClock()

    def run(self) -> int:
        say = self.reporter.say
        target = GOOD if self.healthy else BAD
        say(
            f"demo: deploying {'a good' if self.healthy else 'a bad'} release ({target}) "
            f"of {SERVICE} to {ENV}"
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.outdir.mkdir(parents=True, exist_ok=True)
        baseline = ServiceProcess(STABLE, "baseline", seed=1).start()
        canary = ServiceProcess(STABLE, "canary", seed=2).start()
        deploys: list[str] = []

        def deploy_hook(ctx: RunContext) -> bool:
            deploys.append(ctx.ref)
            canary.restart(ctx.ref)  # the deploy workflow: run the dispatched tag on the canary
            return True

        emulator = GitHubEmulator(
            token=DEMO_TOKEN,
            owner="acme",
            repo="stamps",
            tags=TAG_SHAS,
            hook=deploy_hook,
            queue_delay=0.3,
            step_delay=0.3,
        ).start()
        pagerduty = PagerDutyEmulator(routing_keys=(DEMO_ROUTING_KEY,)).start()
        slack = SlackEmulator(clock=self.clock).start()
        traffic = TrafficGenerator(
            [Target(baseline.url, 0.75, "baseline"), Target(canary.url, 0.25, "canary")],
            40.0,
            self.clock,
            np.random.default_rng(5),
        )
        app: App | None = None
        api: ApiServer | None = None
        told: list[str] = []
        stop = threading.Event()
        scraper: threading.Thread | None = None
        try:
            env = dict(os.environ)
            env.update(
                {
                    "DEMO_BASELINE_METRICS": f"{baseline.url}/metrics",
                    "DEMO_CANARY_METRICS": f"{canary.url}/metrics",
                    "DEMO_BASELINE_HEALTH": f"{baseline.url}/health",
                    "DEMO_CANARY_HEALTH": f"{canary.url}/health",
                    "DEMO_CANARY_URL": canary.url,
                    "DEMO_GITHUB_URL": emulator.url,
                    "DEMO_GITHUB_TOKEN": DEMO_TOKEN,
                    "DEMO_PAGERDUTY_URL": pagerduty.url,
                    "DEMO_PAGERDUTY_KEY": DEMO_ROUTING_KEY,
                    "DEMO_STORE_URL": f"sqlite:///{self.workdir / 'demo-watchdog.db'}",
                    "DEMO_API_LISTEN": "127.0.0.1:0",
                    "DEMO_API_TOKEN": DEMO_API_TOKEN,
                    "DEMO_SLACK_URL": slack.api_url,
                    "DEMO_SLACK_TOKEN": SLACK_BOT_TOKEN,
                    "DEMO_SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
                }
            )
            cfg = load_config(self.config_path, env=env)
            if self.veto:  # an automatic rollback now waits for a veto before it changes anything
                prod = cfg.env(ENV).model_copy(update={"veto_window_s": VETO_WINDOW_S})
                cfg = cfg.model_copy(update={"environments": {**cfg.environments, "prod": prod}})
            configure_logging("console", "warning")  # the reporter tells the story
            if cfg.demo_note:
                say(f"note: {cfg.demo_note}")
            app = App.build(cfg, self.clock, reporter=self.reporter, smoke_retry_delay_s=0.5)
            api = ApiServer(
                ApiContext(cfg, app.store, self.clock, app.engine, overrides=Overrides(app.engine))
            )
            api.start()
            links = cfg.notifications.model_copy(update={"public_url": api.url})
            app.outbox.cfg = cfg.model_copy(update={"notifications": links})  # messages link the API
            assert isinstance(app.source, ScrapeSource) and cfg.source.scrape is not None
            interval = cfg.source.scrape.interval_s
            source = app.source
            scraper = threading.Thread(target=_scrape_loop, args=(source, interval, stop), daemon=True)
            scraper.start()
            traffic.start()
            say(
                f"services up: baseline {baseline.url} ({STABLE}), canary {canary.url} ({STABLE}); "
                f"GitHub emulator {emulator.url}; PagerDuty emulator {pagerduty.url}; "
                "traffic 40 req/s, 25% to the canary"
            )
            say(f"watchdog API: {api.url} (GET /v1/environments, /v1/decisions; /docs for all of it)")
            say(f"dashboard: {api.url}/ui/ (log in with the demo operator's token: api.tokens, demo config)")
            app.engine.pin(
                ENV,
                SERVICE,
                ReleaseRef(STABLE, TAG_SHAS[STABLE]),
                actor="demo-operator",
                reason=f"{STABLE} is the release running before the demo",
            )
            self.clock.sleep(3.0)

            deployer = DeployWorkflow(emulator.url, "acme/stamps", "deploy.yml", DEMO_TOKEN, self.clock)
            run = self._deploy(deployer, target)
            app.engine.announce(
                ENV,
                SERVICE,
                ReleaseRef(target, TAG_SHAS[target], run.id, run.html_url),
                source="demo deploy workflow",
                actor="demo-operator",
            )
            outcome = self._loop(app, cfg.tick_s, api.url)
            for _ in range(3):  # what the last ticks decided is told before the summary
                if not app.outbox.deliver_due():
                    break
            told = self._told(emulator, pagerduty) + self._slack(slack)
        finally:
            if api is not None and not self.serve_s:
                api.stop()
                api = None
            stop.set()
            traffic.stop()
            if scraper is not None:
                scraper.join(timeout=5)
            emulator.stop()
            pagerduty.stop()
            slack.stop()
            canary.stop()
            baseline.stop()
        try:
            return self._summary(app, outcome, deploys, told)
        finally:
            if api is not None:
                self._serve(api)
                api.stop()
            if app is not None:
                app.close()

    def _serve(self, api: ApiServer) -> None:
        """``--serve``: the dashboard and the API stay up over the finished demo's store."""
        self.reporter.say(
            f"serving the dashboard at {api.url}/ui/ for {self.serve_s:.0f}s (log in with the demo "
            "operator's token, api.tokens in the demo config; Ctrl-C ends it)"
        )
        try:
            self.clock.sleep(self.serve_s)
        except KeyboardInterrupt:
            self.reporter.say("stopped serving")

    @staticmethod
    def _told(github: GitHubEmulator, pagerduty: PagerDutyEmulator) -> list[str]:
        """What people were told, as the emulators saw it: the page and the ticket."""
        lines = [
            f"oncall paged: PagerDuty alert {a.dedup_key} ({a.severity}), "
            + " → ".join(e.action for e in a.events)
            for a in pagerduty.alerts()
        ]
        for ex in github.requests("POST", r"/issues$"):
            body = ex.response_json if isinstance(ex.response_json, dict) else {}
            lines.append(f"incident ticket #{body.get('number')}: {body.get('title')}")
        return lines

    def _slack(self, slack: SlackEmulator) -> list[str]:
        """The Slack message the watchdog posted (and kept up to date), as the channel shows it;
        its Block Kit JSON goes to a file in the work directory."""
        every = slack.messages(DEPLOYS_CHANNEL)
        messages = [m for m in every if _subject(m).startswith("incident-")] or every[-1:]
        if not messages:
            return ["Slack: nothing posted"]
        path = self.outdir / "slack-messages.json"
        path.write_text(
            json.dumps([{"ts": m.ts, "text": m.text, "blocks": m.blocks} for m in messages], indent=2)
        )
        lines = []
        for m in messages:
            edits = f", updated {len(m.edits)}×" if m.edits else ""
            replies = len(slack.replies(m.ts, DEPLOYS_CHANNEL))
            thread = f"{replies} thread repl{'y' if replies == 1 else 'ies'}"
            lines.append(f"Slack #deploys message {m.ts}{edits}, {thread}:")
            lines.extend(f"    {line}" for line in slack_text(m.blocks))
        others = len(every) - len(messages)
        more = f"; {others} more message(s) about the watches" if others else ""
        lines.append(f"(the Block Kit JSON of every message: {path}{more})")
        return lines

    def _deploy(self, deployer: DeployWorkflow, tag: str) -> RunInfo:
        """What CI does: dispatch the deploy workflow at the tag and wait for it to finish."""
        run = deployer.dispatch(tag, {"environment": ENV, "tag": tag, "correlation_id": f"deploy-{tag}"})
        assert run is not None
        while not (info := deployer.run(run.id)).completed:
            self.clock.sleep(0.3)
        self.reporter.say(f"deploy workflow run {info.id} {info.conclusion}: the canary now runs {tag}")
        return info

    def _loop(self, app: App, tick_s: float, api_url: str) -> str:
        deadline = self.started + DEADLINE_S
        watching_on_until: float | None = None
        while time.time() < deadline:
            app.engine.tick()
            app.outbox.deliver_due()  # the daemon's notice job, here after each tick
            store = app.store
            incidents = [
                store.incident(e.incident_id)
                for e in store.decisions()
                if e.kind == DecisionKind.ROLLBACK_DECIDED.value and e.incident_id
            ]
            if self.veto and incidents:
                incident = incidents[-1]
                if self.vetoed is None and store.step(incident.id, "go_ahead").phase == StepPhase.RUNNING:
                    self.vetoed = self._veto(api_url, incident.id)
                if incident.phase == IncidentPhase.VETOED:
                    if watching_on_until is None:
                        watching_on_until = self.clock.now() + WATCH_ON_S
                        self.reporter.say(
                            f"vetoed: {BAD} stays deployed and watched; showing {WATCH_ON_S:.0f}s more"
                        )
                    elif self.clock.now() >= watching_on_until:
                        return IncidentPhase.VETOED.value
                self.clock.sleep(tick_s)
                continue
            if incidents and incidents[-1].phase in (
                IncidentPhase.RESOLVED.value,
                IncidentPhase.ESCALATED.value,
            ):
                return incidents[-1].phase
            deploy_watches = [e for e in store.decisions() if e.kind == DecisionKind.PROMOTED.value]
            if deploy_watches and not incidents:
                return WatchPhase.SUCCESSFUL.value
            self.clock.sleep(tick_s)
        return "timeout"

    def _veto(self, api_url: str, incident_id: int) -> str:
        """What an operator does inside the veto window: ``POST /v1/incidents/N/veto``."""
        reason = "the canary's errors are a known, harmless retry storm: keep the release"
        answer = httpx.post(
            f"{api_url}/v1/incidents/{incident_id}/veto",
            json={"reason": reason},
            headers={"Authorization": f"Bearer {DEMO_API_TOKEN}"},
            timeout=10,
        )
        said = f"POST /v1/incidents/{incident_id}/veto → {answer.status_code}"
        self.reporter.say(f"operator vetoes the rollback through the API: {said}")
        return said

    def _summary(self, app: App | None, outcome: str, deploys: list[str], told: list[str]) -> int:
        say = self.reporter.say
        if app is None:
            return 1
        entries = app.store.decisions()
        deliveries = [e for e in entries if e.kind == DecisionKind.NOTICE]
        shown = [e for e in entries if e.kind != DecisionKind.NOTICE]
        print(
            "\nDecision log (rollback-watchdog log; the deliveries of notices left out):\n"
            + format_log_table(shown)
            + f"\n({len(deliveries)} notice deliveries recorded: rollback-watchdog log --kind notice)\n",
            file=self.out,
        )
        pin = app.store.current_pin(ENV, SERVICE)

        def first(kind: DecisionKind) -> DecisionEntry | None:
            return next((e for e in entries if e.kind == kind.value), None)

        deployed = first(DecisionKind.WATCH_STARTED)
        decided = first(DecisionKind.ROLLBACK_DECIDED)
        resolved = first(DecisionKind.ROLLBACK_RESOLVED)
        lines = [
            f"workflow runs dispatched at: {', '.join(deploys)}",
            f"stable release pinned now: {pin.tag if pin else '-'}",
        ]
        if decided and deployed:
            lines.append(f"detected after {decided.at - deployed.at:.1f}s of watching: {decided.reason}")
        if resolved and decided:
            lines.append(f"rollback to recovery confirmed in {resolved.at - decided.at:.1f}s")
        if decided and decided.incident_id is not None:
            picture = self.outdir / f"evidence-incident-{decided.incident_id}.png"
            picture.write_bytes(evidence_png(app.store, decided.incident_id))
            lines.append(f"evidence picture: {picture}")
        vetoed = first(DecisionKind.VETO)
        if vetoed is not None and decided is not None:
            release = app.store.find_release(ENV, SERVICE, BAD)
            running = app.store.running_watches(ENV, SERVICE)
            lines.append(
                f"{vetoed.reason} ({self.vetoed}), {vetoed.at - decided.at:.1f}s after the decision, inside "
                f"the {VETO_WINDOW_S:.0f}s window: nothing was changed; release {BAD} is "
                f"{release.status.value if release else '?'}"
                + (f"; watch #{running[-1].id} of it goes on" if running else "")
            )
        lines.extend(told)
        expected = (
            WatchPhase.SUCCESSFUL.value
            if self.healthy
            else IncidentPhase.VETOED.value
            if self.veto
            else IncidentPhase.RESOLVED.value
        )
        ok = outcome == expected
        lines.append(f"outcome: {outcome} ({'as expected' if ok else 'NOT as expected: ' + expected})")
        for line in lines:
            say(line)
        return 0 if ok else 1


def _subject(message: Message) -> str:
    payload = (message.metadata or {}).get("event_payload") or {}
    return str(payload.get("subject", ""))


def slack_text(blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    """A Block Kit message as plain lines, roughly as Slack shows it (for the terminal)."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("header", "section"):
            text = block.get("text") or {}
            if text.get("text"):
                lines.extend(str(text["text"]).splitlines())
            for f in block.get("fields") or []:
                lines.append("  " + str(f.get("text", "")).replace("\n", " "))
        elif kind == "context":
            lines.extend(str(e.get("text", "")) for e in block.get("elements") or [] if e.get("text"))
        elif kind == "actions":
            labels = [str((e.get("text") or {}).get("text", "?")) for e in block.get("elements") or []]
            lines.append("[ " + " ] [ ".join(labels) + " ]")
        elif kind == "divider":
            lines.append("-" * 40)
    return lines


def _scrape_loop(source: ScrapeSource, interval_s: float, stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            source.scrape_once()
        stop.wait(interval_s)
