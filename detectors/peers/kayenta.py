"""Spinnaker Kayenta's NetflixACAJudge, re-implemented so the benchmark can run it on our scenarios.

Ported from ``spinnaker/kayenta`` (also vendored in ``spinnaker/spinnaker`` under ``kayenta/``):

- ``kayenta-mannwhitney/.../mannwhitney/MannWhitney.scala`` and ``BrentSolver.java`` — the
  confidence interval and Hodges–Lehmann estimate of ``x − y`` by root finding on R's
  ``wilcox.test`` normal approximation (continuity and ties corrections), with R's ``zeroin``
  (``tol = 1e-4``, 1000 iterations). The current Kayenta no longer reports a p-value; ours is R's
  ``wilcox.test(exact = FALSE, correct = TRUE)`` two-sided p-value, for display only.
- ``kayenta-judge/.../classifiers/metric/MannWhitneyClassifier.scala`` — *High* when the CI's lower
  bound exceeds ``tolerance × |estimate|``: the whole interval for the shift lies above a fraction
  of the estimated shift itself (a margin relative to the shift, not to the baseline's level), and
  the effect size (mean ratio by default) reaches ``allowedIncrease``; *Low* symmetrically;
  Gaussian noise of 1e-5 × the value when both samples are constant.
- ``.../judge/stats/EffectSizes.scala`` (mean ratio, CLES), ``.../judge/detectors/IQRDetector.scala``
  and ``.../judge/preprocessing/Transforms.scala`` (NaN removal/replacement, IQR outliers with the
  fences widened to the 1st/99th percentiles, as the judge constructs it with
  ``reduceSensitivity = true``; R-7 percentiles from ``.../judge/stats/DescriptiveStatistics.scala``).
- ``.../judge/NetflixACAJudge.scala`` (tolerance 0.25, confidence 0.98; direction ``either``,
  ``nanStrategy`` remove, outliers kept, ``outlierFactor`` 3, effect-size thresholds 1.0 unless
  configured), ``.../judge/scorers/WeightedSumScorer.scala`` and ``ScoringHelper.scala`` (score =
  weighted share of passing metrics; any failing critical metric or ≥ 50 % *Nodata* scores 0).
- ``spinnaker/orca`` (``orca-kayenta``, package ``com.netflix.spinnaker.orca.kayenta.tasks``:
  ``MonitorKayentaCanaryTask.kt``, ``AggregateCanaryResultsTask.kt``) — how the pipeline uses the
  score: an interval scoring ``≤ marginal`` ends the canary at once; after the last interval a
  score ``< pass`` fails the stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

import numpy as np
from scipy import stats

from detectors.observations import CohortSeries, Observations, PeerDecision
from detectors.peers._common import (
    LATENCY_SIGNALS,
    RATIO_SIGNALS,
    SIGNALS,
    buckets,
    counts,
    finite_or_none,
    has_data,
    histogram_quantiles,
    ratio,
    steps_for,
)

Direction = Literal["increase", "decrease", "either"]
NanStrategy = Literal["remove", "replace"]
OutlierStrategy = Literal["remove", "keep"]
EffectSizeMeasure = Literal["meanRatio", "cles"]

PASS, HIGH, LOW = "Pass", "High", "Low"
NODATA, NODATA_FAIL_METRIC, ERROR = "Nodata", "NodataFailMetric", "Error"

#: ``BrentSolver.java``: R's ``zeroin`` constants.
_BRENT_MAX_ITERATIONS = 1000
_BRENT_TOLERANCE = 1e-4
_EPSILON = 2.220446049250313e-16
#: ``WeightedSumScorer.NODATA_THRESHOLD``: this share (%) of *Nodata* metrics fails the canary.
NODATA_THRESHOLD = 50.0


@dataclass(frozen=True)
class MannWhitneyResult:
    """Two-sided Mann-Whitney (Wilcoxon rank-sum) result for the location shift ``experiment − control``."""

    p_value: float
    confidence_interval: tuple[float, float]
    estimate: float


@dataclass(frozen=True)
class Classification:
    """One metric's classification in Kayenta's vocabulary (``Pass``, ``High``, ``Low``, ``Nodata``...)."""

    classification: str
    reason: str | None
    deviation: float
    critical: bool
    effect_size: float = math.nan
    confidence_interval: tuple[float, float] | None = None
    estimate: float | None = None


def _is_zero(v: float) -> bool:
    """Commons Math ``Precision.equals(v, 0)``: equal within one ulp."""
    return abs(v) <= 5e-324


def _average_ranks(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``NaturalRanking(NaNStrategy.MAXIMAL, TiesStrategy.AVERAGE)``: ranks and the tie-group sizes."""
    z = np.where(np.isnan(z), math.inf, z)
    n = z.size
    order = np.argsort(z, kind="mergesort")
    zs = z[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = zs[1:] != zs[:-1]
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.append(starts, n))
    ranks = np.empty(n)
    ranks[order] = np.repeat(starts + (sizes + 1) / 2.0, sizes)
    return ranks, sizes.astype(float)


def wilcoxon_diff(mu: float, quantile: float, x: np.ndarray, y: np.ndarray, correct: bool = True) -> float:
    """R's ``wdiff``: the (continuity-corrected) normal score of ``x − mu`` against ``y``, minus ``quantile``.

    Decreasing in ``mu``; its roots at ±z₁₋α/₂ are the CI bounds, its root at 0 the estimate.
    """
    x_len, y_len = float(x.size), float(y.size)
    ranks, ties = _average_ranks(np.concatenate([x - mu, y]))
    dz = float(ranks[: x.size].sum()) - x_len * (x_len + 1) / 2 - x_len * y_len / 2
    correction = float(np.sign(dz)) * 0.5 if correct else 0.0
    tie_term = float((ties**3 - ties).sum())
    sigma = math.sqrt(
        (x_len * y_len / 12) * ((x_len + y_len + 1) - tie_term / ((x_len + y_len) * (x_len + y_len - 1)))
    )
    if sigma == 0:
        raise ValueError("cannot compute confidence interval when all observations are tied")
    return (dz - correction) / sigma - quantile


def brent_solve(ax: float, bx: float, fa: float, fb: float, func: Callable[[float], float]) -> float:
    """Kayenta's ``BrentSolver.solve`` (R's ``zeroin``), step for step so the roots match Kayenta's bits.

    The function is a step function of the shift, so which point inside a flat stretch is returned
    depends on the exact iteration; an off-the-shelf Brent would land elsewhere.
    """
    a, b, c = ax, bx, ax
    fc = fa
    if _is_zero(fa):
        return a
    if _is_zero(fb):
        return b
    for _ in range(_BRENT_MAX_ITERATIONS + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * _EPSILON * abs(b) + _BRENT_TOLERANCE / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or _is_zero(fb):
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0.0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = func(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def mann_whitney(
    experiment: Sequence[float] | np.ndarray,
    control: Sequence[float] | np.ndarray,
    conf_level: float = 0.95,
    mu: float = 0.0,
    *,
    estimate_continuity_correction: bool = True,
) -> MannWhitneyResult:
    """Kayenta's ``MannWhitney.mannWhitneyUTest(x = experiment, y = control)``: CI and estimate of x − y.

    Kayenta keeps the continuity correction when solving for the estimate, which makes the score
    exactly 0 over a whole stretch of shifts, so its estimate can sit anywhere up to the solver's
    1e-4 tolerance from R's. Current R (``wilcox.test.R``: ``correct <- FALSE # for W(): no
    continuity correction for estimate``) drops it there; ``estimate_continuity_correction=False``
    gives R's estimate to the bit. z₁₋α/₂ comes from scipy, equal to Kayenta's Commons Math value
    at 95 % and one ulp from it at 98 % (R's ``qnorm`` is two ulps off at 95 %); the bounds move by
    about 1e-15. Raises ``ValueError`` when all observations are tied (Kayenta's
    ``IllegalArgumentException``).
    """
    x = np.asarray(experiment, dtype=float)
    y = np.asarray(control, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ValueError("Mann-Whitney needs observations in both samples")
    alpha = 1.0 - conf_level
    mu_min = float(x.min() - y.max())
    mu_max = float(x.max() - y.min())

    def find_root(zq: float) -> float:
        f_lower = wilcoxon_diff(mu_min, zq, x, y)
        f_upper = wilcoxon_diff(mu_max, zq, x, y)
        if f_lower <= 0:
            return mu_min
        if f_upper >= 0:
            return mu_max
        return brent_solve(mu_min, mu_max, f_lower, f_upper, lambda m: wilcoxon_diff(m, zq, x, y))

    z_quant = float(stats.norm.ppf(alpha / 2))
    interval = (find_root(-z_quant), find_root(z_quant))
    corr = estimate_continuity_correction
    estimate = brent_solve(
        mu_min,
        mu_max,
        wilcoxon_diff(mu_min, 0, x, y, corr),
        wilcoxon_diff(mu_max, 0, x, y, corr),
        lambda m: wilcoxon_diff(m, 0, x, y, corr),
    )
    z = wilcoxon_diff(mu, 0, x, y)
    p_value = float(2 * min(stats.norm.cdf(z), stats.norm.sf(z)))
    return MannWhitneyResult(p_value, interval, estimate)


def _commons_mean(values: np.ndarray) -> float:
    """Commons Math ``StatUtils.mean``: the sum's mean plus the mean residual (a corrected two-pass mean)."""
    n = values.size
    xbar = float(np.cumsum(values)[-1]) / n
    correction = float(np.cumsum(values - xbar)[-1])
    return xbar + correction / n


def mean_ratio(control: np.ndarray, experiment: np.ndarray) -> float:
    """``EffectSizes.meanRatio``: experiment mean / control mean, NaN when either mean is 0."""
    control_mean = _commons_mean(control)
    experiment_mean = _commons_mean(experiment)
    if control_mean == 0.0 or experiment_mean == 0.0:
        return math.nan
    return experiment_mean / control_mean


def cles(control: np.ndarray, experiment: np.ndarray) -> float:
    """``EffectSizes.cles``: the share of (experiment, control) pairs where the experiment is higher."""
    m, n = experiment.size, control.size
    ranks, _ = _average_ranks(np.concatenate([experiment, control]))
    r1 = float(ranks[:m].sum())
    return (2 * r1 - m * (m + 1)) / (2 * n * m)


def _add_gaussian_noise(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``MannWhitneyClassifier.addGaussianNoise``: noise with a standard deviation of 1e-5 × the value."""
    scale = float(values[0]) * 1e-5
    return values + rng.standard_normal(values.size) * scale


def classify(
    control: Sequence[float] | np.ndarray,
    experiment: Sequence[float] | np.ndarray,
    *,
    tolerance: float = 0.25,
    conf_level: float = 0.95,
    direction: Direction = "either",
    nan_strategy: NanStrategy = "remove",
    critical: bool = False,
    data_required: bool = False,
    effect_size_thresholds: tuple[float, float] = (1.0, 1.0),
    critical_thresholds: tuple[float, float] = (1.0, 1.0),
    effect_size_measure: EffectSizeMeasure = "meanRatio",
    rng: np.random.Generator | None = None,
    name: str = "metric",
) -> Classification:
    """``MannWhitneyClassifier.classify`` (constructor defaults as in Kayenta: tolerance 0.25, 95 %).

    ``effect_size_thresholds`` and ``critical_thresholds`` are (decrease, increase) pairs as in the
    Scala tuples. ``rng`` draws the noise Kayenta adds when both samples are constant (Kayenta's is
    unseeded); a fixed default keeps our runs reproducible. Raises ``ValueError`` where Kayenta
    throws; the judge turns that into an ``Error`` classification.
    """
    exp = np.asarray(experiment, dtype=float)
    ctl = np.asarray(control, dtype=float)
    if exp.size == 0 or ctl.size == 0:
        if nan_strategy == "remove":
            missing = f"Missing data for {name}"
            if data_required and not critical:
                return Classification(NODATA_FAIL_METRIC, missing, 1.0, critical=False)
            return Classification(NODATA, missing, 1.0, critical=critical)
        return Classification(PASS, None, 1.0, critical=False)
    if exp.size == ctl.size and np.array_equal(np.sort(exp), np.sort(ctl)):
        return Classification(
            PASS, f"The canary and baseline data for {name} are identical", 1.0, critical=False
        )
    if np.unique(np.concatenate([exp, ctl])).size == 1:
        return Classification(PASS, None, 1.0, critical=False)

    if np.unique(exp).size == 1 and np.unique(ctl).size == 1:
        noise = rng if rng is not None else np.random.default_rng(0)
        exp, ctl = _add_gaussian_noise(exp, noise), _add_gaussian_noise(ctl, noise)
    mw = mann_whitney(exp, ctl, conf_level)
    deviation = mean_ratio(ctl, exp)
    effect = cles(ctl, exp) if effect_size_measure == "cles" else mean_ratio(ctl, exp)
    bound = tolerance * abs(mw.estimate)
    lower_ci, upper_ci = mw.confidence_interval
    is_high = (
        direction in ("increase", "either")
        and lower_ci > bound
        and (math.isnan(effect) or effect >= effect_size_thresholds[1])
    )
    is_low = (
        direction in ("decrease", "either")
        and upper_ci < -bound
        and (math.isnan(effect) or effect <= effect_size_thresholds[0])
    )
    label = HIGH if is_high else LOW if is_low else PASS
    reason = f"{name} was classified as {label}" if label != PASS else None
    critical_failure = critical and (
        (label == HIGH and (math.isnan(effect) or effect >= critical_thresholds[1]))
        or (label == LOW and (math.isnan(effect) or effect <= critical_thresholds[0]))
    )
    if critical_failure:
        reason = f"The metric {name} was classified as {label} (Critical)"
    return Classification(
        label, reason, deviation, critical_failure, effect, mw.confidence_interval, mw.estimate
    )


def percentile_r7(values: np.ndarray, p: float) -> float:
    """Commons Math ``Percentile`` with ``EstimationType.R_7`` (NaN for no data), ``p`` in (0, 100]."""
    n = values.size
    if n == 0:
        return math.nan
    work = np.sort(values)
    q = p / 100.0
    pos = float(n) if q == 1.0 else 1 + (n - 1) * q
    if pos < 1:
        return float(work[0])
    if pos >= n:
        return float(work[-1])
    whole = math.floor(pos)
    lower, upper = float(work[whole - 1]), float(work[whole])
    return lower + (pos - whole) * (upper - lower)


def iqr_outliers(data: np.ndarray, factor: float = 1.5, reduce_sensitivity: bool = False) -> np.ndarray:
    """``IQRDetector.detect``: Tukey fences ``Q1 − k·IQR`` / ``Q3 + k·IQR``, widened to p1/p99 if asked."""
    if factor <= 0:
        raise ValueError("factor must be greater than zero")
    p75, p25 = percentile_r7(data, 75), percentile_r7(data, 25)
    iqr = p75 - p25
    lower, upper = p25 - factor * iqr, p75 + factor * iqr
    if reduce_sensitivity:
        lower = min(percentile_r7(data, 1), lower)
        upper = max(percentile_r7(data, 99), upper)
    return np.asarray((data > upper) | (data < lower), dtype=bool)


def transform(
    values: Sequence[float] | np.ndarray,
    nan_strategy: NanStrategy = "remove",
    outlier_strategy: OutlierStrategy = "keep",
    outlier_factor: float = 3.0,
) -> np.ndarray:
    """``NetflixACAJudge.transformMetric``: NaNs removed (or set to 0), then IQR outliers dropped if asked."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)] if nan_strategy == "remove" else np.where(np.isnan(arr), 0.0, arr)
    if outlier_strategy == "remove":
        arr = arr[~iqr_outliers(arr, outlier_factor, reduce_sensitivity=True)]
    return arr


@dataclass(frozen=True)
class MetricResult:
    """A judged metric as the scorer sees it (``CanaryAnalysisResult``)."""

    name: str
    classification: str
    critical: bool = False
    groups: tuple[str, ...] = ("default",)
    muted: bool = False
    reason: str | None = None
    detail: Classification | None = None


@dataclass(frozen=True)
class ScoreResult:
    """``ScoreResult``: the summary score (0–100), why it was forced to 0 if it was, per-group scores."""

    score: float
    reason: str | None
    group_scores: dict[str, float] = field(default_factory=dict)


def _round_half_up(x: float, places: int) -> float:
    """Commons Math ``Precision.round``: BigDecimal of the shortest decimal, rounded half up."""
    if not math.isfinite(x):
        return x
    return float(Decimal(repr(x)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def score(results: Iterable[MetricResult], group_weights: Mapping[str, float] | None = None) -> ScoreResult:
    """``ScoringHelper`` + ``WeightedSumScorer``: weighted share of *Pass* among classified metrics.

    Muted metrics are dropped; a failing critical metric or ≥ 50 % *Nodata* metrics scores 0; a group
    with no classified metric counts as 100; groups without a weight share what the weights leave.
    """
    kept = [r for r in results if not r.muted]
    weights = dict(group_weights or {})
    labels: dict[str, list[str]] = {}
    for r in kept:
        for g in r.groups:
            labels.setdefault(g, []).append(r.classification)
    group_scores: dict[str, float] = {}
    no_data: dict[str, bool] = {}
    for g, ls in labels.items():
        total = sum(1 for label in ls if label in (HIGH, LOW, PASS, NODATA_FAIL_METRIC))
        no_data[g] = total == 0
        group_scores[g] = 0.0 if total == 0 else ls.count(PASS) / total * 100
    failures = [r for r in kept if r.critical and r.classification != PASS]
    if failures:
        return ScoreResult(0.0, f"Canary Failed: {failures[0].reason}", group_scores)
    if kept and sum(r.classification == NODATA for r in kept) / len(kept) * 100 >= NODATA_THRESHOLD:
        return ScoreResult(
            0.0, f"Canary Failed: {NODATA_THRESHOLD:g}% or more metrics returned NODATA", group_scores
        )
    unweighted = set(group_scores) - set(weights)
    spare = (100 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
    summary = 0.0
    for g, s in group_scores.items():
        summary += (100.0 if no_data[g] else s) * (weights.get(g, spare) / 100)
    return ScoreResult(_round_half_up(summary, 2), None, group_scores)


def judge_metric(
    name: str,
    control: Sequence[float] | np.ndarray,
    experiment: Sequence[float] | np.ndarray,
    *,
    direction: Direction = "either",
    nan_strategy: NanStrategy = "remove",
    outlier_strategy: OutlierStrategy = "keep",
    outlier_factor: float = 3.0,
    critical: bool = False,
    data_required: bool = False,
    rng: np.random.Generator | None = None,
) -> MetricResult:
    """``NetflixACAJudge.classifyMetric``: transform both samples, classify at tolerance 0.25 and 98 %."""
    ctl = transform(control, nan_strategy, outlier_strategy, outlier_factor)
    exp = transform(experiment, nan_strategy, outlier_strategy, outlier_factor)
    try:
        c = classify(
            ctl,
            exp,
            tolerance=0.25,
            conf_level=0.98,
            direction=direction,
            nan_strategy=nan_strategy,
            critical=critical,
            data_required=data_required,
            rng=rng,
            name=name,
        )
    except ValueError:
        return MetricResult(name, ERROR, critical=False, reason="Metric Classification Failed")
    return MetricResult(name, c.classification, critical=c.critical, reason=c.reason, detail=c)


def _per_step_values(cohort: CohortSeries, le: np.ndarray, signal: str) -> np.ndarray:
    """The value Kayenta would fetch for each scrape step: a ratio, or a histogram quantile."""
    if signal in RATIO_SIGNALS:
        spec = RATIO_SIGNALS[signal]
        return ratio(counts(cohort, spec.numerator), counts(cohort, spec.denominator))
    return histogram_quantiles(LATENCY_SIGNALS[signal].quantile, le, buckets(cohort))


def kayenta_peer(
    obs: Observations,
    *,
    interval_s: float = 60.0,
    pass_threshold: float = 75.0,
    marginal_threshold: float = 50.0,
    outlier_strategy: OutlierStrategy = "remove",
    outlier_factor: float = 3.0,
    critical_signals: Iterable[str] = (),
    seed: int = 0,
) -> PeerDecision:
    """Spinnaker canary analysis with the NetflixACAJudge, judged every ``interval_s`` after the deploy.

    Metrics: the per-step 5xx ratio, p95 and p99 latency (``histogram_quantile`` of each step's
    buckets), token-reuse and device-proof failure ratios, wherever the scenario has the data;
    direction ``increase``, NaN removed, IQR outliers removed (factor 3), all metrics in one group
    (equal weights), none critical unless listed. Interval k compares the steps since the deploy
    (a growing window, Spinnaker without ``lookbackMins``) of the canary with the baseline; without
    a canary, the post-deploy steps with as many steps right before the deploy. As orca does, an
    interval scoring ≤ ``marginal_threshold`` ends the canary (our rollback at that step); after the
    last whole interval a score ≥ ``pass_threshold`` promotes, anything else is inconclusive here
    (orca would fail the stage below pass; the evidence says so).
    """
    critical = set(critical_signals)
    paired = obs.canary is not None and obs.baseline is not None
    if obs.canary is not None and obs.baseline is not None:
        experiment_cohort, control_cohort = obs.canary, obs.baseline
    elif obs.all is not None:
        experiment_cohort = control_cohort = obs.all
    else:
        raise ValueError("observations carry neither a canary/baseline pair nor an 'all' cohort")
    le = np.asarray(obs.le, dtype=float)
    signals = [s for s in SIGNALS if has_data(experiment_cohort, s) or has_data(control_cohort, s)]
    if not signals:
        return PeerDecision("inconclusive", None, None, {"reason": "no metric has data", "intervals": 0})
    exp_series = {s: _per_step_values(experiment_cohort, le, s) for s in signals}
    ctl_series = {s: _per_step_values(control_cohort, le, s) for s in signals}
    rng = np.random.default_rng(seed)
    width = steps_for(obs, interval_s)
    start, n_steps = obs.deploy_index, len(obs.t)
    n_intervals = max(0, n_steps - start) // width
    scores: list[float] = []
    last: list[MetricResult] = []
    summary = ScoreResult(0.0, None)
    for k in range(1, n_intervals + 1):
        end = start + k * width
        results = []
        for s in signals:
            experiment = exp_series[s][start:end]
            if paired:
                control = ctl_series[s][start:end]
            else:
                control = ctl_series[s][max(0, start - (end - start)) : start]
            results.append(
                judge_metric(
                    s,
                    control,
                    experiment,
                    direction="increase",
                    nan_strategy="remove",
                    outlier_strategy=outlier_strategy,
                    outlier_factor=outlier_factor,
                    critical=s in critical,
                    rng=rng,
                )
            )
        summary = score(results)
        scores.append(summary.score)
        last = results
        if summary.score <= marginal_threshold:
            return PeerDecision(
                "rollback",
                end - 1,
                _failing_signal(results),
                _evidence(scores, results, summary, "TERMINAL"),
            )
    if not scores:
        return PeerDecision(
            "inconclusive", None, None, {"reason": "watch shorter than one interval", "intervals": 0}
        )
    if summary.score >= pass_threshold:
        return PeerDecision("promote", None, None, _evidence(scores, last, summary, "SUCCEEDED"))
    return PeerDecision(
        "inconclusive", None, _failing_signal(last), _evidence(scores, last, summary, "TERMINAL")
    )


def _failing_signal(results: Sequence[MetricResult]) -> str | None:
    """The metric to blame: a failing critical one, else the first not passing."""
    for r in results:
        if r.critical and r.classification != PASS:
            return r.name
    for label in (HIGH, LOW, NODATA_FAIL_METRIC, NODATA, ERROR):
        for r in results:
            if r.classification == label:
                return r.name
    return None


def _evidence(
    scores: list[float], results: Sequence[MetricResult], summary: ScoreResult, stage: str
) -> dict[str, object]:
    metrics: dict[str, object] = {}
    for r in results:
        entry: dict[str, object] = {"classification": r.classification, "critical": r.critical}
        if r.detail is not None and r.detail.confidence_interval is not None:
            entry["confidence_interval"] = list(r.detail.confidence_interval)
            entry["estimate"] = r.detail.estimate
            entry["ratio"] = finite_or_none(r.detail.deviation)
        metrics[r.name] = entry
    return {
        "scores": scores,
        "intervals": len(scores),
        "score": summary.score,
        "reason": summary.reason,
        "spinnaker_stage": stage,
        "metrics": metrics,
    }
