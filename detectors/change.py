"""Before/after, when there is no canary: is the bad fraction after the deploy above the one before?

The pre-deploy window is a fixed sample; its one-sided (1 − α/2) Clopper-Pearson upper bound
``p_ref`` is a rate the old release is below with high probability. After the deploy, the
anytime-valid SLO test of ``detectors.slo`` at level α/2 asks whether the new release is above
``p_ref``. By a union bound the chance of flagging a release that is no worse than the old one is
at most α, however often it is checked. Burstier-than-binomial counts are handled as in
``detectors.compare``: the log e-value is tempered by the dispersion measured before the deploy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from detectors.compare import significant_dispersion
from detectors.slo import slo_bound
from detectors.verdict import Outcome, Verdict


def upper_bound(bad: float, total: float, alpha: float) -> float:
    """One-sided Clopper-Pearson upper confidence bound of a binomial fraction (the beta quantile,
    from ``scipy.special`` itself: ``scipy.stats`` costs the daemon ~70 MB and a third of a second)."""
    if total <= 0:
        return 1.0
    if bad >= total:
        return 1.0
    return float(special.betaincinv(bad + 1, total - bad, 1.0 - alpha))


def binomial_dispersion(bad: np.ndarray, total: np.ndarray, min_events: int = 30) -> float:
    """Pearson dispersion of per-interval bad counts around one common rate (1 = binomial)."""
    b = np.asarray(bad, dtype=float)
    n = np.asarray(total, dtype=float)
    ok = n > 0
    if b[ok].sum() < min_events or ok.sum() < 3:
        return 1.0
    p = b[ok].sum() / n[ok].sum()
    if p <= 0 or p >= 1:
        return 1.0
    chi2 = float(np.sum((b[ok] - n[ok] * p) ** 2 / (n[ok] * p * (1 - p))))
    return significant_dispersion(chi2, int(ok.sum()) - 1)


def before_after(
    bad_before: float,
    total_before: float,
    bad_after: float,
    total_after: float,
    alpha: float,
    *,
    phi: float = 1.0,
    detector: str = "before_after",
) -> Verdict:
    """Fail when the post-deploy bad fraction is above the pre-deploy one (level α, anytime-valid)."""
    if total_before <= 0:
        return Verdict(Outcome.NO_DATA, detector, None, None, "no events before the deploy to compare with")
    p_ref = max(upper_bound(bad_before, total_before, alpha / 2), 1e-9)
    if p_ref >= 1.0:
        return Verdict(Outcome.NO_DATA, detector, None, None, "every event before the deploy was bad")
    v = slo_bound(bad_after, total_after, p_ref, alpha / 2, detector=detector, interval=False)
    evidence = dict(v.evidence)
    rate_before = bad_before / total_before
    evidence.update(
        {
            "bad_before": bad_before,
            "total_before": total_before,
            "rate_before": rate_before,
            "reference_rate": p_ref,
            "phi": phi,
        }
    )
    if v.outcome is Outcome.NO_DATA:
        return Verdict(Outcome.NO_DATA, detector, None, None, "no events since the deploy", evidence)
    threshold = math.log(2.0 / alpha)
    log_fail = float(evidence["log_e_fail"]) / phi
    log_pass = float(evidence["log_e_pass"]) / phi
    rate = bad_after / total_after
    text = f"{rate:.3%} bad after ({bad_after:.0f}/{total_after:.0f}) vs {rate_before:.3%} before"
    if log_fail >= threshold:
        return Verdict(
            Outcome.FAIL, detector, log_fail, threshold, f"{text}: worse since the deploy", evidence
        )
    if log_pass >= threshold:
        return Verdict(Outcome.PASS, detector, log_fail, threshold, f"{text}: not worse", evidence)
    return Verdict(
        Outcome.INCONCLUSIVE, detector, log_fail, threshold, f"{text}: not enough evidence yet", evidence
    )
