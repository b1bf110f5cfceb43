"""The watch evaluator: the false-alarm budget, the traffic-split guard, SLO breaches that page."""

from pathlib import Path

import numpy as np
import pytest

import watchdog.evaluate as evaluation
from tests.fixtures.scenarios import write_scenario
from watchdog.config import EnvironmentPolicy, LatencySignal, RatioSignal, SeriesRef, ServiceConfig
from watchdog.evaluate import WatchEvaluator, Window, signal_alpha, warm_windows
from watchdog.phases import SignalState
from watchdog.series import Series
from watchdog.sources import ReplaySource

REQ = SeriesRef(metric="http_requests_total")
FIVE_XX = RatioSignal(
    name="http_5xx",
    kind="ratio",
    bad=REQ.model_copy(update={"match": {"code": "=~5.."}}),
    total=REQ,
    slo=0.01,
    alpha_weight=3,
)
P95 = LatencySignal(
    name="latency_p95",
    kind="latency",
    histogram=SeriesRef(metric="http_request_duration_seconds"),
    quantile=0.95,
    threshold_s=0.3,
)


def test_the_budget_is_split_by_weight_and_adds_up_to_alpha() -> None:
    svc = ServiceConfig(name="s", signals=[FIVE_XX, P95])
    shares = [signal_alpha(svc, 0.01, s) for s in svc.signals]
    assert shares == [0.0075, 0.0025] and sum(shares) == 0.01


def evaluate(path: Path, policy: EnvironmentPolicy | None = None) -> dict[str, object]:
    src = ReplaySource(path)
    sc = src.scenario
    svc = ServiceConfig(name="s", signals=[FIVE_XX, P95])
    ev = WatchEvaluator(
        svc,
        src,
        policy or EnvironmentPolicy(calibration_s=sc.deploy_at - sc.start),
        watch_start=sc.deploy_at,
        alpha=0.01,
        lookback_s=60,
        step_s=sc.step_s,
    )
    last = {}
    t = sc.deploy_at
    while t < sc.end:
        t += sc.step_s
        last = {r.signal: r for r in ev.advance(t)}
    return last


def test_a_changed_traffic_split_makes_a_failing_comparison_inconclusive(tmp_path: Path) -> None:
    bad = write_scenario(tmp_path / "bad", err_after=0.05, minutes_after=5)
    assert evaluate(bad)["http_5xx"].state is SignalState.FAIL
    shifted = write_scenario(tmp_path / "shifted", err_after=0.05, minutes_after=5, canary_share_after=0.8)
    res = evaluate(shifted)["http_5xx"]
    assert res.state is SignalState.INCONCLUSIVE
    assert res.verdict.evidence["split_mismatch"] is True and "split mismatch" in res.summary


def test_an_slo_breach_shared_by_both_cohorts_pages_instead_of_failing(tmp_path: Path) -> None:
    """Both cohorts at 3% 5xx against a 1% SLO: the release is not the cause."""
    both = write_scenario(tmp_path / "both", err_before=0.03, err_after=0.03, minutes_after=10)
    res = evaluate(both)["http_5xx"]
    assert res.state is not SignalState.FAIL
    assert res.slo_breach is not None and "above the SLO" in res.slo_breach


def test_latency_waits_for_the_warm_up(tmp_path: Path) -> None:
    slow = write_scenario(tmp_path / "slow", slow_after=0.3, minutes_after=2)
    src = ReplaySource(slow)
    sc = src.scenario
    ev = WatchEvaluator(
        ServiceConfig(name="s", signals=[P95]),
        src,
        EnvironmentPolicy(warmup_s=30),
        watch_start=sc.deploy_at,
        alpha=0.01,
        lookback_s=60,
        step_s=15,
    )
    first = ev.advance(sc.deploy_at + 15)[0]
    assert first.state is SignalState.NO_DATA and "warming up" in first.summary
    assert ev.advance(sc.deploy_at + 120)[0].state is SignalState.FAIL


def test_latency_against_its_slo_when_there_is_no_baseline(tmp_path: Path) -> None:
    """Requests above the threshold's bucket against 1 − quantile, decided by the SLO test."""
    alone = ServiceConfig(name="s", baseline_value="nobody", signals=[P95])  # no baseline to compare with

    def last(path: Path) -> object:
        src = ReplaySource(path)
        sc = src.scenario
        ev = WatchEvaluator(
            alone,
            src,
            EnvironmentPolicy(warmup_s=0, calibration_s=0),
            watch_start=sc.deploy_at,
            alpha=0.01,
            lookback_s=60,
            step_s=15,
        )
        return ev.advance(sc.end)[0]

    slow = last(write_scenario(tmp_path / "slow", slow_after=0.2, minutes_after=5))
    assert slow.state is SignalState.FAIL and slow.slo_breach is not None
    assert (
        slow.verdict.evidence["slo"] == pytest.approx(0.05)
        and slow.verdict.evidence["bad"] > 0.1 * slow.verdict.evidence["total"]
    )
    fast = last(write_scenario(tmp_path / "fast", slow_after=0.01, minutes_after=30))
    assert fast.state is SignalState.PASS and fast.slo_breach is None
    quiet = last(write_scenario(tmp_path / "quiet", rps=0.0, minutes_after=5))
    assert quiet.state is SignalState.NO_DATA


@pytest.mark.parametrize(
    ("batch", "exact_s"),
    [(1 << 16, 2.0**30), (7, 2.0**30), (1 << 16, 4.0e4)],
    ids=["one-pass", "many-passes", "split-for-exactness"],
)
def test_windows_counted_together_count_what_each_counts_alone_bit_for_bit(
    batch: int, exact_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``warm_windows`` over many windows at once (the fleet's tick) against each window counted
    series by series with ``counter_increase``: fractional and reset counters, NaN values, empty
    series, a series out of time order or with an infinite time, windows far apart in time, bounds
    on samples and spans that miss them — in one pass, in many, and split where the pass would be
    too wide to add times exactly."""
    monkeypatch.setattr(evaluation, "_WARM_BATCH", batch)
    monkeypatch.setattr(evaluation, "_EXACT_S", exact_s)
    rng = np.random.default_rng(11)
    svc = ServiceConfig(name="s", canary=True, signals=[FIVE_XX])
    windows, alone, spans_of = [], [], []
    for w in range(300):
        base = 1.7e9 + float(rng.integers(0, 4)) * 3600 + float(rng.uniform(0, 30))
        series = []
        for i in range(int(rng.integers(0, 8))):
            n = int(rng.integers(0, 25))
            t = base + np.cumsum(rng.uniform(5, 20, n).round(3))
            v = np.cumsum(rng.uniform(0, 10, n) * rng.choice([1.0, 0.5, 1 / 3], n))
            if n and rng.random() < 0.2:
                v[rng.integers(0, n)] = np.nan
            if n and rng.random() < 0.2:
                v[rng.integers(0, n) :] -= v[-1] * 0.7  # a reset
            if n and w % 60 == 13:
                t[-1] = np.inf  # in order, but not a time: that window goes series by series too
            if n > 2 and w % 50 == 7:
                t[[0, 1]] = t[[1, 0]]  # out of order: that window goes series by series
            labels = {"__name__": "m", "cohort": str(rng.choice(["canary", "baseline"])), "i": str(i)}
            series.append(Series(labels, t, v))
        edges = np.sort(base + rng.uniform(-60, 500, int(rng.integers(1, 6))))
        times = np.concatenate([x.t for x in series]) if series else np.empty(0)
        if times.size and rng.random() < 0.5:  # bounds exactly on samples: "at or before" decides
            edges = np.sort(rng.choice(times, edges.size))
        spans = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True)) or [(base, base + 60)]
        windows.append(Window(series, svc))
        alone.append(Window(series, svc))
        spans_of.append(spans)
    warm_windows(list(zip(windows, spans_of, strict=True)))
    for together, one, spans in zip(windows, alone, spans_of, strict=True):
        one._warm_one_by_one(spans)
        for span in spans:
            got, want = together._sums(*span), one._sums(*span)
            assert list(got) == list(want)
            assert np.array(list(got.values())).view(np.int64).tolist() == (
                np.array(list(want.values())).view(np.int64).tolist()
            )


def _coverage_afresh(seen: list[float], watch_start: float, step: float, now: float) -> tuple[float, int]:
    """Coverage as found from scratch, every step against every sample (what a tick must equal)."""
    import math
    import statistics

    n = math.floor((now - watch_start) / step + 1e-9)
    if n <= 0:
        return 1.0, 0
    times = np.array(seen)
    gaps = np.diff(times).tolist()
    stale = 2.0 * max(step, statistics.median(gaps) if gaps else step)
    grid = watch_start + step * np.arange(1, n + 1)
    newest = np.searchsorted(times, grid, "right") - 1
    ok = (newest >= 0) & (grid - times[np.maximum(newest, 0)] < stale) if times.size else np.zeros(n, bool)
    return float(ok.mean()), n


@pytest.mark.parametrize("seed", range(6))
def test_coverage_found_tick_by_tick_is_coverage_found_afresh(seed: int) -> None:
    """Coverage settles the steps before the newest sample and judges only the later ones each tick;
    over exporters that go quiet, come back, scrape slower or at odd times, and samples that reach
    the source a tick late, each tick's fraction is bit for bit the one found from all samples
    afresh."""
    rng = np.random.default_rng(seed)
    step, start = 15.0, 1_700_000_000.0
    svc = ServiceConfig(name="s", signals=[FIVE_XX])
    tracker = evaluation._RatioTracker(FIVE_XX, svc, 0.01, EnvironmentPolicy(), start, step)
    interval = float(rng.choice([5.0, 15.0, 30.0, 60.0]))
    t = start + rng.uniform(-20, 20)
    now = start
    for tick in range(120):
        now += step * float(rng.choice([1, 1, 1, 2, 3]))
        if tick % 17 == 5:
            interval = float(rng.choice([5.0, 15.0, 30.0, 60.0, 7.3]))
        late = float(rng.choice([0.0, 0.0, 20.0, 45.0]))  # the source has not seen the newest yet
        while t <= now - late:
            if rng.random() > (0.6 if 40 <= tick < 55 else 0.05):  # a quiet spell, and lost scrapes
                tracker.seen_at.append(t)
            t += interval + rng.uniform(-1, 1)
        got = tracker.coverage(now)
        assert (got.fraction, got.steps) == _coverage_afresh(tracker.seen_at, start, step, now), tick


def test_the_median_of_counted_gaps_is_the_median_of_the_gaps() -> None:
    """Coverage counts each gap between samples instead of keeping them all; their median is
    ``statistics.median``'s, bit for bit, with odd and even counts and repeated values."""
    import statistics
    from collections import Counter

    rng = np.random.default_rng(3)
    for _ in range(3000):
        pool = [15.0, 15.0, 30.0, 14.9, 15.1, 7.3, 60.0, float(rng.uniform(0, 100))]
        gaps = [float(rng.choice(pool)) for _ in range(int(rng.integers(1, 30)))]
        assert evaluation._median(Counter(gaps)) == statistics.median(gaps), gaps
