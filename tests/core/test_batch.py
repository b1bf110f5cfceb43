"""Batched reads: one range query per selector shape for every watch, split by labels.

The planning and the cache are checked on their own (which group serves which read, the one
matcher covering all services, late samples, backfill for a watch that joins, a failed query),
and then end to end: scenarios of the benchmark generator backfilled into Debian's Prometheus and
watched at the same time (started at different ticks) decide exactly as they do when every watch
asks Prometheus alone, with at most two queries per signal and tick.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.generate import generate_one, scenario_rng
from tests.fixtures.prometheus import free_port, run_prometheus
from watchdog.bench import bench_config
from watchdog.clock import SimClock
from watchdog.config import WatchdogConfig
from watchdog.engine import Engine
from watchdog.errors import SourceUnavailable
from watchdog.openmetrics import export_scenario
from watchdog.series import Matcher, Selector, Series
from watchdog.sources.batch import BatchedSource, Need, combine, re2_literal, service_matchers
from watchdog.sources.prometheus import LONG_QUERY, PrometheusSource
from watchdog.sources.replay import ReplaySource
from watchdog.store import ReleaseRef, Store

# ----------------------------------------------------------------------------- planning


def _need(metric: str, service: str, start: float = 0.0, end: float = 100.0, **labels: str) -> Need:
    match = {"job": service}
    sel = Selector.of(metric, {**labels, **match})
    return Need(sel, service_matchers(sel, match), start, end)


def test_a_narrower_selector_of_a_metric_is_served_by_the_broader_ones_query() -> None:
    needs = []
    for svc in ("a", "b", "c"):
        needs += [
            _need("http_requests_total", svc, code="=~5.."),  # http_5xx bad
            _need("http_requests_total", svc),  # http_5xx total
            _need("http_requests_total", svc, route="=~/v1/.*", code="=~5.."),  # core routes bad
            _need("http_requests_total", svc, route="=~/v1/.*"),
            _need("probe_success", svc, probe="health"),
            _need("stamps_claims_total", svc),
        ]
    plan = BatchedSource(_Recorder([])).plan(needs)
    assert {(metric, frozenset(m.label for m in shape)) for metric, shape in plan} == {
        ("http_requests_total", frozenset()),
        ("probe_success", frozenset({"probe"})),
        ("stamps_claims_total", frozenset()),
    }
    assert len(plan[("http_requests_total", frozenset())]) == 12


def test_one_matcher_covers_every_service_and_nothing_it_should_not() -> None:
    services = [(Matcher("job", "=", v),) for v in ("api", "api.v2", "a+b", "x|y")]
    (m,) = combine(services)
    assert m.label == "job" and m.op == "=~"
    pattern = re.compile(m.value)  # RE2 and Python agree on this subset; Prometheus anchors it
    for v in ("api", "api.v2", "a+b", "x|y"):
        assert pattern.fullmatch(v), v
    for v in ("apiXv2", "aab", "x", "y", "api2"):
        assert not pattern.fullmatch(v), v
    assert re2_literal("a.b(c)") == r"a\.b\(c\)"
    # a label only some services match on is left out (the split by labels takes each its own)
    mixed = [(Matcher("job", "=", "a"), Matcher("ns", "=", "x")), (Matcher("job", "=", "b"),)]
    assert combine(mixed) == (Matcher("job", "=~", "a|b"),)
    same = [(Matcher("ns", "=", "x"), Matcher("job", "=", v)) for v in ("a", "b")]
    assert Matcher("ns", "=", "x") in combine(same)


# ----------------------------------------------------------------------------- the cache


class _Recorder:
    """A source holding fixed series, answering [start, end] and recording each question."""

    name = "recorder"

    def __init__(self, series: list[Series]) -> None:
        self.series = series
        self.asked: list[tuple[str, float, float]] = []
        self.fail = False

    def fetch(self, selector: Selector, start: float, end: float) -> list[Series]:
        self.asked.append((selector.promql(), start, end))
        if self.fail:
            raise SourceUnavailable("down")
        pattern = selector.with_matchers()  # the recorder matches as Prometheus would: anchored
        return [
            s.between(start, end)
            for s in self.series
            if pattern.matches(s.labels) and s.between(start, end).t.size
        ]


def _counter(job: str, code: str, step: float = 15.0, n: int = 200) -> Series:
    t = np.arange(n) * step
    labels = {"__name__": "http_requests_total", "job": job, "code": code}
    return Series(labels, t, np.cumsum(np.ones(n) * (3 if code == "500" else 10)))


def _reads(src: BatchedSource, needs: list[Need]) -> list[list[Series]]:
    return [src.fetch(n.selector, n.start, n.end) for n in needs]


def _same(a: list[Series], b: list[Series]) -> None:
    key = lambda s: sorted(s.labels.items())  # noqa: E731
    assert [key(s) for s in sorted(a, key=key)] == [key(s) for s in sorted(b, key=key)]
    for x, y in zip(sorted(a, key=key), sorted(b, key=key), strict=True):
        assert x.t.tolist() == y.t.tolist() and x.v.tolist() == y.v.tolist()


def test_each_read_gets_what_the_source_would_have_answered_it_alone() -> None:
    data = [_counter(j, c) for j in ("a", "b", "c") for c in ("200", "500")]
    direct = _Recorder(data)
    inner = _Recorder(data)
    src = BatchedSource(inner, settle_s=30)
    for now in (600.0, 615.0, 630.0, 1200.0):
        needs = [_need("http_requests_total", j, now - 300, now, code="=~5..") for j in ("a", "b", "c")]
        needs += [_need("http_requests_total", j, now - 300, now) for j in ("a", "b", "c")]
        before = len(inner.asked)
        src.prepare(needs, now)
        assert len(inner.asked) - before == 1  # one query for six reads
        for need, got in zip(needs, _reads(src, needs), strict=True):
            _same(got, direct.fetch(need.selector, need.start, need.end))
    # after the first, each query reaches back only `settle_s` into what it already holds
    (q1, s1, e1), (_, s2, e2) = inner.asked[0], inner.asked[1]
    assert 'job=~"a|b|c"' in q1 and "code" not in q1
    assert (s1, e1, s2, e2) == (300.0, 600.0, 570.0, 615.0)


def test_a_late_sample_inside_the_settle_time_is_read() -> None:
    data = [_counter("a", "200")]
    inner = _Recorder(data)
    src = BatchedSource(inner, settle_s=30)
    src.prepare([_need("http_requests_total", "a", 0, 600)], 600.0)
    late = Series(data[0].labels, np.append(data[0].t, 598.0), np.append(data[0].v, 1.0))
    ordered = np.argsort(late.t, kind="stable")
    inner.series = [Series(late.labels, late.t[ordered], late.v[ordered])]
    need = _need("http_requests_total", "a", 300, 615)
    src.prepare([need], 615.0)
    (got,) = src.fetch(need.selector, need.start, need.end)
    assert 598.0 in got.t.tolist()


def test_a_watch_that_joins_is_backfilled_in_one_more_query_for_all_who_joined() -> None:
    data = [_counter(j, "200") for j in ("a", "b", "c", "d")]
    inner = _Recorder(data)
    src = BatchedSource(inner)
    src.prepare([_need("http_requests_total", "a", 0, 600)], 600.0)
    needs = [_need("http_requests_total", "a", 300, 615)]
    needs += [_need("http_requests_total", j, 0, 615) for j in ("b", "c", "d")]  # three new watches
    before = len(inner.asked)
    src.prepare(needs, 615.0)
    assert len(inner.asked) - before == 2
    assert 'job=~"b|c|d"' in inner.asked[-1][0] and inner.asked[-1][1] == 0.0
    for need, got in zip(needs, _reads(src, needs), strict=True):
        _same(got, _Recorder(data).fetch(need.selector, need.start, need.end))


def test_a_failed_query_blinds_its_reads_and_the_next_tick_catches_up() -> None:
    data = [_counter(j, "200") for j in ("a", "b")]
    inner = _Recorder(data)
    src = BatchedSource(inner, settle_s=0)
    src.prepare([_need("http_requests_total", j, 0, 600) for j in ("a", "b")], 600.0)
    inner.fail = True
    needs = [_need("http_requests_total", j, 300, 615) for j in ("a", "b")]
    src.prepare(needs, 615.0)
    for n in needs:
        with pytest.raises(SourceUnavailable):
            src.fetch(n.selector, n.start, n.end)
    inner.fail = False
    needs = [_need("http_requests_total", j, 300, 630) for j in ("a", "b")]
    src.prepare(needs, 630.0)
    assert inner.asked[-1][1] == 600.0  # from where the last good answer ended
    for need, got in zip(needs, _reads(src, needs), strict=True):
        _same(got, _Recorder(data).fetch(need.selector, need.start, need.end))


def test_a_read_nobody_planned_goes_to_the_source() -> None:
    inner = _Recorder([_counter("a", "200")])
    src = BatchedSource(inner)
    src.prepare([], 600.0)
    sel = Selector.of("http_requests_total", {"job": "a"})
    assert len(src.fetch(sel, 0, 600)) == 1 and src.queries == 1


def _random_answer(rng: np.random.Generator, start: float, end: float, keys: list[str]) -> list[Series]:
    """Series over ``[start, end]`` at a 15 s step with the faults an answer can hold: a sample
    missing, samples out of time order, a time that is not a number, a series answered twice."""
    out = []
    for name in keys:
        phase = 5.0 * (int(name[1:]) % 3)  # each series scraped at its own phase, some on the grid
        t = np.arange(start, end + 1e-9, 15.0) + phase
        t = t[(t <= end) & (rng.random(t.size) > 0.1)]
        fault = rng.random()
        if fault < 0.05 and t.size > 2:
            t[[0, 1]] = t[[1, 0]]
        elif fault < 0.08 and t.size:
            t[-1] = np.nan
        v = np.cumsum(rng.integers(0, 5, t.size)).astype(float)
        labels = {"__name__": "m", "job": name}
        out.append(Series(labels, t, v))
        if fault > 0.97:
            out.append(Series(labels, t.copy(), v + 1))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_held_series_joined_at_once_are_the_ones_joined_one_by_one(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's held samples and each answer are joined in one pass (``_Group._join``): the
    same samples, order and time order, tick by tick, as joining each series alone — with series
    that stop, start, are answered twice or out of order."""
    from watchdog.sources import batch

    def run(at_once: bool) -> list[list[tuple[str, list[float], list[float], bool]]]:
        monkeypatch.setattr(batch, "JOIN_AT_ONCE", 1 << 40 if at_once else -1)
        monkeypatch.setattr(batch, "JOIN_CHUNK", 7)  # (several passes an answer)
        rng = np.random.default_rng(seed)
        group = batch._Group("m", frozenset())
        names = [f"s{i}" for i in range(30)]
        ticks = []
        for tick in range(12):
            now = 1_700_000_000.0 + 15.0 * tick
            start, keep_from = now - 45.0, now - 90.0
            live = [n for n in names if rng.random() > 0.1]
            group.merge(_random_answer(rng, start, now, live), start, keep_from, whole=tick % 4 != 3)
            ticks.append(
                [
                    (c.key[3], c.t.tolist(), c.v.tolist(), c.ordered)
                    for _, copies in sorted(group.series.items())
                    for c in copies
                ]
            )
        return ticks

    one_by_one, at_once = run(False), run(True)
    assert sum(len(t) for t in at_once) > 200
    assert repr(at_once) == repr(one_by_one)  # (repr: NaN times compare equal, as they should here)


# ----------------------------------------------------------------------------- end to end

#: Regressions and healthy deploys, watched at once, deploys one tick apart.
PICKS = (("err_step", 3), ("lat_shift", 2), ("aa_basic", 1), ("token_reuse_rise", 4), ("aa_basic", 5))
SEED = 3
BASE = 1_764_000_000.0


def _watch_all(cfg: WatchdogConfig, source: Any, deploys: dict[str, tuple[float, float]]) -> list[Any]:
    store = Store.open("sqlite://")
    clock = SimClock(min(d for d, _ in deploys.values()))
    engine = Engine(cfg, store, source, clock, step_s=cfg.tick_s)
    pending = dict(deploys)
    end = max(e for _, e in deploys.values())
    while clock.now() <= end + 1e-6:
        for name, (at, _) in list(pending.items()):
            if at <= clock.now():
                engine.pin("prod", name, ReleaseRef("v1.0.0"), actor="test", reason="start")
                engine.announce("prod", name, ReleaseRef("v1.1.0"), deployed_at=at, source="test")
                del pending[name]
        engine.tick()
        clock.advance(cfg.tick_s)
    return [
        (e.service, e.kind, e.result, round(e.at, 3), e.reason)
        for e in store.decisions(env="prod")
        if e.kind not in ("pin",)
    ]


@pytest.mark.slow
def test_watches_read_together_decide_as_watches_read_alone(tmp_path: Path) -> None:
    dirs = [generate_one(tmp_path / "sc", family, scenario_rng(SEED, i), i) for family, i in PICKS]
    texts, services, deploys = [], [], {}
    cfg0 = bench_config(ReplaySource(dirs[0]))
    for k, d in enumerate(dirs):
        start = BASE + k * cfg0.tick_s  # each deploy a tick after the one before
        done = export_scenario(d, start=start, labels={"service": f"svc{k}"})
        texts.append(done.text.removesuffix("# EOF\n"))
        svc = (
            bench_config(ReplaySource(d))
            .services[0]
            .model_copy(update={"name": f"svc{k}", "match": {"service": f"svc{k}"}})
        )
        services.append(svc)
        deploys[f"svc{k}"] = (done.scenario.deploy_at + done.shift_s, done.scenario.end + done.shift_s)
    with run_prometheus([], openmetrics="".join(texts) + "# EOF\n") as prom:
        cfg = cfg0.model_copy(update={"services": services})
        alone = PrometheusSource(prom.url)
        counted = _Counting(alone)
        by_watch = _watch_all(cfg, counted, deploys)
        batched = BatchedSource(_Counting(PrometheusSource(prom.url)), settle_s=30)
        together = _watch_all(cfg, batched, deploys)
    assert together == by_watch
    kinds = Counter((s, k) for s, k, *_ in together)
    assert kinds[("svc0", "rollback_decided")] == 1 and kinds[("svc2", "promoted")] == 1
    signals = max(len(s.signals) for s in services)
    assert batched.inner.most_per_tick <= 2 * signals
    assert batched.inner.total * 3 < counted.total  # and far fewer queries in all


class _Counting:
    """Counts the queries a source is asked, per distinct end time (one tick)."""

    def __init__(self, inner: PrometheusSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.per_end: Counter[float] = Counter()

    def fetch(self, selector: Selector, start: float, end: float) -> list[Series]:
        self.per_end[end] += 1
        return self.inner.fetch(selector, start, end)

    def fetch_expr(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        self.per_end[end] += 1
        return self.inner.fetch_expr(expr, start, end, step_s)

    @property
    def total(self) -> int:
        return sum(self.per_end.values())

    @property
    def most_per_tick(self) -> int:
        return max(self.per_end.values())


def test_a_query_too_long_for_a_url_is_posted_and_named_short_in_errors() -> None:
    names = [f"service-with-a-long-name-{i:05d}" for i in range(400)]
    history = "# TYPE http_requests counter\n"
    for name in names[:3]:
        history += "".join(
            f'http_requests_total{{job="{name}"}} {k} {BASE + 15 * k:.3f}\n' for k in range(20)
        )
    with run_prometheus([], openmetrics=history + "# EOF\n") as prom:
        src = BatchedSource(PrometheusSource(prom.url))
        needs = [_need("http_requests_total", name, BASE, BASE + 300) for name in names]
        src.prepare(needs, BASE + 300)
        assert src.queries == 1
        got = {n.service[0].value: src.fetch(n.selector, n.start, n.end) for n in needs}
        assert [len(got[name]) for name in names[:4]] == [1, 1, 1, 0]
        assert got[names[0]][0].t.size == 20
        wrong = Selector("http_requests_total", combine([n.service for n in needs]))
        with pytest.raises(SourceUnavailable) as err:
            PrometheusSource(f"http://127.0.0.1:{free_port()}").fetch(wrong, BASE, BASE + 1)
    assert len(wrong.promql()) > LONG_QUERY  # sent as a form body: no URL would have held it
    assert "characters)" in str(err.value) and len(str(err.value)) < 1000


def test_a_selectors_kept_hash_is_not_carried_to_another_process() -> None:
    """Selectors and matchers keep their hash once found (every read of a tick looks them up), but
    a pickled one (a benchmark's worker, another process) finds its own: strings hash differently
    in another interpreter, and a carried hash would miss every lookup there."""
    import pickle
    import subprocess
    import sys

    sel = Selector.of("http_requests_total", {"code": "=~5..", "service": "a"})
    assert hash(sel) == hash(Selector.of("http_requests_total", {"code": "=~5..", "service": "a"}))
    blob = pickle.dumps(sel)
    script = (
        "import pickle, sys; from watchdog.series import Selector\n"
        "got = pickle.loads(sys.stdin.buffer.read())\n"
        "fresh = Selector.of('http_requests_total', {'code': '=~5..', 'service': 'a'})\n"
        "assert {fresh: 1}[got] == 1 and {fresh.matchers[0]: 1}[got.matchers[0]] == 1\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=blob, capture_output=True, env={"PYTHONHASHSEED": "7"}
    )
    assert done.returncode == 0, done.stderr.decode()
