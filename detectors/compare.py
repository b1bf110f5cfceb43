"""Canary versus baseline: is the canary's share of the bad events larger than its share of traffic?

If the new release is no worse, each bad event (a 5xx, a request slower than a bucket bound, a
reused token) comes from the canary with probability ρ, the canary's share of the traffic in that
interval — whatever the overall rate, so shared incidents and diurnal traffic cancel out. If the
canary's bad rate is r times the baseline's, that probability is θ(r) = ρr / (ρr + 1 − ρ). Given
the bad events of each interval, the canary's count is binomial, and

    E_t = Σ_j w_j Π_i (θ_i(r_j)/ρ_i)^c_i ((1 − θ_i(r_j))/(1 − ρ_i))^b_i

(a mixture over a grid of rate ratios r_j > 1) is a test supermartingale under every r ≤ 1:
by Ville's inequality the canary is flagged with probability at most α however often it is
checked. The traffic share is taken per interval, so a canary whose share drifts is still judged
fairly. Counts that are burstier than binomial (one client retrying, one hot tenant) would make
the test too eager; the log-likelihood is tempered by a dispersion factor φ ≥ 1 measured on the
A/A period before the deploy (quasi-likelihood), which keeps the test calibrated.

The state is a small object with ``update(...)``; every array has a leading axis of services,
so one call updates a whole fleet.

References: Lindon & Malek (2022), "Anytime-valid inference for multinomial count data";
Ramdas et al. (2023), "Game-theoretic statistics and safe anytime-valid inference";
McCullagh & Nelder (1989), quasi-likelihood and overdispersion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from detectors.verdict import Outcome, Verdict

#: Rate ratios the fail-direction mixture spreads over (log-uniform weights), 1.2× to 50×: the
#: regressions worth a rollback; smaller shifts are found too, only later.
RATIO_GRID = np.geomspace(1.2, 50.0, 24)
#: Rate ratios of the pass direction ("the canary is not worse than ``pass_ratio``×").
PASS_GRID = np.geomspace(0.1, 1.0, 20)


def _theta(rho: np.ndarray, r: np.ndarray) -> np.ndarray:
    out: np.ndarray = rho * r / (rho * r + 1.0 - rho)
    return out


def _logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out: np.ndarray = np.asarray(np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis)))
    return out


def dispersion(
    canary_bad: np.ndarray, baseline_bad: np.ndarray, rho: np.ndarray, min_events: int = 30
) -> float:
    """Pearson dispersion of the canary's share of bad events over A/A intervals (1 = binomial).

    Intervals without bad events carry no information. With fewer than ``min_events`` bad events
    the estimate is not trusted and 1.0 is returned; otherwise see ``significant_dispersion``.
    """
    c = np.asarray(canary_bad, dtype=float)
    b = np.asarray(baseline_bad, dtype=float)
    p = np.asarray(rho, dtype=float)
    k = c + b
    ok = (k > 0) & (p > 0) & (p < 1)
    if k[ok].sum() < min_events or ok.sum() < 3:
        return 1.0
    expected = k[ok] * p[ok]
    chi2 = float(np.sum((c[ok] - expected) ** 2 / (expected * (1.0 - p[ok]))))
    return significant_dispersion(chi2, int(ok.sum()) - 1)


def significant_dispersion(chi2: float, df: int) -> float:
    """χ²/df less two of its standard errors (√(2/df)), in [1, 10]: binomial noise alone rarely
    raises it above 1, so an honest binomial signal is not tempered, a bursty one is."""
    if df < 1:
        return 1.0
    return float(np.clip(chi2 / df - 2.0 * math.sqrt(2.0 / df), 1.0, 10.0))


@dataclass
class ShareTest:
    """Sequential test of "canary bad rate > baseline bad rate" for ``n`` services at once.

    ``update`` takes the interval's bad events of canary and baseline and the canary's share of
    the traffic, each an array of shape (n,); ``verdict(i)`` explains service i.
    """

    n: int = 1
    alpha: float = 0.01
    phi: np.ndarray | float = 1.0
    pass_ratio: float = 1.25
    detector: str = "canary_share"
    llr: np.ndarray = field(init=False)
    llr_pass: np.ndarray = field(init=False)
    canary_bad: np.ndarray = field(init=False)
    baseline_bad: np.ndarray = field(init=False)
    exposure: np.ndarray = field(init=False)  # Σ k_i ρ_i: the canary's expected bad events under H0

    def __post_init__(self) -> None:
        self.llr = np.zeros((self.n, RATIO_GRID.size))
        self.llr_pass = np.zeros((self.n, PASS_GRID.size))
        self.canary_bad = np.zeros(self.n)
        self.baseline_bad = np.zeros(self.n)
        self.exposure = np.zeros(self.n)
        self._phi = np.broadcast_to(np.asarray(self.phi, dtype=float), (self.n,)).copy()
        self._log_e: tuple[np.ndarray, np.ndarray] | None = None  # since the last update

    def update(self, canary_bad: np.ndarray, baseline_bad: np.ndarray, canary_share: np.ndarray) -> None:
        c = np.asarray(canary_bad, dtype=float).reshape(self.n)
        b = np.asarray(baseline_bad, dtype=float).reshape(self.n)
        rho = np.asarray(canary_share, dtype=float).reshape(self.n)
        usable = (c + b > 0) & (rho > 0) & (rho < 1) & np.isfinite(rho)
        if not usable.any():
            return
        self._log_e = None
        r = np.where(usable[:, None], rho[:, None], 0.5)
        th = _theta(r, RATIO_GRID[None, :])
        th_pass = _theta(r, self.pass_ratio * PASS_GRID[None, :])
        th_null_pass = _theta(r, np.full((1, 1), self.pass_ratio))
        cc, bb = np.where(usable, c, 0.0)[:, None], np.where(usable, b, 0.0)[:, None]
        self.llr += cc * np.log(th / r) + bb * np.log((1 - th) / (1 - r))
        self.llr_pass += cc * np.log(th_pass / th_null_pass) + bb * np.log((1 - th_pass) / (1 - th_null_pass))
        self.canary_bad += np.where(usable, c, 0.0)
        self.baseline_bad += np.where(usable, b, 0.0)
        self.exposure += np.where(usable, (c + b) * rho, 0.0)

    def log_e(self) -> tuple[np.ndarray, np.ndarray]:
        """Log e-values (fail direction, pass direction) per service, tempered by φ (found once
        per update: the omnibus explains each of its bounds from the same values)."""
        if self._log_e is not None:
            return self._log_e
        log_w = -math.log(RATIO_GRID.size)
        fail = _logsumexp(self.llr / self._phi[:, None] + log_w)
        ok = _logsumexp(self.llr_pass / self._phi[:, None] - math.log(PASS_GRID.size))
        self._log_e = fail, ok
        return fail, ok

    def verdict(self, i: int = 0) -> Verdict:
        threshold = math.log(1.0 / self.alpha)
        fail, ok = self.log_e()
        c, b, expected = float(self.canary_bad[i]), float(self.baseline_bad[i]), float(self.exposure[i])
        ratio = c / expected if expected > 0 else math.nan
        evidence = {
            "canary_bad": c,
            "baseline_bad": b,
            "expected_canary_bad": expected,
            "observed_over_expected": ratio,
            "log_e_fail": float(fail[i]),
            "log_e_pass": float(ok[i]),
            "phi": float(self._phi[i]),
            "alpha": self.alpha,
            "pass_ratio": self.pass_ratio,
            "statistic_name": "log e-value (canary worse than baseline)",
        }
        if c + b <= 0:
            return Verdict(
                Outcome.NO_DATA,
                self.detector,
                None,
                threshold,
                "no bad events in either cohort yet",
                evidence,
            )
        text = f"canary {c:.0f} bad vs {expected:.1f} expected from its traffic share"
        if fail[i] >= threshold:
            return Verdict(
                Outcome.FAIL,
                self.detector,
                float(fail[i]),
                threshold,
                f"{text} ({ratio:.2f}×): canary worse than baseline",
                evidence,
            )
        if ok[i] >= threshold:
            return Verdict(
                Outcome.PASS,
                self.detector,
                float(fail[i]),
                threshold,
                f"{text}: not worse than {self.pass_ratio:g}× baseline",
                evidence,
            )
        return Verdict(
            Outcome.INCONCLUSIVE,
            self.detector,
            float(fail[i]),
            threshold,
            f"{text}: not enough evidence yet",
            evidence,
        )


def combine_any(verdicts: list[Verdict], detector: str) -> Verdict:
    """Average of e-values (an e-value itself): the omnibus over several bounds of one histogram.

    ``verdicts`` are ``ShareTest`` verdicts at the same α; the omnibus fails when the mean of their
    fail-direction e-values reaches 1/α.
    """
    live = [v for v in verdicts if v.outcome is not Outcome.NO_DATA]
    if not live:
        return Verdict(Outcome.NO_DATA, detector, None, None, "no data in any bucket")
    threshold = live[0].threshold or 0.0
    logs = np.array([float(v.evidence["log_e_fail"]) for v in verdicts if "log_e_fail" in v.evidence])
    log_mean = float(_logsumexp(logs) - math.log(len(verdicts)))
    worst = max(live, key=lambda v: float(v.evidence["log_e_fail"]))
    evidence = {
        "log_e_fail": log_mean,
        "parts": len(verdicts),
        "worst": worst.evidence,
        "statistic_name": "log of the mean e-value over bucket bounds",
    }
    if log_mean >= threshold:
        outcome = Outcome.FAIL
    elif all(v.outcome is Outcome.PASS for v in live):
        outcome = Outcome.PASS
    else:
        outcome = Outcome.INCONCLUSIVE
    return Verdict(outcome, detector, log_mean, threshold, worst.summary, evidence)
