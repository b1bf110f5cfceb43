"""Every watch's series from one range query per selector, split by their labels (ADR 0019).

A platform team runs one watchdog for all its services. Asked per watch, the source would answer
services × selectors queries per tick; asked here, it answers one per selector *shape* for all the
services being watched, with one matcher that covers all of them, and the samples are split back
by their labels. What each watch then reads is exactly what the source would have answered it
alone (the same raw samples over the same range), so the counting, the checks of
``watchdog.quality`` and the detectors see no difference — a test compares the decisions.

Per tick, the engine tells ``prepare`` what every watch is about to read (``Need``). Needs whose
selectors differ only in the service's own matchers share a *group*; a selector that narrows
another one of the same metric (``code=~"5.."`` of the requests, a route of them) is served by the
broader one's group, so a ratio signal's bad and total events come from one query. Per group and
tick there are at most two queries: one for the services already held, from where the last one
ended (less ``settle_s``, for samples that reach the source late), and one *backfill* for services
that joined, reaching back as far as their first window needs. Samples older than any watch still
needs are let go.

What the source cannot answer stays the watch's business: a failed or garbled query makes every
read of its group raise the same error, so each signal reading it is blind for the tick, as it
would have been alone. Reads nothing planned for (a watch started during the tick, a raw PromQL
expression) go to the source directly and are counted like any other query.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from watchdog.errors import SourceUnavailable
from watchdog.series import LabelKey, Matcher, Selector, Series, ordered_within
from watchdog.sources.base import MetricSource

ServiceKey = tuple[Matcher, ...]
#: A held series to join with its answer: its identity, what is held of it, the answer's part.
_Join = tuple[LabelKey, Series, Series]

#: A group's held samples are joined with an answer in one pass while they are at most this many
#: times the answer's (a tick holds the lookback, ~25 samples a series, and is sent the newest 3-4);
#: the first answer after a watch's long first history is cut into it series by series instead,
#: since the pass copies all that is held before it cuts.
JOIN_AT_ONCE = 16
#: Series joined in one pass: what a pass copies, and what it holds of the series before, stays
#: small beside what the group holds.
JOIN_CHUNK = 2048

#: Characters RE2 treats as syntax outside a class; everything else is literal.
_RE2_SPECIAL = set("\\.+*?()|[]{}^$")


def re2_literal(value: str) -> str:
    """``value`` as an RE2 pattern matching exactly it (Prometheus regexes are RE2, anchored)."""
    return "".join("\\" + c if c in _RE2_SPECIAL else c for c in value)


@dataclass(frozen=True)
class Need:
    """One read a watch will make this tick: ``selector`` (the signal's matchers and the service's)
    over ``[start, end]``. ``service`` is the service's own part of the matchers."""

    selector: Selector
    service: ServiceKey
    start: float
    end: float


def service_matchers(selector: Selector, match: dict[str, str] | None) -> ServiceKey:
    """The matchers of ``selector`` that come from a service's ``match`` (what differs by service)."""
    own = {Matcher.parse(k, v) for k, v in (match or {}).items()}
    return tuple(m for m in selector.matchers if m in own)


def combine(services: Sequence[ServiceKey]) -> tuple[Matcher, ...]:
    """One set of matchers selecting every one of ``services`` (and possibly more: the split by
    labels afterwards takes each service's own). A label every service matches positively becomes
    one regex alternation; a matcher all share stays as it is; anything else is left out."""
    if not services:
        return ()
    first = services[0]
    if all(s == first for s in services[1:]):
        return first
    labels = set.intersection(*({m.label for m in s} for s in services))
    out: list[Matcher] = []
    for label in sorted(labels):
        mine = [next(m for m in s if m.label == label) for s in services]
        if all(m == mine[0] for m in mine):
            out.append(mine[0])
        elif all(m.op in ("=", "=~") for m in mine):
            alts = sorted({re2_literal(m.value) if m.op == "=" else f"(?:{m.value})" for m in mine})
            out.append(Matcher(label, "=~", "|".join(alts)))
    return tuple(out)


def _subsumes(broad: frozenset[Matcher], narrow: frozenset[Matcher]) -> bool:
    return broad <= narrow


@dataclass
class _Held:
    """What a group holds of one service: samples since ``since``, answered up to ``to``."""

    since: float
    to: float


@dataclass
class _Group:
    """The cached series of one query shape: a metric and the signal's matchers."""

    metric: str
    matchers: frozenset[Matcher]
    series: dict[LabelKey, list[Series]] = field(default_factory=dict)
    held: dict[ServiceKey, _Held] = field(default_factory=dict)
    failed: dict[ServiceKey, SourceUnavailable] = field(default_factory=dict)  # this tick's errors
    _mine: dict[ServiceKey, list[Series]] | None = None  # this tick's split (None: not made yet)
    _asked: dict[tuple[ServiceKey, ...], Selector] = field(default_factory=dict)  # last ticks' selectors

    def selector(self, services: Sequence[ServiceKey]) -> Selector:
        """The selector of this shape for ``services`` (the same services as a tick before: the
        same selector, not made again)."""
        asked = tuple(services)
        got = self._asked.get(asked)
        if got is None:
            own = tuple(sorted(self.matchers, key=lambda m: (m.label, m.op, m.value)))
            if len(self._asked) >= 4:  # the held services, and those joining: a few at a time
                self._asked.clear()
            got = self._asked[asked] = Selector(self.metric, own + combine(services))
        return got

    def of_service(self, service: ServiceKey) -> list[Series]:
        """The held series of one service, split once per tick: by the values of the service's
        labels when every service is told apart by equalities on the same labels (the usual
        ``job``/``namespace``), else by matching each service's selector."""
        if self._mine is None:
            self._mine = self._split()
        got = self._mine.get(service)
        if got is None:
            probe = Selector(self.metric, service)
            got = self._mine[service] = [
                s for copies in self.series.values() for s in copies if probe.matches(s.labels)
            ]
        return got

    def _split(self) -> dict[ServiceKey, list[Series]]:
        shapes = {tuple(m.label for m in s) for s in self.held}
        if len(shapes) != 1 or any(m.op != "=" for s in self.held for m in s):
            return {}
        labels = next(iter(shapes))
        index: dict[tuple[str, ...], list[Series]] = defaultdict(list)
        for copies in self.series.values():
            labelset = copies[0].labels
            index[tuple(labelset.get(label, "") for label in labels)].extend(copies)
        return {s: index.get(tuple(m.value for m in s), []) for s in self.held}

    def forget(self, services: Iterable[ServiceKey]) -> None:
        probes = [Selector(self.metric, s) for s in services]
        for key in [k for k, c in self.series.items() if any(p.matches(c[0].labels) for p in probes)]:
            del self.series[key]

    def merge(self, answer: list[Series], start: float, keep_from: float, *, whole: bool) -> None:
        """Take in an answer over ``[start, now]``: it is the source's word for that range (late
        samples included); what is held of earlier ranges is kept from ``keep_from``. ``whole``: the
        answer was for every service held, so a held series missing from it has no new samples."""
        fresh: dict[LabelKey, list[Series]] = defaultdict(list)
        for s in answer:
            fresh[s.key].append(s)
        if whole:
            for key in [k for k in self.series if k not in fresh]:
                kept = _trimmed(self.series[key][0], keep_from, start)
                if kept.t.size:  # (a copy: a cut of a joined group's arrays would keep all of them)
                    self.series[key] = [kept.sliced(kept.t.copy(), kept.v.copy())]
                else:
                    del self.series[key]
        joins: list[_Join] = []  # a few thousand at a time (see JOIN_CHUNK)
        for key, copies in fresh.items():
            had = self.series.get(key)
            if had is not None and len(copies) == 1:
                joins.append((key, had[0], copies[0]))
                if len(joins) >= JOIN_CHUNK:
                    self._join_all(joins, keep_from, start)
                continue
            prefix = _trimmed(had[0], keep_from, start) if had else None
            self.series[key] = [_joined(prefix, s) for s in copies]
        self._join_all(joins, keep_from, start)

    def _join_all(self, joins: list[_Join], keep_from: float, before: float) -> None:
        """Join each held series of ``joins`` with its tail, and empty the list (what it held of the
        series before is let go pass by pass, not all at the end of the answer)."""
        held = sum(h.t.size for _, h, _ in joins)
        new = sum(t.t.size for _, _, t in joins)
        if held > JOIN_AT_ONCE * max(new, 1):
            # (the first answer after a long history: cut series by series, not copied whole first)
            for key, had, tail in joins:
                self.series[key] = [_joined(_trimmed(had, keep_from, before), tail)]
        elif joins:
            self._join(joins, keep_from, before)
        joins.clear()

    def _join(self, joins: list[_Join], keep_from: float, before: float) -> None:
        """``_joined(_trimmed(held, keep_from, before), tail)`` of every ``(key, held, tail)``, in a
        few array operations for all of them: each held series' samples in ``[keep_from, before)``
        (the same mask ``_trimmed`` applies, for series in time order or not), then the tail's, in
        one pair of arrays that the series are views of."""
        n = len(joins)
        olds = [h for _, h, _ in joins]
        tails = [t for _, _, t in joins]
        sizes = np.fromiter((h.t.size for h in olds), dtype=np.int64, count=n)
        t_held = np.concatenate([h.t for h in olds])
        keep = (t_held >= keep_from) & (t_held < before)
        p = np.bincount(np.repeat(np.arange(n), sizes)[keep], minlength=n)
        q = np.fromiter((t.t.size for t in tails), dtype=np.int64, count=n)
        pool_t = np.concatenate([t_held[keep], *(t.t for t in tails)])
        pool_v = np.concatenate([np.concatenate([h.v for h in olds])[keep], *(t.v for t in tails)])
        # each series: its kept samples (from the first block), then its tail (from the second)
        lengths = np.empty(2 * n, dtype=np.int64)
        lengths[0::2], lengths[1::2] = p, q
        starts = np.empty(2 * n, dtype=np.int64)
        starts[0::2] = np.cumsum(p) - p
        starts[1::2] = int(p.sum()) + np.cumsum(q) - q
        idx = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
        out_t, out_v = pool_t[idx], pool_v[idx]
        out_sizes = p + q
        ordered = ordered_within(out_t, out_sizes)
        ends = np.cumsum(out_sizes).tolist()
        a = 0
        for k, (key, had, tail) in enumerate(joins):
            b = ends[k]
            joined = (had if p[k] else tail).sliced(out_t[a:b], out_v[a:b], subset=False)
            object.__setattr__(joined, "_ordered", ordered[k])
            self.series[key] = [joined]
            a = b


def _joined(prefix: Series | None, tail: Series) -> Series:
    """``tail`` after what is kept of the series (with the kept one's labels: one copy of them
    lives on, however many ticks answered them anew)."""
    if prefix is None or not prefix.t.size:
        return tail
    return prefix.then(tail)


def _trimmed(s: Series, keep_from: float, before: float) -> Series:
    """The samples with ``keep_from <= t < before``."""
    t = s.t
    if s.ordered:
        i, j = t.searchsorted(keep_from, "left"), t.searchsorted(before, "left")
        return s if i == 0 and j == t.size else s.sliced(t[i:j], s.v[i:j])
    keep = (t >= keep_from) & (t < before)
    if bool(keep.all()):
        return s
    return s.sliced(t[keep], s.v[keep])


class BatchedSource:
    """A ``MetricSource`` answering every watch of a tick from a few queries of ``inner``."""

    def __init__(self, inner: MetricSource, *, settle_s: float = 30.0) -> None:
        self.inner = inner
        self.name = f"{inner.name} (batched)"
        self.settle_s = settle_s
        self.queries = 0  # queries sent to ``inner`` since start
        self.tick_queries = 0  # … during the last ``prepare`` and the reads after it
        self._groups: dict[tuple[str, frozenset[Matcher]], _Group] = {}
        self._route: dict[Selector, tuple[_Group, ServiceKey]] = {}
        self._from: dict[tuple[Selector, ServiceKey], float] = {}

    # ------------------------------------------------------------------ planning

    def plan(self, needs: Iterable[Need]) -> dict[tuple[str, frozenset[Matcher]], list[Need]]:
        """Which group serves each need: per metric, the broadest selectors of the signals."""
        by_metric: dict[str, dict[frozenset[Matcher], list[Need]]] = defaultdict(lambda: defaultdict(list))
        for need in needs:
            own = frozenset(m for m in need.selector.matchers if m not in need.service)
            by_metric[need.selector.metric][own].append(need)
        out: dict[tuple[str, frozenset[Matcher]], list[Need]] = defaultdict(list)
        for metric, shapes in by_metric.items():
            roots = [s for s in shapes if not any(o != s and _subsumes(o, s) for o in shapes)]
            for shape, members in shapes.items():
                root = max((r for r in roots if _subsumes(r, shape)), key=len)
                out[(metric, root)].extend(members)
        return dict(out)

    def prepare(self, needs: Iterable[Need], now: float) -> None:
        """Fetch what this tick's reads need, in as few queries as the shapes allow."""
        self.tick_queries = 0
        self._route, self._from = {}, {}
        groups: dict[tuple[str, frozenset[Matcher]], _Group] = {}
        for key, members in self.plan(needs).items():
            group = groups[key] = self._groups.get(key) or _Group(key[0], key[1])
            starts: dict[ServiceKey, float] = {}
            for need in members:
                starts[need.service] = min(starts.get(need.service, math.inf), need.start)
                self._route[need.selector] = (group, need.service)
                here = (need.selector, need.service)
                self._from[here] = min(self._from.get(here, math.inf), need.start)
            self._refresh(group, starts, now)
        self._groups = groups  # a shape no watch reads any more is let go

    def _refresh(self, group: _Group, starts: dict[ServiceKey, float], now: float) -> None:
        group._mine, group.failed = None, {}
        keep_from = min(starts.values())
        group.held = {s: h for s, h in group.held.items() if s in starts}  # the others age out
        held = [s for s, h in group.held.items() if h.since <= starts[s]]
        holding = set(held)
        new = [s for s in starts if s not in holding]
        if held:
            start = max(min(group.held[s].to for s in held) - self.settle_s, keep_from)
            try:
                answer = self._query(group.selector(held), start, now)
            except SourceUnavailable as exc:
                group.failed.update({s: exc for s in held})
            else:
                group.merge(answer, start, keep_from, whole=True)
                for s in held:
                    group.held[s].to = now
        if new:
            group.forget(new)
            start = min(starts[s] for s in new)
            try:
                answer = self._query(group.selector(new), start, now)
            except SourceUnavailable as exc:
                group.failed.update({s: exc for s in new})
                for s in new:
                    group.held.pop(s, None)
            else:
                group.merge(answer, start, keep_from, whole=False)
                group.held.update({s: _Held(starts[s], now) for s in new})

    def _query(self, selector: Selector, start: float, end: float) -> list[Series]:
        self.queries += 1
        self.tick_queries += 1
        return self.inner.fetch(selector, start, end)

    # ------------------------------------------------------------------ reads

    def fetch(self, selector: Selector, start: float, end: float) -> list[Series]:
        routed = self._route.get(selector)
        if routed is None:
            return self._query(selector, start, end)
        group, service = routed
        failed = group.failed.get(service)
        if failed is not None:
            raise failed
        held = group.held.get(service)
        planned = self._from.get((selector, service), math.inf)
        if held is None or start < planned - 1e-6 or end > held.to + 1e-6:
            return self._query(selector, start, end)  # more than was planned: ask the source itself
        # up to the newest answer the source's word includes anything it sent from after it
        upto = math.inf if end >= held.to - 1e-6 else end
        # the service's own matchers hold for every series split to it: only the others are checked
        metric, own = selector.metric, [m for m in selector.matchers if m not in service]
        mine = group.of_service(service)
        if own:
            mine = [s for s in mine if all(m.matches(s.labels) for m in own)]
        return [s.between(start, upto) for s in mine if s.labels.get("__name__") == metric]

    def fetch_expr(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        """Raw PromQL (the escape hatch) cannot be batched: it goes to the source as it is."""
        fetch_expr = getattr(self.inner, "fetch_expr", None)
        if fetch_expr is None:
            raise SourceUnavailable("raw PromQL needs the Prometheus source")
        self.queries += 1
        self.tick_queries += 1
        series: list[Series] = fetch_expr(expr, start, end, step_s)
        return series
