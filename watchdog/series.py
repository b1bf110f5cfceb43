"""Raw time series, label selectors and the arithmetic every source shares.

All sources (Prometheus, direct scraping, replay) hand back raw samples; the counting happens here,
once, so the same window gives the same counts whatever the source. Counter increases are exact
sample differences with resets handled as Prometheus's ``increase()`` does (a drop means the
counter restarted from zero), without ``increase()``'s extrapolation to the window edges: the
detectors test counts of events, and extrapolated counts are not counts.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

MatchOp = Literal["=", "!=", "=~", "!~"]
_OPS: tuple[MatchOp, ...] = ("=~", "!~", "!=", "=")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: MatchOp
    value: str

    @classmethod
    def parse(cls, label: str, spec: str) -> Matcher:
        """``"=~5.."`` → regex match, ``"!=x"`` → not equal, a bare value → equality."""
        for op in _OPS:
            if spec.startswith(op):
                return cls(label, op, spec[len(op) :])
        return cls(label, "=", spec)

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.label, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        hit = re.fullmatch(self.value, have) is not None
        return hit if self.op == "=~" else not hit

    def promql(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Selector:
    """A metric name and label matchers: compiles to PromQL and matches raw series natively."""

    metric: str
    matchers: tuple[Matcher, ...] = ()

    @classmethod
    def of(cls, metric: str, labels: Mapping[str, str] | None = None) -> Selector:
        return cls(metric, tuple(Matcher.parse(k, v) for k, v in sorted((labels or {}).items())))

    def with_matchers(self, *extra: Matcher) -> Selector:
        return Selector(self.metric, self.matchers + tuple(extra))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get("__name__") == self.metric and all(m.matches(labels) for m in self.matchers)

    def promql(self) -> str:
        inner = ",".join(m.promql() for m in self.matchers)
        return f"{self.metric}{{{inner}}}" if inner else self.metric


@dataclass(frozen=True)
class Series:
    """One time series: its labels (``__name__`` included) and samples in time order."""

    labels: Mapping[str, str]
    t: np.ndarray
    v: np.ndarray = field(repr=False)

    @classmethod
    def from_pairs(cls, labels: Mapping[str, str], values: Iterable[Sequence[object]]) -> Series:
        """From Prometheus's ``[[t, "v"], ...]`` (values as strings, "NaN"/"+Inf" allowed)."""
        pairs = [(float(str(t)), _parse_value(v)) for t, v in values]
        pairs.sort(key=lambda p: p[0])
        t = np.fromiter((p[0] for p in pairs), dtype=float, count=len(pairs))
        v = np.fromiter((p[1] for p in pairs), dtype=float, count=len(pairs))
        return cls(dict(labels), t, v)

    def until(self, end: float) -> Series:
        keep = self.t <= end
        return Series(self.labels, self.t[keep], self.v[keep])


def _parse_value(v: object) -> float:
    s = str(v)
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    return float(s)


def counter_increase(series: Series, start: float, end: float) -> float:
    """Events counted by one counter in ``(start, end]``.

    The baseline is the last sample at or before ``start``; a series with no sample that early was
    created inside the window and starts from zero (counters created on first use would otherwise
    lose their first events). A drop is a reset: the counter restarted from zero. Missed scrapes
    neither create nor hide events: the next sample carries them.
    """
    t, v = series.t, series.v
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    upto = t <= end
    t, v = t[upto], v[upto]
    if t.size == 0:
        return 0.0
    before = np.nonzero(t <= start)[0]
    if before.size:
        i0 = int(before[-1])
        vals = v[i0:]
    else:
        vals = np.concatenate([[0.0], v])
    if vals.size < 2:
        return 0.0
    d = np.diff(vals)
    return float(np.sum(np.where(d >= 0, d, vals[1:])))


def group_key(labels: Mapping[str, str], by: Sequence[str]) -> tuple[str, ...]:
    return tuple(labels.get(b, "") for b in by)


def sum_increase_by(
    series: Iterable[Series], by: Sequence[str], start: float, end: float
) -> dict[tuple[str, ...], float]:
    """``sum by (by) (increase(...))`` with exact counts, over raw series."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for s in series:
        out[group_key(s.labels, by)] += counter_increase(s, start, end)
    return dict(out)


def samples_by(
    series: Iterable[Series], by: Sequence[str], start: float, end: float
) -> dict[tuple[str, ...], list[tuple[float, float]]]:
    """Gauge samples in ``(start, end]`` grouped by labels, merged in time order."""
    out: dict[tuple[str, ...], list[tuple[float, float]]] = defaultdict(list)
    for s in series:
        keep = (s.t > start) & (s.t <= end)
        out[group_key(s.labels, by)].extend(zip(s.t[keep].tolist(), s.v[keep].tolist(), strict=True))
    return {k: sorted(v) for k, v in out.items()}
