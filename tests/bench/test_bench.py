"""`rollback-watchdog bench` reads the fixed scenario format, replays through the daemon's path,
writes the results format, and never needs the ground truth; the scorer computes Wald's floor."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.generate import generate_corpus
from benchmarks.score import clopper_pearson, load_truths, score, strong_effect, targets_text, wald_floor_s
from watchdog.bench import run_bench, share_llr

FAMILIES = [
    "aa_basic",
    "aa_noisy_neighbour",
    "ba_healthy",
    "err_step",
    "ba_err_step",
    "lat_shift",
    "probe_hard",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    generate_corpus(out, 14, seed=11, families=FAMILIES)
    return out


@pytest.fixture(scope="module")
def watchdog_results(corpus: Path) -> dict[str, Any]:
    """The watchdog over the corpus, once for the tests that only read its results."""
    return run_bench(corpus, "watchdog", jobs=2)


def test_results_follow_the_format_one_per_scenario(corpus: Path, watchdog_results: dict[str, Any]) -> None:
    doc = watchdog_results
    assert doc["format"] == 1 and doc["detector"] == "watchdog" and doc["cpu_s"] > 0
    names = {json.loads((d / "meta.json").read_text())["name"] for d in corpus.iterdir()}
    assert {r["scenario"] for r in doc["results"]} == names
    for r in doc["results"]:
        meta = json.loads((corpus / r["scenario"] / "meta.json").read_text())
        assert r["decision"] in ("rollback", "promote", "inconclusive"), r
        if r["decision"] == "rollback":
            assert meta["deploy_at"] < r["decided_at"] <= meta["end"] and r["signal"]
        else:
            assert r["decided_at"] is None
    decisions = {r["scenario"]: r["decision"] for r in doc["results"]}
    assert all(v == "rollback" for k, v in decisions.items() if k.startswith("probe_hard"))


def test_the_detector_path_never_reads_the_truth(
    corpus: Path, tmp_path: Path, watchdog_results: dict[str, Any]
) -> None:
    blind = tmp_path / "blind"
    shutil.copytree(corpus, blind)
    for truth in blind.glob("*/truth.json"):
        truth.unlink()
    with_truth = {r["scenario"]: (r["decision"], r["decided_at"]) for r in watchdog_results["results"]}
    without = {
        r["scenario"]: (r["decision"], r["decided_at"])
        for r in run_bench(blind, "watchdog", jobs=2)["results"]
    }
    assert with_truth == without
    oracle = run_bench(blind, "oracle", jobs=1)["results"]
    assert all(r["decision"] == "error" and "truth.json" in r["error"] for r in oracle)


def test_a_broken_scenario_is_an_error_and_the_others_still_run(corpus: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(corpus, mixed)
    broken = sorted(mixed.iterdir())[0]
    (broken / "meta.json").write_text('{"format": 1, "name": "x"')
    results = run_bench(mixed, "watchdog", jobs=2)["results"]
    errors = [r for r in results if r["decision"] == "error"]
    assert len(errors) == 1 and "meta.json" in errors[0]["error"] and "invalid JSON" in errors[0]["error"]
    assert len(results) == len(list(mixed.iterdir()))


def test_a_scenario_with_only_the_required_fields_and_metric(tmp_path: Path) -> None:
    d = tmp_path / "minimal" / "only-requests"
    d.mkdir(parents=True)
    start, deploy, end = 1_764_300_000.0, 1_764_300_600.0, 1_764_302_400.0
    meta = {
        "format": 1,
        "name": "only-requests",
        "service": "stamps-api",
        "env": "prod",
        "start": start,
        "deploy_at": deploy,
        "end": end,
        "step_s": 15,
        "canary": True,
        "release": {"from": "a", "to": "b"},
    }
    series = []
    for cohort, share, bad in (("baseline", 9, 0.002), ("canary", 1, 0.2)):
        ok, err, values_ok, values_err = 0, 0, [], []
        for i, t in enumerate(range(int(start), int(end) + 1, 15)):
            n = 20 * share
            e = round(n * (bad if t > deploy else 0.002) + (i % 3 == 0))
            ok, err = ok + n - e, err + e
            values_ok.append([t, str(ok)])
            values_err.append([t, str(err)])
        series += [
            {
                "metric": {"__name__": "http_requests_total", "cohort": cohort, "code": "200"},
                "values": values_ok,
            },
            {
                "metric": {"__name__": "http_requests_total", "cohort": cohort, "code": "500"},
                "values": values_err,
            },
        ]
    (d / "meta.json").write_text(json.dumps(meta))
    (d / "series.json").write_text(json.dumps({"resultType": "matrix", "result": series}))
    r = run_bench(d.parent, "watchdog", jobs=1)["results"][0]
    assert r["decision"] == "rollback" and r["signal"] == "http_5xx", r


def test_cli_writes_the_results_file(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "watchdog",
            "bench",
            "--scenarios",
            str(corpus),
            "--output",
            str(out),
            "--detector",
            "naive",
            "--jobs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert len(json.loads(out.read_text())["results"]) == len(list(corpus.iterdir()))
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "watchdog",
            "bench",
            "--scenarios",
            str(corpus),
            "--output",
            str(out),
            "--detector",
            "nope",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_wald_floor_by_hand() -> None:
    meta = {"canary": True, "step_s": 15}
    truth = {"kind": "err_step", "effect": {"from": 0.005, "to": 0.025}, "rps": 100.0, "canary_share": 0.1}
    theta = 0.1 * 0.025 / (0.1 * 0.025 + 0.9 * 0.005)
    kl = theta * math.log(theta / 0.1) + (1 - theta) * math.log((1 - theta) / 0.9)
    d = 0.98 * math.log(0.98 / 0.01) + 0.02 * math.log(0.02 / 0.99)
    seconds = d / kl / (100 * (0.1 * 0.025 + 0.9 * 0.005))
    assert wald_floor_s(truth, meta) == math.ceil(seconds / 15) * 15
    assert wald_floor_s({**truth, "rps": 1e6}, meta) == 15  # never below one scrape step
    assert wald_floor_s({**truth, "kind": "lat_shift"}, meta) is None


def test_scores_count_false_rollbacks_misses_and_delays(corpus: Path) -> None:
    truths = load_truths(corpus)
    results = []
    for name, (meta, truth) in truths.items():
        rollback = bool(truth["regression"]) or name.startswith("aa_basic")
        results.append(
            {
                "scenario": name,
                "decision": "rollback" if rollback else "promote",
                "decided_at": meta["deploy_at"] + 30 if rollback else None,
                "signal": None,
                "cpu_s": 0.1,
            }
        )
    s = score({"detector": "fake", "results": results}, truths)["overall"]
    healthy = sum(1 for _m, t in truths.values() if not t["regression"])
    basics = sum(1 for n in truths if n.startswith("aa_basic"))
    assert s["healthy"] == healthy and s["false_rollbacks"] == basics and s["misses"] == 0
    assert s["delay_median_s"] == 30.0
    assert s["false_rollback_ci95"] == list(clopper_pearson(basics, healthy))
    lo, hi = clopper_pearson(0, 1000)
    assert lo == 0.0 and 0.0036 < hi < 0.0038


def test_the_oracles_share_llr_ignores_intervals_without_a_reference() -> None:
    """A baseline without traffic (or a canary without) makes the canary's share 0 or 1 whatever
    the rates: such an interval carries no evidence (it used to poison the SPRT with NaN)."""
    assert share_llr(3, 0, 100, 0, 0.01, 0.02) == 0.0
    assert share_llr(0, 3, 0, 100, 0.01, 0.02) == 0.0
    assert share_llr(0, 0, 100, 100, 0.01, 0.02) == 0.0
    # a canary with half the traffic and all 4 bad events: evidence for p1, each event log(4/3)
    assert math.isclose(share_llr(4, 0, 100, 100, 0.01, 0.02), 4 * math.log((2 / 3) / 0.5))
    assert share_llr(0, 4, 100, 100, 0.01, 0.02) < 0  # the baseline's: evidence for p0


def test_scores_count_promotions_inconclusives_and_blind_promotions() -> None:
    meta = {"canary": True, "step_s": 15, "deploy_at": 0.0}
    healthy = {"regression": False, "onset": None, "signals": [], "effect": None}
    truths = {
        "aa_basic-0": (meta, {**healthy, "family": "aa_basic"}),
        "aa_basic-1": (meta, {**healthy, "family": "aa_basic"}),
        "blind_canary-2": (meta, {**healthy, "family": "blind_canary", "expect": "inconclusive"}),
        "blind_canary-3": (meta, {**healthy, "family": "blind_canary", "expect": "inconclusive"}),
        "blind_canary-4": (meta, {**healthy, "family": "blind_canary", "expect": "inconclusive"}),
        "err_step-5": (meta, {"regression": True, "onset": 0.0, "family": "err_step", "kind": "err_step"}),
    }
    decisions = ["promote", "rollback", "promote", "inconclusive", "rollback", "inconclusive"]
    results = [
        {"scenario": name, "decision": d, "decided_at": 30.0 if d == "rollback" else None}
        for name, d in zip(truths, decisions, strict=True)
    ]
    s = score({"detector": "fake", "results": results}, truths)
    blind = s["families"]["blind_canary"]
    counts = ("healthy", "false_rollbacks", "promotions", "inconclusives")
    assert [blind[k] for k in counts] == [3, 1, 1, 1]
    assert blind["blind"] == 3 and blind["blind_promotions"] == 1
    assert s["families"]["aa_basic"]["blind"] == 0 and s["families"]["err_step"]["misses"] == 1
    assert (s["overall"]["promotions"], s["overall"]["inconclusives"]) == (2, 2)
    fr, bp = s["targets"]["false_rollbacks"], s["targets"]["blind_promotions"]
    assert (fr["count"], fr["of"], fr["met"]) == (2, 5, False) and fr["upper95"] == clopper_pearson(2, 5)[1]
    assert bp == {
        "count": 1,
        "of": 3,
        "target": 0,
        "met": False,
        "families": {"blind_canary": {"count": 1, "of": 3}},
    }
    text = targets_text(s)
    assert "false rollbacks 2 of 5 healthy (40.00%)" in text and "NOT MET" in text
    assert "promotions in the blind family blind_canary: 1 of 3; target 0: NOT MET" in text
    json.dumps(s)  # --json writes it as it is


def test_the_false_rollback_target_needs_the_upper_bound_too() -> None:
    meta = {"canary": True, "step_s": 15}
    truths = {f"aa_basic-{i}": (meta, {"regression": False, "family": "aa_basic"}) for i in range(1000)}
    results = [
        {"scenario": n, "decision": "rollback" if i < 4 else "promote", "decided_at": 1.0}
        for i, n in enumerate(truths)
    ]
    fr = score({"detector": "fake", "results": results}, truths)["targets"]["false_rollbacks"]
    assert fr["rate"] == 0.004 and fr["upper95"] > 0.01 and not fr["met"]  # 0.4 % of only 1,000
    three = [{**r, "decision": "promote"} if r["scenario"] == "aa_basic-3" else r for r in results]
    assert score({"detector": "fake", "results": three}, truths)["targets"]["false_rollbacks"]["met"] is True


def test_a_probe_that_never_failed_and_now_fails_is_a_strong_effect() -> None:
    truth = {"effect": {"from": 0.0, "to": 0.97}, "rps": 10.0, "canary_share": 0.2}
    assert strong_effect(truth, {"canary": True})
    assert not strong_effect({**truth, "effect": {"from": 0.0, "to": 0.0}}, {"canary": True})
