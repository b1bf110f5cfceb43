"""The one interface every metric source implements, and the one reader of Prometheus's matrix."""

from __future__ import annotations

import sys
from itertools import chain
from typing import Any, Protocol

import numpy as np

from watchdog.errors import SourceGarbled
from watchdog.series import Selector, Series


class MetricSource(Protocol):
    """Raw samples in, nothing computed: counting is shared in ``watchdog.series``."""

    name: str

    def fetch(self, selector: Selector, start: float, end: float) -> list[Series]:
        """Samples of every series matching ``selector`` with timestamps in ``[start, end]``.

        Raises ``SourceUnavailable`` when the source cannot answer (``SourceGarbled`` when it
        answered with something that is not an answer); never returns made-up data.
        """
        ...


def parse_matrix(result: Any, where: str) -> list[Series]:
    """A Prometheus ``matrix`` result (``[{"metric": {...}, "values": [[t, "v"], ...]}, ...]``) → series.

    Anything else — a vector, missing keys, values that are not numbers — is ``SourceGarbled``,
    naming what was wrong and where: one bad item makes the whole answer unusable, because the
    series it would have held are missing from every sum.
    """
    if not isinstance(result, list):
        raise SourceGarbled(f"{where}: expected a list of series, got {type(result).__name__}")
    if all(type(item) is Series for item in result):  # read by ``series_hook`` as it was parsed
        return result
    fast = _parse_at_once(result)
    if fast is not None:
        return fast
    out = []
    for i, item in enumerate(result):
        if type(item) is Series:
            out.append(item)
            continue
        if not isinstance(item, dict):
            raise SourceGarbled(f"{where}: result[{i}] is {type(item).__name__}, not a series object")
        metric, values = item.get("metric"), item.get("values")
        if values is None and "value" in item:
            raise SourceGarbled(
                f"{where}: result[{i}] is an instant vector sample; a range matrix was asked for"
            )
        if not isinstance(metric, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metric.items()
        ):
            raise SourceGarbled(f"{where}: result[{i}].metric: expected an object of label strings")
        if not isinstance(values, list):
            raise SourceGarbled(f"{where}: result[{i}].values: missing or not a list")
        try:
            out.append(Series.from_pairs(metric, values))
        except (TypeError, ValueError) as exc:
            raise SourceGarbled(f'{where}: result[{i}].values: not [time, "value"] pairs ({exc})') from exc
    return out


_STR, _LIST, _PAIR, _NUMBER = frozenset({str}), frozenset({list}), frozenset({2}), frozenset({float, int})

#: Label sets a ``SeriesReader`` remembers; past this many (series come and go) it starts afresh.
KNOWN_LABEL_SETS = 1 << 20


class SeriesReader:
    """``object_pairs_hook`` for ``json.loads`` of a Prometheus answer: each well-formed series
    object becomes a ``Series`` as soon as it is parsed, so a large answer (every watched service's
    samples at once, ``watchdog.sources.batch``) never exists as millions of small lists and
    strings at the same time. Anything else stays a ``dict`` for ``parse_matrix`` to judge.

    A source asks for the same series every tick: the reader remembers each label set it has
    read (one copy of its labels, its identity ``Series.key`` and its groupings), so a label set
    seen before costs a lookup instead of being checked, copied and sorted again."""

    def __init__(self, limit: int = KNOWN_LABEL_SETS) -> None:
        self._known: dict[tuple[str, ...], Series] = {}
        self._limit = limit

    def _labels_of(self, metric: dict[Any, Any]) -> Series | None:
        """A series of no samples carrying ``metric``'s labels (remembered), or ``None`` when they
        are not all strings."""
        try:
            # labels and values in the answer's order, flat: for Prometheus (which sorts labels by
            # name) the same tuple as ``Series.key``, so one tuple per label set serves as both
            probe = tuple(chain.from_iterable(metric.items()))
            known = self._known.get(probe)
        except TypeError:  # a label value that is a list or an object: not hashable, not a label
            return None
        if known is not None:
            return known
        # (the type checks run as set(map(type, …)): C loops over the many small lists of an answer)
        if not set(map(type, metric)) | set(map(type, metric.values())) <= _STR:
            return None
        # the same label names and values come in every series and every tick: one copy of each
        labels = {sys.intern(k): sys.intern(v) for k, v in metric.items()}
        if len(self._known) >= self._limit:
            self._known.clear()
        known = Series(labels, _EMPTY, _EMPTY)
        flat = tuple(chain.from_iterable(labels.items()))
        self._known[known.key if known.key == flat else flat] = known
        return known

    def __call__(self, pairs: list[tuple[str, Any]]) -> Any:
        obj = dict(pairs)
        if len(obj) != 2:
            return obj
        metric, values = obj.get("metric"), obj.get("values")
        if type(metric) is not dict or type(values) is not list:
            return obj
        known = self._labels_of(metric)
        if known is None:
            return obj
        if not values:
            return known.sliced(np.empty(0), np.empty(0))
        if set(map(type, values)) != _LIST or set(map(len, values)) != _PAIR:
            return obj
        times, strings = zip(*values, strict=True)
        if not set(map(type, times)) <= _NUMBER or set(map(type, strings)) != _STR:
            return obj
        try:
            return known.sliced(np.array(times, dtype=float), np.array(strings).astype(float), subset=False)
        except ValueError:
            return obj


_EMPTY = np.empty(0)


def _parse_at_once(result: list[Any]) -> list[Series] | None:
    """The common case, every sample of every series converted in one go: a well-formed matrix
    (objects with string labels and ``[number, "string"]`` pairs). ``None`` for anything else,
    which ``parse_matrix`` then reads series by series, to say exactly what is wrong."""
    try:
        labels: list[dict[str, str]] = []
        sizes: list[int] = []
        times: list[Any] = []
        values: list[Any] = []
        for item in result:
            metric, pairs = item["metric"], item["values"]
            if type(metric) is not dict or type(pairs) is not list:
                return None
            labels.append(metric)
            sizes.append(len(pairs))
            for t, v in pairs:
                times.append(t)
                values.append(v)
    except (KeyError, TypeError, ValueError):
        return None
    if not all(type(t) in (float, int) for t in times) or not all(type(v) is str for v in values):
        return None
    if not all(type(k) is str and type(v) is str for m in labels for k, v in m.items()):
        return None
    try:
        t_all = np.array(times, dtype=float)
        v_all = np.array(values).astype(float) if values else np.empty(0)
    except ValueError:
        return None
    out = []
    end = 0
    for metric, n in zip(labels, sizes, strict=True):
        start, end = end, end + n
        out.append(Series(dict(metric), t_all[start:end], v_all[start:end]))
    return out
