"""Signals → verdicts: fetch the raw samples a signal needs, count them, feed the detectors.

One ``WatchEvaluator`` per watch keeps every signal's detector state and advances it interval by
interval (one interval per tick; a restarted process catches up interval by interval from the
start of the watch). The daemon, replay and the benchmark all go through it.

With a canary, each count signal compares the canary with the baseline (``detectors.compare``),
calibrated on the A/A period before the deploy; without one, after the deploy with before
(``detectors.change``). An SLO on the signal is checked too: a breach is reported (and paged),
and it decides only when there is nothing to compare with.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from detectors.change import before_after, binomial_dispersion
from detectors.compare import ShareTest, combine_any, dispersion
from detectors.gauge import gauge_limit, gauge_ratio
from detectors.latency import histogram_quantile, pick_bound
from detectors.probe import probe_k_of_n
from detectors.rate import rate_bound
from detectors.slo import slo_bound
from detectors.verdict import Outcome, Verdict
from watchdog.config import (
    EnvironmentPolicy,
    GaugeSignal,
    LatencySignal,
    ProbeSignal,
    RateSignal,
    RatioSignal,
    SeriesRef,
    ServiceConfig,
    Severity,
    compile_promql,
)
from watchdog.errors import SourceUnavailable
from watchdog.phases import SignalState
from watchdog.quality import DIP_SAMPLES, Checked, Fault, check_answer
from watchdog.series import (
    LabelKey,
    Selector,
    Series,
    counter_increase,
    reset_corrected_rows,
    samples_by,
)
from watchdog.sources.base import MetricSource
from watchdog.sources.batch import Need, ServiceKey, service_matchers

AnySignal = RatioSignal | LatencySignal | ProbeSignal | RateSignal | GaugeSignal
STATISTICAL = (RatioSignal, LatencySignal, RateSignal)
CANARY, BASELINE, ALL = "canary", "baseline", "all"
#: How far the first fetch of a watch reaches back for each counter's last sample before it.
HISTORY_S = 3600.0


@dataclass(frozen=True)
class SignalResult:
    """A signal's state at one tick: the detector's verdict, or ``error`` when the source broke."""

    signal: str
    severity: Severity
    state: SignalState
    verdict: Verdict | None
    query: str
    error: str | None = None
    slo_breach: str | None = None  # set when the canary (or the release) is outside the SLO
    coverage: Coverage | None = None

    @property
    def summary(self) -> str:
        if self.error is not None:
            return f"blind: {self.error}"
        return self.verdict.summary if self.verdict is not None else ""

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"signal": self.signal, "state": self.state.value, "query": self.query}
        if self.verdict is not None:
            out.update(self.verdict.as_dict())
        if self.error is not None:
            out["error"] = self.error
        if self.slo_breach is not None:
            out["slo_breach"] = self.slo_breach
        if self.coverage is not None:
            out["coverage"] = self.coverage.as_dict()
        return out


@dataclass(frozen=True)
class Coverage:
    """How much of a watch a signal actually saw: the release under watch (the canary, or all
    traffic before/after), step by step. A promotion needs enough of it, and recent enough."""

    fraction: float  # of the watch's scrape steps so far that carried data
    steps: int
    last_seen: float | None  # the newest sample of the release's series
    at: float

    def stale_for(self, now: float) -> float:
        """Seconds since the last sample (since the watch began, when there was none)."""
        return now - self.last_seen if self.last_seen is not None else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "fraction": round(self.fraction, 4),
            "steps": self.steps,
            "last_seen": self.last_seen,
            "stale_s": None if self.last_seen is None else round(self.at - self.last_seen, 3),
        }


def signal_alpha(service: ServiceConfig, alpha: float, signal: AnySignal) -> float:
    """The signal's share of the deploy's false-alarm budget (Bonferroni, by ``alpha_weight``).

    The shares add up to α, so the chance that *any* statistical signal fails a release that is
    no worse than its reference is at most α.
    """
    weights = [
        s.alpha_weight
        for s in service.signals
        if isinstance(s, STATISTICAL) and s.severity is not Severity.OBSERVE
    ]
    return alpha * signal.alpha_weight / max(sum(weights), signal.alpha_weight)


# ----------------------------------------------------------------------------- counting


class Window:
    """The raw series of one selector over a span, and per-cohort counts of sub-intervals."""

    def __init__(self, series: list[Series], service: ServiceConfig, extra_by: Sequence[str] = ()) -> None:
        self.series = series
        self.service = service
        self.by = (service.cohort_label, *extra_by) if service.canary else tuple(extra_by)
        by = self.by
        self._keyed = [(s.group(by), s) for s in series]
        self._cache: dict[tuple[float, float], dict[tuple[str, ...], float]] = {}

    def _sums(self, start: float, end: float) -> dict[tuple[str, ...], float]:
        cached = self._cache.get((start, end))
        if cached is None:
            self.warm([(start, end)])
            cached = self._cache[(start, end)]
        return cached

    def warm(self, spans: Sequence[tuple[float, float]]) -> None:
        """Count every series in each of ``spans`` (``warm_windows`` for this window alone)."""
        warm_windows([(self, spans)])

    def _layout(self) -> tuple[list[tuple[str, ...]], list[int]] | None:
        """The window's groups and each series' group; ``None`` when a series cannot be counted
        by lookup (samples out of time order; times that are not numbers ``_count_batch`` finds)
        or there is no series."""
        got = self.__dict__.get("_layout_cache", False)
        if got is not False:
            return got  # type: ignore[no-any-return]
        made = None
        if self._keyed and all(s.ordered for _, s in self._keyed):
            index: dict[tuple[str, ...], int] = {}
            group = [index.setdefault(k, len(index)) for k, _ in self._keyed]
            made = (list(index), group)
        self.__dict__["_layout_cache"] = made
        return made

    def _warm_one_by_one(self, spans: Sequence[tuple[float, float]]) -> None:
        for start, end in spans:
            out: dict[tuple[str, ...], float] = defaultdict(float)
            for key, s in self._keyed:
                out[key] += counter_increase(s, start, end)
            self._cache[(start, end)] = out

    def cohort_of(self, key: tuple[str, ...]) -> str:
        if not self.service.canary:
            return ALL
        if key[0] == self.service.canary_value:
            return CANARY
        return BASELINE if key[0] == self.service.baseline_value else ""

    def counts(self, start: float, end: float) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for key, v in self._sums(start, end).items():
            out[self.cohort_of(key)] += v
        return out

    def counts_by(self, start: float, end: float) -> dict[str, dict[str, float]]:
        """Counts per cohort and per the extra label (e.g. ``le``)."""
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for key, v in self._sums(start, end).items():
            out[self.cohort_of(key)][key[-1]] += v
        return out


def _median(counts: Counter[float]) -> float:
    """``statistics.median`` of the values counted (each as often as its count), the same value."""
    n = counts.total()
    mid, seen = n // 2, 0
    lower = math.nan  # with an even count, the lower of the two middle values
    for value in sorted(counts):
        seen += counts[value]
        if n % 2 == 0 and math.isnan(lower) and seen >= mid:
            lower = value
        if seen > mid:
            return value if n % 2 else (lower + value) / 2
    raise ValueError("no values")


def _counted_until(tracker: _Tracker, checked: Checked, now: float) -> float:
    """How far a tracker counts this tick: to ``now``, or to just before a drop that waits for
    confirmation (``Checked.hold``), never back before where it already is."""
    return now if checked.hold > now else max(tracker.last, checked.hold - 1e-6)


def _spans(start: float, end: float, step: float) -> list[tuple[float, float]]:
    out = []
    t = start
    while t < end - 1e-9:
        out.append((t, min(t + step, end)))
        t += step
    return out


#: At most this many (series × span) counts in one pass of ``warm_windows`` (bounds its memory).
_WARM_BATCH = 1 << 16
#: A pass's rows × width (seconds) stay below this, so its sums of times are exact (see below).
_EXACT_S = 2.0**30

_Job = tuple[Window, list[tuple[float, float]], list[tuple[str, ...]], list[int]]


def warm_windows(jobs: Sequence[tuple[Window, Sequence[tuple[float, float]]]]) -> None:
    """Count every series of every window in each of its spans, for many windows at once — one
    watch's, or a hundred watches' of a tick (``WatchEvaluator.stage``): a few array operations
    over all of them instead of a few per window and span.

    ``counter_increase`` by lookup: each series' samples sit in one sorted array at ``row × width``
    plus their time since the earliest sample, so one ``searchsorted`` finds the last sample at or
    before every bound of every series. Unix times of one pass are within a factor of two of each
    other, so those differences are exact, and so are the sums while rows × width stay below
    ``_EXACT_S`` (a pass beyond it is split): the lookups compare the times themselves. The totals
    are ``Series.total`` (``reset_corrected_rows``), and each group's sum adds its series in their
    order, so a window's counts are the same bit for bit whichever windows it is counted with. A
    window with a series out of time order, or a time that is not a number, is counted series by
    series.
    """
    batch: list[_Job] = []
    size = 0
    for w, spans in jobs:
        fresh = [sp for sp in dict.fromkeys(spans) if sp not in w._cache]
        layout = w._layout() if fresh else None
        if layout is None:
            w._warm_one_by_one(fresh)
            continue
        batch.append((w, fresh, *layout))
        size += len(w._keyed) * len(fresh)
        if size >= _WARM_BATCH:
            _count_batch(batch)
            batch, size = [], 0
    if batch:
        _count_batch(batch)


def _count_batch(batch: list[_Job]) -> None:
    series = [s for w, *_ in batch for _, s in w._keyed]
    sizes = np.fromiter((s.t.size for s in series), dtype=np.int64, count=len(series))
    t = np.concatenate([s.t for s in series])
    if not t.size:  # nothing to look up: every group counts none
        for w, spans, keys, _ in batch:
            w._cache.update((span, dict.fromkeys(keys, 0.0)) for span in spans)
        return
    t0 = float(t.min())
    width = float(t.max()) - t0 + 2.0
    finite = bool(np.isfinite(t).all())
    if len(batch) > 1 and (len(series) * width >= _EXACT_S or not finite):
        half = len(batch) // 2  # until each part is exact, or one window (not a number: alone)
        _count_batch(batch[:half])
        _count_batch(batch[half:])
        return
    if not finite:
        batch[0][0]._warm_one_by_one(batch[0][1])
        return
    lo = np.cumsum(sizes) - sizes
    place = np.repeat(np.arange(len(series), dtype=float) * width, sizes) + (t - t0)
    total = reset_corrected_rows([s.v for s in series])
    # one entry per (window, span, series), in that order; its bin: (window, span, group)
    rows: list[int] = []
    bins: list[int] = []
    bounds: list[tuple[float, float]] = []
    row = nbin = 0
    for _, spans, keys, group in batch:
        n, g = len(group), len(keys)
        here = range(row, row + n)
        for k, span in enumerate(spans):
            rows.extend(here)
            off = nbin + k * g
            bins.extend([off + x for x in group])
            bounds.extend([span] * n)
        row += n
        nbin += len(spans) * g
    r = np.array(rows, dtype=np.int64)
    rel = np.clip(np.array(bounds, dtype=float).reshape(-1, 2) - t0, -0.5, width - 0.5)  # (entries, 2)
    q = (r.astype(float) * width)[:, None] + rel
    at = np.searchsorted(place, q.ravel(), "right").reshape(q.shape) - 1
    has = at >= lo[r][:, None]
    tot = np.where(has, total[np.maximum(at, 0)], 0.0)
    inc = np.where(has[:, 1], np.where(has[:, 0], tot[:, 1] - tot[:, 0], tot[:, 1]), 0.0)
    sums = np.bincount(np.array(bins, dtype=np.int64), weights=inc, minlength=nbin).tolist()
    nbin = 0
    for w, spans, keys, _ in batch:
        g = len(keys)
        for span in spans:
            w._cache[span] = dict(zip(keys, sums[nbin : nbin + g], strict=True))
            nbin += g


# ----------------------------------------------------------------------------- trackers


@dataclass
class _Tracker:
    """One signal's detector state within a watch."""

    signal: Any
    service: ServiceConfig
    alpha: float
    policy: EnvironmentPolicy
    watch_start: float
    step_s: float
    split_changed: bool = field(default=False, init=False)
    last: float = field(default=math.nan, init=False)  # end of the last interval taken in
    calibrated: bool = field(default=False, init=False)
    # the sample times of the release's series, in order (as doubles: a replica keeps ~6,000 of these)
    seen_at: array[float] = field(default_factory=lambda: array("d"), init=False)
    # coverage, step by step: how often each gap between those times occurs, how many times they
    # cover, the staleness limit, and how many of the watch's steps are settled and were covered
    _gaps: Counter[float] = field(default_factory=Counter, init=False, repr=False)
    _gapped: int = field(default=0, init=False, repr=False)
    _stale: float = field(default=math.nan, init=False, repr=False)
    _settled: int = field(default=0, init=False, repr=False)
    _settled_ok: int = field(default=0, init=False, repr=False)
    #: Counters are checked as counters (finite, never down but for restarts); gauges are not.
    counts: ClassVar[bool] = True
    #: Which of ``selectors()`` carries the release's traffic, for coverage.
    primary: ClassVar[int] = 0

    def selectors(self) -> list[SeriesRef]:
        raise NotImplementedError

    def observe(self, windows: list[Window], end: float) -> None:
        """Note when the release's own series had samples, after the watch began, up to ``end``."""
        if not windows:
            return
        w = windows[self.primary]
        after = max(self.seen_at[-1] if self.seen_at else -math.inf, self.watch_start)
        mine = (CANARY, ALL)
        new: set[float] = set()
        for key, series in w._keyed:
            if w.cohort_of(key) in mine:
                t = series.t
                if series.ordered:  # (the usual: a cut by lookup instead of two masks)
                    new.update(t[t.searchsorted(after, "right") : t.searchsorted(end, "right")].tolist())
                else:
                    new.update(t[(t > after) & (t <= end)].tolist())
        self.seen_at.extend(sorted(new))

    def coverage(self, now: float) -> Coverage:
        """The fraction of the watch's steps so far whose end had a sample of the release within
        ``2 × max(step, scrape interval)``: one lost scrape is not a hole, a dead exporter is.

        Found step by step: a step that ended before the newest sample is settled (samples only
        come after it), so each tick judges only the steps after it, unless the scrape interval
        it goes by changed."""
        n = math.floor((now - self.watch_start) / self.step_s + 1e-9)
        times = self.seen_at
        last_seen = times[-1] if times else None
        if n <= 0:
            return Coverage(1.0, 0, last_seen, now)
        gaps = self._gaps
        for i in range(max(self._gapped - 1, 0), len(times) - 1):
            gaps[times[i + 1] - times[i]] += 1
        self._gapped = len(times)
        interval = _median(gaps) if gaps else self.step_s
        stale = 2.0 * max(self.step_s, interval)
        if stale != self._stale or self._settled > n:
            self._stale, self._settled, self._settled_ok = stale, 0, 0
        ok = self._settled_ok
        for k in range(self._settled + 1, n + 1):
            grid = self.watch_start + self.step_s * k
            newest = bisect.bisect_right(times, grid) - 1
            hit = newest >= 0 and grid - times[newest] < stale
            ok += hit
            if k == self._settled + 1 and times and grid < times[-1]:
                self._settled, self._settled_ok = k, ok
        return Coverage(ok / n, n, last_seen, now)

    def calibrate(self, windows: list[Window], spans: list[tuple[float, float]]) -> None:
        """Learn from the pre-deploy period (A/A with a canary, the reference without one)."""

    def update(self, windows: list[Window], start: float, end: float) -> None:
        """Take in one interval after the watch started."""

    def verdict(self, windows: list[Window], now: float) -> tuple[Verdict, str | None]:
        raise NotImplementedError

    def _guard(self, v: Verdict) -> Verdict:
        if v.outcome is Outcome.FAIL and self.split_changed:
            return Verdict(
                Outcome.INCONCLUSIVE,
                v.detector,
                v.statistic,
                v.threshold,
                v.summary + " — but the canary's traffic share changed at the deploy (split "
                "mismatch): not trusted",
                {**v.evidence, "split_mismatch": True},
            )
        return v


@dataclass
class _Counted(_Tracker):
    """Shared by ratio and latency signals: bad events out of total events, per cohort."""

    share: ShareTest | None = field(default=None, init=False)
    pre: dict[str, float] = field(default_factory=lambda: defaultdict(float), init=False)
    post: dict[str, float] = field(default_factory=lambda: defaultdict(float), init=False)
    phi: float = field(default=1.0, init=False)
    pre_share: float = field(default=math.nan, init=False)
    pre_steps: list[tuple[float, float]] = field(default_factory=list, init=False)  # before/after pairing
    post_steps: int = field(default=0, init=False)

    def bad_total(self, windows: list[Window], start: float, end: float) -> dict[str, tuple[float, float]]:
        raise NotImplementedError

    def calibrate(self, windows: list[Window], spans: list[tuple[float, float]]) -> None:
        for w in windows:
            w.warm(spans)
        cb, bb, rho, allb, allt = [], [], [], [], []
        for s, e in spans:
            bt = self.bad_total(windows, s, e)
            for cohort, (b, t) in bt.items():
                self.pre[cohort + "_bad"] += b
                self.pre[cohort + "_total"] += t
            if self.service.canary:
                (c_b, c_t), (b_b, b_t) = bt.get(CANARY, (0, 0)), bt.get(BASELINE, (0, 0))
                cb.append(c_b)
                bb.append(b_b)
                rho.append(c_t / (c_t + b_t) if c_t + b_t > 0 else math.nan)
            else:
                b, t = bt.get(ALL, (0, 0))
                allb.append(b)
                allt.append(t)
                self.pre_steps.append((b, t))
        if self.service.canary:
            self.phi = dispersion(np.array(cb), np.array(bb), np.array(rho))
            ct, bt_ = self.pre[CANARY + "_total"], self.pre[BASELINE + "_total"]
            self.pre_share = ct / (ct + bt_) if ct + bt_ > 0 else math.nan
            self.share = ShareTest(n=1, alpha=self.alpha, phi=self.phi)
        else:
            self.phi = binomial_dispersion(np.array(allb), np.array(allt))
            # half the budget for the paired test, half for the test against the reference rate
            self.share = ShareTest(n=1, alpha=self.alpha / 2, phi=self.phi, detector="before_after_paired")

    def update(self, windows: list[Window], start: float, end: float) -> None:
        bt = self.bad_total(windows, start, end)
        for cohort, (b, t) in bt.items():
            self.post[cohort + "_bad"] += b
            self.post[cohort + "_total"] += t
        if self.share is None:
            return
        if self.service.canary:
            (c_b, c_t), (b_b, b_t) = bt.get(CANARY, (0, 0)), bt.get(BASELINE, (0, 0))
        elif self.post_steps < len(self.pre_steps):
            # Before/after, paired: the i-th interval after the deploy against the i-th before it.
            # Each pair is used once, so the pairs are independent and the same share test applies.
            (c_b, c_t), (b_b, b_t) = bt.get(ALL, (0, 0)), self.pre_steps[self.post_steps]
            self.post_steps += 1
        else:
            return
        if c_t + b_t > 0:
            self.share.update(np.array([c_b]), np.array([b_b]), np.array([c_t / (c_t + b_t)]))

    def _mine(self) -> tuple[float, float]:
        cohort = CANARY if self.service.canary else ALL
        return self.post[cohort + "_bad"], self.post[cohort + "_total"]

    def _slo(self) -> float | None:
        return None

    def verdict(self, windows: list[Window], now: float) -> tuple[Verdict, str | None]:
        bad, total = self._mine()
        slo = self._slo()
        breach = None
        slo_v = None
        if slo is not None:
            slo_v = slo_bound(min(bad, total), total, slo, self.alpha, interval=False)
            if slo_v.outcome is Outcome.FAIL:
                breach = slo_v.summary
        if self.service.canary:
            ct, bt = self.post[CANARY + "_total"], self.post[BASELINE + "_total"]
            if bt <= 0 or self.share is None:  # nothing to compare with: the SLO decides
                return (
                    slo_v or Verdict(Outcome.NO_DATA, "canary_share", None, None, "no baseline traffic")
                ), breach
            post_share = ct / (ct + bt) if ct + bt > 0 else math.nan
            tol = self.policy.split_tolerance
            self.split_changed = bool(
                math.isfinite(self.pre_share)
                and math.isfinite(post_share)
                and self.pre_share > 0
                and not 1 / tol <= post_share / self.pre_share <= tol
            )
            v = self.share.verdict(0)
            if v.outcome is Outcome.NO_DATA and ct > 0:  # traffic but no bad event: data, just no evidence
                v = Verdict(
                    Outcome.INCONCLUSIVE,
                    v.detector,
                    v.statistic,
                    v.threshold,
                    f"no bad events yet among {ct:.0f} canary and {bt:.0f} baseline events",
                    v.evidence,
                )
            v = Verdict(
                v.outcome,
                v.detector,
                v.statistic,
                v.threshold,
                v.summary,
                {
                    **v.evidence,
                    "canary_rate": bad / total if total else None,
                    "baseline_rate": self.post[BASELINE + "_bad"] / bt,
                    "canary_share_before": self.pre_share,
                    "canary_share_after": post_share,
                },
            )
            return self._guard(v), breach
        v = before_after(
            self.pre[ALL + "_bad"], self.pre[ALL + "_total"], bad, total, self.alpha / 2, phi=self.phi
        )
        if v.outcome is Outcome.NO_DATA and slo_v is not None and total > 0:
            return slo_v, breach
        if self.share is not None and v.outcome is not Outcome.FAIL:
            paired = self.share.verdict(0)
            if paired.outcome is Outcome.FAIL:
                return paired, breach
        return v, breach


@dataclass
class _RatioTracker(_Counted):
    primary: ClassVar[int] = 1  # the total: requests carry the release's traffic

    def selectors(self) -> list[SeriesRef]:
        return [self.signal.bad, self.signal.total]

    def bad_total(self, windows: list[Window], start: float, end: float) -> dict[str, tuple[float, float]]:
        bad, total = windows[0].counts(start, end), windows[1].counts(start, end)
        return {c: (min(bad.get(c, 0.0), t), t) for c, t in total.items()}

    def _slo(self) -> float | None:
        slo: float | None = self.signal.slo
        return slo


def _le(key: str) -> float:
    return math.inf if key in ("+Inf", "Inf", "inf") else float(key)


@dataclass
class _LatencyTracker(_Counted):
    """Requests above the SLO threshold's bucket bound (or, omnibus, above every bound)."""

    omni: ShareTest | None = field(default=None, init=False)
    bounds: list[float] = field(default_factory=list, init=False)
    seen: dict[str, dict[float, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float)), init=False
    )

    def selectors(self) -> list[SeriesRef]:
        h = self.signal.histogram
        return [h.model_copy(update={"metric": h.metric + "_bucket"})]

    def _by_le(self, windows: list[Window], start: float, end: float) -> dict[str, dict[float, float]]:
        raw = windows[0].counts_by(start, end)
        return {c: {_le(k): v for k, v in per.items()} for c, per in raw.items()}

    def _bound(self, per_le: dict[float, float]) -> float | None:
        if self.signal.threshold_s is None or not per_le:
            return None
        try:
            return pick_bound(list(per_le), self.signal.threshold_s)
        except ValueError:
            return None

    def bad_total(self, windows: list[Window], start: float, end: float) -> dict[str, tuple[float, float]]:
        out = {}
        for cohort, per in self._by_le(windows, start, end).items():
            total = per.get(math.inf, 0.0)
            bound = self._bound(per)
            fast = per.get(bound, total) if bound is not None else total
            out[cohort] = (max(total - fast, 0.0), total)
        return out

    def update(self, windows: list[Window], start: float, end: float) -> None:
        if end <= self.watch_start + self.policy.warmup_s:
            return  # cold caches: the canary's first requests are slow for reasons that pass
        per = self._by_le(windows, start, end)
        for cohort, counts in per.items():
            for le, v in counts.items():
                self.seen[cohort][le] += v
        if self.signal.omnibus:
            self._update_omnibus(per)
            return
        super().update(windows, start, end)

    def _update_omnibus(self, per: dict[str, dict[float, float]]) -> None:
        if not self.bounds:
            self.bounds = sorted(b for cohort in per.values() for b in cohort if math.isfinite(b))
            self.bounds = sorted(set(self.bounds))
            if not self.bounds:
                return
            self.omni = ShareTest(n=len(self.bounds), alpha=self.alpha, phi=self.phi)
        assert self.omni is not None
        if self.service.canary:
            c, b = per.get(CANARY, {}), per.get(BASELINE, {})
            ct, bt = c.get(math.inf, 0.0), b.get(math.inf, 0.0)
            if ct + bt <= 0:
                return
            above_c = np.array([ct - c.get(x, ct) for x in self.bounds])
            above_b = np.array([bt - b.get(x, bt) for x in self.bounds])
            self.omni.update(
                np.maximum(above_c, 0), np.maximum(above_b, 0), np.full(len(self.bounds), ct / (ct + bt))
            )

    def _slo(self) -> float | None:
        return None if self.signal.quantile is None else 1.0 - float(self.signal.quantile)

    def _shown(self) -> str:
        mine = self.seen.get(CANARY if self.service.canary else ALL, {})
        if math.inf not in mine or self.signal.quantile is None:
            return ""
        les = sorted(mine)
        q = histogram_quantile(self.signal.quantile, les, [mine[x] for x in les])
        return "" if math.isnan(q) else f"p{self.signal.quantile * 100:g} ≈ {q * 1000:.0f} ms; "

    def verdict(self, windows: list[Window], now: float) -> tuple[Verdict, str | None]:
        if now <= self.watch_start + self.policy.warmup_s:
            return Verdict(
                Outcome.NO_DATA,
                "latency",
                None,
                None,
                f"warming up (latency judged after {self.policy.warmup_s:.0f}s)",
            ), None
        if self.signal.omnibus:
            return self._omnibus_verdict(), None
        v, breach = super().verdict(windows, now)
        shown = self._shown()
        if breach is not None:
            breach = f"{shown}{breach}"
        return Verdict(
            v.outcome,
            v.detector,
            v.statistic,
            v.threshold,
            shown + v.summary,
            {**v.evidence, "threshold_s": self.signal.threshold_s, "quantile": self.signal.quantile},
        ), breach

    def _omnibus_verdict(self) -> Verdict:
        if self.omni is None:
            return Verdict(Outcome.NO_DATA, "latency_omnibus", None, None, "no histogram data yet")
        parts = [self.omni.verdict(i) for i in range(len(self.bounds))]
        v = combine_any(parts, "latency_omnibus")
        worst = v.evidence.get("worst", {}) if v.evidence else {}
        summary = v.summary
        if isinstance(worst, dict) and "observed_over_expected" in worst:
            i = int(np.argmax([float(p.evidence.get("log_e_fail", -math.inf)) for p in parts]))
            summary = f"above {self.bounds[i] * 1000:g} ms: {parts[i].summary}"
        return self._guard(Verdict(v.outcome, v.detector, v.statistic, v.threshold, summary, v.evidence))


@dataclass
class _ProbeTracker(_Tracker):
    counts: ClassVar[bool] = False

    def selectors(self) -> list[SeriesRef]:
        return [self.signal.probe]

    def verdict(self, windows: list[Window], now: float) -> tuple[Verdict, str | None]:
        w = windows[0]
        groups = samples_by(w.series, w.by, self.watch_start, now)
        mine = sorted(p for k, pts in groups.items() if w.cohort_of(k) in (CANARY, ALL) for p in pts)
        v = probe_k_of_n([x for _, x in mine], self.signal.k, self.signal.n)
        if self.service.canary and v.outcome is Outcome.FAIL:
            theirs = sorted(p for k, pts in groups.items() if w.cohort_of(k) == BASELINE for p in pts)
            b = probe_k_of_n([x for _, x in theirs], self.signal.k, self.signal.n)
            if b.outcome is Outcome.FAIL:  # both cohorts down: an outage, not the release
                return Verdict(
                    Outcome.INCONCLUSIVE,
                    v.detector,
                    v.statistic,
                    v.threshold,
                    "canary and baseline probes both failing: not the release",
                    v.evidence,
                ), v.summary
        return v, None


@dataclass
class _RateTracker(_Tracker):
    events: float = field(default=0.0, init=False)

    def selectors(self) -> list[SeriesRef]:
        return [self.signal.events]

    def update(self, windows: list[Window], start: float, end: float) -> None:
        counts = windows[0].counts(start, end)
        self.events += counts.get(CANARY if self.service.canary else ALL, 0.0)

    def verdict(self, windows: list[Window], now: float) -> tuple[Verdict, str | None]:
        return rate_bound(self.events, now - self.watch_start, self.signal.limit_per_s, self.alpha), None


@dataclass
class _GaugeTracker(_Tracker):
    expr_series: list[Series] | None = None
    counts: ClassVar[bool] = False

    def selectors(self) -> list[SeriesRef]:
        return [] if self.signal.promql is not None else [self.signal.gauge]

    def verdict(self, windows: list[Window], now: float) -> tuple[Verdict, str | None]:
        series = self.expr_series if self.signal.promql is not None else windows[0].series
        w = Window(series or [], self.service, self.signal.by)
        groups = samples_by(w.series, w.by, self.watch_start, now)
        per: dict[str, dict[str, list[float]]] = defaultdict(dict)
        for key, pts in groups.items():
            name = "/".join(key[1:] if self.service.canary else key) or "all"
            per[w.cohort_of(key)][name] = [x for _, x in pts]
        mine = per.get(CANARY if self.service.canary else ALL, {})
        verdicts = []
        if self.signal.limit is not None:
            verdicts.append(gauge_limit(mine, self.signal.limit, self.signal.for_samples))
        if self.signal.max_ratio is not None and self.service.canary:
            verdicts.append(
                gauge_ratio(mine, per.get(BASELINE, {}), self.signal.max_ratio, self.signal.for_samples)
            )
        if not verdicts:
            return Verdict(Outcome.NO_DATA, "gauge", None, None, "max_ratio needs a canary"), None
        failed = [v for v in verdicts if v.outcome is Outcome.FAIL]
        return (failed[0] if failed else verdicts[0]), None


_TRACKERS: dict[type, type[_Tracker]] = {
    RatioSignal: _RatioTracker,
    LatencySignal: _LatencyTracker,
    ProbeSignal: _ProbeTracker,
    RateSignal: _RateTracker,
    GaugeSignal: _GaugeTracker,
}


# ----------------------------------------------------------------------------- the evaluator


class WatchEvaluator:
    """All signals of one watch, advanced interval by interval."""

    def __init__(
        self,
        service: ServiceConfig,
        source: MetricSource,
        policy: EnvironmentPolicy,
        *,
        watch_start: float,
        alpha: float,
        lookback_s: float,
        step_s: float,
        reference_end: float | None = None,
    ) -> None:
        """``reference_end``: where the pre-deploy window ends when it is not the watch's start (a
        watch after promotion compares with the window before the deploy, not before itself)."""
        self.service = service
        self.source = source
        self.policy = policy
        self.lookback_s = lookback_s
        self.step_s = step_s
        self.watch_start = watch_start
        self.reference_end = watch_start if reference_end is None else reference_end
        self.history_s = max(lookback_s, HISTORY_S)
        self._shared: dict[tuple[object, ...], tuple[Window, Checked]] = {}
        self._selector_cache: dict[int, list[tuple[Selector, ServiceKey]]] = {}
        self._staged: float | None = None  # the ``now`` of the reads ``stage`` kept in ``_shared``
        self._last_good: dict[LabelKey, tuple[float, float]] = {}  # each counter's newest good sample
        self.trackers: list[_Tracker] = [
            _TRACKERS[type(sig)](sig, service, signal_alpha(service, alpha, sig), policy, watch_start, step_s)
            for sig in service.signals
        ]
        self.queries = {
            sig.name: compile_promql(
                sig, extra=service.match, by=(service.cohort_label,) if service.canary else ()
            )
            for sig in service.signals
        }

    def _windows(self, tracker: _Tracker, start: float, end: float) -> tuple[list[Window], Checked]:
        """The tracker's windows, checked; signals reading the same series in the same span share
        one (p95, p99 and the omnibus all read the histogram), counted once per interval.

        The first fetch of a watch reaches back ``history_s``, so a series that was quiet for a
        while before it is not taken for a new one; later fetches rely on the remembered samples.
        """
        extra = ("le",) if isinstance(tracker, _LatencyTracker) else ()
        lookback = self._reads(tracker)[1]
        out: list[Window] = []
        faults: list[Fault] = []
        hold = math.inf
        for selector, _ in self._selectors(tracker):
            key = (selector, extra, start, end, lookback)
            got = self._shared.get(key)
            if got is None:
                raw = self.source.fetch(selector, start - lookback, end)
                checked = check_answer(
                    raw,
                    start - lookback,
                    end,
                    counter=tracker.counts,
                    confirm_s=DIP_SAMPLES * self.step_s,
                    memory=self._last_good if tracker.counts else None,
                )
                got = self._shared[key] = (Window(checked.series, self.service, extra), checked)
            out.append(got[0])
            faults.extend(got[1].faults)
            hold = min(hold, got[1].hold)
        return out, Checked([], faults, hold)

    def _reads(self, tracker: _Tracker) -> tuple[float, float]:
        """Where the tracker's next interval starts and how far before it its read reaches."""
        if tracker.calibrated:
            return tracker.last, self.lookback_s
        return self.reference_end - self.policy.calibration_s, self.history_s

    def needs(self, now: float) -> list[Need]:
        """What ``advance(now)`` will read, for a source that reads every watch's at once."""
        out = []
        for tracker in self.trackers:
            first, lookback = self._reads(tracker)
            for selector, service in self._selectors(tracker):
                out.append(Need(selector, service, first - lookback, now))
        return out

    def _selectors(self, tracker: _Tracker) -> list[tuple[Selector, ServiceKey]]:
        """The tracker's selectors with the service's matchers, and those matchers (made once)."""
        made = self._selector_cache.get(id(tracker))
        if made is None:
            made = self._selector_cache[id(tracker)] = [
                (sel, service_matchers(sel, self.service.match))
                for sel in (ref.selector(self.service.match) for ref in tracker.selectors())
            ]
        return made

    def stage(self, now: float) -> list[tuple[Window, list[tuple[float, float]]]]:
        """Read and check what ``advance(now)`` will count, and say which spans of which windows it
        will count: the engine counts every watch's at once (``warm_windows``) before advancing
        them. The reads are those ``advance`` makes, in its order, kept for it; a read the source
        refuses is left for ``advance`` to meet again and report."""
        self._shared, self._staged = {}, now
        out: list[tuple[Window, list[tuple[float, float]]]] = []
        for tracker in self.trackers:
            if not tracker.counts:
                continue  # (its reads neither count nor touch the counters' memory)
            if not tracker.calibrated:
                # a watch's first reads (calibration and the hour before it) stay its own: held for
                # every new watch at once they would cost the memory of all of them together. The
                # rest wait too, so that the reads happen in ``advance``'s order.
                break
            try:
                windows, checked = self._windows(tracker, self._reads(tracker)[0], now)
            except SourceUnavailable:
                continue
            out.extend(
                (w, _spans(tracker.last, _counted_until(tracker, checked, now), self.step_s)) for w in windows
            )
        return out

    def advance(self, now: float) -> list[SignalResult]:
        """Take in everything up to ``now`` and return each signal's state.

        Each signal keeps its own position, so a source failing for one signal neither loses nor
        double-counts the others' intervals. Nothing a source answers raises out of here: a
        failure or a garbled answer makes that signal blind for this tick, with the reason.
        """
        if self._staged != now:
            self._shared = {}
        try:
            return [self._advance(tracker, now) for tracker in self.trackers]
        finally:
            self._shared, self._staged = {}, None

    def _advance(self, tracker: _Tracker, now: float) -> SignalResult:
        sig = tracker.signal
        query = self.queries[sig.name]
        calib = self.policy.calibration_s
        before = tracker.last if tracker.calibrated else -math.inf
        try:
            first = self._reads(tracker)[0]
            windows, checked = self._windows(tracker, first, now)
            if isinstance(tracker, _GaugeTracker) and sig.promql is not None:
                tracker.expr_series = self._expr(sig.promql, now)
                windows = [Window(tracker.expr_series, self.service, sig.by)]
            if not tracker.calibrated:
                ref = self.reference_end
                tracker.calibrate(windows, _spans(ref - calib, ref, self.step_s))
                tracker.calibrated, tracker.last = True, self.watch_start
            upto = _counted_until(tracker, checked, now)
            spans = _spans(tracker.last, upto, self.step_s)
            if tracker.counts and len(spans) > 1:
                for w in windows:
                    w.warm(spans)
            for s, e in spans:
                tracker.update(windows, s, e)
            tracker.last = max(tracker.last, upto)
            tracker.observe(windows, now)
            verdict, breach = tracker.verdict(windows, tracker.last)
        except SourceUnavailable as exc:
            return SignalResult(
                sig.name,
                sig.severity,
                SignalState.ERROR,
                None,
                query,
                str(exc),
                coverage=tracker.coverage(now),
            )
        new = [f for f in checked.faults if f.at > before]
        if new:  # counted without the bad samples, but not judged on this tick: say why
            shown = "; ".join(str(f) for f in new[:5]) + (
                f"; and {len(new) - 5} more" if len(new) > 5 else ""
            )
            return SignalResult(
                sig.name,
                sig.severity,
                SignalState.ERROR,
                None,
                query,
                f"the source's answer is not usable as it is: {shown}",
                coverage=tracker.coverage(now),
            )
        return SignalResult(
            sig.name,
            sig.severity,
            SignalState(verdict.outcome.value),
            verdict,
            query,
            slo_breach=breach,
            coverage=tracker.coverage(now),
        )

    def _expr(self, expr: str, now: float) -> list[Series]:
        fetch_expr = getattr(self.source, "fetch_expr", None)
        if fetch_expr is None:
            raise SourceUnavailable("raw PromQL needs the Prometheus source")
        series: list[Series] = fetch_expr(expr, self.watch_start, now, self.step_s)
        return series
