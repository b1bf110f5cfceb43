"""Backtests: what today's configuration would have decided for each past deploy.

Each deploy is watched again as the daemon would have watched it: a fresh in-memory store, the
real ``Engine`` on a ``SimClock`` set to the deploy time and ticked every ``tick_s`` over the
environment's ``watch_s``, reading the configured source — Prometheus's history, queried with
ranges ending at the simulated now. Nothing outside is touched: no pipeline, no pager, no
notifier; the decision is only recorded, and read back from the decision log.

The deploys come from GitHub's deployments of the environment or from a JSON file
(``[{"service", "tag", "deployed_at", "outcome"?}]``); what happened to each (``outcome``) is
compared with what the watchdog would have done.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from watchdog.clock import Clock, SimClock
from watchdog.config import WatchdogConfig
from watchdog.engine import Engine
from watchdog.errors import ConfigError
from watchdog.manifest import tag_problem
from watchdog.phases import DecisionKind, WatchPhase
from watchdog.sources.base import MetricSource
from watchdog.store import DecisionEntry, ReleaseRef, Store

Outcome = Literal["rolled_back", "kept", "hotfixed"]
OUTCOMES: tuple[Outcome, ...] = ("rolled_back", "kept", "hotfixed")
#: What the watchdog would have done with one deploy.
Decision = Literal["rollback", "promote", "inconclusive", "blind"]
#: Outcomes that say the release was bad.
BAD_OUTCOMES = frozenset({"rolled_back", "hotfixed"})


@dataclass(frozen=True)
class PastDeploy:
    service: str
    tag: str
    deployed_at: float
    outcome: Outcome | None = None
    sha: str | None = None
    run_id: int | None = None
    #: The release it replaced, when known: pinned as stable before the watch (the rollback target).
    previous: str | None = None


@dataclass(frozen=True)
class BacktestResult:
    service: str
    tag: str
    deployed_at: float
    decision: Decision
    #: Simulated time of the rollback decision, or of the first blindness; else None.
    decided_at: float | None
    signal: str | None
    reason: str
    outcome: Outcome | None
    #: ``agrees``, ``false_rollback`` (kept, would have rolled back), ``missed`` (humans undid it,
    #: the watchdog would not have), or None when either side says nothing.
    verdict: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- the deploys


def _field_error(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError([f"{path}: {where}: {problem}"])


def load_deploys(path: str | Path, cfg: WatchdogConfig) -> list[PastDeploy]:
    """A deploys file; ``ConfigError`` naming the file, the item and the field for anything wrong."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise ConfigError([f"{p}: file missing"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read: {getattr(exc, 'strerror', None) or exc}"]) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{p}:{exc.lineno}: invalid JSON: {exc.msg}"]) from exc
    if not isinstance(data, list):
        raise ConfigError([f"{p}: expected a JSON list of deploys, got {type(data).__name__}"])
    services = [s.name for s in cfg.services]
    out = []
    for i, item in enumerate(data):
        at = f"[{i}]"
        if not isinstance(item, dict):
            raise _field_error(p, at, f"expected an object, got {type(item).__name__}")
        unknown = sorted(
            set(item) - {"service", "tag", "deployed_at", "outcome", "sha", "run_id", "previous"}
        )
        if unknown:
            raise _field_error(p, f"{at}.{unknown[0]}", "unknown field")
        service = item.get("service")
        if service is None and len(services) == 1:
            service = services[0]
        if not isinstance(service, str) or service not in services:
            raise _field_error(
                p, f"{at}.service", f"{service!r} is not a configured service (have: {', '.join(services)})"
            )
        tag = item.get("tag")
        problem = "required" if tag is None else None
        if problem is None:
            problem = "expected a string" if not isinstance(tag, str) else tag_problem(tag)
        if problem is not None:
            raise _field_error(p, f"{at}.tag", problem)
        deployed_at = _time(item.get("deployed_at"))
        if deployed_at is None:
            raise _field_error(
                p,
                f"{at}.deployed_at",
                f"{item.get('deployed_at')!r} is neither Unix seconds nor an ISO 8601 time with a zone",
            )
        outcome = item.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise _field_error(p, f"{at}.outcome", f"{outcome!r}: one of {', '.join(OUTCOMES)}")
        run_id = item.get("run_id")
        if run_id is not None and (not isinstance(run_id, int) or isinstance(run_id, bool) or run_id < 1):
            raise _field_error(p, f"{at}.run_id", "expected a positive whole number")
        for key in ("sha", "previous"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise _field_error(p, f"{at}.{key}", "expected a string")
        out.append(
            PastDeploy(service, str(tag), deployed_at, outcome, item.get("sha"), run_id, item.get("previous"))
        )
    return sorted(out, key=lambda d: d.deployed_at)


def _time(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        t = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return None
        t = parsed.timestamp()
    else:
        return None
    return t if math.isfinite(t) and t > 0 else None


def github_deploys(cfg: WatchdogConfig, env: str, since: float, clock: Clock) -> list[PastDeploy]:
    """The successful deployments to ``env`` since ``since``, from GitHub, oldest first.

    A deployment's time is its ``success`` status's (later ones turn it ``inactive``). The
    watchdog's own rollback runs (their payload carries an incident's correlation id, ``wd-…``)
    are not deploys; each marks the deploy before it ``rolled_back``, and so does a deployment that
    puts back a tag deployed earlier (a rollback by hand). Every other deploy followed by another
    is ``kept``: GitHub cannot tell a hotfix from a new feature.
    """
    from actions.github import DeployWorkflow, github_auth, github_error
    from watchdog.store import CORRELATION_PREFIX

    gh = cfg.github
    workflow = DeployWorkflow(
        gh.api_url,
        gh.repo,
        gh.workflow,
        github_auth(gh, clock),
        clock,
        timeout_s=gh.request_timeout_s,
        request_interval_s=gh.request_interval_s,
        write_interval_s=gh.write_interval_s,
    )
    services = [s.name for s in cfg.services]
    found: list[tuple[float, str, dict[str, Any]]] = []  # (time, service, facts)
    try:
        for deployment in workflow.github.get_repo(gh.repo).get_deployments(environment=env):
            if deployment.created_at.timestamp() < since:
                break  # newest first: the rest is older
            # a later deployment's success marks this one inactive (GitHub's auto_inactive): its
            # own success is what makes it a deploy, and when
            latest = next((st for st in deployment.get_statuses() if st.state == "success"), None)
            if latest is None:
                continue
            payload = deployment.payload if isinstance(deployment.payload, dict) else {}
            named = payload.get("service")
            service = (
                named if isinstance(named, str) and named else (services[0] if len(services) == 1 else None)
            )
            if service not in services:
                continue
            correlation = payload.get(gh.correlation_input)
            # the watchdog's own rollback run carries an incident's id; a deploy may carry its own
            rollback = isinstance(correlation, str) and correlation.startswith(CORRELATION_PREFIX)
            found.append(
                (
                    latest.created_at.timestamp(),
                    str(service),
                    {"tag": deployment.ref, "sha": deployment.sha, "rollback": rollback},
                )
            )
    except Exception as exc:  # GitHub's failure, named as the watchdog's other GitHub errors are
        raise github_error(exc, f"list deployments to {env}", clock.now()) from exc
    out: list[PastDeploy] = []
    for service in services:
        mine = sorted((t, f) for t, s, f in found if s == service)
        seen: list[str] = []
        for k, (t, facts) in enumerate(mine):
            if facts["rollback"]:
                seen.append(facts["tag"])
                continue
            nxt = mine[k + 1][1] if k + 1 < len(mine) else None
            outcome: Outcome | None = None
            if nxt is not None:
                outcome = "rolled_back" if nxt["rollback"] or nxt["tag"] in seen else "kept"
            out.append(
                PastDeploy(service, facts["tag"], t, outcome, facts["sha"], None, seen[-1] if seen else None)
            )
            seen.append(facts["tag"])
    return sorted(out, key=lambda d: d.deployed_at)


# --------------------------------------------------------------------------- one deploy, watched again


def replay_deploy(cfg: WatchdogConfig, env: str, source: MetricSource, deploy: PastDeploy) -> BacktestResult:
    """Watch ``deploy`` again with ``cfg`` against ``source``'s history, in simulated time."""
    store = Store.open("sqlite://")
    try:
        clock = SimClock(deploy.deployed_at)
        engine = Engine(cfg, store, source, clock)  # no pipeline, no pager: decide and record only
        if deploy.previous and deploy.previous != deploy.tag:
            engine.pin(env, deploy.service, ReleaseRef(deploy.previous), actor="backtest", reason="backtest")
        watch = engine.start_watch(
            env,
            deploy.service,
            ReleaseRef(deploy.tag, deploy.sha, deploy.run_id),
            deploy.deployed_at,
            actor="backtest",
            source="backtest",
        )
        tick_s = cfg.tick_s
        # an ``extend`` policy may watch once more: the watch's own end is read at every tick
        limit = deploy.deployed_at + 2 * cfg.env(env).watch_s + 2 * tick_s
        engine.tick()
        while store.watch(watch.id).phase == WatchPhase.RUNNING.value and clock.now() < limit:
            clock.advance(tick_s)
            engine.tick()
        entries = [e for e in store.decisions(env=env) if e.watch_id == watch.id]
        return _result(deploy, entries)
    finally:
        store.close()


def _result(deploy: PastDeploy, entries: Sequence[DecisionEntry]) -> BacktestResult:
    first: dict[str, DecisionEntry] = {}
    for e in entries:
        first.setdefault(e.kind, e)
    decision: Decision
    signal = None
    decided_at = None
    rolled, promoted = first.get(DecisionKind.ROLLBACK_DECIDED), first.get(DecisionKind.PROMOTED)
    if rolled is not None:
        failed = rolled.evidence.get("failed") or [{}]
        decision, decided_at, signal, reason = "rollback", rolled.at, failed[0].get("signal"), rolled.reason
    elif promoted is not None:
        decision, reason = "promote", promoted.reason
    else:
        blind = [b for b in entries if b.kind == DecisionKind.BLIND and b.result in ("blind", "paged")]
        ended = first.get(DecisionKind.INCONCLUSIVE)
        if blind:
            decision, decided_at, reason = "blind", blind[0].at, blind[0].reason
        else:
            decision = "inconclusive"
            reason = ended.reason if ended is not None else "the watch did not end"
    return BacktestResult(
        deploy.service,
        deploy.tag,
        deploy.deployed_at,
        decision,
        decided_at,
        signal,
        reason,
        deploy.outcome,
        _verdict(decision, deploy.outcome),
    )


def _verdict(decision: Decision, outcome: Outcome | None) -> str | None:
    if outcome is None or decision not in ("rollback", "promote"):
        return None
    bad = outcome in BAD_OUTCOMES
    if decision == "rollback":
        return "agrees" if bad else "false_rollback"
    return "missed" if bad else "agrees"


def run_backtest(
    cfg: WatchdogConfig,
    env: str,
    source: MetricSource,
    deploys: Sequence[PastDeploy],
    *,
    progress: Callable[[BacktestResult], None] | None = None,
) -> list[BacktestResult]:
    results = []
    for deploy in deploys:
        result = replay_deploy(cfg, env, source, deploy)
        if progress is not None:
            progress(result)
        results.append(result)
    return results


def totals(results: Sequence[BacktestResult]) -> dict[str, Any]:
    def count(values: Sequence[str | None]) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in values:
            if v is not None:
                out[v] = out.get(v, 0) + 1
        return dict(sorted(out.items()))

    return {
        "deploys": len(results),
        "decisions": count([r.decision for r in results]),
        "outcomes": count([r.outcome for r in results]),
        "verdicts": count([r.verdict for r in results]),
    }


def report_json(env: str, since: float, until: float, results: Sequence[BacktestResult]) -> dict[str, Any]:
    return {
        "format": 1,
        "env": env,
        "since": since,
        "until": until,
        "deploys": [r.as_dict() for r in results],
        "totals": totals(results),
    }


def format_table(results: Sequence[BacktestResult]) -> str:
    """One line per deploy, then the totals."""
    header = ("deployed (UTC)", "service", "tag", "would", "signal", "after", "outcome", "verdict")
    rows = [header]
    for r in results:
        after = f"{r.decided_at - r.deployed_at:.0f}s" if r.decided_at is not None else "-"
        rows.append(
            (
                datetime.fromtimestamp(r.deployed_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                r.service,
                r.tag,
                r.decision,
                r.signal or "-",
                after,
                r.outcome or "-",
                r.verdict or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    t = totals(results)

    def fmt(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"

    lines += [
        "",
        f"{t['deploys']} deploys; would: {fmt(t['decisions'])}; outcomes: {fmt(t['outcomes'])}; "
        f"verdicts: {fmt(t['verdicts'])}",
    ]
    return "\n".join(lines)
