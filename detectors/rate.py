"""Anytime-valid bound on an event rate (events per second) for counters with no natural total.

The Poisson analogue of ``detectors.slo``: a Gamma mixture of likelihood ratios against the limit
``λ0``, truncated to λ > λ0 (fail) or λ < λ0 (pass). For x events in T seconds,

    E = ∫ (λ/λ0)^x exp(−(λ−λ0)T) dπ(λ),

a supermartingale under every rate at or below the limit, so Ville's inequality bounds the false
alarm probability by α however often it is checked.
"""

from __future__ import annotations

import math

from scipy import special

from detectors.verdict import Outcome, Verdict

#: Prior shape: a mean at the limit with the weight of one event keeps the mixture wide.
DEFAULT_SHAPE = 1.0


def _log_mixture(x: float, t: float, lam0: float, shape: float, upper: bool) -> float:
    rate = shape / lam0  # Gamma(shape, rate) prior with mean λ0
    tail = special.gammaincc if upper else special.gammainc
    post = float(tail(shape + x, (rate + t) * lam0))
    prior = float(tail(shape, rate * lam0))
    if post <= 0.0:
        return -math.inf
    log_num = float(special.gammaln(shape + x)) - (shape + x) * math.log(rate + t) + math.log(post)
    log_den = float(special.gammaln(shape)) - shape * math.log(rate) + math.log(prior)
    return log_num - log_den - x * math.log(lam0) + lam0 * t


def rate_bound(
    events: float, seconds: float, limit_per_s: float, alpha: float, *, detector: str = "rate_bound"
) -> Verdict:
    """``FAIL`` when the rate is above ``limit_per_s`` at level α, ``PASS`` when below, else inconclusive."""
    if limit_per_s <= 0 or not 0 < alpha < 1:
        raise ValueError("need limit_per_s > 0 and 0 < alpha < 1")
    threshold = math.log(1.0 / alpha)
    evidence: dict[str, float | str] = {
        "events": events,
        "seconds": seconds,
        "limit_per_s": limit_per_s,
        "alpha": alpha,
        "statistic_name": "log e-value (fail direction)",
    }
    if seconds <= 0:
        return Verdict(Outcome.NO_DATA, detector, None, threshold, "no time observed", evidence)
    log_fail = _log_mixture(events, seconds, limit_per_s, DEFAULT_SHAPE, upper=True)
    log_pass = _log_mixture(events, seconds, limit_per_s, DEFAULT_SHAPE, upper=False)
    observed = events / seconds
    evidence.update({"rate_per_s": observed, "log_e_fail": log_fail, "log_e_pass": log_pass})
    if log_fail >= threshold:
        outcome, verb = Outcome.FAIL, "is above"
    elif log_pass >= threshold:
        outcome, verb = Outcome.PASS, "is within"
    else:
        outcome, verb = Outcome.INCONCLUSIVE, "not yet distinguishable from"
    summary = f"{observed:.3g}/s ({events:.0f} in {seconds:.0f}s) {verb} the limit {limit_per_s:.3g}/s"
    return Verdict(outcome, detector, log_fail, threshold, summary, evidence)
