"""Anytime-valid SLO bound on a bad-event fraction (errors, slow requests, failed claims).

The watchdog looks at every tick, so a fixed-sample test re-checked each tick would raise false
alarms as it peeks. Instead each direction is a test martingale: a Beta mixture of likelihood
ratios against the SLO rate ``p0``, truncated to the alternative side,

    E_n = ∫_{θ>p0} (θ/p0)^x ((1-θ)/(1-p0))^(n-x) dπ(θ)        (x bad events of n),

which is a non-negative supermartingale under every rate θ ≤ p0 (each factor's expectation is
``pθ/p0 + (1-p)(1-θ)/(1-p0) ≤ 1`` for p ≤ p0 ≤ θ). By Ville's inequality ``P(sup_n E_n ≥ 1/α) ≤ α``:
however often it is checked, a release within its SLO is flagged with probability at most α.
The mirror-image mixture over θ < p0 gives the *pass* direction ("clearly within the SLO").

References: Robbins (1970) mixture martingales; Howard, Ramdas, McAuliffe & Sekhon (2021),
"Time-uniform, nonparametric, nonasymptotic confidence sequences"; Ramdas et al. (2023),
"Game-theoretic statistics and safe anytime-valid inference".
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

from detectors.verdict import Outcome, Verdict

#: Prior weight (pseudo-observations) of the fail-side mixture. With mean at the SLO rate and a
#: small weight, the prior above ``p0`` falls off like 1/θ: log-uniform over effect sizes, so a 2×
#: and a 20× regression are both found near their information floor.
DEFAULT_PRIOR_STRENGTH = 2.0
#: Smallest log e-value reported: below it the evidence is nil either way.
LOG_E_FLOOR = -1e6


def _log_mixture(x: float, n: float, p0: np.ndarray | float, strength: float, upper: bool) -> np.ndarray:
    """log E_n of the mixture truncated to θ > p0 (upper) or θ < p0 (lower), elementwise in p0.

    The upper (fail) side mixes over Beta(strength·p0, strength·(1−p0)); the lower (pass) side
    over a uniform prior on (0, p0), which spreads its weight over the rates a healthy release has.
    """
    p, a, b, log_den, log_p, log_q = _prior(p0, strength, upper)
    post = special.betaincc(a + x, b + n - x, p) if upper else special.betainc(a + x, b + n - x, p)
    with np.errstate(divide="ignore"):
        log_num = special.betaln(a + x, b + n - x) + np.log(post)
    out: np.ndarray = log_num - log_den - x * log_p - (n - x) * log_q
    return out


def _prior(p0: np.ndarray | float, strength: float, upper: bool) -> tuple[np.ndarray, ...]:
    """p0, the Beta prior's a and b, log of its mass on the tested side (with its Beta function),
    log p0 and log(1 − p0): arrays like ``p0``. It does not depend on the counts: for an SLO rate
    given as a number (every tick of every watch asks for the same few) it is found once."""
    if type(p0) is float:
        return _prior_of_rate(p0, strength, upper)
    return _prior_made(np.asarray(p0, dtype=float), strength, upper)


@functools.lru_cache(maxsize=1024)
def _prior_of_rate(p0: float, strength: float, upper: bool) -> tuple[np.ndarray, ...]:
    return _prior_made(np.asarray(p0, dtype=float), strength, upper)


def _prior_made(p: np.ndarray, strength: float, upper: bool) -> tuple[np.ndarray, ...]:
    if upper:
        a = np.maximum(strength * p, 1e-3)
        b = np.maximum(strength * (1.0 - p), 1e-3)
        prior = special.betaincc(a, b, p)
    else:
        a = np.ones_like(p)
        b = np.ones_like(p)
        prior = special.betainc(a, b, p)
    with np.errstate(divide="ignore"):
        log_den = special.betaln(a, b) + np.log(prior)
    return (p, a, b, log_den, np.log(p), np.log1p(-p))


def slo_bound(
    bad: float,
    total: float,
    slo: float,
    alpha: float,
    *,
    detector: str = "slo_bound",
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    interval: bool = True,
) -> Verdict:
    """Judge ``bad`` of ``total`` events against the SLO rate ``slo`` at false-alarm level ``alpha``.

    ``FAIL``: the bad fraction is above the SLO (e-value ≥ 1/α), valid at any stopping time.
    ``PASS``: it is below the SLO with the same confidence. Otherwise ``INCONCLUSIVE``;
    no events at all is ``NO_DATA``, never a failure. ``interval=False`` skips the confidence
    sequence in the evidence (it costs more than the test itself) for bulk simulations.
    """
    if not 0.0 < slo < 1.0:
        raise ValueError(f"slo must be in (0, 1), got {slo}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if bad < 0 or total < 0 or bad > total:
        raise ValueError(f"need 0 <= bad <= total, got bad={bad} total={total}")
    threshold = math.log(1.0 / alpha)
    evidence: dict[str, float | str] = {
        "bad": float(bad),
        "total": float(total),
        "slo": slo,
        "alpha": alpha,
        "statistic_name": "log e-value (fail direction)",
    }
    if total <= 0:
        return Verdict(Outcome.NO_DATA, detector, None, threshold, "no events in the window", evidence)
    # A tail mass below the float range means "no evidence at all": floor it to stay finite (and JSON).
    log_e_fail = max(float(_log_mixture(bad, total, slo, prior_strength, upper=True)), LOG_E_FLOOR)
    log_e_pass = max(float(_log_mixture(bad, total, slo, prior_strength, upper=False)), LOG_E_FLOOR)
    rate = bad / total
    lo, hi = confidence_sequence(bad, total, alpha, prior_strength=prior_strength) if interval else (0.0, 1.0)
    evidence.update(
        {"rate": rate, "log_e_fail": log_e_fail, "log_e_pass": log_e_pass, "ci_low": lo, "ci_high": hi}
    )
    if log_e_fail >= threshold:
        outcome = Outcome.FAIL
        ci = f" (CI ≥ {lo:.3%})" if interval else ""
        summary = f"{rate:.3%} bad ({bad:.0f}/{total:.0f}) is above the SLO {slo:.3%}{ci}"
    elif log_e_pass >= threshold:
        outcome = Outcome.PASS
        ci = f" (CI ≤ {hi:.3%})" if interval else ""
        summary = f"{rate:.3%} bad ({bad:.0f}/{total:.0f}) is within the SLO {slo:.3%}{ci}"
    else:
        outcome = Outcome.INCONCLUSIVE
        summary = f"{rate:.3%} bad ({bad:.0f}/{total:.0f}) vs SLO {slo:.3%}: not enough evidence yet"
    return Verdict(outcome, detector, log_e_fail, threshold, summary, evidence)


def confidence_sequence(
    bad: float, total: float, alpha: float, *, prior_strength: float = DEFAULT_PRIOR_STRENGTH
) -> tuple[float, float]:
    """Time-uniform (1−α) interval for the bad fraction, by inverting the two one-sided tests.

    The interval holds the rates p whose one-sided e-value stays below 1/α; it is computed on a
    log grid and returned as (low, high). For display and evidence: decisions use ``slo_bound``.
    """
    if total <= 0:
        return (0.0, 1.0)
    threshold = math.log(1.0 / alpha)
    rate = bad / total
    small = np.geomspace(1e-7, 0.5, 400)
    grid = np.concatenate([small, 1.0 - small[::-1]])
    below, above = grid[grid < rate], grid[grid > rate]
    kept_low = below[_log_mixture(bad, total, below, prior_strength, upper=True) < threshold]
    kept_high = above[_log_mixture(bad, total, above, prior_strength, upper=False) < threshold]
    lo = float(kept_low.min()) if kept_low.size else rate
    hi = float(kept_high.max()) if kept_high.size else rate
    return (lo, hi)
