"""A scenario's series as OpenMetrics text, for Prometheus's own backfill.

``promtool tsdb create-blocks-from openmetrics FILE DATA_DIR`` loads what this writes, so a
recorded or generated scenario (``shared/scenario-format.md``) can be put into a real Prometheus
and backtested through it. promtool is lenient about metadata but silently drops a sample older
than the one before it in the same series, so every series is written in time order (a repeated
timestamp keeps its last sample) and each metric family in one block, with its ``# TYPE``:
counters as ``# TYPE x counter`` with ``x_total`` samples, histograms' ``_bucket``/``_count``/
``_sum`` under one ``# TYPE x histogram``, the scenario format's gauges as gauges and anything
else as ``unknown``. Timestamps are seconds; the text ends with ``# EOF``.

Only ``meta.json`` and ``series.json`` are read: ``truth.json`` never reaches Prometheus.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.errors import ConfigError, SourceGarbled
from watchdog.series import Series
from watchdog.sources.base import parse_matrix
from watchdog.sources.replay import Scenario, load_scenario

#: The scenario format's gauges (its table); every other ``_total`` is a counter.
GAUGES = frozenset({"probe_success", "cost_per_tenant"})
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


@dataclass(frozen=True)
class Export:
    """What was written: the scenario, how far its times were moved, and the file's text."""

    scenario: Scenario
    shift_s: float
    text: str
    series: int
    samples: int


def read_series(scenario: Scenario) -> list[Series]:
    """A scenario's ``series.json`` as series; ``ConfigError`` naming the file when it is not one."""
    path = scenario.path / "series.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: file missing"]) from exc
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}:{exc.lineno}: invalid JSON: {exc.msg}"]) from exc
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise ConfigError([f'{path}: resultType: expected "matrix"'])
    try:
        return parse_matrix(data.get("result"), str(path))
    except SourceGarbled as exc:
        raise ConfigError([str(exc)]) from exc


def family_of(name: str, histograms: set[str]) -> tuple[str, str]:
    """A sample name's metric family and OpenMetrics type."""
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return name[: -len(suffix)], "histogram"
    if name in GAUGES:
        return name, "gauge"
    if name.endswith("_total") and len(name) > len("_total"):
        return name[: -len("_total")], "counter"
    return name, "unknown"


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _lines(s: Series, extra: Mapping[str, str], shift_s: float) -> list[str]:
    labels = {k: v for k, v in s.labels.items() if k != "__name__"} | dict(extra)
    inner = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
    head = f"{s.labels['__name__']}{{{inner}}}" if inner else s.labels["__name__"]
    latest: dict[float, float] = {}
    for t, v in zip(s.t.tolist(), s.v.tolist(), strict=True):
        latest[t] = v  # a repeated timestamp: the last sample wins, as one scrape would
    return [f"{head} {_number(v)} {t + shift_s:.3f}" for t, v in sorted(latest.items())]


def to_openmetrics(
    series: Sequence[Series], *, shift_s: float = 0.0, labels: Mapping[str, str] | None = None
) -> str:
    """The series as one OpenMetrics exposition with timestamps moved by ``shift_s`` seconds and
    ``labels`` added to every series (they win over a series' own label of the same name)."""
    names = {s.labels["__name__"] for s in series}
    histograms = {n[: -len("_bucket")] for n in names if n.endswith("_bucket")}
    families: dict[str, tuple[str, list[Series]]] = {}
    for s in series:
        family, kind = family_of(s.labels["__name__"], histograms)
        families.setdefault(family, (kind, []))[1].append(s)
    out: list[str] = []
    for family in sorted(families):
        kind, members = families[family]
        out.append(f"# TYPE {family} {kind}")
        for s in sorted(members, key=lambda s: (s.labels["__name__"], sorted(s.labels.items()))):
            out += _lines(s, labels or {}, shift_s)
    out.append("# EOF")
    return "\n".join(out) + "\n"


def export_scenario(
    directory: str | Path, *, start: float | None = None, labels: Mapping[str, str] | None = None
) -> Export:
    """Scenario ``directory`` as OpenMetrics; with ``start``, moved so that its ``meta.start`` is
    ``start`` (its deploy then happened at ``start + deploy_at - meta.start``)."""
    scenario = load_scenario(directory)
    series = read_series(scenario)
    shift = 0.0 if start is None else start - scenario.start
    text = to_openmetrics(series, shift_s=shift, labels=labels)
    samples = sum(1 for line in text.splitlines() if not line.startswith("#"))
    return Export(scenario, shift, text, len(series), samples)
