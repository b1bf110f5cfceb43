import numpy as np

from watchdog.series import (
    Matcher,
    Selector,
    Series,
    counter_increase,
    reset_corrected_rows,
    sum_increase_by,
)


def s(values, times=None, **labels):
    t = np.array(times if times is not None else [15.0 * i for i in range(len(values))])
    return Series({"__name__": "m", **labels}, t, np.array(values, dtype=float))


def test_increase_counts_exactly_and_handles_resets_like_prometheus() -> None:
    # 10 → 20 (+10), reset to 5 (+5), → 8 (+3), → 12 (+4)
    assert counter_increase(s([10, 20, 5, 8, 12]), 0, 60) == 22
    assert counter_increase(s([10, 20, 5, 8, 12]), 15, 45) == 8


def test_missed_scrapes_neither_create_nor_hide_events() -> None:
    full = s([0, 5, 10, 15, 20])
    gappy = s([0, 15, 20], times=[0, 45, 60])
    assert counter_increase(full, 0, 60) == counter_increase(gappy, 0, 60) == 20


def test_series_created_inside_the_window_counts_from_zero() -> None:
    assert counter_increase(s([3, 4], times=[30, 45]), 0, 60) == 4
    assert counter_increase(s([3, 4], times=[30, 45]), 30, 60) == 1


def test_nan_samples_are_ignored() -> None:
    assert counter_increase(s([0, float("nan"), 10]), 0, 30) == 10


def test_sum_by_groups_and_matchers() -> None:
    series = [
        s([0, 10], cohort="canary", code="500"),
        s([0, 90], cohort="canary", code="200"),
        s([0, 5], cohort="baseline", code="500"),
    ]
    sel = Selector.of("m", {"code": "=~5.."})
    picked = [x for x in series if sel.matches(x.labels)]
    assert sum_increase_by(picked, ["cohort"], 0, 15) == {("canary",): 10, ("baseline",): 5}
    assert sel.promql() == 'm{code=~"5.."}'
    assert Matcher.parse("route", "!=/health").matches({"route": "/v1"})
    assert not Matcher.parse("code", "!~2..").matches({"code": "200"})


def test_totals_of_many_series_at_once_are_bit_for_bit_those_of_each_alone() -> None:
    """Fractional counters, NaN and infinite samples, resets, empty and single-sample series."""
    rng = np.random.default_rng(3)
    for _ in range(500):
        values = []
        for _ in range(int(rng.integers(0, 12))):
            n = int(rng.integers(0, 30))
            v = np.cumsum(rng.uniform(0, 10, n) * rng.choice([1.0, 0.5, 1 / 3], n))
            if n and rng.random() < 0.3:
                v[rng.integers(0, n)] = np.nan
            if n and rng.random() < 0.3:
                v[rng.integers(0, n) :] -= v[-1] * 0.7  # a drop: a reset
            if n and rng.random() < 0.1:
                v[rng.integers(0, n)] = np.inf
            values.append(v)
        alone = [Series({}, np.arange(v.size, dtype=float), v).total for v in values]
        together = reset_corrected_rows(values)
        expected = np.concatenate(alone) if alone else np.empty(0)
        assert together.view(np.int64).tolist() == expected.view(np.int64).tolist()
