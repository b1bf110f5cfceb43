"""The scenario families: each edits a ``World`` after ``deploy_at`` and records its truth.

Families. Healthy ones have ``regression: false``, ``onset: null``, ``signals: []``, ``effect: null``:

- ``aa_basic`` (weight 2): plain A/A canary, diurnal traffic, no nuisances.
- ``aa_overdispersed``: strong overdispersion: requests CV ``U(0.35, 0.5)``, shared 5xx bursts CV
  ``U(0.6, 1.0)`` and independent ones CV ``U(0.3, 0.5)``.
- ``aa_warmup``: the canary's latency median x ``U(1.3, 2)`` for the first ``U(15, 45)`` s after
  ``deploy_at`` only (cold caches); errors unaffected.
- ``aa_reset``: the canary's counters reset at ``deploy_at``.
- ``aa_missed_scrapes``: missed samples and a gap.
- ``aa_noisy_neighbour``: a shared incident of ``U(120, 360)`` s in the watch raises the 5xx rate
  x ``U(3, 10)`` and the latency median x 1.5 in both cohorts alike.
- ``aa_flap``: one failed canary probe (one sample of ``probe_success`` = 0) during the watch.
- ``aa_split_shift``: from ``deploy_at`` the canary's traffic share is x ``logU(0.5, 2)`` (<= 0.9).
- ``ba_healthy``: before/after (``canary: false``), healthy.

Regressions start at ``deploy_at`` (``onset = deploy_at``) on the canary (``all`` for ``ba_``):

- ``err_step`` (25 % of the regressions): 5xx x ``logU(1.5, 20)``; effect = the canary's 5xx rate.
- ``lat_shift``: latency median x ``U(1.3, 3)``; effect = fraction of requests above the
  ``latency_p95_s`` bound (also for ``lat_tail`` and ``lat_var``).
- ``lat_tail``: ``U(0.02, 0.1)`` of the requests take a second lognormal, median ``U(0.8, 3)`` s,
  sigma ``U(0.2, 0.5)``; signals ``latency_p99`` plus ``latency_p95`` when the tail moves p95 past
  its bound.
- ``lat_var``: sigma x ``U(1.5, 2.5)``, same median.
- ``err_ramp``: 5xx rate ramps linearly from base to base x ``U(3, 10)`` over ``U(300, 1200)`` s;
  effect = base -> final rate.
- ``bad_instance``: the canary has 2-4 instances (the histogram gets ``instance`` too) and one of
  them has 5xx x ``U(10, 20)``; effect = the canary's aggregate 5xx rate.
- ``probe_hard``: the canary's probe fails at every sample after ``deploy_at`` (3 % chance of a lone
  success) and its 5xx rate is x ``U(2, 5)``; effect = 5xx rate.
- ``token_reuse_rise``: token-reuse rate x ``logU(3, 20)``; effect = rate.
- ``proof_fail_rise``: device-proof failure rate x ``logU(2, 10)``; effect = rate.
- ``cost_tenant``: one tenant's cost on the canary x ``U(1.5, 3)``; effect = that tenant's cost;
  ``truth.tenant`` names it.
- ``ba_err_step``: before/after, 5xx x ``logU(1.5, 20)``; effect = rate.

Data faults: what a detector is never to be fooled by (together about a fifth of a corpus). Real
Prometheus series simply have no samples where a target was not scraped: no ``NaN``, no zeros.
"Long history" below means counters of processes up for ``logU(2, 30)`` days (not 1-72 h), whose
5xx counters' past is x ``U(1.5, 4)`` today's rate per cohort (old incidents stay in a cumulative
count; ``truth.history``): a reader that takes a resumed series' whole value as new events sees a
bad release. Weights are those of ``FAMILIES``.

- ``aa_scrape_gap`` (healthy, 0.5), ``ba_scrape_gap`` (healthy, 0.4): long history, no reset at
  ``deploy_at``, and a gap of ``U(6, 15)`` min in the watch (from ``deploy_at + 1 min``, ending at
  least 2 min before the end). Half the time Prometheus itself was down: every series of every
  cohort, probes too, has no sample there; else one cohort's ``/metrics`` was not scraped (each
  cohort alike likely) while its blackbox probe, another exporter, was. Counters count on through
  the gap. ``truth.gap`` says which.
- ``ba_no_restart`` (healthy, 0.3), ``ba_no_restart_err_step`` (regression, 1): a before/after
  release that restarts nothing (a hot reload): long history and no reset at ``deploy_at``; the
  regression is ``ba_err_step``'s.
- ``blind_canary`` (0.6): the canary's exporter dies ``U(60, 180)`` s after ``deploy_at`` and is
  never scraped again (every canary series but ``probe_success``), while its blackbox probe, a
  separate exporter, keeps succeeding. The canary is healthy but nobody can tell: ``regression:
  false`` and ``truth.expect = "inconclusive"``, the only right decision (never promote, never
  roll back). Counted as healthy for false rollbacks.
- ``crash_loop`` (regression, 1): the canary restarts at ``deploy_at`` (forced reset) and crashes
  ``U(15, 60)`` s later for good: its ``/metrics`` is never scraped again, its probe fails from
  there (3 % chance of a lone success, a restart between back-offs) and the load balancer sends
  its traffic to the baseline. ``onset`` is the crash (``truth.crash_at``), not ``deploy_at``;
  signal ``healthcheck``, effect = the share of failed probes (0 -> 0.97).
- ``aa_restart`` (healthy, 0.4), ``ba_restart`` (healthy, 0.3): the new release's cohort
  restarts once in the watch (``U(deploy_at + 2 min, end - 3 min)``): its counters read 0 from
  there (listed in ``truth.resets``), and its ``/metrics`` misses 1-4 scrapes around the restart
  (the restart among them) while its probe keeps succeeding (the process is back within seconds;
  it serves ``/metrics`` after warming up). ``truth.restart`` says when.
- ``aa_tiny_share`` (healthy, 0.4), ``tiny_share_err_step`` (regression, 1.5): a canary of one
  instance with ``logU(0.01, 0.02)`` of the traffic; the regression is ``err_step``'s. The cost of a
  small canary: less evidence per minute.

Effects are the model's expected values, not counts from the series. ``truth.json`` also carries
``family``, ``rps`` (mean total rate over the watch), ``canary_share`` (before deploy),
``base_error_rate``, ``nuisances``, ``resets`` (``[{"cohort", "at"}]``), ``slo_breach`` (whether the
regression's post-deploy value breaks the scenario's SLO; ``null`` for healthy scenarios and for
cost, which has no SLO) and per-family details (``multiplier``, ``tenant``, ``instance``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.world import (
    DEPLOY_K,
    N_SAMPLES,
    SIGNALS,
    STEP_S,
    WATCH_S,
    Cohort,
    World,
    frac_above,
    logu,
    make_instances,
)

# Families: each edits the world after deploy_at and records its truth.


def _regress(w: World, signals: Sequence[str], frm: float, to: float, **extra: Any) -> None:
    w.truth.update(
        regression=True,
        onset=w.deploy_at,
        signals=[s for s in SIGNALS if s in signals],
        effect={"from": frm, "to": to},
        **extra,
    )


def _latency_effect(w: World) -> tuple[float, float, float, float]:
    """Share of the new cohort's requests above the p95 and p99 bounds, before and after deploy."""
    c, k = w.new, N_SAMPLES - 1
    b95, b99 = w.slo["latency_p95_s"], w.slo["latency_p99_s"]
    old = (w.base["lat_median_s"], w.base["lat_sigma"])
    new = (
        float(c.lat_med[k]),
        float(c.lat_sigma[k]),
        float(c.tail_frac[k]),
        float(c.tail_med[k]),
        float(c.tail_sigma[k]),
    )
    return frac_above(b95, *old), frac_above(b95, *new), frac_above(b99, *old), frac_above(b99, *new)


def _latency_regression(w: World, signals: Sequence[str], **extra: Any) -> None:
    frm, to, frm99, to99 = _latency_effect(w)
    breach = to > 0.05 or to99 > 0.01
    _regress(w, signals, frm, to, above_p99_bound={"from": frm99, "to": to99}, slo_breach=breach, **extra)


def _error_regression(w: World, to: float, **extra: Any) -> None:
    base = w.base["error_rate"]
    _regress(w, ["http_5xx"], base, to, slo_breach=to > w.slo["error_rate"], **extra)


def aa_basic(w: World) -> None:
    """Nothing happens: the release is as good as the old one."""


def aa_warmup(w: World) -> None:
    c, rng = w.new, w.rng
    mult, warm_s = float(rng.uniform(1.3, 2.0)), float(rng.uniform(15, 45))
    step_start = w.times - STEP_S
    overlap = np.clip((w.deploy_at + warm_s - step_start) / STEP_S, 0, 1) * w.after
    c.tail_frac, c.tail_med, c.tail_sigma = overlap, c.lat_med * mult, c.lat_sigma.copy()
    w.truth.update(warmup_s=warm_s, multiplier=mult)


def aa_noisy_neighbour(w: World) -> None:
    rng = w.rng
    dur = float(rng.uniform(120, 360))
    t0 = float(rng.uniform(w.deploy_at + 60, w.deploy_at + WATCH_S - dur))
    hit = (w.times > t0) & (w.times - STEP_S < t0 + dur)
    mult = float(rng.uniform(3, 10))
    for c in w.cohorts:
        c.err[hit] *= mult
        c.lat_med[hit] *= 1.5
    w.truth.update(
        incident={"start": t0, "end": t0 + dur, "error_multiplier": mult, "latency_multiplier": 1.5}
    )


def aa_flap(w: World) -> None:
    k = int(w.rng.integers(DEPLOY_K + 1, N_SAMPLES))
    w.new.probe[k] = 0
    w.new.keep[k] = True
    w.truth.update(flap_at=float(w.times[k]))


def aa_split_shift(w: World) -> None:
    mult = logu(w.rng, 0.5, 2.0)
    canary, baseline = w.cohort("canary"), w.cohort("baseline")
    canary.share[w.after] = np.minimum(canary.share[w.after] * mult, 0.9)
    baseline.share = 1 - canary.share
    w.truth.update(multiplier=mult, canary_share_after=float(canary.share[-1]))


def err_step(w: World) -> None:
    mult = logu(w.rng, 1.5, 20)
    w.new.err[w.after] *= mult
    _error_regression(w, w.base["error_rate"] * mult, multiplier=mult)


def lat_shift(w: World) -> None:
    mult = float(w.rng.uniform(1.3, 3.0))
    w.new.lat_med[w.after] *= mult
    _latency_regression(w, ["latency_p95", "latency_p99"], multiplier=mult)


def lat_tail(w: World) -> None:
    rng, c = w.rng, w.new
    frac, med, sigma = (
        float(rng.uniform(0.02, 0.1)),
        float(rng.uniform(0.8, 3.0)),
        float(rng.uniform(0.2, 0.5)),
    )
    c.tail_frac[w.after], c.tail_med[:], c.tail_sigma[:] = frac, med, sigma
    _, to95, _, _ = _latency_effect(w)
    signals = ["latency_p95", "latency_p99"] if to95 > 0.05 else ["latency_p99"]
    _latency_regression(w, signals, tail={"fraction": frac, "median_s": med, "sigma": sigma})


def lat_var(w: World) -> None:
    mult = float(w.rng.uniform(1.5, 2.5))
    w.new.lat_sigma[w.after] *= mult
    _latency_regression(w, ["latency_p95", "latency_p99"], multiplier=mult)


def err_ramp(w: World) -> None:
    rng, base = w.rng, w.base["error_rate"]
    mult, ramp_s = float(rng.uniform(3, 10)), float(rng.uniform(300, 1200))
    mid = w.times - STEP_S / 2 - w.deploy_at
    w.new.err = np.where(w.after, base * (1 + (mult - 1) * np.clip(mid / ramp_s, 0, 1)), base)
    _error_regression(w, base * mult, multiplier=mult, ramp_s=ramp_s)


def bad_instance(w: World) -> None:
    rng, c = w.rng, w.new
    c.instances, c.inst_weight = make_instances(rng, 2, int(rng.integers(2, 5)))
    c.hist_by_instance = True
    bad, mult = int(rng.integers(len(c.instances))), float(rng.uniform(10, 20))
    c.inst_err_mult = np.ones((len(c.instances), N_SAMPLES))
    c.inst_err_mult[bad, w.after] = mult
    to = w.base["error_rate"] * float(c.inst_weight @ c.inst_err_mult[:, -1])
    _error_regression(w, to, multiplier=mult, instance=c.instances[bad])


def probe_hard(w: World) -> None:
    rng, c = w.rng, w.new
    n_after = int(w.after.sum())
    c.probe[w.after] = (rng.random(n_after) < 0.03).astype(np.int64)
    mult = float(rng.uniform(2, 5))
    c.err[w.after] *= mult
    to = w.base["error_rate"] * mult
    _regress(w, ["healthcheck", "http_5xx"], w.base["error_rate"], to, multiplier=mult, slo_breach=True)


def token_reuse_rise(w: World) -> None:
    mult, base = logu(w.rng, 3, 20), w.base["token_reuse_rate"]
    w.new.reuse[w.after] *= mult
    to = base * mult
    _regress(w, ["token_reuse"], base, to, multiplier=mult, slo_breach=to > w.slo["token_reuse_rate"])


def proof_fail_rise(w: World) -> None:
    mult, base = logu(w.rng, 2, 10), w.base["proof_failure_rate"]
    w.new.proof_fail[w.after] *= mult
    to = base * mult
    breach = to > w.slo["device_proof_failure_rate"]
    _regress(w, ["device_proof_failures"], base, to, multiplier=mult, slo_breach=breach)


def cost_tenant(w: World) -> None:
    rng, c = w.rng, w.new
    j, mult = int(rng.integers(len(w.tenants))), float(rng.uniform(1.5, 3.0))
    frm = float(c.cost[j, 0])
    c.cost[j, w.after] *= mult
    _regress(w, ["cost_per_tenant"], frm, frm * mult, multiplier=mult, tenant=w.tenants[j], slo_breach=None)


# Data faults: the data lies, the release may not.


def _long_history(w: World) -> None:
    """Counters of processes up for days, whose past had more 5xx than today (old incidents)."""
    rng = w.rng
    w.uptime_s = 86400.0 * logu(rng, 2, 30)
    for c in w.cohorts:
        c.history_err = float(rng.uniform(1.5, 4.0))
    w.truth.update(
        history={"uptime_s": w.uptime_s, "err_multiplier": {c.name: c.history_err for c in w.cohorts}}
    )


def _not_scraped(c: Cohort, steps: slice, probes: bool) -> None:
    """The cohort's ``/metrics`` has no samples at ``steps``; its blackbox probe neither when ``probes``."""
    if probes:
        if c.probe_keep is not None:
            c.probe_keep[steps] = False
    elif c.probe_keep is None:
        c.probe_keep = c.keep.copy()
    c.keep[steps] = False


def scrape_gap(w: World) -> None:
    rng = w.rng
    _long_history(w)
    dur = float(rng.uniform(360, 900))
    k0, n = w.step_after(float(rng.uniform(w.deploy_at + 60, w.times[-1] - dur - 120))), round(dur / STEP_S)
    if rng.random() < 0.5:
        cause, hit = "prometheus", list(w.cohorts)
    else:
        cause, hit = "exporter", [w.cohorts[int(rng.integers(len(w.cohorts)))]]
    for c in hit:
        _not_scraped(c, slice(k0, k0 + n), probes=cause == "prometheus")
    w.truth.update(
        gap={
            "cause": cause,
            "cohorts": [c.name for c in hit],
            "probes": cause == "prometheus",
            "first_missing": float(w.times[k0]),
            "last_missing": float(w.times[k0 + n - 1]),
            "missing_samples": n,
        }
    )


def no_restart(w: World) -> None:
    """A release that restarts nothing (a hot reload): the counters keep their days of history."""
    _long_history(w)


def no_restart_err_step(w: World) -> None:
    no_restart(w)
    err_step(w)


def blind_canary(w: World) -> None:
    k = w.step_after(w.deploy_at + float(w.rng.uniform(60, 180)))
    _not_scraped(w.cohort("canary"), slice(k, None), probes=False)
    w.truth.update(expect="inconclusive", exporter_lost_at=float(w.times[k]))


def crash_loop(w: World) -> None:
    rng, canary, baseline = w.rng, w.cohort("canary"), w.cohort("baseline")
    crash_at = w.deploy_at + float(rng.uniform(15, 60))
    k = w.step_after(crash_at)
    _not_scraped(canary, slice(k, None), probes=False)
    canary.probe[k:] = (rng.random(N_SAMPLES - k) < 0.03).astype(np.int64)
    canary.share[k:] = 0.0
    baseline.share = 1 - canary.share
    _regress(w, ["healthcheck"], 0.0, 0.97, slo_breach=True, crash_at=crash_at)
    w.truth["onset"] = crash_at


def restart(w: World) -> None:
    rng, c = w.rng, w.new
    k = w.step_after(float(rng.uniform(w.deploy_at + 120, w.times[-1] - 180)))
    lost = int(rng.integers(1, 5))
    k0 = k - int(rng.integers(0, lost))
    _not_scraped(c, slice(k0, k0 + lost), probes=False)
    c.resets.append(k)
    w.truth.update(
        restart={
            "cohort": c.name,
            "at": float(w.times[k]),
            "first_missing": float(w.times[k0]),
            "lost_scrapes": lost,
        }
    )


def tiny_share(w: World) -> None:
    rng, canary, baseline = w.rng, w.cohort("canary"), w.cohort("baseline")
    share = logu(rng, 0.01, 0.02)
    canary.instances, canary.inst_weight = make_instances(rng, 2, 1)
    canary.inst_err_mult = np.ones((1, N_SAMPLES))
    canary.share[:] = share
    baseline.share[:] = 1 - share


def tiny_share_err_step(w: World) -> None:
    tiny_share(w)
    err_step(w)


@dataclass(frozen=True)
class Family:
    """How a family edits the world, whether it is healthy, and which nuisances it forces on or off."""

    build: Callable[[World], None]
    healthy: bool
    canary: bool = True
    forced: Mapping[str, bool] = field(default_factory=dict)
    weight: float = 1.0


NO_NUISANCES = {"reset": False, "missed_scrapes": False, "overdispersion": False}
NO_RESET = {"reset": False}
ERR_STEP_WEIGHT = 4.5  # the other regression families weigh 13.5: err_step is a quarter of the regressions

FAMILIES: dict[str, Family] = {
    "aa_basic": Family(aa_basic, healthy=True, forced=NO_NUISANCES, weight=2.0),
    "aa_overdispersed": Family(aa_basic, healthy=True, forced={"overdispersion": True}),
    "aa_warmup": Family(aa_warmup, healthy=True),
    "aa_reset": Family(aa_basic, healthy=True, forced={"reset": True}),
    "aa_missed_scrapes": Family(aa_basic, healthy=True, forced={"missed_scrapes": True}),
    "aa_noisy_neighbour": Family(aa_noisy_neighbour, healthy=True),
    "aa_flap": Family(aa_flap, healthy=True),
    "aa_split_shift": Family(aa_split_shift, healthy=True),
    "ba_healthy": Family(aa_basic, healthy=True, canary=False),
    "err_step": Family(err_step, healthy=False, weight=ERR_STEP_WEIGHT),
    "lat_shift": Family(lat_shift, healthy=False),
    "lat_tail": Family(lat_tail, healthy=False),
    "lat_var": Family(lat_var, healthy=False),
    "err_ramp": Family(err_ramp, healthy=False),
    "bad_instance": Family(bad_instance, healthy=False),
    "probe_hard": Family(probe_hard, healthy=False),
    "token_reuse_rise": Family(token_reuse_rise, healthy=False),
    "proof_fail_rise": Family(proof_fail_rise, healthy=False),
    "cost_tenant": Family(cost_tenant, healthy=False),
    "ba_err_step": Family(err_step, healthy=False, canary=False),
    # data faults
    "aa_scrape_gap": Family(scrape_gap, healthy=True, forced=NO_RESET, weight=0.5),
    "ba_scrape_gap": Family(scrape_gap, healthy=True, canary=False, forced=NO_RESET, weight=0.4),
    "ba_no_restart": Family(no_restart, healthy=True, canary=False, forced=NO_RESET, weight=0.3),
    "aa_restart": Family(restart, healthy=True, weight=0.4),
    "ba_restart": Family(restart, healthy=True, canary=False, weight=0.3),
    "aa_tiny_share": Family(tiny_share, healthy=True, weight=0.4),
    "blind_canary": Family(blind_canary, healthy=True, weight=0.6),
    "ba_no_restart_err_step": Family(no_restart_err_step, healthy=False, canary=False, forced=NO_RESET),
    "crash_loop": Family(crash_loop, healthy=False, forced={"reset": True}),
    "tiny_share_err_step": Family(tiny_share_err_step, healthy=False, weight=1.5),
}
