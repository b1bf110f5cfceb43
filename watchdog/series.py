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
from itertools import chain
from typing import Literal

import numpy as np

MatchOp = Literal["=", "!=", "=~", "!~"]
_OPS: tuple[MatchOp, ...] = ("=~", "!~", "!=", "=")


def _hashed(obj: object, fields: tuple[object, ...]) -> int:
    """The hash of a frozen value, found once: selectors are looked up in every read of a tick.
    (Not pickled: another process hashes strings differently; see ``_HashedOnce``.)"""
    known: int | None = obj.__dict__.get("_hash")
    if known is None:
        known = hash(fields)
        object.__setattr__(obj, "_hash", known)
    return known


class _HashedOnce:
    """A frozen value whose hash ``_hashed`` keeps: pickled and copied without it."""

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}


@dataclass(frozen=True)
class Matcher(_HashedOnce):
    label: str
    op: MatchOp
    value: str

    def __hash__(self) -> int:
        return _hashed(self, (self.label, self.op, self.value))

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
class Selector(_HashedOnce):
    """A metric name and label matchers: compiles to PromQL and matches raw series natively."""

    metric: str
    matchers: tuple[Matcher, ...] = ()

    def __hash__(self) -> int:
        return _hashed(self, (self.metric, self.matchers))

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


@dataclass(frozen=True, slots=True)
class Series:
    """One time series: its labels (``__name__`` included) and samples in time order.

    ``total`` is the counter read as Prometheus's ``increase()`` reads it: a running sum of its
    increases with resets undone (a drop means the counter restarted from zero), starting at the
    first sample's value. Differences of ``total`` are exact event counts between two samples, so
    any window costs two lookups. For gauges it is meaningless and unused.
    """

    labels: Mapping[str, str]
    t: np.ndarray
    v: np.ndarray = field(repr=False)
    given_total: np.ndarray | None = field(repr=False, default=None, compare=False)
    # found when first asked for (slots, not a __dict__ per series: a replica holds ~50,000 of them)
    _key: LabelKey | None = field(default=None, init=False, repr=False, compare=False)
    _groups: dict[tuple[str, ...], tuple[str, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _ordered: bool | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def total(self) -> np.ndarray:
        """Computed when first asked for (most series read from a source are cut or checked into
        another one before anything is counted)."""
        total = self.given_total
        if total is None or total.size != self.v.size:
            total = _reset_corrected(self.v)
            object.__setattr__(self, "given_total", total)
        return total

    @classmethod
    def from_pairs(cls, labels: Mapping[str, str], values: Iterable[Sequence[object]]) -> Series:
        """From Prometheus's ``[[t, "v"], ...]`` (values as strings, "NaN"/"+Inf" allowed).

        The samples keep the order they came in: an answer out of time order is a fault that
        ``watchdog.quality`` reports, not something to tidy up silently.
        """
        pairs = [(float(str(t)), _parse_value(v)) for t, v in values]
        t = np.fromiter((p[0] for p in pairs), dtype=float, count=len(pairs))
        v = np.fromiter((p[1] for p in pairs), dtype=float, count=len(pairs))
        return cls(dict(labels), t, v)

    @property
    def key(self) -> LabelKey:
        """``label_key(labels)``, found once per series and handed on to its slices."""
        known = self._key
        if known is None:
            known = label_key(self.labels)
            object.__setattr__(self, "_key", known)
        return known

    def group(self, by: tuple[str, ...]) -> tuple[str, ...]:
        """``group_key(labels, by)``, found once per series and grouping and handed on to slices."""
        groups = self._groups
        if groups is None:
            groups = {}
            object.__setattr__(self, "_groups", groups)
        got = groups.get(by)
        if got is None:
            got = groups[by] = group_key(self.labels, by)
        return got

    def sliced(self, t: np.ndarray, v: np.ndarray, *, subset: bool = True) -> Series:
        """A series of the same labels with these samples: its identity comes along instead of
        being found again, and so does its time order when the samples are a ``subset`` of this
        one's in the same order."""
        out = Series(self.labels, t, v)
        # (found on this one if not yet: a replayed series is cut for every read of every tick)
        object.__setattr__(out, "_key", self.key)
        groups = self._groups
        if groups is None:  # the same labels, the same groups: one dict for this series and its cuts
            groups = {}
            object.__setattr__(self, "_groups", groups)
        object.__setattr__(out, "_groups", groups)
        if subset and self._ordered is True:
            object.__setattr__(out, "_ordered", True)
        return out

    def then(self, tail: Series) -> Series:
        """This series' samples followed by ``tail``'s (with this one's labels and identity); in
        time order, known at once, when both are and ``tail`` starts after this one ends."""
        out = self.sliced(np.concatenate([self.t, tail.t]), np.concatenate([self.v, tail.v]), subset=False)
        if self.ordered and tail.ordered and (not tail.t.size or not self.t.size or self.t[-1] < tail.t[0]):
            object.__setattr__(out, "_ordered", True)
        return out

    @property
    def ordered(self) -> bool:
        """Every timestamp later than the one before (found once per series)."""
        known = self._ordered
        if known is None:
            t = self.t
            known = t.size < 2 or bool((t[1:] > t[:-1]).all())
            object.__setattr__(self, "_ordered", known)
        return bool(known)

    def between(self, start: float, end: float) -> Series:
        """The samples with ``start <= t <= end`` (views of the arrays, no copies). Its ``total``
        starts at its own first sample, as that of a series answered for this range alone would.

        An answer out of time order keeps its order (the checks report it), selected by mask.
        """
        t = self.t
        if not self.ordered:
            keep = (t >= start) & (t <= end)
            return self.sliced(t[keep], self.v[keep])
        i, j = t.searchsorted(start, "left"), t.searchsorted(end, "right")
        if i == 0 and j == t.size:
            return self
        return self.sliced(t[i:j], self.v[i:j])

    def until(self, end: float) -> Series:
        return self.between(-math.inf, end)


def steps_within(step_ok: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """For series concatenated (``sizes`` samples each) and a condition on each sample against the
    one before it (``step_ok[i]``: sample ``i + 1`` against sample ``i``): that condition per
    sample, True for each series' first sample, which has nothing before it in its series."""
    out = np.ones(step_ok.size + 1, dtype=bool)
    out[1:] = step_ok
    heads = np.cumsum(sizes) - sizes
    out[heads[sizes > 0]] = True
    return out


def all_within(ok: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """For series concatenated (``sizes`` samples each): whether ``ok`` holds at all of a series'
    samples (True for an empty series)."""
    heads = np.cumsum(sizes) - sizes
    nonempty = sizes > 0
    bad = np.zeros(sizes.size, dtype=np.int64)
    bad[nonempty] = np.add.reduceat((~ok).astype(np.int64), heads[nonempty])
    out: np.ndarray = bad == 0
    return out


def ordered_within(t: np.ndarray, sizes: np.ndarray) -> list[bool]:
    """For series concatenated (``sizes`` samples each, times ``t``): ``Series.ordered`` of each."""
    ordered: list[bool] = all_within(steps_within(t[1:] > t[:-1], sizes), sizes).tolist()
    return ordered


def mark_ordered(series: Sequence[Series]) -> None:
    """Find ``Series.ordered`` of many series in one pass (a source's whole answer)."""
    todo = [s for s in series if s._ordered is None]
    if not todo:
        return
    sizes = np.fromiter((s.t.size for s in todo), dtype=np.int64, count=len(todo))
    t = np.concatenate([s.t for s in todo])
    for s, ordered in zip(todo, ordered_within(t, sizes), strict=True):
        object.__setattr__(s, "_ordered", ordered)


def _reset_corrected(v: np.ndarray) -> np.ndarray:
    if v.size == 0:
        return np.empty(0)
    x = np.where(np.isfinite(v), v, np.nan)
    # carry the last finite value over NaN samples so they neither create nor hide events
    idx = np.where(np.isfinite(x), np.arange(x.size), 0)
    np.maximum.accumulate(idx, out=idx)
    x = x[idx]
    x = np.where(np.isfinite(x), x, 0.0)
    d = np.diff(x)
    steps = np.where(d >= 0, d, x[1:])
    out: np.ndarray = np.concatenate([[x[0]], x[0] + np.cumsum(steps)])
    return out


def reset_corrected_rows(values: Sequence[np.ndarray]) -> np.ndarray:
    """``Series.total`` of each of ``values``, concatenated: computed for all of them at once, row
    by row of one padded array, with the same operations in the same order as one by one (a
    cumulative sum along a row adds as the one-dimensional one does), so bit for bit the same."""
    sizes = [v.size for v in values]
    width = max(sizes, default=0)
    if width == 0:
        return np.empty(0)
    rows = np.zeros((len(values), width))
    mask = np.arange(width)[None, :] < np.array(sizes)[:, None]
    rows[mask] = np.concatenate(values)
    x = np.where(np.isfinite(rows), rows, np.nan)
    idx = np.where(np.isfinite(x), np.arange(width)[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    x = np.take_along_axis(x, idx, axis=1)
    x = np.where(np.isfinite(x), x, 0.0)
    d = np.diff(x, axis=1)
    steps = np.where(d >= 0, d, x[:, 1:])
    out = np.empty_like(x)
    out[:, :1] = x[:, :1]
    out[:, 1:] = x[:, :1] + np.cumsum(steps, axis=1)
    flat: np.ndarray = out[mask]
    return flat


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
    t = series.t
    j = int(t.searchsorted(end, "right")) - 1
    if j < 0:
        return 0.0
    i = int(t.searchsorted(start, "right")) - 1
    total = series.total
    return float(total[j] - total[i]) if i >= 0 else float(total[j])


#: A series' identity: its label names and values in name order, flat (``name, value, …``) —
#: one small tuple per series, since a replica watching a thousand services holds ~50,000 of them.
LabelKey = tuple[str, ...]


def label_key(labels: Mapping[str, str]) -> LabelKey:
    return tuple(chain.from_iterable(sorted(labels.items())))


def key_labels(key: LabelKey) -> dict[str, str]:
    return dict(zip(key[::2], key[1::2], strict=True))


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
