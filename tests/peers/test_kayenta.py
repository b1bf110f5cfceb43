"""The Kayenta peer reproduces Kayenta's own test vectors (ClassifierSuite, MannWhitneySuite)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from detectors.peers.kayenta import (
    HIGH,
    LOW,
    NODATA,
    PASS,
    MetricResult,
    brent_solve,
    classify,
    iqr_outliers,
    mann_whitney,
    percentile_r7,
    score,
    transform,
    wilcoxon_diff,
)

VECTORS_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "peers" / "kayenta-judge-vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["title"] for c in cases]


@pytest.mark.parametrize("case", VECTORS["classifier"], ids=_ids(VECTORS["classifier"]))
def test_classifier_vector(case: dict[str, Any]) -> None:
    ctor = case["ctor"]
    kwargs: dict[str, Any] = {"tolerance": ctor["tolerance"], "conf_level": ctor["confLevel"]}
    if "effectSizeThresholds" in ctor:
        kwargs["effect_size_thresholds"] = tuple(ctor["effectSizeThresholds"])
    if "criticalThresholds" in ctor:
        kwargs["critical_thresholds"] = tuple(ctor["criticalThresholds"])
    if "effectSizeMeasure" in ctor:
        kwargs["effect_size_measure"] = ctor["effectSizeMeasure"]
    result = classify(
        case["control"],
        case["experiment"],
        direction=case["direction"],
        nan_strategy=case["nanStrategy"],
        critical=case["critical"],
        **kwargs,
    )
    if case["expect"] is None:  # ClassifierSuite only asserts that a reason is given
        assert result.reason
    else:
        assert result.classification == case["expect"]
    if case["expect_critical"] is not None:
        assert result.critical is case["expect_critical"]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("title", ["Mann-Whitney Tied Ranks", "Mann-Whitney Tied Ranks With Zeros"])
def test_noise_added_to_constant_samples_does_not_decide_the_outcome(title: str, seed: int) -> None:
    (case,) = [c for c in VECTORS["classifier"] if c["title"] == title]
    result = classify(
        case["control"], case["experiment"], tolerance=0.1, conf_level=0.95, rng=np.random.default_rng(seed)
    )
    assert result.classification == HIGH


@pytest.mark.parametrize("case", VECTORS["mannwhitney"], ids=_ids(VECTORS["mannwhitney"]))
def test_mann_whitney_vector_at_the_suites_precision(case: dict[str, Any]) -> None:
    """Kayenta's own assertion: absolute tolerance ``tol`` per field (1e-6, or 1e-4 for two estimates)."""
    result = mann_whitney(case["x"], case["y"], case["conf"])
    expect, tol = case["expect"], case["tol"]
    assert abs(result.confidence_interval[0] - expect["rCiLow"]) <= tol["confidenceInterval.head"]
    assert abs(result.confidence_interval[1] - expect["rCiHigh"]) <= tol["confidenceInterval.last"]
    assert abs(result.estimate - expect["rEst"]) <= tol["estimate"]


@pytest.mark.parametrize("case", VECTORS["mannwhitney"], ids=_ids(VECTORS["mannwhitney"]))
def test_mann_whitney_vector_to_the_bit(case: dict[str, Any]) -> None:
    """Interval and (R-style) estimate match the vectors to ~1e-15, far inside the suite's tolerance.

    The interval's only gap is the normal quantile: z₀.₀₂₅ from scipy (equal to Kayenta's Commons
    Math value) is 2 ulps from R's ``qnorm``, which moves one bound of "Tie out with R Version" by
    1.9e-15. The estimate: Kayenta solves with the continuity correction on, which makes the score
    0 over a stretch of shifts; R drops it there (``correct <- FALSE # for W()``). With the
    correction the two "Tie out" estimates land 5.8e-5 and 3.4e-5 from R's, inside that stretch and
    inside Kayenta's own 1e-4 tolerance; without it they are R's to the bit.
    """
    kayenta = mann_whitney(case["x"], case["y"], case["conf"])
    r_like = mann_whitney(case["x"], case["y"], case["conf"], estimate_continuity_correction=False)
    expect = case["expect"]
    for got in (kayenta, r_like):
        assert got.confidence_interval == pytest.approx(
            (expect["rCiLow"], expect["rCiHigh"]), rel=1e-9, abs=1e-14
        )
    assert r_like.estimate == expect["rEst"]


@pytest.mark.parametrize("case", VECTORS["mannwhitney"], ids=_ids(VECTORS["mannwhitney"]))
def test_p_value_is_rs_normal_approximation(case: dict[str, Any]) -> None:
    """The vectors carry no p-value (Kayenta dropped it); ours is wilcox.test's, as scipy computes it."""
    got = mann_whitney(case["x"], case["y"], case["conf"]).p_value
    want = stats.mannwhitneyu(
        case["x"], case["y"], use_continuity=True, alternative="two-sided", method="asymptotic"
    )
    assert got == pytest.approx(float(want.pvalue), rel=1e-9)


def test_intermediate_values_of_mannwhitneysuite() -> None:
    """MannWhitneySuite "Intermediate Values / Variables": R's numbers, asserted to 1e-6 there too.

    Its x and y are the arrays of the classifier vector "High Metric (Large Input)".
    """
    (case,) = [c for c in VECTORS["classifier"] if c["title"].endswith("High Metric (Large Input)")]
    x, y = np.asarray(case["experiment"]), np.asarray(case["control"])
    mu_min, mu_max = float(x.min() - y.max()), float(x.max() - y.min())
    zq = float(stats.norm.ppf(0.025))
    assert mu_min == pytest.approx(-3.124999999999986, abs=1e-6)
    assert mu_max == pytest.approx(5.555555555555557, abs=1e-6)
    assert wilcoxon_diff(mu_min, -zq, x, y) == pytest.approx(17.090968923762254, abs=1e-6)
    assert wilcoxon_diff(mu_max, -zq, x, y) == pytest.approx(-20.997687930433106, abs=1e-6)
    assert wilcoxon_diff(mu_min, zq, x, y) == pytest.approx(21.01089689284236, abs=1e-6)
    assert wilcoxon_diff(mu_max, zq, x, y) == pytest.approx(-17.077759961353, abs=1e-6)

    def solve(q: float) -> float:
        return brent_solve(
            mu_min, mu_max, wilcoxon_diff(mu_min, q, x, y), wilcoxon_diff(mu_max, q, x, y),
            lambda m: wilcoxon_diff(m, q, x, y),
        )  # fmt: skip

    assert solve(-zq) == pytest.approx(3.521755377702165e-5, abs=1e-6)
    assert solve(zq) == pytest.approx(2.02456461662334e-5, abs=1e-6)
    assert solve(0.0) == pytest.approx(2.6279243045155653e-5, abs=1e-6)


def test_all_tied_observations_raise_like_kayenta() -> None:
    with pytest.raises(ValueError, match="all observations are tied"):
        mann_whitney([2.0], [1.0])


def test_percentile_is_r7_and_the_iqr_fences_widen_to_p1_p99() -> None:
    data = np.arange(1.0, 11.0)
    assert percentile_r7(data, 25) == pytest.approx(float(np.percentile(data, 25)))
    assert percentile_r7(data, 99) == pytest.approx(float(np.percentile(data, 99)))
    assert math.isnan(percentile_r7(np.array([]), 50))
    spike = np.array([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 50.0])
    assert iqr_outliers(spike, 3.0).tolist() == [False] * 7 + [True]
    assert transform([1.0, math.nan, 2.0], "remove").tolist() == [1.0, 2.0]
    assert transform([1.0, math.nan, 2.0], "replace").tolist() == [1.0, 0.0, 2.0]


def test_weighted_sum_scorer_semantics() -> None:
    three_of_four = [MetricResult(n, c) for n, c in zip("abcd", [PASS, PASS, PASS, HIGH], strict=True)]
    assert score(three_of_four).score == 75.0
    # Nodata and Error are left out of the share; half or more Nodata fails the canary.
    assert score([MetricResult("a", PASS), MetricResult("b", HIGH), MetricResult("c", NODATA)]).score == 50.0
    assert score([MetricResult("a", PASS), MetricResult("b", NODATA)]).score == 0.0
    # A failing critical metric zeroes the score; a muted metric does not count.
    assert score([MetricResult("a", PASS), MetricResult("b", LOW, critical=True, reason="x")]).score == 0.0
    assert score([MetricResult("a", PASS), MetricResult("b", HIGH, muted=True)]).score == 100.0
    # Weighted groups; an unweighted group shares what the weights leave.
    grouped = [MetricResult("a", PASS, groups=("g1",)), MetricResult("b", HIGH, groups=("g2",))]
    assert score(grouped, {"g1": 70.0}).score == 70.0
    assert score([MetricResult(n, PASS if n != "c" else HIGH) for n in "abc"]).score == 66.67
