"""Replay of recorded scenarios, read exactly as ``shared/scenario-format.md`` (format 1) defines.

This module reads ``meta.json`` and ``series.json`` only. ``truth.json`` is for scoring and is
never opened on the detector path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.errors import ConfigError
from watchdog.series import Selector, Series

SLO_KEYS = ("error_rate", "latency_p95_s", "latency_p99_s", "token_reuse_rate", "device_proof_failure_rate")


@dataclass(frozen=True)
class Scenario:
    name: str
    service: str
    env: str
    start: float
    deploy_at: float
    end: float
    step_s: float
    canary: bool
    release_from: str
    release_to: str
    slo: dict[str, float]
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)


def _need(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    if key not in meta:
        raise ConfigError([f"{where}: meta.{key}: required field missing"])
    value = meta[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError([f"{where}: meta.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}"])
    return value


def load_scenario(directory: str | Path) -> Scenario:
    """Read and check ``meta.json``; raises ``ConfigError`` naming the file and field."""
    d = Path(directory)
    meta_path = d / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError([f"{meta_path}: file missing"]) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{meta_path}:{exc.lineno}: invalid JSON: {exc.msg}"]) from exc
    if not isinstance(meta, dict):
        raise ConfigError([f"{meta_path}: expected a JSON object"])
    fmt = meta.get("format")
    if fmt != 1:
        raise ConfigError([f"{meta_path}: meta.format: expected 1, got {fmt!r}"])
    num = (int, float)
    start = float(_need(meta, "start", num, meta_path))
    deploy_at = float(_need(meta, "deploy_at", num, meta_path))
    end = float(_need(meta, "end", num, meta_path))
    if not start <= deploy_at < end:
        raise ConfigError([f"{meta_path}: meta: need start <= deploy_at < end"])
    release = _need(meta, "release", dict, meta_path)
    slo_raw = meta.get("slo", {}) or {}
    if not isinstance(slo_raw, dict):
        raise ConfigError([f"{meta_path}: meta.slo: expected an object"])
    slo = {}
    for k, v in slo_raw.items():
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise ConfigError([f"{meta_path}: meta.slo.{k}: expected a number, got {v!r}"])
        slo[k] = float(v)
    known = {
        "format",
        "name",
        "service",
        "env",
        "start",
        "deploy_at",
        "end",
        "step_s",
        "canary",
        "release",
        "slo",
    }
    return Scenario(
        name=str(meta.get("name", d.name)),
        service=str(_need(meta, "service", str, meta_path)),
        env=str(_need(meta, "env", str, meta_path)),
        start=start,
        deploy_at=deploy_at,
        end=end,
        step_s=float(_need(meta, "step_s", num, meta_path)),
        canary=bool(_need(meta, "canary", bool, meta_path)),
        release_from=str(release.get("from", "")),
        release_to=str(release.get("to", "")),
        slo=slo,
        path=d,
        extra={k: v for k, v in meta.items() if k not in known},
    )


class ReplaySource:
    """Serves a scenario's ``series.json`` as if it were Prometheus, up to the time asked for."""

    name = "replay"

    def __init__(self, directory: str | Path) -> None:
        self.scenario = load_scenario(directory)
        path = Path(directory) / "series.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError([f"{path}: file missing"]) from exc
        except json.JSONDecodeError as exc:
            raise ConfigError([f"{path}:{exc.lineno}: invalid JSON: {exc.msg}"]) from exc
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise ConfigError([f'{path}: resultType: expected "matrix"'])
        self._series: list[Series] = []
        self._matches: dict[Selector, list[Series]] = {}
        for i, item in enumerate(data.get("result", [])):
            try:
                self._series.append(Series.from_pairs(item["metric"], item["values"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError([f"{path}: result[{i}]: {exc}"]) from exc

    def fetch(self, selector: Selector, start: float, end: float) -> list[Series]:
        matched = self._matches.get(selector)
        if matched is None:
            matched = self._matches[selector] = [s for s in self._series if selector.matches(s.labels)]
        return [s.between(start, end) for s in matched]
