"""Scale: N services × 2 cohorts × the six runbook signals in a real Prometheus, batched vs per service.

    python benchmarks/scale.py --services 1000 [--ticks 20] [--baseline-ticks 5] [--keep DIR]

Writes a synthetic history (15 s step; a canary and a baseline cohort per service; a few services
regress after their deploy) as OpenMetrics, loads it with Prometheus's own backfill (``promtool
tsdb create-blocks-from openmetrics``) into Debian's ``prometheus`` on a free loopback port, and
watches every service's deploy with the real engine (a SQLite store on disk, simulated time
through the backfilled hour) twice, each in a fresh interpreter so its memory is its own:

* **batched** — the daemon's default (``watchdog.sources.batch``): one range query per selector
  shape and tick for all services;
* **per service** — the baseline: every watch asks Prometheus for each of its selectors alone.

The first tick of each run starts every watch at once (each fetches its calibration window and
the hour before it); it is reported apart, and the figures per tick are over the ``--ticks``
ticks after it. Measured per run: our CPU seconds per tick (``time.process_time`` around
``Engine.tick`` and the daemon's ``HeapKeeper`` after it, whose full collection every 20th tick
is counted in the tick it follows), queries per tick, Prometheus's own query time per tick (the growth of its
``prometheus_engine_query_duration_seconds_sum``, all slices) and our peak RSS. The decisions of
both runs are compared over the ticks both ran. The last line is::

    scale: services=N signals=6 ticks=T cpu_s_per_tick=X queries_per_tick=Q rss_mb=M naive_cpu_ratio=R

with R the per-service run's CPU per tick over the batched run's. Figures go to
``docs/benchmarks.md``; nothing here is asserted by a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEP_S = 15.0
DEPLOY_AT = 1_764_003_600.0  # a fixed past hour: Prometheus keeps it (the fixture sets 100y retention)
HISTORY_S = 1500.0  # before the deploy: the calibration window (1200 s) and a lookback
LE = ("0.05", "0.1", "0.3", "0.8", "+Inf")
TENANTS = ("t1", "t2")
SIGNALS = 6


def _service(i: int) -> str:
    return f"svc-{i:05d}"


def config_doc(n: int, url: str, *, batch: bool, store: str) -> dict[str, Any]:
    """N services with the six runbook signals, each selecting its series by ``service``."""
    signals = [
        {
            "name": "http_5xx",
            "kind": "ratio",
            "bad": {"metric": "http_requests_total", "match": {"code": "=~5.."}},
            "total": {"metric": "http_requests_total"},
            "slo": 0.01,
        },
        {
            "name": "latency_p95",
            "kind": "latency",
            "histogram": {"metric": "http_request_duration_seconds"},
            "quantile": 0.95,
            "threshold_s": 0.3,
        },
        {
            "name": "healthcheck",
            "kind": "probe",
            "probe": {"metric": "probe_success", "match": {"probe": "health"}},
        },
        {
            "name": "token_reuse",
            "kind": "ratio",
            "bad": {"metric": "stamps_token_reuse_total"},
            "total": {"metric": "stamps_claims_total"},
            "slo": 0.002,
        },
        {
            "name": "device_proof_failures",
            "kind": "ratio",
            "bad": {"metric": "device_proof_failures_total"},
            "total": {"metric": "device_proof_attempts_total"},
            "slo": 0.02,
        },
        {
            "name": "cost_per_tenant",
            "kind": "gauge",
            "gauge": {"metric": "cost_per_tenant"},
            "by": ["tenant"],
            "max_ratio": 1.5,
            "for_samples": 4,
        },
    ]
    assert len(signals) == SIGNALS
    return {
        "version": 1,
        "sandbox": True,
        "tick_s": STEP_S,
        "source": {"kind": "prometheus", "prometheus": {"url": url, "batch": batch, "timeout_s": 60}},
        "github": {"repo": "acme/stamps", "token": "${WD_SCALE_TOKEN:-unused}"},
        "store": {"url": f"sqlite:///{store}"},
        "environments": {"prod": {"watch_s": 1800, "post_promotion_watch_s": 0}},
        "services": [
            {"name": _service(i), "match": {"service": _service(i)}, "canary": True, "signals": signals}
            for i in range(n)
        ],
    }


# ----------------------------------------------------------------------------- the history


def write_history(path: Path, n: int, end: float, seed: int, regressed: float) -> tuple[int, list[str]]:
    """OpenMetrics for N services from ``DEPLOY_AT - HISTORY_S`` to ``end``; the names of the
    services whose canary regresses (5xx ×5 after the deploy)."""
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY_AT - HISTORY_S, end + 1e-6, STEP_S)
    after = t > DEPLOY_AT
    bad = sorted(int(i) for i in rng.choice(n, size=max(1, round(n * regressed)), replace=False))
    stamps = [f" {x:.3f}\n" for x in t]
    families: dict[str, list[str]] = {
        name: []
        for name in (
            "http_requests",
            "http_request_duration_seconds",
            "probe_success",
            "stamps_token_reuse",
            "stamps_claims",
            "device_proof_failures",
            "device_proof_attempts",
            "cost_per_tenant",
        )
    }

    def series(family: str, name: str, labels: str, values: np.ndarray) -> None:
        head = f"{name}{{{labels}}} "
        families[family].append("".join(head + f"{v:.0f}" + s for v, s in zip(values, stamps, strict=True)))

    def gauge(family: str, name: str, labels: str, values: np.ndarray) -> None:
        head = f"{name}{{{labels}}} "
        families[family].append("".join(head + f"{v:.5f}" + s for v, s in zip(values, stamps, strict=True)))

    samples = 0
    for i in range(n):
        for cohort, share in (("canary", 0.1), ("baseline", 0.9)):
            lab = f'cohort="{cohort}",service="{_service(i)}"'
            req = rng.poisson(40 * share * STEP_S, t.size)
            p5xx = np.where(after & (cohort == "canary") & (i in bad), 0.025, 0.005)
            err = rng.binomial(req, p5xx)
            series("http_requests", "http_requests_total", f'code="200",{lab}', np.cumsum(req - err))
            series("http_requests", "http_requests_total", f'code="500",{lab}', np.cumsum(err))
            # requests at or below each bucket bound: a binomial chain, cumulative per bound
            at_most = np.zeros(t.size, dtype=np.int64)
            done = 0.0
            for le, p in zip(LE, (0.5, 0.8, 0.95, 0.99, 1.0), strict=True):
                more = req - at_most if le == "+Inf" else rng.binomial(req - at_most, (p - done) / (1 - done))
                at_most = at_most + more
                done = p
                series(
                    "http_request_duration_seconds",
                    "http_request_duration_seconds_bucket",
                    f'{lab},le="{le}"',
                    np.cumsum(at_most),
                )
            series(
                "http_request_duration_seconds", "http_request_duration_seconds_count", lab, np.cumsum(req)
            )
            probe = np.ones(t.size)
            gauge("probe_success", "probe_success", f'{lab},probe="health"', probe)
            claims = rng.poisson(5 * share * STEP_S, t.size)
            series("stamps_claims", "stamps_claims_total", lab, np.cumsum(claims))
            series(
                "stamps_token_reuse", "stamps_token_reuse_total", lab, np.cumsum(rng.binomial(claims, 0.0005))
            )
            attempts = rng.poisson(3 * share * STEP_S, t.size)
            series("device_proof_attempts", "device_proof_attempts_total", lab, np.cumsum(attempts))
            series(
                "device_proof_failures",
                "device_proof_failures_total",
                lab,
                np.cumsum(rng.binomial(attempts, 0.005)),
            )
            for tenant in TENANTS:
                gauge(
                    "cost_per_tenant",
                    "cost_per_tenant",
                    f'{lab},tenant="{tenant}"',
                    0.01 + rng.normal(0, 0.0005, t.size),
                )
            samples += t.size * (2 + len(LE) + 1 + 1 + 4 + len(TENANTS))
    kinds = {
        "http_requests": "counter",
        "http_request_duration_seconds": "histogram",
        "probe_success": "gauge",
        "stamps_token_reuse": "counter",
        "stamps_claims": "counter",
        "device_proof_failures": "counter",
        "device_proof_attempts": "counter",
        "cost_per_tenant": "gauge",
    }
    with path.open("w") as f:
        for family, lines in families.items():
            f.write(f"# TYPE {family} {kinds[family]}\n")
            f.writelines(lines)
        f.write("# EOF\n")
    return samples, [_service(i) for i in bad]


# ----------------------------------------------------------------------------- one run


def prometheus_query_seconds(url: str) -> float:
    """Prometheus's own time spent evaluating queries so far (all slices), from its /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "prometheus_engine_query_duration_seconds":
            total += sum(s.value for s in family.samples if s.name.endswith("_sum"))
    return total


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``VmHWM`` is the high-water mark of the
    process's own address space; ``ru_maxrss`` survives ``exec`` and would report the parent's
    (which holds the generated history) for a child that never came near it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(mode: str, n: int, url: str, ticks: int, workdir: Path) -> dict[str, Any]:
    """Watch N deploys for 1 + ``ticks`` ticks; what it cost (in this process)."""
    from watchdog.app import build_source
    from watchdog.clock import SimClock
    from watchdog.config import WatchdogConfig
    from watchdog.engine import Engine
    from watchdog.heap import HeapKeeper
    from watchdog.sources.batch import BatchedSource
    from watchdog.store import ReleaseRef, Store

    store_path = workdir / f"{mode}.db"
    store_path.unlink(missing_ok=True)
    cfg = WatchdogConfig.model_validate(config_doc(n, url, batch=mode == "batched", store=str(store_path)))
    clock = SimClock(DEPLOY_AT)
    store = Store.open(cfg.store.url)
    source = build_source(cfg, clock)
    counter = _Counting(source.inner if isinstance(source, BatchedSource) else source)
    if isinstance(source, BatchedSource):
        source.inner = counter
    else:
        source = counter
    engine = Engine(cfg, store, source, clock)
    for svc in cfg.services:
        engine.pin("prod", svc.name, ReleaseRef("v1.0.0"), actor="scale", reason="start")
        engine.announce("prod", svc.name, ReleaseRef("v1.1.0"), deployed_at=DEPLOY_AT, source="scale")
    cpu, queries, prom = [], [], []
    heap = HeapKeeper()  # as the daemon keeps its heap (its full collections are counted in)
    for _ in range(ticks + 1):
        clock.advance(STEP_S)
        counter.n = 0
        p0, c0 = prometheus_query_seconds(url), time.process_time()
        engine.tick()
        heap.after_tick()
        cpu.append(time.process_time() - c0)
        print(
            f"  {mode} tick {len(cpu)}: {cpu[-1]:.2f} CPU-s, {counter.n} queries, "
            f"peak RSS {peak_rss_mb():.0f} MB",
            file=sys.stderr,
            flush=True,
        )
        prom.append(prometheus_query_seconds(url) - p0)
        queries.append(counter.n)
    decisions = sorted(
        (e.service, e.kind, e.result, e.at)
        for e in store.decisions(env="prod")
        if e.kind not in ("pin", "watch_started")
    )
    rss_mb = peak_rss_mb()
    return {
        "mode": mode,
        "first_tick_cpu_s": cpu[0],
        "first_tick_queries": queries[0],
        "cpu_s_per_tick": float(np.mean(cpu[1:])),
        "queries_per_tick": float(np.mean(queries[1:])),
        "max_queries_per_tick": max(queries[1:]),
        "prometheus_s_per_tick": float(np.mean(prom[1:])),
        "rss_mb": rss_mb,
        "faults": engine.faults,
        "decisions": decisions,
        "ticks": ticks,
    }


class _Counting:
    """Counts the queries the engine's source sends."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.n = inner, inner.name, 0

    def fetch(self, selector: Any, start: float, end: float) -> Any:
        self.n += 1
        return self.inner.fetch(selector, start, end)

    def fetch_expr(self, expr: str, start: float, end: float, step_s: float) -> Any:
        self.n += 1
        return self.inner.fetch_expr(expr, start, end, step_s)


def _child(mode: str, n: int, url: str, ticks: int, workdir: Path) -> dict[str, Any]:
    """``run`` in a fresh interpreter, so that its CPU and peak memory are its own."""
    out = subprocess.run(
        [
            *(sys.executable, __file__, "--child", mode, "--services", str(n), "--url", url),
            *("--ticks", str(ticks), "--keep", str(workdir)),
        ],
        check=True,
        stdout=subprocess.PIPE,  # progress goes to stderr as it happens
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--ticks", type=int, default=20, help="measured ticks after the first (>= 20)")
    p.add_argument(
        "--baseline-ticks", type=int, default=5, help="measured ticks of the per-service run (0: none)"
    )
    p.add_argument("--regressed", type=float, default=0.02, help="share of services whose canary regresses")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", type=Path, help="work directory (kept); default: a temporary one")
    p.add_argument("--child", choices=("batched", "per-service"), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run(args.child, args.services, args.url, args.ticks, args.keep)))
        return 0
    from tests.fixtures.prometheus import run_prometheus

    with tempfile.TemporaryDirectory(prefix="wd-scale-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        n, ticks = args.services, args.ticks
        end = DEPLOY_AT + (ticks + 2) * STEP_S
        t0 = time.monotonic()
        om = work / "history.om"
        samples, bad = write_history(om, n, end, args.seed, args.regressed)
        print(
            f"history: {n} services, {samples / 1e6:.1f}M samples, {len(bad)} regressed "
            f"({time.monotonic() - t0:.0f}s)",
            flush=True,
        )
        t0 = time.monotonic()
        with run_prometheus([], openmetrics=om.read_text()) as prom:
            print(
                f"prometheus: backfilled and ready at {prom.url} ({time.monotonic() - t0:.0f}s)", flush=True
            )
            runs = {"batched": _child("batched", n, prom.url, ticks, work)}
            if args.baseline_ticks:
                runs["per-service"] = _child("per-service", n, prom.url, args.baseline_ticks, work)
    ours = runs["batched"]
    for name, r in runs.items():
        print(
            f"{name:>11}: first tick {r['first_tick_cpu_s']:.2f} CPU-s / {r['first_tick_queries']} queries; "
            f"then per tick {r['cpu_s_per_tick']:.3f} CPU-s, {r['queries_per_tick']:.1f} queries "
            f"(max {r['max_queries_per_tick']}), prometheus {r['prometheus_s_per_tick']:.3f} s; "
            f"peak RSS {r['rss_mb']:.0f} MB; {r['ticks']} ticks; {r['faults']} faults"
        )
    ratio = float("nan")
    if "per-service" in runs:
        base = runs["per-service"]
        ratio = base["cpu_s_per_tick"] / ours["cpu_s_per_tick"]
        last = DEPLOY_AT + (base["ticks"] + 1) * STEP_S
        mine = [d for d in ours["decisions"] if d[3] <= last]
        same = mine == base["decisions"]
        print(f"decisions up to the per-service run's last tick: {len(mine)} each, identical: {same}")
    rolled = {d[0] for d in ours["decisions"] if d[1] == "rollback_decided"}
    print(f"rolled back {len(rolled & set(bad))} of {len(bad)} regressed, {len(rolled - set(bad))} others")
    print(
        f"scale: services={n} signals={SIGNALS} ticks={ours['ticks']} "
        f"cpu_s_per_tick={ours['cpu_s_per_tick']:.3f} queries_per_tick={ours['queries_per_tick']:.1f} "
        f"rss_mb={ours['rss_mb']:.0f} naive_cpu_ratio={ratio:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
