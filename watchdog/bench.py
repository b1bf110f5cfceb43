"""``rollback-watchdog bench``: replay scenario directories in simulated time and write the results.

The ``watchdog`` detector is the daemon's own path — replay source, ``Engine``, ``WatchEvaluator``,
policy, store — ticking once per scrape step with a simulated clock (no sleeping). The peers
(``detectors.peers``) judge the same samples, counted by the same rules (``watchdog.series``),
turned into per-step arrays. Only ``oracle``, the reference, opens ``truth.json``.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr

from detectors.observations import CohortSeries, Observations, PeerDecision
from detectors.peers.argo import argo_peer
from detectors.peers.burnrate import burnrate_peer
from detectors.peers.kayenta import kayenta_peer
from detectors.peers.naive import naive_peer
from watchdog.clock import SimClock
from watchdog.config import (
    EnvironmentPolicy,
    GaugeSignal,
    GitHubConfig,
    LatencySignal,
    ProbeSignal,
    RatioSignal,
    ReplayConfig,
    SeriesRef,
    ServiceConfig,
    SourceConfig,
    StoreConfig,
    WatchdogConfig,
)
from watchdog.engine import Engine
from watchdog.phases import DecisionKind, WatchPhase
from watchdog.series import Selector, Series
from watchdog.sources.replay import ReplaySource, Scenario
from watchdog.store import ReleaseRef, Store

DETECTORS = ("watchdog", "argo", "kayenta", "burnrate", "naive", "oracle")
ALPHA = 0.01


# ----------------------------------------------------------------------------- configuration


def _has(source: ReplaySource, metric: str) -> bool:
    return bool(source.fetch(Selector.of(metric), -math.inf, math.inf))


def bench_config(source: ReplaySource, store_url: str = "sqlite://") -> WatchdogConfig:
    """The configuration the daemon would have for this scenario: every signal its data and SLO allow."""
    sc = source.scenario
    slo = sc.slo
    req = SeriesRef(metric="http_requests_total")
    signals: list[Any] = [
        RatioSignal(
            name="http_5xx",
            kind="ratio",
            bad=req.model_copy(update={"match": {"code": "=~5.."}}),
            total=req,
            slo=slo.get("error_rate"),
            alpha_weight=3.0,  # the headline signal gets a larger share of the false-alarm budget
        ),
    ]
    hist = SeriesRef(metric="http_request_duration_seconds")
    if _has(source, "http_request_duration_seconds_bucket"):
        for name, key, q in (("latency_p95", "latency_p95_s", 0.95), ("latency_p99", "latency_p99_s", 0.99)):
            if key in slo:
                signals.append(
                    LatencySignal(name=name, kind="latency", histogram=hist, quantile=q, threshold_s=slo[key])
                )
        if sc.canary:
            signals.append(
                LatencySignal(name="latency_distribution", kind="latency", histogram=hist, omnibus=True)
            )
    if _has(source, "probe_success"):
        signals.append(
            ProbeSignal(
                name="healthcheck",
                kind="probe",
                probe=SeriesRef(metric="probe_success", match={"probe": "health"}),
            )
        )
    for name, bad, total, key in (
        ("token_reuse", "stamps_token_reuse_total", "stamps_claims_total", "token_reuse_rate"),
        (
            "device_proof_failures",
            "device_proof_failures_total",
            "device_proof_attempts_total",
            "device_proof_failure_rate",
        ),
    ):
        if _has(source, bad) and _has(source, total):
            signals.append(
                RatioSignal(
                    name=name,
                    kind="ratio",
                    bad=SeriesRef(metric=bad),
                    total=SeriesRef(metric=total),
                    slo=slo.get(key),
                )
            )
    if sc.canary and _has(source, "cost_per_tenant"):
        signals.append(
            GaugeSignal(
                name="cost_per_tenant",
                kind="gauge",
                gauge=SeriesRef(metric="cost_per_tenant"),
                by=["tenant"],
                max_ratio=1.5,
                for_samples=4,
            )
        )
    service = ServiceConfig(name=_service_name(sc), canary=sc.canary, signals=signals)
    policy = EnvironmentPolicy(
        watch_s=sc.end - sc.deploy_at,
        post_rollback_watch_s=1800.0,
        alpha=ALPHA,
        calibration_s=max(0.0, sc.deploy_at - sc.start),
        rollback_cooldown_s=0.0,  # scenarios are independent deploys: the loop guard is not what is measured
        post_promotion_watch_s=0.0,  # the deploy's own watch is what is scored (the store is shared)
    )
    return WatchdogConfig(
        tick_s=sc.step_s,
        services=[service],
        environments={"prod": policy},
        source=SourceConfig(
            kind="replay", replay=ReplayConfig(path=str(sc.path)), lookback_s=max(300.0, 4 * sc.step_s)
        ),
        github=GitHubConfig(repo="bench/none", token=SecretStr("unused")),
        store=StoreConfig(url=store_url),
    )


def _service_name(sc: Scenario) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in sc.name.lower()).strip("-") or "scenario"
    return safe if safe[0].isalpha() else "s-" + safe


# ----------------------------------------------------------------------------- the watchdog path


def run_watchdog(source: ReplaySource, store: Store) -> dict[str, Any]:
    sc = source.scenario
    cfg = bench_config(source)
    clock = SimClock(sc.deploy_at)
    engine = Engine(cfg, store, source, clock, step_s=sc.step_s)
    service = cfg.services[0].name
    engine.pin(
        "prod", service, ReleaseRef(sc.release_from or "previous"), actor="bench", reason="scenario start"
    )
    engine.announce(
        "prod", service, ReleaseRef(sc.release_to or "new"), deployed_at=sc.deploy_at, source="bench"
    )
    engine.tick()
    watch = store.running_watches("prod", service)[0]
    while clock.now() < sc.end + 1e-6:
        clock.advance(sc.step_s)
        engine.tick()
        if store.watch(watch.id).phase != WatchPhase.RUNNING.value:
            break
    entries = store.decisions(env="prod", service=service)  # (one store serves every scenario of a worker)
    kinds = {e.kind: e for e in entries}
    if DecisionKind.ROLLBACK_DECIDED in kinds:
        e = kinds[DecisionKind.ROLLBACK_DECIDED]
        failed = e.evidence.get("failed", [{}])
        return {
            "decision": "rollback",
            "decided_at": e.at,
            "signal": failed[0].get("signal"),
            "evidence": _compact(failed[0]),
        }
    if DecisionKind.PROMOTED in kinds:
        return {"decision": "promote", "decided_at": None, "signal": None, "evidence": {}}
    return {
        "decision": "inconclusive",
        "decided_at": None,
        "signal": None,
        "evidence": {"reason": kinds[DecisionKind.INCONCLUSIVE].reason}
        if DecisionKind.INCONCLUSIVE in kinds
        else {},
    }


def _compact(evidence: dict[str, Any]) -> dict[str, Any]:
    keep = ("statistic", "threshold", "summary", "detector")
    out = {k: evidence[k] for k in keep if k in evidence}
    inner = evidence.get("evidence", {})
    out.update({k: v for k, v in inner.items() if isinstance(v, int | float | str | bool) or v is None})
    return out


# ----------------------------------------------------------------------------- observations for peers


def _step_values(series: list[Series], by: str | None, grid: np.ndarray) -> dict[str, np.ndarray]:
    """Counter increments per grid step (t_{k-1}, t_k], summed per label value (``by``)."""
    out: dict[str, np.ndarray] = {}
    for s in series:
        key = s.labels.get(by, "") if by else ""
        if s.t.size == 0:
            continue
        idx = np.searchsorted(s.t, grid, "right") - 1
        tot = np.where(idx >= 0, s.total[np.maximum(idx, 0)], 0.0)
        inc = np.diff(tot, prepend=tot[0] if idx[0] >= 0 else 0.0)
        out[key] = out.get(key, np.zeros(grid.size)) + inc
    return out


def _gauge_values(series: list[Series], by: list[str], grid: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
    out: dict[tuple[str, ...], np.ndarray] = {}
    for s in series:
        key = tuple(s.labels.get(b, "") for b in by)
        vals = np.full(grid.size, np.nan)
        pos = np.searchsorted(grid, s.t)
        ok = (pos < grid.size) & (np.abs(grid[np.minimum(pos, grid.size - 1)] - s.t) < 1e-6)
        vals[pos[ok]] = s.v[ok]
        prev = out.get(key)
        out[key] = vals if prev is None else np.where(np.isnan(vals), prev, vals)
    return out


def observations(source: ReplaySource) -> Observations:
    """The scenario as per-step arrays for the peers, counted like the daemon counts."""
    sc = source.scenario
    grid = np.arange(sc.start + sc.step_s, sc.end + sc.step_s / 2, sc.step_s)
    deploy_index = int(np.searchsorted(grid, sc.deploy_at, "right"))
    cohorts = ("canary", "baseline") if sc.canary else ("all",)
    by = "cohort" if sc.canary else None

    def fetch(metric: str, labels: dict[str, str] | None = None) -> list[Series]:
        return source.fetch(Selector.of(metric, labels), -math.inf, math.inf)

    def counts(metric: str, labels: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        return _step_values(fetch(metric, labels), by, grid)

    requests, errors = counts("http_requests_total"), counts("http_requests_total", {"code": "=~5.."})
    claims, reuse = counts("stamps_claims_total"), counts("stamps_token_reuse_total")
    attempts, failures = counts("device_proof_attempts_total"), counts("device_proof_failures_total")
    buckets_raw = fetch("http_request_duration_seconds_bucket")
    les = sorted({float(s.labels["le"].replace("+Inf", "inf")) for s in buckets_raw})
    probes = _gauge_values(fetch("probe_success", {"probe": "health"}), ["cohort"] if by else [], grid)
    costs = _gauge_values(fetch("cost_per_tenant"), ["cohort", "tenant"] if by else ["tenant"], grid)
    zero = np.zeros(grid.size)
    made: dict[str, CohortSeries] = {}
    for c in cohorts:
        key = c if by else ""
        mine = [s for s in buckets_raw if not by or s.labels.get("cohort") == c]
        per_le = _step_values(mine, "le", grid)
        bucket = (
            np.stack([per_le.get(_le_label(le, mine), zero) for le in les], axis=1) if les else zero[:, None]
        )
        made[c] = CohortSeries(
            requests=requests.get(key, zero),
            errors=errors.get(key, zero),
            buckets=bucket,
            claims=claims.get(key, zero),
            token_reuse=reuse.get(key, zero),
            proof_attempts=attempts.get(key, zero),
            proof_failures=failures.get(key, zero),
            probe=probes.get((c,) if by else (), np.full(grid.size, np.nan)),
            cost={k[-1]: v for k, v in costs.items() if not by or k[0] == c},
        )
    return Observations(
        t=grid,
        deploy_index=deploy_index,
        step_s=sc.step_s,
        le=np.array(les),
        slo=dict(sc.slo),
        canary=made.get("canary"),
        baseline=made.get("baseline"),
        all=made.get("all"),
    )


def _le_label(le: float, series: list[Series]) -> str:
    for s in series:
        raw = s.labels["le"]
        if float(raw.replace("+Inf", "inf")) == le:
            return raw
    return str(le)


# ----------------------------------------------------------------------------- the oracle


def share_llr(c: float, b: float, ct: float, bt: float, p0: float, p1: float) -> float:
    """One interval's log-likelihood ratio of "canary rate p1" vs "p0" (baseline p0) from the canary's
    share of the bad events: ``c`` of ``c + b``, when it carries ``ct`` of ``ct + bt`` requests.
    An interval where a cohort had no traffic, or nothing was bad, says nothing: 0."""
    if ct <= 0 or bt <= 0 or c + b <= 0:
        return 0.0
    rho = ct / (ct + bt)
    th1 = rho * p1 / (rho * p1 + (1 - rho) * p0)
    return c * math.log(th1 / rho) + b * math.log((1 - th1) / (1 - rho))


def _oracle(source: ReplaySource, obs: Observations) -> PeerDecision:
    """An SPRT that knows the truth: the regression's signal and its rates before and after.

    For a regression on a count signal it runs Wald's SPRT of the true rates on the same
    conditional counts the watchdog uses; for healthy deploys it tests the 5xx rate against a
    doubling. Gauges and probes: it knows, and decides at the first step after the onset.
    """
    truth = json.loads((source.scenario.path / "truth.json").read_text())
    a_bound, b_bound = math.log((1 - 0.02) / ALPHA), math.log(0.02 / (1 - ALPHA))
    signals = truth.get("signals") or []
    effect = truth.get("effect") or {}
    counts = {
        "http_5xx": ("errors", "requests"),
        "token_reuse": ("token_reuse", "claims"),
        "device_proof_failures": ("proof_failures", "proof_attempts"),
    }
    name = next((s for s in signals if s in counts), None)
    if truth.get("regression") and name is None:
        return PeerDecision(
            "rollback", obs.deploy_index, signals[0] if signals else None, {"oracle": "knows"}
        )
    if name is None:
        name = "http_5xx"
        base = float(truth.get("base_error_rate") or 0.005)
        p0, p1 = base, min(2 * base, 0.5)
    else:
        p0, p1 = float(effect.get("from", 0.005)), float(effect.get("to", 0.01))
    bad_attr, tot_attr = counts[name]
    llr = 0.0
    for i in range(obs.deploy_index, obs.t.size):
        if obs.has_canary:
            assert obs.canary is not None and obs.baseline is not None
            c, b = getattr(obs.canary, bad_attr)[i], getattr(obs.baseline, bad_attr)[i]
            ct, bt = getattr(obs.canary, tot_attr)[i], getattr(obs.baseline, tot_attr)[i]
            llr += share_llr(c, b, ct, bt, p0, p1)
        else:
            assert obs.all is not None
            x, n = getattr(obs.all, bad_attr)[i], getattr(obs.all, tot_attr)[i]
            llr += x * math.log(p1 / p0) + (n - x) * math.log((1 - p1) / (1 - p0))
        if llr >= a_bound:
            return PeerDecision("rollback", i, name, {"llr": llr})
        if llr <= b_bound:
            return PeerDecision("promote", None, None, {"llr": llr})
    return PeerDecision("promote" if llr < 0 else "inconclusive", None, None, {"llr": llr})


# ----------------------------------------------------------------------------- running


PEERS: dict[str, Callable[..., PeerDecision]] = {
    "argo": argo_peer,
    # as Kayenta users configure a canary: the error rate is a critical metric (one High fails the
    # canary); with equal weights alone, one regressed metric of five still scores 80 and passes
    "kayenta": functools.partial(kayenta_peer, critical_signals=("http_5xx",)),
    "burnrate": burnrate_peer,
    "naive": naive_peer,
}


@dataclass
class _Worker:
    detector: str
    options: dict[str, Any]
    store: Store | None = None

    def __call__(self, directory: str) -> dict[str, Any]:
        name = Path(directory).name
        t0 = time.process_time()
        try:
            source = ReplaySource(directory)
            name = source.scenario.name
            if self.detector == "watchdog":
                if self.store is None:
                    self.store = Store.open("sqlite://")
                result = run_watchdog(source, self.store)
            else:
                obs = observations(source)
                if self.detector == "oracle":
                    peer = _oracle(source, obs)
                else:
                    peer = PEERS[self.detector](obs, **self.options)
                result = _peer_result(peer, obs)
        except Exception as exc:  # one bad scenario must not stop the others
            return {
                "scenario": name,
                "decision": "error",
                "decided_at": None,
                "signal": None,
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(limit=3),
                "cpu_s": time.process_time() - t0,
            }
        return {"scenario": name, **result, "cpu_s": time.process_time() - t0}


def _peer_result(peer: PeerDecision, obs: Observations) -> dict[str, Any]:
    decided_at = (
        float(obs.t[peer.decided_index])
        if peer.decision == "rollback" and peer.decided_index is not None
        else None
    )
    evidence = {
        k: v for k, v in peer.evidence.items() if isinstance(v, int | float | str | bool) or v is None
    }
    return {"decision": peer.decision, "decided_at": decided_at, "signal": peer.signal, "evidence": evidence}


def scenario_dirs(root: str | Path) -> list[Path]:
    base = Path(root)
    return sorted(p for p in base.iterdir() if p.is_dir())


_WORKER: _Worker | None = None


def _init(detector: str, options: dict[str, Any]) -> None:
    global _WORKER
    _WORKER = _Worker(detector, options)


def _run_one(directory: str) -> dict[str, Any]:
    assert _WORKER is not None
    return _WORKER(directory)


def run_bench(
    scenarios: str | Path,
    detector: str = "watchdog",
    *,
    jobs: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one detector over every scenario directory; the results in the scenario format's shape."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; one of {', '.join(DETECTORS)}")
    dirs = [str(d) for d in scenario_dirs(scenarios)]
    opts = dict(options or {})
    jobs = jobs or min(len(dirs) or 1, os.cpu_count() or 1)
    results: list[dict[str, Any]] = []
    if jobs <= 1:
        worker = _Worker(detector, opts)
        results = [worker(d) for d in dirs]
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs, initializer=_init, initargs=(detector, opts)) as pool:
            results = list(pool.imap(_run_one, dirs, chunksize=8))
    label = detector + "".join(f"-{k}{v}" for k, v in sorted(opts.items()))
    return {
        "format": 1,
        "detector": label,
        "results": results,
        "cpu_s": round(sum(float(r.get("cpu_s", 0.0)) for r in results), 3),
    }
