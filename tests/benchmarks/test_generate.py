"""The scenario generator writes the fixed format exactly, deterministically, with the truth it claims."""

from __future__ import annotations

import copy
import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from benchmarks.generate import (
    FAMILIES,
    SIGNALS,
    build_world,
    generate_corpus,
    generate_one,
    main,
    plan_corpus,
    render,
    scenario_rng,
)
from benchmarks.world import STEP_S, World
from watchdog.series import Selector, sum_increase_by
from watchdog.sources.replay import SLO_KEYS, ReplaySource

COUNTERS = {
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "http_request_duration_seconds_count",
    "http_request_duration_seconds_sum",
    "stamps_claims_total",
    "stamps_token_reuse_total",
    "device_proof_attempts_total",
    "device_proof_failures_total",
}
GAUGES = {"probe_success", "cost_per_tenant"}
LE_ORDER = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.2", "0.3", "0.5", "0.8", "1", "2.5", "5", "+Inf")
SEED = 7


def read(path: Path, name: str) -> Any:
    return json.loads((path / name).read_text())


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One scenario of every family, generated once for the module."""
    out = tmp_path_factory.mktemp("families")
    return {f: generate_one(out, f, scenario_rng(SEED, i), i) for i, f in enumerate(FAMILIES)}


def pick(tmp_path: Path, family: str, good_enough: Any) -> Path:
    """The first scenario of ``family`` (in index order, so deterministic) whose truth passes the filter."""
    for i in range(300):
        path = generate_one(tmp_path, family, scenario_rng(SEED, i), i)
        if good_enough(read(path, "truth.json")):
            return path
    raise AssertionError(f"no {family} scenario passed the filter")


def check_meta(meta: dict[str, Any]) -> None:
    assert meta["format"] == 1 and type(meta["format"]) is int
    for key in ("name", "service", "env"):
        assert isinstance(meta[key], str) and meta[key]
    for key in ("start", "deploy_at", "end"):
        assert type(meta[key]) is float
    assert meta["start"] <= meta["deploy_at"] < meta["end"]
    assert meta["deploy_at"] - meta["start"] == 1200.0 and meta["end"] - meta["deploy_at"] == 1800.0
    assert meta["step_s"] == 15 and type(meta["step_s"]) in (int, float)
    assert type(meta["canary"]) is bool
    assert set(meta["release"]) == {"from", "to"} and all(
        isinstance(v, str) for v in meta["release"].values()
    )
    assert set(meta["slo"]) <= set(SLO_KEYS)
    assert all(type(v) is float and v > 0 for v in meta["slo"].values())


def check_series(meta: dict[str, Any], truth: dict[str, Any], data: dict[str, Any]) -> None:
    assert set(data) == {"resultType", "result"} and data["resultType"] == "matrix"
    cohorts = {"baseline", "canary"} if meta["canary"] else {"all"}
    resets: dict[str, list[float]] = defaultdict(list)
    for r in truth["resets"]:
        resets[r["cohort"]].append(r["at"])
    histograms: dict[tuple[str, str], dict[str, dict[float, float]]] = defaultdict(dict)
    for item in data["result"]:
        labels, values = item["metric"], item["values"]
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        name = labels["__name__"]
        assert name in COUNTERS | GAUGES and labels["cohort"] in cohorts
        assert values and all(type(t) is float and isinstance(v, str) for t, v in values)
        times = [t for t, _ in values]
        assert all(meta["start"] <= t <= meta["end"] and (t - meta["start"]) % 15 == 0 for t in times)
        assert times == sorted(set(times))
        nums = [float(v) for _, v in values]
        assert all(math.isfinite(v) and v >= 0 for v in nums)
        if name in COUNTERS:
            allowed = {next((t for t in times if t >= at), None) for at in resets[labels["cohort"]]}
            drops = [t for (t, _), a, b in zip(values[1:], nums, nums[1:], strict=False) if b < a]
            assert all(t in allowed for t in drops), (labels, drops, allowed)
            if name != "http_request_duration_seconds_sum":
                assert all(v == int(v) and "." not in s for v, (_, s) in zip(nums, values, strict=True))
        if name == "probe_success":
            assert {v for _, v in values} <= {"0", "1"}
        if name.startswith("http_request_duration_seconds_") and not name.endswith("_sum"):
            key = (labels["cohort"], labels.get("instance", ""))
            histograms[key][labels.get("le", "count")] = dict(zip(times, nums, strict=True))
    assert histograms, "no latency histogram"
    for buckets in histograms.values():
        assert set(buckets) == {*LE_ORDER, "count"}
        for t in buckets["+Inf"]:
            column = [buckets[le][t] for le in LE_ORDER]
            assert column == sorted(column)
            assert buckets["+Inf"][t] == buckets["count"][t]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_writes_the_format_and_replays(scenarios: dict[str, Path], family: str) -> None:
    path = scenarios[family]
    meta, truth = read(path, "meta.json"), read(path, "truth.json")
    check_meta(meta)
    assert meta["name"] == path.name and path.name.startswith(f"{family}-")
    check_series(meta, truth, read(path, "series.json"))
    src = ReplaySource(path)
    assert src.scenario.canary == FAMILIES[family].canary
    requests = src.fetch(Selector.of("http_requests_total"), src.scenario.start, src.scenario.end)
    assert {s.labels["code"] for s in requests} >= {"200", "500"}
    assert {s.labels["route"] for s in requests} == {"/v1/stamps/claim", "/v1/rewards/redeem", "/health"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_truth_says_what_the_family_is(scenarios: dict[str, Path], family: str) -> None:
    meta, truth = read(scenarios[family], "meta.json"), read(scenarios[family], "truth.json")
    assert truth["kind"] == truth["family"] == family
    if FAMILIES[family].healthy:
        assert truth["regression"] is False and truth["onset"] is None
        assert truth["signals"] == [] and truth["effect"] is None
    else:
        # a regression starts with the release, or when it crashes (crash_loop)
        assert truth["regression"] is True and truth["onset"] == truth.get("crash_at", meta["deploy_at"])
        assert meta["deploy_at"] <= truth["onset"] < meta["end"]
        assert truth["signals"] and set(truth["signals"]) <= set(SIGNALS)
        frm, to = truth["effect"]["from"], truth["effect"]["to"]
        assert type(frm) is float and type(to) is float and 0 <= frm < to


def test_the_reset_family_resets_the_canary_at_deploy(scenarios: dict[str, Path]) -> None:
    path = scenarios["aa_reset"]
    meta, truth = read(path, "meta.json"), read(path, "truth.json")
    assert truth["resets"] == [{"cohort": "canary", "at": meta["deploy_at"]}]
    count = next(
        item["values"]
        for item in read(path, "series.json")["result"]
        if item["metric"]["__name__"] == "http_request_duration_seconds_count"
        and item["metric"]["cohort"] == "canary"
    )
    before = [float(v) for t, v in count if t < meta["deploy_at"]]
    after = [float(v) for t, v in count if t >= meta["deploy_at"]]
    assert after[0] < before[-1]
    assert after == sorted(after)


def test_flap_is_one_failed_canary_probe_in_the_watch(scenarios: dict[str, Path]) -> None:
    path = scenarios["aa_flap"]
    deploy_at = read(path, "meta.json")["deploy_at"]
    failed = [
        (item["metric"]["cohort"], t)
        for item in read(path, "series.json")["result"]
        if item["metric"]["__name__"] == "probe_success"
        for t, v in item["values"]
        if v == "0"
    ]
    assert len(failed) == 1 and failed[0][0] == "canary" and failed[0][1] > deploy_at


def error_ratio(src: ReplaySource, cohort: str, start: float, end: float) -> tuple[float, float]:
    """(5xx, requests) of a cohort in ``(start, end]``, counted as the watchdog counts them.

    The fetch looks back five minutes, as the engine does, so a missed scrape at ``start`` does not
    make every counter look newly created.
    """
    series = src.fetch(Selector.of("http_requests_total"), start - 300, end)
    by = sum_increase_by(series, ["cohort", "code"], start, end)
    bad = sum(v for (c, code), v in by.items() if c == cohort and code.startswith("5"))
    return bad, sum(v for (c, _), v in by.items() if c == cohort)


def test_err_step_raises_the_canary_error_ratio(tmp_path: Path) -> None:
    def big(t: dict[str, Any]) -> bool:
        after_requests = t["rps"] * t["canary_share"] * 1800
        return after_requests * t["effect"]["to"] >= 100 and t["multiplier"] >= 3

    src = ReplaySource(pick(tmp_path, "err_step", big))
    sc, truth = src.scenario, read(src.scenario.path, "truth.json")
    bad0, n0 = error_ratio(src, "canary", sc.start, sc.deploy_at)
    bad1, n1 = error_ratio(src, "canary", sc.deploy_at, sc.end)
    before, after = bad0 / n0, bad1 / n1
    assert after > 2 * before
    assert after == pytest.approx(truth["effect"]["to"], rel=0.35)
    base_bad, base_n = error_ratio(src, "baseline", sc.deploy_at, sc.end)
    assert after > 2 * base_bad / base_n


def test_aa_basic_canary_and_baseline_error_ratios_agree(tmp_path: Path) -> None:
    def enough(t: dict[str, Any]) -> bool:
        return t["rps"] * t["canary_share"] * 3000 * t["base_error_rate"] >= 30

    src = ReplaySource(pick(tmp_path, "aa_basic", enough))
    sc = src.scenario
    bad_c, n_c = error_ratio(src, "canary", sc.start, sc.end)
    bad_b, n_b = error_ratio(src, "baseline", sc.start, sc.end)
    p = (bad_c + bad_b) / (n_c + n_b)
    se = math.sqrt(p * (1 - p) * (1 / n_c + 1 / n_b))
    assert abs(bad_c / n_c - bad_b / n_b) < 5 * se


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}

    generate_corpus(tmp_path / "a", 8, seed=11)
    generate_corpus(tmp_path / "b", 8, seed=11, jobs=2)
    generate_corpus(tmp_path / "c", 8, seed=12)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(a) == 24 and a == b
    assert a != c
    shared = set(a) & set(c)
    assert all(a[k] != c[k] for k in shared if k.endswith("series.json"))


def test_corpus_mix(tmp_path: Path) -> None:
    paths = generate_corpus(tmp_path, 60, seed=3)
    families = Counter(p.name.rsplit("-", 1)[0] for p in paths)
    assert len(paths) == 60 and len({p.name for p in paths}) == 60
    assert sum(k for f, k in families.items() if FAMILIES[f].healthy) >= 0.55 * 60
    assert set(families) == set(FAMILIES)  # 33 healthy >= 16 families, 27 regressions >= 14: one each first
    for p in paths:
        assert read(p, "truth.json")["kind"] == p.name.rsplit("-", 1)[0]


def test_default_mix_of_a_full_corpus() -> None:
    plan = Counter(plan_corpus(2000, seed=1))
    healthy = sum(k for f, k in plan.items() if FAMILIES[f].healthy)
    assert sum(plan.values()) == 2000 and healthy >= 1000
    assert plan["aa_basic"] > max(k for f, k in plan.items() if FAMILIES[f].healthy and f != "aa_basic")
    assert plan["err_step"] / (2000 - healthy) == pytest.approx(0.25, abs=0.01)
    assert plan_corpus(2000, seed=1) != plan_corpus(2000, seed=2)


def test_family_subset_and_unknown_family() -> None:
    assert set(plan_corpus(10, 1, families=["aa_basic", "err_step"])) == {"aa_basic", "err_step"}
    assert set(plan_corpus(10, 1, families=["lat_tail"])) == {"lat_tail"}
    with pytest.raises(ValueError, match="unknown families: nope"):
        plan_corpus(10, 1, families=["nope"])


def test_regenerating_smaller_removes_stale_scenarios_only(tmp_path: Path) -> None:
    generate_corpus(tmp_path, 6, seed=1)
    (tmp_path / "notes").mkdir()
    kept = generate_corpus(tmp_path, 3, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in kept), "notes"])


def test_cli_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--out", str(tmp_path), "--count", "4", "--seed", "2", "--families", "aa_basic,err_step"]) == 0
    )
    out = capsys.readouterr().out
    assert "aa_basic" in out and "err_step" in out and "(2 healthy, 2 regressions)" in out
    assert len(list(tmp_path.iterdir())) == 4


# Data faults: the data lies, the release may not.

DATA_FAULTS = [
    "aa_scrape_gap",
    "ba_scrape_gap",
    "ba_no_restart",
    "aa_restart",
    "ba_restart",
    "aa_tiny_share",
    "blind_canary",
    "ba_no_restart_err_step",
    "crash_loop",
    "tiny_share_err_step",
]
SeriesKey = tuple[tuple[str, str], ...]


def pick_world(family: str, good_enough: Any) -> World:
    """The first world of ``family`` (in index order) that passes the filter, not yet sampled."""
    for i in range(300):
        w = build_world(family, scenario_rng(SEED, i), i)
        if good_enough(w):
            return w
    raise AssertionError(f"no {family} world passed the filter")


def sampled(w: World) -> dict[SeriesKey, dict[float, float]]:
    """The world's series as ``{labels: {t: value}}``."""
    out = {}
    for item in map(json.loads, render(w)):
        out[tuple(sorted(item["metric"].items()))] = {t: float(v) for t, v in item["values"]}
    return out


def with_twin(w: World) -> tuple[dict[SeriesKey, dict[float, float]], dict[SeriesKey, dict[float, float]]]:
    """The world's series, and the same draws had every target been scraped at every step."""
    twin = copy.deepcopy(w)  # the generator too: both sample the same events
    for c in twin.cohorts:
        c.keep[:] = True
        c.probe_keep = None
    return sampled(w), sampled(twin)


def label(key: SeriesKey, name: str) -> str:
    return dict(key).get(name, "")


def test_the_data_faults_are_about_a_fifth_of_a_corpus() -> None:
    plan = Counter(plan_corpus(2000, seed=1))
    assert set(DATA_FAULTS) <= set(FAMILIES)
    assert 0.20 <= sum(plan[f] for f in DATA_FAULTS) / 2000 <= 0.25
    assert plan["blind_canary"] >= 40  # enough to see a promotion there


@pytest.mark.parametrize("family", DATA_FAULTS)
def test_data_faults_are_deterministic(tmp_path: Path, family: str) -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(root.rglob("*.json"))}

    a = generate_one(tmp_path / "a", family, scenario_rng(3, 5), 5)
    b = generate_one(tmp_path / "b", family, scenario_rng(3, 5), 5)
    c = generate_one(tmp_path / "c", family, scenario_rng(4, 5), 5)
    assert files(a) == files(b) and files(a)["series.json"] != files(c)["series.json"]


@pytest.mark.parametrize(
    ("family", "cause"),
    [("aa_scrape_gap", "prometheus"), ("aa_scrape_gap", "exporter"), ("ba_scrape_gap", "exporter")],
)
def test_a_scrape_gap_has_no_samples_and_the_counters_count_through_it(family: str, cause: str) -> None:
    w = pick_world(family, lambda w: w.truth["gap"]["cause"] == cause and w.total_rate.mean() >= 5)
    gap = w.truth["gap"]
    first, last = gap["first_missing"], gap["last_missing"]
    assert 6 * 60 <= last + STEP_S - first <= 15 * 60 and w.deploy_at < first and last < w.times[-1]
    assert not any(c.resets for c in w.cohorts)  # no restart at the deploy either: days of history
    seen, every = with_twin(w)
    for key, samples in seen.items():
        in_gap = [t for t in samples if first <= t <= last]
        probe = label(key, "__name__") == "probe_success"
        hit = label(key, "cohort") in gap["cohorts"] and (gap["probes"] or not probe)
        assert not in_gap if hit else in_gap, key
        assert all(every[key][t] == v for t, v in samples.items()), key  # a gap only hides samples
        if hit and label(key, "__name__") == "http_requests_total":
            before = max(t for t in samples if t < first)
            after = min(t for t in samples if t > last)
            events = sum(every[key][t] - every[key][t - STEP_S] for t in every[key] if before < t <= after)
            assert samples[after] - samples[before] == events  # continuous: the gap's events are all there
    for cohort in gap["cohorts"]:
        total = sum(
            min(s.values())
            for k, s in seen.items()
            if label(k, "cohort") == cohort and label(k, "__name__") == "http_requests_total"
        )
        share = float(w.cohort(cohort).share[0])
        assert total >= 86400 * float(w.total_rate.mean()) * share  # at least a day of traffic


def test_the_gap_families_vary_their_cause_and_cohort() -> None:
    gaps = [build_world("aa_scrape_gap", scenario_rng(SEED, i), i).truth["gap"] for i in range(40)]
    assert {g["cause"] for g in gaps} == {"prometheus", "exporter"}
    assert {tuple(g["cohorts"]) for g in gaps if g["cause"] == "exporter"} == {("baseline",), ("canary",)}
    assert all(g["probes"] == (g["cause"] == "prometheus") for g in gaps)


def test_a_release_that_restarts_nothing_keeps_its_history(tmp_path: Path) -> None:
    for family in ("ba_no_restart", "ba_no_restart_err_step"):
        path = generate_one(tmp_path, family, scenario_rng(SEED, 1), 1)
        truth, series = read(path, "truth.json"), read(path, "series.json")["result"]
        assert truth["resets"] == [] and truth["history"]["uptime_s"] >= 2 * 86400
        assert all(m >= 1.5 for m in truth["history"]["err_multiplier"].values())
        for item in series:
            if item["metric"]["__name__"] in COUNTERS:
                nums = [float(v) for _, v in item["values"]]
                assert nums == sorted(nums), item["metric"]  # never a drop: nothing restarted


def test_the_blind_canary_stops_for_good_while_its_probe_succeeds(tmp_path: Path) -> None:
    path = generate_one(tmp_path, "blind_canary", scenario_rng(SEED, 2), 2)
    meta, truth = read(path, "meta.json"), read(path, "truth.json")
    assert truth["regression"] is False and truth["expect"] == "inconclusive" and truth["onset"] is None
    lost = truth["exporter_lost_at"]
    assert meta["deploy_at"] + 60 <= lost <= meta["deploy_at"] + 195
    names: set[str] = set()
    for item in read(path, "series.json")["result"]:
        labels, times = item["metric"], [t for t, _ in item["values"]]
        if labels["cohort"] == "baseline":
            assert max(times) >= meta["end"] - 120
        elif labels["__name__"] == "probe_success":
            after = [v for t, v in item["values"] if t >= lost]
            assert len(after) >= 0.9 * (meta["end"] - lost) / 15 and set(after) == {"1"}
        else:
            names.add(labels["__name__"])
            assert max(times) < lost, labels  # and never returns
    assert names == COUNTERS | {"cost_per_tenant"}


def test_the_crash_loop_fails_its_probe_and_vanishes(tmp_path: Path) -> None:
    path = generate_one(tmp_path, "crash_loop", scenario_rng(SEED, 3), 3)
    meta, truth = read(path, "meta.json"), read(path, "truth.json")
    crash = truth["crash_at"]
    assert truth["regression"] is True and truth["signals"] == ["healthcheck"] and truth["onset"] == crash
    assert meta["deploy_at"] + 15 <= crash <= meta["deploy_at"] + 60
    for item in read(path, "series.json")["result"]:
        labels, values = item["metric"], item["values"]
        if labels["cohort"] != "canary":
            continue
        if labels["__name__"] == "probe_success":
            assert {v for t, v in values if t < crash} == {"1"}
            after = [v for t, v in values if t > crash]
            assert len(after) >= 100 and after.count("0") >= 0.9 * len(after)
        else:
            assert max(t for t, _ in values) < crash, labels


def test_a_restart_resets_the_counters_and_loses_scrapes() -> None:
    for family in ("aa_restart", "ba_restart"):
        w = pick_world(family, lambda w: "missed_scrapes" not in w.nuisances and w.total_rate.mean() >= 5)
        restart = w.truth["restart"]
        assert restart["at"] in [float(w.times[k]) for k in w.new.resets]  # in truth.resets
        assert 1 <= restart["lost_scrapes"] <= 4 and w.deploy_at < restart["at"] < w.times[-1]
        lost = {restart["first_missing"] + STEP_S * i for i in range(restart["lost_scrapes"])}
        assert restart["at"] in lost
        seen, every = with_twin(w)
        for key, samples in seen.items():
            if label(key, "cohort") != w.new.name:
                continue
            if label(key, "__name__") == "probe_success":
                assert lost <= set(samples) and {samples[t] for t in lost} == {1.0}  # the probe saw it up
                continue
            assert set(every[key]) - set(samples) == lost, key
            if label(key, "__name__") == "http_requests_total" and label(key, "code") == "200":
                before, after = max(lost) - STEP_S * len(lost), max(lost) + STEP_S
                assert every[key][restart["at"]] == 0 and samples[after] < samples[before]  # from zero


def test_a_tiny_canary_has_one_instance_and_one_or_two_percent(tmp_path: Path) -> None:
    for family in ("aa_tiny_share", "tiny_share_err_step"):
        path = pick(tmp_path, family, lambda t: t["rps"] >= 100)
        truth = read(path, "truth.json")
        assert 0.01 <= truth["canary_share"] <= 0.02 and truth["instances"]["canary"] == 1
        src = ReplaySource(path)
        _bad, n_canary = error_ratio(src, "canary", src.scenario.start, src.scenario.end)
        _bad, n_base = error_ratio(src, "baseline", src.scenario.start, src.scenario.end)
        assert 0.008 <= n_canary / (n_canary + n_base) <= 0.025
