"""Seeded generator of deploy scenarios in the fixed format (``shared/scenario-format.md``, version 1).

The benchmark replays a corpus of scenarios whose ground truth is known by construction: every
healthy family is a trap a careless detector falls into (noise, resets, shared incidents, missing
samples), every regression family is one way a release really goes bad.

Usage::

    python benchmarks/generate.py --out DIR --count 2000 --seed 1 [--healthy-fraction 0.55]
                                  [--families a,b,...] [--jobs 2]

or ``generate_corpus(out, count, seed)`` / ``generate_one(out_dir, family, rng, index)``. Scenario
``index`` is written to ``DIR/{family}-{index:05d}`` from a generator seeded with
``SeedSequence(seed, spawn_key=(index,))``, so a corpus is byte-for-byte the same for a seed
whatever ``--jobs`` is.
The world every scenario shares and its nuisances are described in ``benchmarks/world.py``; the
families in ``benchmarks/families.py``. This module samples a world into Prometheus series and
writes the corpus.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

if __package__ in (None, ""):  # run as a script: python benchmarks/generate.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.families import FAMILIES
from benchmarks.world import (
    LE,
    LE_LABELS,
    N_SAMPLES,
    ROUTE_SHARE,
    ROUTES,
    SIGNALS,
    STEP_S,
    BoolArray,
    Cohort,
    FloatArray,
    IntArray,
    World,
    apply_nuisances,
    new_world,
)

__all__ = ["FAMILIES", "SIGNALS", "generate_corpus", "generate_one", "main", "plan_corpus", "scenario_rng"]


# Rendering: expected rates → sampled events → Prometheus counters and gauges as JSON.


def _counter(events: NDArray[Any], offset: NDArray[Any], resets: Sequence[int]) -> NDArray[Any]:
    """Cumulative samples along the last axis; at a reset step the counter reads 0 and counts on from there.

    The events of the reset step itself (the old process's last increments since its previous
    scrape) are lost, as they are in Prometheus.
    """
    out: NDArray[Any] = offset + np.cumsum(events, axis=-1)
    for k in sorted(resets):
        out[..., k:] = np.cumsum(events[..., k:], axis=-1) - events[..., k : k + 1]
    return out


def _bucket_probs(c: Cohort) -> FloatArray:
    """Probability of each ``le`` interval (12 finite bounds, then above 5 s) per step, shape (steps, 13)."""
    lb = np.log(np.array(LE))[None, :]
    main = ndtr((lb - np.log(c.lat_med)[:, None]) / c.lat_sigma[:, None])
    tail = ndtr((lb - np.log(c.tail_med)[:, None]) / c.tail_sigma[:, None])
    f = c.tail_frac[:, None]
    cdf = (1 - f) * main + f * tail
    edges = np.concatenate([np.zeros((N_SAMPLES, 1)), cdf, np.ones((N_SAMPLES, 1))], axis=1)
    return np.clip(np.diff(edges, axis=1), 0.0, 1.0)


def _latency_moments(c: Cohort) -> tuple[FloatArray, FloatArray]:
    """Mean and variance of one request's latency per step (for the histogram's ``_sum``)."""
    f = c.tail_frac

    def raw(k: int) -> FloatArray:
        m1 = c.lat_med**k * np.exp(k * k * c.lat_sigma**2 / 2)
        m2 = c.tail_med**k * np.exp(k * k * c.tail_sigma**2 / 2)
        return np.asarray((1 - f) * m1 + f * m2, dtype=np.float64)

    mean = raw(1)
    return mean, np.maximum(raw(2) - mean**2, 0.0)


def _multinomial(rng: np.random.Generator, n: IntArray, probs: FloatArray) -> IntArray:
    """Counts, shape (groups, categories, steps), by chained binomials: one call per category."""
    groups, cats = n.shape[0], probs.shape[1]
    out = np.zeros((groups, cats, N_SAMPLES), dtype=np.int64)
    rem, left = n.copy(), np.ones(N_SAMPLES)
    for j in range(cats - 1):
        q = np.clip(probs[:, j] / np.maximum(left, 1e-12), 0.0, 1.0)
        out[:, j] = rng.binomial(rem, q)
        rem -= out[:, j]
        left = left - probs[:, j]
    out[:, cats - 1] = rem
    return out


class _SeriesWriter:
    """Builds the ``result`` items of one cohort as compact JSON, keeping only the scraped samples."""

    def __init__(self, w: World, c: Cohort) -> None:
        self.times = w.times
        self.kept = np.flatnonzero(c.keep)
        self.prefixes = self._prefixes(self.kept)
        self.items: list[str] = []
        self.cohort = c.name

    def _prefixes(self, kept: IntArray) -> list[str]:
        return [f'[{float(self.times[k])!r},"' for k in kept]

    def add(
        self, labels: Mapping[str, str], values: NDArray[Any], fmt: str = "", keep: BoolArray | None = None
    ) -> None:
        """One series; ``keep`` when this one was scraped at other steps than the target's (a probe)."""
        kept, prefixes = self.kept, self.prefixes
        if keep is not None:
            kept = np.flatnonzero(keep)
            prefixes = self._prefixes(kept)
        labels = {"__name__": labels["__name__"], "cohort": self.cohort, **labels}
        raw = values[kept].tolist()
        texts = [format(v, fmt) for v in raw] if fmt else [str(v) for v in raw]
        body = ",".join([p + v + '"]' for p, v in zip(prefixes, texts, strict=True)])
        metric = json.dumps(labels, sort_keys=True, separators=(",", ":"))
        self.items.append(f'{{"metric":{metric},"values":[{body}]}}')


def _render_cohort(w: World, c: Cohort) -> list[str]:
    rng, out = w.rng, _SeriesWriter(w, c)
    assert w.uptime_s is not None, "build_world draws the uptime"
    uptime_steps = w.uptime_s / STEP_S

    def offset(events: NDArray[Any], history: float = 1.0) -> IntArray:
        mean = events.mean(axis=-1, keepdims=True) * uptime_steps * history
        return np.asarray(rng.poisson(mean), dtype=np.int64)

    lam = w.total_rate * c.share * c.req_mult * STEP_S
    lam[0] = 0.0
    n = rng.poisson(np.outer(c.inst_weight, lam))
    claim = rng.binomial(n, ROUTE_SHARE[0])
    redeem = rng.binomial(n - claim, ROUTE_SHARE[1] / (1 - ROUTE_SHARE[0]))
    p_err = np.clip(c.inst_err_mult * (c.err * c.err_burst), 0.0, 1.0)
    claim_ok = np.zeros(N_SAMPLES, dtype=np.int64)
    for route, n_route in zip(ROUTES, (claim, redeem, n - claim - redeem), strict=True):
        errors = rng.binomial(n_route, p_err)
        codes = [("200", n_route - errors)]
        if route == ROUTES[0]:
            claim_ok = (n_route - errors).sum(axis=0)
            if w.share_503 > 0:
                e503 = rng.binomial(errors, w.share_503)
                codes += [("500", errors - e503), ("503", e503)]
        if len(codes) == 1:
            codes.append(("500", errors))
        for code, events in codes:
            history = c.history_err if code.startswith("5") else 1.0
            values = _counter(events, offset(events, history), c.resets)
            for i, inst in enumerate(c.instances):
                labels = {"__name__": "http_requests_total", "code": code, "route": route, "instance": inst}
                out.add(labels, values[i])

    groups = n if c.hist_by_instance else n.sum(axis=0, keepdims=True)
    per_le = _multinomial(rng, groups, _bucket_probs(c))
    buckets = _counter(np.cumsum(per_le, axis=1), np.cumsum(offset(per_le), axis=1), c.resets)
    mean, var = _latency_moments(c)
    lat_sum = np.maximum(groups * mean + np.sqrt(groups * var) * rng.standard_normal(groups.shape), 0.0)
    sums = _counter(lat_sum, buckets[:, -1, :1] * float(mean.mean()), c.resets)
    for g in range(groups.shape[0]):
        where = {"instance": c.instances[g]} if c.hist_by_instance else {}
        for j, le in enumerate(LE_LABELS):
            out.add({"__name__": "http_request_duration_seconds_bucket", "le": le, **where}, buckets[g, j])
        out.add({"__name__": "http_request_duration_seconds_count", **where}, buckets[g, -1])
        out.add({"__name__": "http_request_duration_seconds_sum", **where}, sums[g], ".3f")

    claims = rng.binomial(claim_ok, 0.9)
    attempts = rng.binomial(claim_ok, 0.92)
    business = (
        ("stamps_claims_total", claims),
        ("stamps_token_reuse_total", rng.binomial(claims, np.clip(c.reuse, 0.0, 1.0))),
        ("device_proof_attempts_total", attempts),
        ("device_proof_failures_total", rng.binomial(attempts, np.clip(c.proof_fail, 0.0, 1.0))),
    )
    for name, events in business:
        out.add({"__name__": name}, _counter(events, offset(events), c.resets))

    out.add({"__name__": "probe_success", "probe": "health"}, c.probe, keep=c.probe_keep)
    for j, tenant in enumerate(w.tenants):
        cost = c.cost[j] * rng.uniform(0.95, 1.05, N_SAMPLES)
        out.add({"__name__": "cost_per_tenant", "tenant": tenant}, cost, ".4g")
    return out.items


def _meta(w: World) -> dict[str, Any]:
    return {
        "format": 1,
        "name": w.name,
        "service": "stamps-api",
        "env": "prod",
        "start": float(w.times[0]),
        "deploy_at": w.deploy_at,
        "end": float(w.times[-1]),
        "step_s": int(STEP_S),
        "canary": w.canary,
        "release": {"from": w.release[0], "to": w.release[1]},
        "slo": w.slo,
    }


def _truth(w: World) -> dict[str, Any]:
    truth: dict[str, Any] = {
        "regression": False,
        "onset": None,
        "signals": [],
        "kind": w.family,
        "effect": None,
    }
    truth.update(w.truth)
    truth.setdefault("slo_breach", None)
    after = w.after
    canary_share = float(w.cohorts[-1].share[0]) if w.canary else 1.0
    return {
        **truth,
        "family": w.family,
        "rps": round(float(w.total_rate[after].mean()), 4),
        "canary_share": canary_share,
        "base_error_rate": w.base["error_rate"],
        "base": w.base,
        "nuisances": w.nuisances,
        "resets": [{"cohort": c.name, "at": float(w.times[k])} for c in w.cohorts for k in sorted(c.resets)],
        "instances": {c.name: len(c.instances) for c in w.cohorts},
    }


def build_world(family: str, rng: np.random.Generator, index: int) -> World:
    """Scenario ``{family}-{index:05d}`` as expected rates, before any sampling of its series."""
    spec = FAMILIES[family]
    w = new_world(rng, family, f"{family}-{index:05d}", spec.canary)
    apply_nuisances(w, spec.forced)
    spec.build(w)
    if w.uptime_s is None:
        w.uptime_s = float(rng.uniform(3600, 72 * 3600))
    return w


def render(w: World) -> list[str]:
    """The ``result`` items of ``series.json``: the world sampled, every cohort in turn."""
    return [item for c in w.cohorts for item in _render_cohort(w, c)]


def generate_one(out_dir: str | Path, family: str, rng: np.random.Generator, index: int) -> Path:
    """Write scenario ``{family}-{index:05d}`` under ``out_dir``; everything random comes from ``rng``."""
    w = build_world(family, rng, index)
    items = render(w)
    name = w.name
    path = Path(out_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "meta.json").write_text(json.dumps(_meta(w), indent=2) + "\n")
    (path / "series.json").write_text('{"resultType":"matrix","result":[' + ",".join(items) + "]}\n")
    (path / "truth.json").write_text(json.dumps(_truth(w), indent=2) + "\n")
    return path


# The corpus: which family each index gets, and writing them all.


def scenario_rng(seed: int, index: int) -> np.random.Generator:
    """Scenario ``index``'s own generator: independent of the others, so any worker can make it."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _apportion(n: int, names: Sequence[str]) -> dict[str, int]:
    """Split ``n`` by family weight (largest remainder); every family gets one first when ``n`` allows."""
    if not names:
        return {}
    floor = 1 if n >= len(names) else 0
    rest = n - floor * len(names)
    weights = np.array([FAMILIES[f].weight for f in names])
    exact = rest * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: rest - int(counts.sum())]:
        counts[i] += 1
    return {f: floor + int(k) for f, k in zip(names, counts, strict=True)}


def plan_corpus(
    count: int, seed: int, healthy_fraction: float = 0.55, families: Sequence[str] | None = None
) -> list[str]:
    """The family of each index: the mix by construction, in an order shuffled by ``seed``."""
    names = list(families) if families else list(FAMILIES)
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families: {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    healthy = [f for f in FAMILIES if f in names and FAMILIES[f].healthy]
    bad = [f for f in FAMILIES if f in names and not FAMILIES[f].healthy]
    n_healthy = round(count * healthy_fraction) if healthy and bad else (count if healthy else 0)
    mix = {**_apportion(n_healthy, healthy), **_apportion(count - n_healthy, bad)}
    order = [f for f, k in mix.items() for _ in range(k)]
    perm = np.random.default_rng(np.random.SeedSequence(seed)).permutation(len(order))
    return [order[i] for i in perm]


def _generate_indexed(task: tuple[str, str, int, int]) -> Path:
    out, family, seed, index = task
    return generate_one(out, family, scenario_rng(seed, index), index)


_SCENARIO_DIR = re.compile(r"^(?P<family>[a-z_]+)-\d{5}$")


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Drop scenarios of an earlier, larger corpus in ``out``: the benchmark runs every directory it finds."""
    for d in out.iterdir():
        m = _SCENARIO_DIR.match(d.name)
        if not (d.is_dir() and m and m["family"] in FAMILIES and d.name not in keep):
            continue
        if {p.name for p in d.iterdir()} <= {"meta.json", "series.json", "truth.json"}:
            shutil.rmtree(d)


def generate_corpus(
    out: str | Path,
    count: int,
    seed: int,
    healthy_fraction: float = 0.55,
    families: Sequence[str] | None = None,
    jobs: int = 1,
) -> list[Path]:
    """Write ``count`` scenarios under ``out``: the same arguments give the same bytes for any ``jobs``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    plan = plan_corpus(count, seed, healthy_fraction, families)
    _remove_stale(root, {f"{f}-{i:05d}" for i, f in enumerate(plan)})
    tasks = [(str(root), f, seed, i) for i, f in enumerate(plan)]
    if jobs <= 1:
        return [_generate_indexed(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_generate_indexed, tasks, chunksize=max(1, len(tasks) // (8 * jobs))))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate a seeded corpus of deploy scenarios.")
    parser.add_argument("--out", required=True, type=Path, help="corpus directory")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--healthy-fraction", type=float, default=0.55)
    parser.add_argument("--families", help=f"comma-separated subset of: {','.join(FAMILIES)}")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
    started = time.perf_counter()
    try:
        paths = generate_corpus(args.out, args.count, args.seed, args.healthy_fraction, families, args.jobs)
    except ValueError as exc:
        parser.error(str(exc))
    elapsed = time.perf_counter() - started
    per_family = Counter(_SCENARIO_DIR.match(p.name)["family"] for p in paths)  # type: ignore[index]
    size = sum(f.stat().st_size for p in paths for f in p.iterdir())
    for family, spec in FAMILIES.items():
        if per_family[family]:
            print(f"{family:24s} {'healthy' if spec.healthy else 'regression':10s} {per_family[family]:6d}")
    n_healthy = sum(k for f, k in per_family.items() if FAMILIES[f].healthy)
    print(
        f"{'total':24s} {'':10s} {len(paths):6d}  ({n_healthy} healthy, {len(paths) - n_healthy} regressions)"
    )
    print(f"wrote {size / 1e6:.1f} MB to {args.out} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
