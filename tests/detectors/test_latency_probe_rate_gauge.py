import math

import pytest

from detectors.gauge import gauge_limit, gauge_ratio
from detectors.latency import histogram_quantile, pick_bound
from detectors.probe import probe_k_of_n
from detectors.rate import rate_bound
from detectors.verdict import Outcome

BOUNDS = [0.1, 0.3, 0.5, math.inf]


def test_threshold_between_bounds_rounds_up_to_fewer_false_alarms() -> None:
    assert pick_bound(BOUNDS, 0.25) == 0.3
    with pytest.raises(ValueError, match="no bucket bound"):
        pick_bound(BOUNDS, 0.9)


def test_histogram_quantile_matches_prometheus_interpolation() -> None:
    # 950 of 1000 at or below 0.5, 900 at or below 0.3: the 0.95 rank sits at the top of (0.3, 0.5].
    assert histogram_quantile(0.95, BOUNDS, [800, 900, 950, 1000]) == pytest.approx(0.5)
    assert histogram_quantile(0.5, BOUNDS, [800, 900, 950, 1000]) == pytest.approx(0.0625)
    assert histogram_quantile(0.999, BOUNDS, [800, 900, 950, 1000]) == 0.5  # +Inf bucket → largest bound


def test_probe_k_of_n_tolerates_flaps_not_outages() -> None:
    assert probe_k_of_n([1, 0, 1, 1, 1], 3, 5).outcome is Outcome.PASS
    assert probe_k_of_n([1, 0, 0, 1, 0], 3, 5).outcome is Outcome.FAIL
    assert probe_k_of_n([math.nan, 1, 1], 3, 5).outcome is Outcome.INCONCLUSIVE
    assert probe_k_of_n([math.nan], 3, 5).outcome is Outcome.NO_DATA
    # missing results are skipped, not failures
    assert probe_k_of_n([1, math.nan, math.nan, math.nan, 1, 1, 1, 1], 3, 5).outcome is Outcome.PASS


def test_rate_bound() -> None:
    assert rate_bound(100, 60, 0.5, 0.01).outcome is Outcome.FAIL
    assert rate_bound(0, 600, 0.5, 0.01).outcome is Outcome.PASS
    assert rate_bound(0, 0, 0.5, 0.01).outcome is Outcome.NO_DATA


def test_gauge_needs_persistence_per_group() -> None:
    assert gauge_limit({"t1": [1, 9, 1, 1]}, 2, 3).outcome is Outcome.PASS
    v = gauge_limit({"t1": [1, 1, 1], "t2": [1, 5, 5, 5]}, 2, 3)
    assert v.outcome is Outcome.FAIL and v.evidence["worst_group"] == "t2"
    assert gauge_limit({}, 2, 3).outcome is Outcome.NO_DATA


def test_gauge_ratio_compares_each_group_with_the_baselines_median() -> None:
    # t1's baseline: NaN skipped, an even count, so the median is the mean of 3 and 4: 3.5, and
    # 6 / 3.5 = 1.71 stays above 1.5 (with a median of 4 it would be exactly 1.5: not above)
    base = {"t1": [2.0, math.nan, 4.0, 10.0, 3.0], "t2": [1.0, 1.0], "t3": [0.0, 0.0]}
    canary = {"t1": [6.0, 6.0, 6.0], "t2": [1.2, 1.2, 1.2], "t3": [9.0] * 3, "t4": [9.0] * 3}
    v = gauge_ratio(canary, base, 1.5, 3)
    assert v.outcome is Outcome.FAIL
    assert (v.evidence["worst_group"], v.statistic) == ("t1", 3.0)
    # a baseline median of zero (t3) or no baseline (t4) gives no ratio to judge
    assert gauge_ratio({"t3": [9.0] * 3, "t4": [9.0] * 3}, base, 1.5, 3).outcome is Outcome.NO_DATA
    assert gauge_ratio({"t2": [1.2] * 3}, base, 1.5, 3).outcome is Outcome.PASS
