"""Seeded generator of deploy scenarios in the fixed format (``shared/scenario-format.md``, version 1).

The benchmark replays a corpus of scenarios whose ground truth is known by construction: every
healthy family is a trap a careless detector falls into (noise, resets, shared incidents, missing
samples), every regression family is one way a release really goes bad.

Usage::

    python benchmarks/generate.py --out DIR --count 2000 --seed 1 [--healthy-fraction 0.55]
                                  [--families a,b,...] [--jobs 2]

or ``generate_corpus(out, count, seed)`` / ``generate_one(out_dir, family, rng, index)``. Scenario
``index`` is written to ``DIR/{family}-{index:05d}`` from a generator seeded with
``SeedSequence(seed, spawn_key=(index,))``, so a corpus is byte-for-byte the same for a seed
whatever ``--jobs`` is.

Shared world (every scenario). ``U(a, b)`` is uniform, ``logU(a, b)`` log-uniform.

- Time: ``deploy_at`` = 2025-12-01T00:00Z + ``U{0..27}`` days + ``U{0..86399}`` s (the time of day,
  hence the diurnal phase, varies); ``start = deploy_at - 20 min``, ``end = deploy_at + 30 min``,
  ``step_s = 15`` (201 samples). The sample at ``t`` carries the events of ``(t - 15, t]``; the new
  release serves from the first step after ``deploy_at``.
- Traffic: total ``logU(1, 1000)`` req/s times a diurnal sinusoid of amplitude ``U(0.3, 0.5)`` with
  a random phase over 24 h; requests per step per instance ~ Poisson. Routes ``/v1/stamps/claim``
  45 %, ``/v1/rewards/redeem`` 45 %, ``/health`` 10 %.
- Cohorts: canary scenarios have ``baseline`` (2-6 instances) and ``canary`` (1-3 instances), both
  on the old release before ``deploy_at`` (an A/A period); the canary share is ``logU(0.01, 0.5)``.
  Before/after scenarios have one cohort ``all`` (2-6 instances). Instance weights ~ Dirichlet(30).
- Errors: 5xx probability ``logU(0.001, 0.02)``, binomial per route and instance; in 20 % of
  scenarios ``U(0.2, 0.6)`` of the claim route's 5xx are ``503``, the rest ``500``.
- Latency: lognormal, median ``U(0.03, 0.15)`` s, sigma ``U(0.3, 0.7)``; per step the bucket counts
  are multinomial over the (mixture) lognormal's bucket probabilities; ``_sum`` is the normal
  approximation of the step's latency sum. The histogram is per cohort (no ``instance``: it is
  13 series per target and would triple the file) except in ``bad_instance``.
- Business counters (per cohort): claims ~ Binomial(successful claim requests, 0.9) (about 40 % of
  requests), token reuse ~ Binomial(claims, ``logU(0.0005, 0.005)``), device-proof attempts ~
  Binomial(successful claim requests, 0.92), failures ~ Binomial(attempts, ``logU(0.005, 0.03)``).
- ``cost_per_tenant``: 3-5 tenants, base ``U(0.01, 0.05)`` each, times ``U(0.95, 1.05)`` per sample.
- ``probe_success{probe="health"}``: 1 at every sample unless a family says otherwise.
- Counters start at the count of ``U(1, 72)`` h of uptime, so they are large, as in production.
- SLO (``meta.slo``): error rate = base x ``U(3, 5)`` rounded up to two significant digits; latency
  p95/p99 = the smallest bucket bound >= 1.5 x the healthy quantile (p99's at least the bound
  above p95's); token reuse and device-proof failure rates = 3 x base, rounded up likewise.

Nuisances, mixed at random into every family but ``aa_basic`` (and forced in their own family):

- ``reset`` (50 %): the new release's cohort (``canary`` or ``all``) restarts at ``deploy_at``:
  its counters read 0 at ``deploy_at`` (the last old-process increments since the previous
  scrape are lost, as in Prometheus) and count from there. Listed in ``truth.resets``.
- ``missed_scrapes`` (25 %): each cohort loses ``U(0.02, 0.05)`` of its samples (all its series at
  once: the target was not scraped); half the time (always in ``aa_missed_scrapes``) one cohort
  also has a gap of ``U(60, 180)`` s.
- ``overdispersion`` (30 %): request rate per step x Gamma(mean 1, CV ``U(0.2, 0.5)``) shared by the
  cohorts x Gamma(CV 0.1) per cohort; 5xx probability per step x Gamma(mean 1) bursts, either shared
  by the cohorts (CV ``U(0.3, 1.0)``) or independent per cohort (CV ``U(0.3, 0.5)``).

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

import argparse
import json
import math
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

STEP_S = 15.0
BEFORE_S = 20 * 60
WATCH_S = 30 * 60
N_SAMPLES = (BEFORE_S + WATCH_S) // 15 + 1
DEPLOY_K = BEFORE_S // 15
DAY0 = 1_764_547_200.0
LE = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.5, 5.0)
LE_LABELS = (*(f"{b:g}" for b in LE), "+Inf")
ROUTES = ("/v1/stamps/claim", "/v1/rewards/redeem", "/health")
ROUTE_SHARE = (0.45, 0.45, 0.10)
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli")
SIGNALS = (
    "http_5xx",
    "latency_p95",
    "latency_p99",
    "healthcheck",
    "token_reuse",
    "device_proof_failures",
    "cost_per_tenant",
)
Z95, Z99 = 1.6448536269514722, 2.3263478740408408


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _gamma(rng: np.random.Generator, cv: float, size: int) -> FloatArray:
    """Mean-one multipliers with the given coefficient of variation (1 when cv is 0)."""
    if cv <= 0:
        return np.ones(size)
    k = 1.0 / (cv * cv)
    return rng.gamma(k, 1.0 / k, size)


def _ceil2(x: float) -> float:
    """Round up to two significant digits, as a person writing an SLO would."""
    q = 10.0 ** (math.floor(math.log10(x)) - 1)
    return float(f"{math.ceil(x / q - 1e-9) * q:.2g}")


def _frac_above(
    bound: float, med: float, sigma: float, f2: float = 0.0, med2: float = 1.0, s2: float = 1.0
) -> float:
    """Share of requests slower than ``bound`` under a two-lognormal mixture."""
    z1 = (math.log(bound) - math.log(med)) / sigma
    z2 = (math.log(bound) - math.log(med2)) / s2
    return float((1 - f2) * (1 - ndtr(z1)) + f2 * (1 - ndtr(z2)))


@dataclass
class Cohort:
    """Expected per-step behaviour of one cohort; families edit these arrays, rendering samples them."""

    name: str
    instances: list[str]
    inst_weight: FloatArray
    inst_err_mult: FloatArray
    share: FloatArray
    err: FloatArray
    lat_med: FloatArray
    lat_sigma: FloatArray
    reuse: FloatArray
    proof_fail: FloatArray
    cost: FloatArray
    req_mult: FloatArray = field(default_factory=lambda: np.ones(N_SAMPLES))
    err_burst: FloatArray = field(default_factory=lambda: np.ones(N_SAMPLES))
    tail_frac: FloatArray = field(default_factory=lambda: np.zeros(N_SAMPLES))
    tail_med: FloatArray = field(default_factory=lambda: np.ones(N_SAMPLES))
    tail_sigma: FloatArray = field(default_factory=lambda: np.ones(N_SAMPLES))
    probe: IntArray = field(default_factory=lambda: np.ones(N_SAMPLES, dtype=np.int64))
    keep: BoolArray = field(default_factory=lambda: np.ones(N_SAMPLES, dtype=bool))
    reset: bool = False
    hist_by_instance: bool = False


@dataclass
class World:
    """One scenario: its clock, traffic, cohorts and healthy parameters, and the truth being written."""

    rng: np.random.Generator
    family: str
    name: str
    canary: bool
    deploy_at: float
    times: FloatArray
    total_rate: FloatArray
    cohorts: list[Cohort]
    tenants: list[str]
    base: dict[str, float]
    share_503: float
    slo: dict[str, float]
    release: tuple[str, str]
    nuisances: list[str] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def after(self) -> BoolArray:
        """Steps served by the new release: those ending after ``deploy_at``."""
        return np.arange(N_SAMPLES) > DEPLOY_K

    @property
    def new(self) -> Cohort:
        """The cohort the new release serves."""
        return self.cohorts[-1]

    def cohort(self, name: str) -> Cohort:
        return next(c for c in self.cohorts if c.name == name)


def _instances(rng: np.random.Generator, cohort_octet: int, k: int) -> tuple[list[str], FloatArray]:
    names = [f"10.0.{cohort_octet}.{11 + i}:8080" for i in range(k)]
    return names, rng.dirichlet(np.full(k, 30.0))


def _new_cohort(
    rng: np.random.Generator,
    name: str,
    octet: int,
    k: int,
    share: float,
    base: dict[str, float],
    cost: FloatArray,
) -> Cohort:
    names, weights = _instances(rng, octet, k)
    return Cohort(
        name=name,
        instances=names,
        inst_weight=weights,
        inst_err_mult=np.ones((k, N_SAMPLES)),
        share=np.full(N_SAMPLES, share),
        err=np.full(N_SAMPLES, base["error_rate"]),
        lat_med=np.full(N_SAMPLES, base["lat_median_s"]),
        lat_sigma=np.full(N_SAMPLES, base["lat_sigma"]),
        reuse=np.full(N_SAMPLES, base["token_reuse_rate"]),
        proof_fail=np.full(N_SAMPLES, base["proof_failure_rate"]),
        cost=np.repeat(cost[:, None], N_SAMPLES, axis=1),
    )


def _healthy_slo(base: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    def bound_above(q: float) -> float:
        return next((b for b in LE if b >= 1.5 * q), LE[-1])

    med, sigma = base["lat_median_s"], base["lat_sigma"]
    p95 = bound_above(med * math.exp(Z95 * sigma))
    return {
        "error_rate": _ceil2(base["error_rate"] * rng.uniform(3, 5)),
        "latency_p95_s": p95,
        "latency_p99_s": max(bound_above(med * math.exp(Z99 * sigma)), next((b for b in LE if b > p95), p95)),
        "token_reuse_rate": _ceil2(3 * base["token_reuse_rate"]),
        "device_proof_failure_rate": _ceil2(3 * base["proof_failure_rate"]),
    }


def _release(rng: np.random.Generator) -> tuple[str, str]:
    major, minor, patch = int(rng.integers(1, 4)), int(rng.integers(0, 13)), int(rng.integers(0, 10))
    to = f"v{major}.{minor + 1}.0" if rng.random() < 0.5 else f"v{major}.{minor}.{patch + 1}"
    return f"v{major}.{minor}.{patch}", to


def _new_world(rng: np.random.Generator, family: str, name: str, canary: bool) -> World:
    deploy_at = DAY0 + 86400.0 * int(rng.integers(0, 28)) + float(rng.integers(0, 86400))
    times = np.asarray(deploy_at - BEFORE_S + STEP_S * np.arange(N_SAMPLES), dtype=np.float64)
    rps = _logu(rng, 1, 1000)
    amp, phase = rng.uniform(0.3, 0.5), rng.uniform(0, 2 * math.pi)
    total_rate = rps * (1 + amp * np.sin(2 * math.pi * times / 86400.0 + phase))
    base = {
        "error_rate": _logu(rng, 0.001, 0.02),
        "lat_median_s": float(rng.uniform(0.03, 0.15)),
        "lat_sigma": float(rng.uniform(0.3, 0.7)),
        "token_reuse_rate": _logu(rng, 0.0005, 0.005),
        "proof_failure_rate": _logu(rng, 0.005, 0.03),
    }
    tenants = list(TENANTS[: int(rng.integers(3, 6))])
    cost = rng.uniform(0.01, 0.05, len(tenants))
    if canary:
        share = _logu(rng, 0.01, 0.5)
        cohorts = [
            _new_cohort(rng, "baseline", 1, int(rng.integers(2, 7)), 1 - share, base, cost),
            _new_cohort(rng, "canary", 2, int(rng.integers(1, 4)), share, base, cost),
        ]
    else:
        cohorts = [_new_cohort(rng, "all", 0, int(rng.integers(2, 7)), 1.0, base, cost)]
    share_503 = float(rng.uniform(0.2, 0.6)) if rng.random() < 0.2 else 0.0
    return World(
        rng=rng,
        family=family,
        name=name,
        canary=canary,
        deploy_at=deploy_at,
        times=times,
        total_rate=total_rate,
        cohorts=cohorts,
        tenants=tenants,
        base=base,
        share_503=share_503,
        slo=_healthy_slo(base, rng),
        release=_release(rng),
    )


# Nuisances: healthy behaviour that looks like trouble to a careless detector.


def _add_reset(w: World) -> None:
    w.new.reset = True
    w.nuisances.append("reset")


def _add_missed_scrapes(w: World, gap: bool) -> None:
    rng = w.rng
    for c in w.cohorts:
        c.keep &= rng.random(N_SAMPLES) >= rng.uniform(0.02, 0.05)
    if gap:
        c = w.cohorts[int(rng.integers(len(w.cohorts)))]
        n = round(float(rng.uniform(60, 180)) / STEP_S)
        k0 = int(rng.integers(1, N_SAMPLES - n))
        c.keep[k0 : k0 + n] = False
    w.nuisances.append("missed_scrapes")


def _add_overdispersion(w: World, strong: bool) -> None:
    rng = w.rng
    shared_req = _gamma(rng, rng.uniform(0.35, 0.5) if strong else rng.uniform(0.2, 0.5), N_SAMPLES)
    shared = strong or rng.random() < 0.5
    independent = strong or not shared
    shared_err = _gamma(rng, rng.uniform(0.6, 1.0) if strong else rng.uniform(0.3, 1.0), N_SAMPLES)
    for c in w.cohorts:
        c.req_mult = shared_req * _gamma(rng, 0.1, N_SAMPLES)
        own = _gamma(rng, rng.uniform(0.3, 0.5), N_SAMPLES)
        c.err_burst = (shared_err if shared else np.ones(N_SAMPLES)) * (own if independent else 1.0)
    w.nuisances.append("overdispersion")


def _apply_nuisances(w: World, forced: Mapping[str, bool]) -> None:
    rng = w.rng
    draws = {
        "reset": rng.random() < 0.5,
        "missed_scrapes": rng.random() < 0.25,
        "overdispersion": rng.random() < 0.3,
    }
    on = {k: forced.get(k, v) for k, v in draws.items()}
    if on["reset"]:
        _add_reset(w)
    if on["missed_scrapes"]:
        _add_missed_scrapes(w, gap=forced.get("missed_scrapes", False) or rng.random() < 0.5)
    if on["overdispersion"]:
        _add_overdispersion(w, strong=forced.get("overdispersion", False))


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
    return _frac_above(b95, *old), _frac_above(b95, *new), _frac_above(b99, *old), _frac_above(b99, *new)


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
    mult = _logu(w.rng, 0.5, 2.0)
    canary, baseline = w.cohort("canary"), w.cohort("baseline")
    canary.share[w.after] = np.minimum(canary.share[w.after] * mult, 0.9)
    baseline.share = 1 - canary.share
    w.truth.update(multiplier=mult, canary_share_after=float(canary.share[-1]))


def err_step(w: World) -> None:
    mult = _logu(w.rng, 1.5, 20)
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
    c.instances, c.inst_weight = _instances(rng, 2, int(rng.integers(2, 5)))
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
    mult, base = _logu(w.rng, 3, 20), w.base["token_reuse_rate"]
    w.new.reuse[w.after] *= mult
    to = base * mult
    _regress(w, ["token_reuse"], base, to, multiplier=mult, slo_breach=to > w.slo["token_reuse_rate"])


def proof_fail_rise(w: World) -> None:
    mult, base = _logu(w.rng, 2, 10), w.base["proof_failure_rate"]
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


# Rendering: expected rates → sampled events → Prometheus counters and gauges as JSON.


def _counter(events: NDArray[Any], offset: NDArray[Any], reset: bool) -> NDArray[Any]:
    """Cumulative samples along the last axis; a reset reads 0 at ``deploy_at`` and counts on from there."""
    out: NDArray[Any] = offset + np.cumsum(events, axis=-1)
    if reset:
        out[..., DEPLOY_K:] = (
            np.cumsum(events[..., DEPLOY_K:], axis=-1) - events[..., DEPLOY_K : DEPLOY_K + 1]
        )
    return out


def _bucket_probs(c: Cohort) -> FloatArray:
    """Probability of each ``le`` interval (12 finite bounds, then above 5 s) per step, shape (steps, 13)."""
    lb = np.log(np.array(LE))[None, :]
    main = ndtr((lb - np.log(c.lat_med)[:, None]) / c.lat_sigma[:, None])
    tail = ndtr((lb - np.log(c.tail_med)[:, None]) / c.tail_sigma[:, None])
    f = c.tail_frac[:, None]
    cdf = (1 - f) * main + f * tail
    edges = np.concatenate([np.zeros((N_SAMPLES, 1)), cdf, np.ones((N_SAMPLES, 1))], axis=1)
    return np.clip(np.diff(edges, axis=1), 0.0, 1.0)


def _latency_moments(c: Cohort) -> tuple[FloatArray, FloatArray]:
    """Mean and variance of one request's latency per step (for the histogram's ``_sum``)."""
    f = c.tail_frac

    def raw(k: int) -> FloatArray:
        m1 = c.lat_med**k * np.exp(k * k * c.lat_sigma**2 / 2)
        m2 = c.tail_med**k * np.exp(k * k * c.tail_sigma**2 / 2)
        return np.asarray((1 - f) * m1 + f * m2, dtype=np.float64)

    mean = raw(1)
    return mean, np.maximum(raw(2) - mean**2, 0.0)


def _multinomial(rng: np.random.Generator, n: IntArray, probs: FloatArray) -> IntArray:
    """Counts, shape (groups, categories, steps), by chained binomials: one call per category."""
    groups, cats = n.shape[0], probs.shape[1]
    out = np.zeros((groups, cats, N_SAMPLES), dtype=np.int64)
    rem, left = n.copy(), np.ones(N_SAMPLES)
    for j in range(cats - 1):
        q = np.clip(probs[:, j] / np.maximum(left, 1e-12), 0.0, 1.0)
        out[:, j] = rng.binomial(rem, q)
        rem -= out[:, j]
        left = left - probs[:, j]
    out[:, cats - 1] = rem
    return out


class _SeriesWriter:
    """Builds the ``result`` items of one cohort as compact JSON, keeping only the scraped samples."""

    def __init__(self, w: World, c: Cohort) -> None:
        self.kept = np.flatnonzero(c.keep)
        self.prefixes = [f'[{float(w.times[k])!r},"' for k in self.kept]
        self.items: list[str] = []
        self.cohort = c.name

    def add(self, labels: Mapping[str, str], values: NDArray[Any], fmt: str = "") -> None:
        labels = {"__name__": labels["__name__"], "cohort": self.cohort, **labels}
        raw = values[self.kept].tolist()
        texts = [format(v, fmt) for v in raw] if fmt else [str(v) for v in raw]
        body = ",".join([p + v + '"]' for p, v in zip(self.prefixes, texts, strict=True)])
        metric = json.dumps(labels, sort_keys=True, separators=(",", ":"))
        self.items.append(f'{{"metric":{metric},"values":[{body}]}}')


def _render_cohort(w: World, c: Cohort, uptime_steps: float) -> list[str]:
    rng, out = w.rng, _SeriesWriter(w, c)

    def offset(events: NDArray[Any]) -> IntArray:
        return np.asarray(rng.poisson(events.mean(axis=-1, keepdims=True) * uptime_steps), dtype=np.int64)

    lam = w.total_rate * c.share * c.req_mult * STEP_S
    lam[0] = 0.0
    n = rng.poisson(np.outer(c.inst_weight, lam))
    claim = rng.binomial(n, ROUTE_SHARE[0])
    redeem = rng.binomial(n - claim, ROUTE_SHARE[1] / (1 - ROUTE_SHARE[0]))
    p_err = np.clip(c.inst_err_mult * (c.err * c.err_burst), 0.0, 1.0)
    claim_ok = np.zeros(N_SAMPLES, dtype=np.int64)
    for route, n_route in zip(ROUTES, (claim, redeem, n - claim - redeem), strict=True):
        errors = rng.binomial(n_route, p_err)
        codes = [("200", n_route - errors)]
        if route == ROUTES[0]:
            claim_ok = (n_route - errors).sum(axis=0)
            if w.share_503 > 0:
                e503 = rng.binomial(errors, w.share_503)
                codes += [("500", errors - e503), ("503", e503)]
        if len(codes) == 1:
            codes.append(("500", errors))
        for code, events in codes:
            values = _counter(events, offset(events), c.reset)
            for i, inst in enumerate(c.instances):
                labels = {"__name__": "http_requests_total", "code": code, "route": route, "instance": inst}
                out.add(labels, values[i])

    groups = n if c.hist_by_instance else n.sum(axis=0, keepdims=True)
    per_le = _multinomial(rng, groups, _bucket_probs(c))
    buckets = _counter(np.cumsum(per_le, axis=1), np.cumsum(offset(per_le), axis=1), c.reset)
    mean, var = _latency_moments(c)
    lat_sum = np.maximum(groups * mean + np.sqrt(groups * var) * rng.standard_normal(groups.shape), 0.0)
    sums = _counter(lat_sum, buckets[:, -1, :1] * float(mean.mean()), c.reset)
    for g in range(groups.shape[0]):
        where = {"instance": c.instances[g]} if c.hist_by_instance else {}
        for j, le in enumerate(LE_LABELS):
            out.add({"__name__": "http_request_duration_seconds_bucket", "le": le, **where}, buckets[g, j])
        out.add({"__name__": "http_request_duration_seconds_count", **where}, buckets[g, -1])
        out.add({"__name__": "http_request_duration_seconds_sum", **where}, sums[g], ".3f")

    claims = rng.binomial(claim_ok, 0.9)
    attempts = rng.binomial(claim_ok, 0.92)
    business = (
        ("stamps_claims_total", claims),
        ("stamps_token_reuse_total", rng.binomial(claims, np.clip(c.reuse, 0.0, 1.0))),
        ("device_proof_attempts_total", attempts),
        ("device_proof_failures_total", rng.binomial(attempts, np.clip(c.proof_fail, 0.0, 1.0))),
    )
    for name, events in business:
        out.add({"__name__": name}, _counter(events, offset(events), c.reset))

    out.add({"__name__": "probe_success", "probe": "health"}, c.probe)
    for j, tenant in enumerate(w.tenants):
        cost = c.cost[j] * rng.uniform(0.95, 1.05, N_SAMPLES)
        out.add({"__name__": "cost_per_tenant", "tenant": tenant}, cost, ".4g")
    return out.items


def _meta(w: World) -> dict[str, Any]:
    return {
        "format": 1,
        "name": w.name,
        "service": "stamps-api",
        "env": "prod",
        "start": float(w.times[0]),
        "deploy_at": w.deploy_at,
        "end": float(w.times[-1]),
        "step_s": int(STEP_S),
        "canary": w.canary,
        "release": {"from": w.release[0], "to": w.release[1]},
        "slo": w.slo,
    }


def _truth(w: World) -> dict[str, Any]:
    truth: dict[str, Any] = {
        "regression": False,
        "onset": None,
        "signals": [],
        "kind": w.family,
        "effect": None,
    }
    truth.update(w.truth)
    truth.setdefault("slo_breach", None)
    after = w.after
    canary_share = float(w.cohorts[-1].share[0]) if w.canary else 1.0
    return {
        **truth,
        "family": w.family,
        "rps": round(float(w.total_rate[after].mean()), 4),
        "canary_share": canary_share,
        "base_error_rate": w.base["error_rate"],
        "base": w.base,
        "nuisances": w.nuisances,
        "resets": [{"cohort": c.name, "at": w.deploy_at} for c in w.cohorts if c.reset],
        "instances": {c.name: len(c.instances) for c in w.cohorts},
    }


def generate_one(out_dir: str | Path, family: str, rng: np.random.Generator, index: int) -> Path:
    """Write scenario ``{family}-{index:05d}`` under ``out_dir``; everything random comes from ``rng``."""
    spec = FAMILIES[family]
    name = f"{family}-{index:05d}"
    w = _new_world(rng, family, name, spec.canary)
    _apply_nuisances(w, spec.forced)
    spec.build(w)
    uptime_steps = float(rng.uniform(3600, 72 * 3600)) / STEP_S
    items = [item for c in w.cohorts for item in _render_cohort(w, c, uptime_steps)]
    path = Path(out_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "meta.json").write_text(json.dumps(_meta(w), indent=2) + "\n")
    (path / "series.json").write_text('{"resultType":"matrix","result":[' + ",".join(items) + "]}\n")
    (path / "truth.json").write_text(json.dumps(_truth(w), indent=2) + "\n")
    return path


# The corpus: which family each index gets, and writing them all.


def scenario_rng(seed: int, index: int) -> np.random.Generator:
    """Scenario ``index``'s own generator: independent of the others, so any worker can make it."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _apportion(n: int, names: Sequence[str]) -> dict[str, int]:
    """Split ``n`` by family weight (largest remainder); every family gets one first when ``n`` allows."""
    if not names:
        return {}
    floor = 1 if n >= len(names) else 0
    rest = n - floor * len(names)
    weights = np.array([FAMILIES[f].weight for f in names])
    exact = rest * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: rest - int(counts.sum())]:
        counts[i] += 1
    return {f: floor + int(k) for f, k in zip(names, counts, strict=True)}


def plan_corpus(
    count: int, seed: int, healthy_fraction: float = 0.55, families: Sequence[str] | None = None
) -> list[str]:
    """The family of each index: the mix by construction, in an order shuffled by ``seed``."""
    names = list(families) if families else list(FAMILIES)
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families: {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    healthy = [f for f in FAMILIES if f in names and FAMILIES[f].healthy]
    bad = [f for f in FAMILIES if f in names and not FAMILIES[f].healthy]
    n_healthy = round(count * healthy_fraction) if healthy and bad else (count if healthy else 0)
    mix = {**_apportion(n_healthy, healthy), **_apportion(count - n_healthy, bad)}
    order = [f for f, k in mix.items() for _ in range(k)]
    perm = np.random.default_rng(np.random.SeedSequence(seed)).permutation(len(order))
    return [order[i] for i in perm]


def _generate_indexed(task: tuple[str, str, int, int]) -> Path:
    out, family, seed, index = task
    return generate_one(out, family, scenario_rng(seed, index), index)


_SCENARIO_DIR = re.compile(r"^(?P<family>[a-z_]+)-\d{5}$")


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Drop scenarios of an earlier, larger corpus in ``out``: the benchmark runs every directory it finds."""
    for d in out.iterdir():
        m = _SCENARIO_DIR.match(d.name)
        if not (d.is_dir() and m and m["family"] in FAMILIES and d.name not in keep):
            continue
        if {p.name for p in d.iterdir()} <= {"meta.json", "series.json", "truth.json"}:
            shutil.rmtree(d)


def generate_corpus(
    out: str | Path,
    count: int,
    seed: int,
    healthy_fraction: float = 0.55,
    families: Sequence[str] | None = None,
    jobs: int = 1,
) -> list[Path]:
    """Write ``count`` scenarios under ``out``: the same arguments give the same bytes for any ``jobs``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    plan = plan_corpus(count, seed, healthy_fraction, families)
    _remove_stale(root, {f"{f}-{i:05d}" for i, f in enumerate(plan)})
    tasks = [(str(root), f, seed, i) for i, f in enumerate(plan)]
    if jobs <= 1:
        return [_generate_indexed(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_generate_indexed, tasks, chunksize=max(1, len(tasks) // (8 * jobs))))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate a seeded corpus of deploy scenarios.")
    parser.add_argument("--out", required=True, type=Path, help="corpus directory")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--healthy-fraction", type=float, default=0.55)
    parser.add_argument("--families", help=f"comma-separated subset of: {','.join(FAMILIES)}")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
    started = time.perf_counter()
    try:
        paths = generate_corpus(args.out, args.count, args.seed, args.healthy_fraction, families, args.jobs)
    except ValueError as exc:
        parser.error(str(exc))
    elapsed = time.perf_counter() - started
    per_family = Counter(_SCENARIO_DIR.match(p.name)["family"] for p in paths)  # type: ignore[index]
    size = sum(f.stat().st_size for p in paths for f in p.iterdir())
    for family, spec in FAMILIES.items():
        if per_family[family]:
            print(f"{family:20s} {'healthy' if spec.healthy else 'regression':10s} {per_family[family]:6d}")
    n_healthy = sum(k for f, k in per_family.items() if FAMILIES[f].healthy)
    print(
        f"{'total':20s} {'':10s} {len(paths):6d}  ({n_healthy} healthy, {len(paths) - n_healthy} regressions)"
    )
    print(f"wrote {size / 1e6:.1f} MB to {args.out} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
