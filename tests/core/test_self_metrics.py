"""The watchdog's own metrics: what the engine's ticks and the decision log make of them, that
``promtool`` finds nothing to lint on ``/metrics``, and that the shipped alert rules and Grafana
dashboard are valid and read only metrics the daemon exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from ruamel.yaml import YAML

from watchdog.clock import SimClock
from watchdog.config import Severity
from watchdog.decisions import DecisionLog
from watchdog.evaluate import SignalResult
from watchdog.metrics import Reporters, SelfMetrics
from watchdog.observability import cron_checkin
from watchdog.phases import DecisionKind, DecisionResult, SignalState, WatchKind
from watchdog.store import DecisionEntry, ReleaseRef, Store, Watch

MONITORING = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
PROM = "rollback_watchdog"


def promtool() -> str:
    """The real promtool (Debian's ``prometheus`` package); missing, the test fails, not skips."""
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        pytest.fail("promtool is not installed (apt-get install prometheus): these checks need it")
    return found


def run_promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, cwd=cwd, timeout=60, check=False
    )
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, f"promtool {' '.join(args)} exited {done.returncode}:\n{out}"
    return out


def result(signal: str, state: SignalState, severity: Severity = Severity.ROLLBACK) -> SignalResult:
    error = "connection refused" if state is SignalState.ERROR else None
    return SignalResult(signal, severity, state, None, f"sum(rate({signal}[1m]))", error=error)


class Heard:
    def __init__(self) -> None:
        self.ticks: list[tuple[float, int, list[str]]] = []
        self.entries: list[DecisionEntry] = []

    def tick(self, now: float, watch: Watch, results: list[SignalResult]) -> None:
        self.ticks.append((now, watch.id, [r.signal for r in results]))

    def decision(self, entry: DecisionEntry) -> None:
        self.entries.append(entry)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'wd.db'}")
    yield s
    s.close()


def watch(store: Store, tag: str, at: float, env: str = "prod", service: str = "api") -> Watch:
    rel = store.upsert_release(env, service, ReleaseRef(tag), at)
    return store.create_watch(env, service, WatchKind.DEPLOY.value, rel.id, None, at, at + 600)


def value(m: SelfMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def state_of(m: SelfMetrics, signal: str, env: str = "prod", service: str = "api") -> dict[str, float | None]:
    return {
        s.value: value(m, f"{PROM}_signal_state", env=env, service=service, signal=signal, state=s.value)
        for s in SignalState
    }


# ---------------------------------------------------------------------------- watches


def test_signal_states_errors_and_blind_time_follow_the_ticks(store: Store) -> None:
    m = SelfMetrics(source="prometheus")
    w = watch(store, "v1", 100.0)
    m.tick(100.0, w, [result("errors", SignalState.PASS), result("latency", SignalState.PASS)])
    assert state_of(m, "errors") == {"pass": 1, "fail": 0, "inconclusive": 0, "no_data": 0, "error": 0}
    assert value(m, f"{PROM}_blind_seconds_total", source="prometheus") == 0
    assert value(m, f"{PROM}_source_errors_total", source="prometheus") == 0

    # the source stops answering: two ticks 15 s apart count 30 blind seconds, and two errors each
    m.tick(115.0, w, [result("errors", SignalState.ERROR), result("latency", SignalState.NO_DATA)])
    m.tick(130.0, w, [result("errors", SignalState.ERROR), result("latency", SignalState.ERROR)])
    assert state_of(m, "errors")["error"] == 1 and state_of(m, "errors")["pass"] == 0
    assert value(m, f"{PROM}_blind_seconds_total", source="prometheus") == 30
    assert value(m, f"{PROM}_source_errors_total", source="prometheus") == 3
    m.tick(145.0, w, [result("errors", SignalState.FAIL), result("latency", SignalState.PASS)])
    assert value(m, f"{PROM}_blind_seconds_total", source="prometheus") == 30
    assert state_of(m, "errors")["fail"] == 1

    # a signal that only observes does not make the watch blind
    m.tick(160.0, w, [result("errors", SignalState.PASS), result("cpu", SignalState.ERROR, Severity.OBSERVE)])
    assert value(m, f"{PROM}_blind_seconds_total", source="prometheus") == 30
    assert value(m, f"{PROM}_source_errors_total", source="prometheus") == 4

    # the next deploy's watch replaces the states; its first tick has no interval to count
    w2 = watch(store, "v2", 300.0)
    m.tick(300.0, w2, [result("errors", SignalState.ERROR)])
    assert value(m, f"{PROM}_blind_seconds_total", source="prometheus") == 30
    assert state_of(m, "errors")["error"] == 1
    assert set(state_of(m, "latency").values()) == {None}  # the old watch's other signals are gone
    assert set(state_of(m, "cpu").values()) == {None}
    # with no rollback-severity signal, every signal decides
    m.tick(310.0, w2, [result("errors", SignalState.NO_DATA, Severity.PAGE)])
    assert value(m, f"{PROM}_blind_seconds_total", source="prometheus") == 40

    # another service's watch is kept apart
    other = watch(store, "v9", 300.0, service="web")
    m.tick(320.0, other, [result("errors", SignalState.PASS)])
    assert state_of(m, "errors", service="web")["pass"] == 1 and state_of(m, "errors")["no_data"] == 1


# ---------------------------------------------------------------------------- the decision log


def test_committed_decisions_steps_durations_and_overrides_are_counted(store: Store) -> None:
    m = SelfMetrics(source="scrape")
    clock = SimClock(10.0)
    log = DecisionLog(store, clock, m)
    rel = store.upsert_release("prod", "api", ReleaseRef("v2"), 1.0)
    inc = store.create_incident("prod", "api", rel.id, None, "signal:errors", "r", "watchdog", 10.0, {})
    assert value(m, f"{PROM}_decisions_total", kind="escalated", result="escalated") == 0  # from zero

    log.record(DecisionKind.DEPLOY_ANNOUNCED, "deployed", DecisionResult.RUNNING, env="prod", service="api")
    # a deploy's watch carries who deployed as its actor: not an override
    log.record(
        DecisionKind.WATCH_STARTED, "watching", DecisionResult.RUNNING, env="prod", service="api", actor="ci"
    )
    with pytest.raises(RuntimeError), log.transition():
        log.record(DecisionKind.PIN, "doomed", DecisionResult.PINNED, env="prod", service="api", actor="bob")
        raise RuntimeError("crash before the commit")
    with log.transition():
        log.record(
            DecisionKind.ROLLBACK_DECIDED,
            "forced",
            DecisionResult.ROLLBACK_STARTED,
            env="prod",
            service="api",
            actor="api:oncall",
            incident_id=inc.id,
        )
        assert value(m, f"{PROM}_decisions_total", kind="rollback_decided", result="rollback_started") is None
    log.record(DecisionKind.PIN, "by hand", DecisionResult.PINNED, env="prod", service="api", actor="alice")
    # the engine's page is a step entry without an incident: a decision, not a pipeline step
    log.record(
        DecisionKind.STEP, "page", DecisionResult.PAGED, env="prod", service="api", evidence={"signal": "x"}
    )

    def step(result: DecisionResult, at: float, evidence: dict[str, Any]) -> None:
        log.record(
            DecisionKind.STEP,
            f"step {result}",
            result,
            env="prod",
            service="api",
            incident_id=inc.id,
            evidence=evidence,
            at=at,
        )

    step(DecisionResult.STARTED, 20.0, {"step": "dispatch", "attempts": 0})
    step(DecisionResult.NOTIFY_FAILED, 25.0, {"problems": {"ticket": "503"}})  # names no step
    step(DecisionResult.SUCCESSFUL, 80.0, {"step": "dispatch", "attempts": 2})
    step(DecisionResult.STARTED, 80.0, {"step": "smoke", "attempts": 0})
    log.record(
        DecisionKind.ESCALATED,
        "smoke failed",
        DecisionResult.ESCALATED,
        env="prod",
        service="api",
        incident_id=inc.id,
    )

    counted = {
        (s.labels["kind"], s.labels["result"]): s.value
        for fam in m.registry.collect()
        if fam.name == f"{PROM}_decisions"
        for s in fam.samples
        if s.name.endswith("_total") and s.value
    }
    assert counted == {
        ("deploy_announced", "running"): 1,
        ("watch_started", "running"): 1,
        ("rollback_decided", "rollback_started"): 1,
        ("pin", "pinned"): 1,  # the rolled-back pin was never committed, so never counted
        ("step", "paged"): 1,
        ("step", "started"): 2,
        ("step", "notify_failed"): 1,
        ("step", "successful"): 1,
        ("escalated", "escalated"): 1,
    }
    assert value(m, f"{PROM}_overrides_total", kind="pin") == 1
    assert value(m, f"{PROM}_overrides_total", kind="rollback_decided") == 1
    assert value(m, f"{PROM}_overrides_total", kind="step") is None
    assert value(m, f"{PROM}_overrides_total", kind="watch_started") is None
    steps = {
        (s.labels["step"], s.labels["result"]): s.value
        for fam in m.registry.collect()
        if fam.name == f"{PROM}_pipeline_steps"
        for s in fam.samples
        if s.name.endswith("_total")
    }
    assert steps == {
        ("dispatch", "started"): 1,
        ("dispatch", "notify_failed"): 1,  # the step running when it was written
        ("dispatch", "successful"): 1,
        ("smoke", "started"): 1,
    }
    assert value(m, f"{PROM}_step_duration_seconds_count", step="dispatch") == 1
    assert value(m, f"{PROM}_step_duration_seconds_sum", step="dispatch") == 60
    assert value(m, f"{PROM}_step_duration_seconds_bucket", step="dispatch", le="30.0") == 0
    assert value(m, f"{PROM}_step_duration_seconds_bucket", step="dispatch", le="60.0") == 1
    assert value(m, f"{PROM}_step_duration_seconds_count", step="smoke") is None  # never succeeded


def test_a_reporter_that_raises_costs_neither_the_others_nor_the_caller(store: Store) -> None:
    class Broken:
        def tick(self, now: float, watch: Watch, results: list[SignalResult]) -> None:
            raise RuntimeError("terminal gone")

        def decision(self, entry: DecisionEntry) -> None:
            raise RuntimeError("terminal gone")

    m, heard = SelfMetrics(), Heard()
    both = Reporters(Broken(), None, heard, m)
    log = DecisionLog(store, SimClock(5.0), both)
    log.record(DecisionKind.PIN, "by hand", DecisionResult.PINNED, env="prod", service="api", actor="alice")
    w = watch(store, "v1", 1.0)
    both.tick(5.0, w, [result("errors", SignalState.PASS)])
    assert [e.kind for e in heard.entries] == [DecisionKind.PIN] and heard.ticks == [(5.0, w.id, ["errors"])]
    assert value(m, f"{PROM}_overrides_total", kind="pin") == 1
    assert state_of(m, "errors")["pass"] == 1


def test_the_app_gives_engine_and_decision_log_one_fan_out(tmp_path: Path) -> None:
    from watchdog.app import App
    from watchdog.config import parse_config

    text = (
        "version: 1\nsource: {kind: scrape, scrape: {targets: [{url: 'http://127.0.0.1:9/metrics'}]}}\n"
        "github: {api_url: 'http://127.0.0.1:9', repo: a/b, token: '${TOKEN}'}\n"
        f"store: {{url: 'sqlite:///{tmp_path / 'wd.db'}'}}\n"
        "environments: {prod: {}}\n"
        "services: [{name: api, signals: [{name: up, kind: probe, probe: {metric: up}}]}]\n"
    )
    cfg = parse_config(text, "t.yaml", env={"TOKEN": "ghp_x"})
    m, heard = SelfMetrics(source=cfg.source.kind), Heard()
    app = App.build(cfg, SimClock(50.0), reporter=heard, metrics=m)
    try:
        app.engine.pin("prod", "api", ReleaseRef("v1"), actor="alice", reason="by hand")
        assert [e.kind for e in heard.entries] == [DecisionKind.PIN]
        assert value(m, f"{PROM}_decisions_total", kind="pin", result="pinned") == 1
        assert value(m, f"{PROM}_overrides_total", kind="pin") == 1
        w = watch(app.store, "v2", 50.0)
        assert app.engine.reporter is not None
        app.engine.reporter.tick(60.0, w, [result("up", SignalState.ERROR)])
        assert heard.ticks == [(60.0, w.id, ["up"])]
        assert value(m, f"{PROM}_source_errors_total", source="scrape") == 1
    finally:
        app.close()


# ---------------------------------------------------------------------------- /metrics, linted


def populated(store: Store) -> SelfMetrics:
    """Metrics with a sample in every family, as a daemon has after a rollback."""
    m = SelfMetrics(source="prometheus")
    m.leader.set(1)
    m.ticks.labels("ok").inc()
    m.tick_seconds.observe(0.2)
    m.last_tick.set(1_700_000_000)
    m.api_requests.labels("/v1/environments", "200").inc()
    w = watch(store, "v1", 0.0)
    m.tick(0.0, w, [result("errors", SignalState.PASS)])
    m.tick(15.0, w, [result("errors", SignalState.ERROR)])
    log = DecisionLog(store, SimClock(20.0), m)
    rel = store.upsert_release("prod", "api", ReleaseRef("v1"), 0.0)
    inc = store.create_incident("prod", "api", rel.id, None, "manual", "r", "alice", 0.0, {})
    for res, at in ((DecisionResult.STARTED, 20.0), (DecisionResult.SUCCESSFUL, 31.0)):
        log.record(
            DecisionKind.STEP,
            "s",
            res,
            env="prod",
            service="api",
            incident_id=inc.id,
            evidence={"step": "dispatch"},
            at=at,
        )
    log.record(DecisionKind.PIN, "by hand", DecisionResult.PINNED, env="prod", service="api", actor="alice")
    return m


EXPECTED = {
    f"{PROM}_build_info",
    f"{PROM}_ticks_total",
    f"{PROM}_tick_duration_seconds",
    f"{PROM}_last_successful_tick_timestamp_seconds",
    f"{PROM}_leader",
    f"{PROM}_api_requests_total",
    f"{PROM}_signal_state",
    f"{PROM}_source_errors_total",
    f"{PROM}_blind_seconds_total",
    f"{PROM}_decisions_total",
    f"{PROM}_pipeline_steps_total",
    f"{PROM}_step_duration_seconds",
    f"{PROM}_overrides_total",
}


def families(text: str) -> dict[str, tuple[str, str]]:
    """Each family in an exposition: its type and HELP text."""
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return {
        name: (kind, helps.get(name, "")) for name, kind in types.items() if not name.endswith("_created")
    }


def test_metrics_follow_prometheus_naming_and_promtool_finds_no_problem(store: Store) -> None:
    text = populated(store).exposition()
    found = families(text.decode())
    assert set(found) == EXPECTED
    for name, (kind, help_text) in found.items():
        assert help_text.strip(), f"{name} has no HELP text"
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name  # base units
    assert run_promtool("check", "metrics", stdin=text).strip() == ""


# ---------------------------------------------------------------------------- alerts and dashboard


def test_the_alert_rules_pass_promtool_and_fire_on_their_unit_tests() -> None:
    out = run_promtool("check", "rules", "prometheus-rules.yaml", cwd=MONITORING)
    assert "SUCCESS: 5 rules found" in out
    run_promtool("test", "rules", "prometheus-rules.test.yaml", cwd=MONITORING)
    yaml = YAML(typ="safe")
    plain = yaml.load((MONITORING / "prometheus-rules.yaml").read_text())
    crd = yaml.load((MONITORING / "prometheusrule.yaml").read_text())
    assert crd["kind"] == "PrometheusRule" and crd["spec"]["groups"] == plain["groups"]
    rules = [r for g in plain["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == {
        "RollbackWatchdogDown",
        "RollbackWatchdogNoLeader",
        "RollbackWatchdogNotTicking",
        "RollbackWatchdogBlind",
        "RollbackWatchdogRollbackEscalated",
    }
    for r in rules:
        assert r["labels"]["severity"] in ("critical", "warning")
        assert {"summary", "description", "runbook_url"} <= set(r["annotations"])
        assert "docs/operating.md#monitoring-the-watchdog" in r["annotations"]["runbook_url"]
    tested = (MONITORING / "prometheus-rules.test.yaml").read_text()
    for r in rules:  # each alert is expected to fire somewhere in the unit tests
        assert re.search(rf"alertname: {r['alert']}\n\s+exp_alerts:\n\s+- exp_labels", tested), r["alert"]


def exposed_names(m: SelfMetrics) -> set[str]:
    names = set()
    for fam in m.registry.collect():
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
    return names


def test_the_dashboard_reads_only_metrics_the_daemon_exposes(store: Store, tmp_path: Path) -> None:
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    exprs = []
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            exprs.append(t["expr"])
    titles = " | ".join(p["title"] for p in panels)
    for wanted in (
        "Ticks",
        "Tick duration",
        "tick age",
        "Leader",
        "Signal states",
        "Decisions",
        "steps",
        "Blind",
        "API requests",
    ):
        assert wanted in titles, wanted

    exposed = exposed_names(populated(store))
    used = {name for e in exprs for name in re.findall(rf"\b{PROM}_\w+", e)}
    assert used and used <= exposed, sorted(used - exposed)

    # every query is valid PromQL: promtool parses them as recording rules
    grafana = {"$__rate_interval": "5m", "$__range": "1h", "$job": ".+"}
    rules = []
    for i, e in enumerate(exprs):
        for var, sample in grafana.items():
            e = e.replace(var, sample)
        rules.append({"record": f"dashboard:query_{i}", "expr": e})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool("check", "rules", str(path))


# ---------------------------------------------------------------------------- Sentry Crons


@pytest.fixture
def checkins() -> Iterator[list[dict[str, Any]]]:
    """Sentry set up with a transport that keeps check-ins; Sentry is off again afterwards."""
    from watchdog.observability import init_sentry

    sent: list[dict[str, Any]] = []

    class Capture(sentry_sdk.transport.Transport):
        def capture_envelope(self, envelope: sentry_sdk.envelope.Envelope) -> None:
            for item in envelope.items:
                if item.type == "check_in" and item.payload.json is not None:
                    sent.append(item.payload.json)

    init_sentry("https://key@127.0.0.1/1", "test", "0.1.0", transport=Capture())
    yield sent
    sentry_sdk.get_global_scope().set_client(None)


def test_cron_check_ins_report_start_then_ok_or_error(checkins: list[dict[str, Any]]) -> None:
    with cron_checkin("job", interval_s=15):
        sentry_sdk.add_breadcrumb(message="a job that succeeds")
    with cron_checkin("job", interval_s=15) as run:
        run.fail()  # a job that caught its own error
    with pytest.raises(ValueError), cron_checkin("job"):
        raise ValueError("boom")
    sentry_sdk.flush()
    assert [(c["monitor_slug"], c["status"]) for c in checkins] == [
        ("job", "in_progress"),
        ("job", "ok"),
        ("job", "in_progress"),
        ("job", "error"),
        ("job", "in_progress"),
        ("job", "error"),
    ]
    assert checkins[0]["check_in_id"] == checkins[1]["check_in_id"] != checkins[2]["check_in_id"]
    assert checkins[0]["monitor_config"]["schedule"] == {"type": "interval", "value": 1, "unit": "minute"}
    assert "monitor_config" not in checkins[4]


def test_cron_check_ins_do_nothing_without_sentry() -> None:
    sentry_sdk.get_global_scope().set_client(None)
    with cron_checkin("job", interval_s=15) as run:
        run.fail()
    assert run.failed


def test_the_daemons_tick_checks_in_and_counts(tmp_path: Path, checkins: list[dict[str, Any]]) -> None:
    from watchdog.app import App, Heartbeats, _safe_tick
    from watchdog.config import parse_config
    from watchdog.heap import HeapKeeper
    from watchdog.leader import Leadership

    text = (
        "version: 1\ntick_s: 120\n"
        "source: {kind: scrape, scrape: {targets: [{url: 'http://127.0.0.1:9/metrics'}]}}\n"
        "github: {api_url: 'http://127.0.0.1:9', repo: a/b, token: '${TOKEN}'}\n"
        f"store: {{url: 'sqlite:///{tmp_path / 'wd.db'}'}}\n"
        "environments: {prod: {}}\n"
        "services: [{name: api, signals: [{name: up, kind: probe, probe: {metric: up}}]}]\n"
    )
    clock = SimClock(1_000.0)
    m = SelfMetrics()
    app = App.build(parse_config(text, "t.yaml", env={"TOKEN": "ghp_x"}), clock, metrics=m)
    heap = HeapKeeper()
    try:
        leadership = Leadership(app.store, clock, 30.0, holder="test")
        leadership.claim_sole()
        _safe_tick(app.engine, leadership, m, Heartbeats(clock, 60.0), heap)()
    finally:
        heap.release()
        app.close()
    assert heap.collections == 1  # the daemon's tick keeps the heap (watchdog.heap)
    sentry_sdk.flush()
    assert [(c["monitor_slug"], c["status"]) for c in checkins] == [
        ("rollback-watchdog-tick", "in_progress"),
        ("rollback-watchdog-tick", "ok"),
    ]
    assert checkins[0]["monitor_config"]["schedule"] == {"type": "interval", "value": 2, "unit": "minute"}
    assert value(m, f"{PROM}_ticks_total", outcome="ok") == 1
    assert value(m, f"{PROM}_last_successful_tick_timestamp_seconds") == 1_000.0
    assert value(m, f"{PROM}_leader") == 1
