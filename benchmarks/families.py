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


@dataclass(frozen=True)
class Family:
    """How a family edits the world, whether it is healthy, and which nuisances it forces on or off."""

    build: Callable[[World], None]
    healthy: bool
    canary: bool = True
    forced: Mapping[str, bool] = field(default_factory=dict)
    weight: float = 1.0


NO_NUISANCES = {"reset": False, "missed_scrapes": False, "overdispersion": False}
ERR_STEP_WEIGHT = 10 / 3  # with ten other regression families at weight 1: a quarter of the regressions

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
}
