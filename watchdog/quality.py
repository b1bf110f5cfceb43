"""What a source's answer must look like before a single sample of it is counted.

Missing data is not evidence, and neither is garbage. Every answer is checked here, once, whatever
the source: a series may not appear twice, and no sample may lie outside the range asked for. A
counter's samples must be finite, non-negative and in time order, and a counter never goes down
except when it restarts from zero. What breaks these rules is dropped (it becomes a missed
scrape, which the counting already handles exactly) and reported as a ``Fault``; the evaluator
then says the signal is blind for that tick, with the faults as the reason, and never reads the
fault as evidence about the release.

A *dip* — a counter that goes down and comes back to where it was within a few samples — is not a
restart: a restarted process cannot recount its predecessor's events that fast. It is what two
processes exporting the same series look like, or an exporter's arithmetic going wrong. Read as a
reset it would invent the whole counter's value as new events, so the dipped samples are dropped.
A drop that has not yet had the chance to come back is *unconfirmed*: counting stops short of it
until it has (``hold``), so a dip at the edge of a window is never counted as a reset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from watchdog.errors import SourceGarbled
from watchdog.series import LabelKey, Series, all_within, key_labels, steps_within

#: A drop that comes back above its earlier value within this many samples is a dip, not a reset.
DIP_SAMPLES = 4


@dataclass(frozen=True)
class Fault:
    """One thing wrong with one series of an answer."""

    series: str
    problem: str
    at: float  # the time of the first sample concerned (so a fault is reported once, when it is new)

    def __str__(self) -> str:
        return f"{self.series}: {self.problem}"


def series_name(labels: Mapping[str, str]) -> str:
    name = labels.get("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{inner}}}"


@dataclass(frozen=True)
class Checked:
    """An answer after its checks: clean series, what was dropped, and how far it may be counted."""

    series: list[Series]
    faults: list[Fault]
    hold: float = math.inf  # count no interval ending at or after this time yet (an unconfirmed drop)


def check_answer(
    series: Sequence[Series],
    start: float,
    end: float,
    *,
    counter: bool,
    confirm_s: float,
    memory: dict[LabelKey, tuple[float, float]] | None = None,
) -> Checked:
    """Check one answer to "samples of these series in [start, end]".

    Raises ``SourceGarbled`` when the answer cannot be used at all; otherwise drops what is
    wrong and lists it. ``confirm_s`` is how long after a counter's drop the counter gets to come
    back before the drop counts as a reset (``end`` is the newest time the answer can know of).

    ``memory`` holds the last good sample of each counter seen earlier in the same watch. A
    series that resumes after a gap longer than the range asked for is then counted from that
    sample, not from zero: the difference across the gap is its events, its cumulative value
    is not. It is updated with each series' newest good sample.
    """
    keys = [s.key for s in series]
    if len(set(keys)) != len(keys):
        seen: dict[LabelKey, int] = {}
        for key in keys:
            seen[key] = seen.get(key, 0) + 1
        dupes = [
            Fault(series_name(key_labels(k)), f"the answer holds this series {n} times", end)
            for k, n in seen.items()
            if n > 1
        ]
        raise SourceGarbled("; ".join(str(f) for f in dupes))
    out: list[Series] = []
    faults: list[Fault] = []
    hold = math.inf
    clean = _clean(series, keys, start, end, counter, memory)
    for s, key, fine in zip(series, keys, clean, strict=True):
        if fine:  # nothing to drop, add or wait for: the series as it came (and its total)
            out.append(s)
            if counter and memory is not None and s.t.size:
                memory[key] = (float(s.t[-1]), float(s.v[-1]))
            continue
        checked, problems, s_hold = _check_series(s, start, end, counter, confirm_s, memory)
        out.append(checked)
        if problems:
            name = series_name(s.labels)
            faults.extend(Fault(name, p, at) for at, p in problems)
        hold = min(hold, s_hold)
    return Checked(out, faults, hold)


def _clean(
    series: Sequence[Series],
    keys: Sequence[LabelKey],
    start: float,
    end: float,
    counter: bool,
    memory: dict[LabelKey, tuple[float, float]] | None,
) -> list[bool]:
    """Which series need no check of their own, found for the whole answer at once: every
    timestamp a number inside the range and later than the one before; for counters also every
    value finite, not negative and never below the one before (no drop: no dip, no reset to
    confirm), and no remembered sample to put in front. The rest go through ``_check_series``."""
    if not series:
        return []
    sizes = np.fromiter((s.t.size for s in series), dtype=np.int64, count=len(series))
    total = int(sizes.sum())
    if total == 0:
        return [not (counter and memory is not None and key in memory) for key in keys]
    t = np.concatenate([s.t for s in series])
    ok = (t >= start - 1e-6) & (t <= end + 1e-6)  # False for NaN too
    step = t[1:] > t[:-1]
    if counter:
        v = np.concatenate([s.v for s in series])
        ok &= np.isfinite(v) & (v >= 0)
        step &= v[1:] >= v[:-1]
    ok &= steps_within(step, sizes)
    fine: list[bool] = all_within(ok, sizes).tolist()
    if counter and memory is not None:
        for i, key in enumerate(keys):
            if fine[i]:
                before = memory.get(key)
                if before is not None and (sizes[i] == 0 or before[0] < series[i].t[0]):
                    fine[i] = False  # resumed after a gap longer than the range: counted from memory
    return fine


class _Problems:
    """Drops samples by mask and says which, once per kind."""

    def __init__(self) -> None:
        self.found: list[tuple[float, str]] = []

    def drop(self, t: np.ndarray, keep: np.ndarray, mask: np.ndarray, what: str, end: float) -> None:
        new = mask & keep
        n = int(new.sum())
        if not n:
            return
        keep[new] = False
        times = t[new]
        shown = ", ".join(f"{x:.0f}" for x in times[:3]) + (" …" if n > 3 else "")
        finite = times[np.isfinite(times)]
        self.found.append(
            (float(finite.min()) if finite.size else end, f"{n} sample(s) {what} (t={shown}) dropped")
        )


def _check_series(
    s: Series,
    start: float,
    end: float,
    counter: bool,
    confirm_s: float,
    memory: dict[LabelKey, tuple[float, float]] | None,
) -> tuple[Series, list[tuple[float, str]], float]:
    t, v = s.t, s.v
    found = _Problems()
    if not _times_in_order(t, start, end):  # the common case skips the searching below
        keep = np.ones(t.size, dtype=bool)
        found.drop(t, keep, ~np.isfinite(t), "with a timestamp that is not a number", end)
        found.drop(
            t,
            keep,
            (t < start - 1e-6) | (t > end + 1e-6),
            f"outside the range asked for [{start:.0f}, {end:.0f}]",
            end,
        )
        # a kept sample is out of order when it is not later than every kept sample before it
        latest = np.maximum.accumulate(np.where(keep, t, -np.inf))
        disorder = keep.copy()
        disorder[1:] &= t[1:] <= latest[:-1]
        disorder[:1] = False
        found.drop(t, keep, disorder, "out of time order or repeated", end)
        t, v = t[keep], v[keep]
    if not counter:
        return (s if t.size == s.t.size else Series(s.labels, t, v)), found.found, math.inf
    if not bool(np.isfinite(v).all() and (v >= 0).all()):
        keep = np.ones(t.size, dtype=bool)
        found.drop(t, keep, ~np.isfinite(v), "that are NaN or infinite (a counter is a finite count)", end)
        found.drop(t, keep, v < 0, "that are negative (a counter counts up from zero)", end)
        t, v = t[keep], v[keep]
    key = s.key
    before = memory.get(key) if memory is not None else None
    prepended = before is not None and (t.size == 0 or before[0] < t[0])
    if prepended and before is not None:
        t, v = np.concatenate([[before[0]], t]), np.concatenate([[before[1]], v])
    dips, hold = _dips(t, v, end, confirm_s)
    if dips.any():
        keep = np.ones(t.size, dtype=bool)
        found.drop(t, keep, dips, "where the counter went down and came back (not a restart)", end)
        t, v = t[keep], v[keep]
    if memory is not None and t.size:
        memory[key] = (float(t[-1]), float(v[-1]))
    if prepended and t.size == 1:
        return Series(s.labels, t[:0], v[:0]), found.found, hold  # only the remembered sample: no data now
    if t is s.t:
        return s, found.found, hold  # nothing dropped or added: the series as it came (and its total)
    return Series(s.labels, t, v), found.found, hold


def _times_in_order(t: np.ndarray, start: float, end: float) -> bool:
    """Every timestamp is a number inside [start, end] and later than the one before."""
    if not t.size:
        return True
    in_range = start - 1e-6 <= t[0] and t[-1] <= end + 1e-6  # False for NaN too
    return bool(in_range and (t[1:] > t[:-1]).all())


def _dips(t: np.ndarray, v: np.ndarray, end: float, confirm_s: float) -> tuple[np.ndarray, float]:
    """Samples of a dip, and the time of the first drop not yet confirmed as a reset."""
    dips = np.zeros(t.size, dtype=bool)
    hold = math.inf
    if t.size < 2 or bool((v[1:] >= v[:-1]).all()):
        return dips, hold  # never went down: no dip, no drop to confirm
    ref = -1  # the last sample that is not part of a dip
    for i in range(t.size):
        if ref < 0 or v[i] >= v[ref]:
            ref = i
            continue
        ahead = v[i + 1 : i + 1 + DIP_SAMPLES]
        if ahead.size and bool((ahead >= v[ref]).any()):
            dips[i] = True
            continue
        if ahead.size < DIP_SAMPLES and end - t[i] < confirm_s:
            hold = min(hold, float(t[i]))  # the counter may still come back: don't count past it yet
        ref = i
    return dips, hold
