"""The world of one generated scenario: its clock, traffic, cohorts, healthy parameters and nuisances.

Families (``benchmarks/families.py``) edit a ``World``; ``benchmarks/generate.py`` samples and
writes it. Everything random comes from the scenario's own generator.

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
- Counters start at the count of ``U(1, 72)`` h of uptime, so they are large, as in production
  (``logU(2, 30)`` days in the families with a long history, ``benchmarks/families.py``).
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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
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


def logu(rng: np.random.Generator, lo: float, hi: float) -> float:
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


def frac_above(
    bound: float, med: float, sigma: float, f2: float = 0.0, med2: float = 1.0, s2: float = 1.0
) -> float:
    """Share of requests slower than ``bound`` under a two-lognormal mixture."""
    z1 = (math.log(bound) - math.log(med)) / sigma
    z2 = (math.log(bound) - math.log(med2)) / s2
    return float((1 - f2) * (1 - ndtr(z1)) + f2 * (1 - ndtr(z2)))


@dataclass
class Cohort:
    """Expected per-step behaviour of one cohort; families edit these arrays, rendering samples them.

    ``keep`` is the steps at which the cohort's own ``/metrics`` was scraped (every series of the
    target at once); ``probe_keep`` those at which its blackbox probe was, when they differ (a
    separate exporter: ``None`` means the same scrapes). ``resets`` are the steps at which the
    process restarted: its counters read 0 there. ``history_err`` is how much higher the 5xx share of
    the counters' past (before the scenario's first sample) was than today's rate: cumulative counts
    of a long-lived process carry its old incidents.
    """

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
    probe_keep: BoolArray | None = None
    resets: list[int] = field(default_factory=list)
    history_err: float = 1.0
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
    uptime_s: float | None = None

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

    def step_after(self, t: float) -> int:
        """Index of the first sample at or after time ``t``: the one that carries its events."""
        return int(np.searchsorted(self.times, t - 1e-9))


def make_instances(rng: np.random.Generator, cohort_octet: int, k: int) -> tuple[list[str], FloatArray]:
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
    names, weights = make_instances(rng, octet, k)
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


def new_world(rng: np.random.Generator, family: str, name: str, canary: bool) -> World:
    deploy_at = DAY0 + 86400.0 * int(rng.integers(0, 28)) + float(rng.integers(0, 86400))
    times = np.asarray(deploy_at - BEFORE_S + STEP_S * np.arange(N_SAMPLES), dtype=np.float64)
    rps = logu(rng, 1, 1000)
    amp, phase = rng.uniform(0.3, 0.5), rng.uniform(0, 2 * math.pi)
    total_rate = rps * (1 + amp * np.sin(2 * math.pi * times / 86400.0 + phase))
    base = {
        "error_rate": logu(rng, 0.001, 0.02),
        "lat_median_s": float(rng.uniform(0.03, 0.15)),
        "lat_sigma": float(rng.uniform(0.3, 0.7)),
        "token_reuse_rate": logu(rng, 0.0005, 0.005),
        "proof_failure_rate": logu(rng, 0.005, 0.03),
    }
    tenants = list(TENANTS[: int(rng.integers(3, 6))])
    cost = rng.uniform(0.01, 0.05, len(tenants))
    if canary:
        share = logu(rng, 0.01, 0.5)
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
    w.new.resets.append(DEPLOY_K)
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


def apply_nuisances(w: World, forced: Mapping[str, bool]) -> None:
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
