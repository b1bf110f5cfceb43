"""The watch evaluator: the false-alarm budget, the traffic-split guard, SLO breaches that page."""

from pathlib import Path

import pytest

from tests.fixtures.scenarios import write_scenario
from watchdog.config import EnvironmentPolicy, LatencySignal, RatioSignal, SeriesRef, ServiceConfig
from watchdog.evaluate import WatchEvaluator, signal_alpha
from watchdog.phases import SignalState
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
