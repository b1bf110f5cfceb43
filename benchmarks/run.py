"""The whole benchmark in one run: corpus, every detector, scores, targets, plots.

    python benchmarks/run.py [--corpus /tmp/wd-corpus] [--count 2000] [--seed 1] [--out benchmarks/results]

Generates the seeded corpus (unless the one there has the scenarios the generator plans: a corpus
from an older family table is made again, and then every detector runs again, ``--only`` or not),
replays it through the watchdog and every peer with ``rollback-watchdog bench``, scores them with
``benchmarks/score.py``, checks the targets of the detection issue, and writes ``summary.json``
and the plots (``--plots DIR``). Times are measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generate import generate_corpus, plan_corpus
from benchmarks.score import (
    family_of,
    family_table,
    load_truths,
    score,
    table,
    targets_text,
    wald_floor_s,
)

RUNS = [
    ("watchdog", []),
    ("oracle", []),
    ("argo", ["--failure-limit", "0"]),
    ("argo", ["--failure-limit", "3"]),
    ("kayenta", []),
    ("burnrate", []),
    ("naive", []),
]


def run_detector(corpus: Path, out: Path, detector: str, extra: list[str]) -> tuple[Path, float]:
    name = detector + "".join(extra).replace("--failure-limit", "-f")
    path = out / f"results-{name}.json"
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "watchdog",
            "bench",
            "--scenarios",
            str(corpus),
            "--output",
            str(path),
            "--detector",
            detector,
            *extra,
        ],
        check=True,
    )
    return path, time.monotonic() - t0


def corpus_is_current(corpus: Path, count: int, seed: int) -> bool:
    """The corpus holds exactly the scenarios the generator plans for ``count`` and ``seed`` today.

    A corpus generated before the family table changed has other names and is made again.
    """
    if not corpus.exists():
        return False
    planned = {f"{family}-{i:05d}" for i, family in enumerate(plan_corpus(count, seed))}
    return {d.name for d in corpus.iterdir() if d.is_dir()} == planned


def compare(ours: dict[str, Any], theirs: dict[str, Any], truths: dict[str, Any]) -> dict[str, Any]:
    """Median delays on the regressions both caught, and the false-rollback rates side by side."""
    a = {r["scenario"]: r for r in ours["results"]}
    b = {r["scenario"]: r for r in theirs["results"]}
    both = []
    for name, (_meta, truth) in truths.items():
        if not truth.get("regression") or name not in a or name not in b:
            continue
        if a[name]["decision"] == "rollback" and b[name]["decision"] == "rollback":
            both.append((a[name]["decided_at"] - truth["onset"], b[name]["decided_at"] - truth["onset"]))
    return {
        "caught_by_both": len(both),
        "our_median_delay_s": statistics.median(x for x, _ in both) if both else None,
        "their_median_delay_s": statistics.median(y for _, y in both) if both else None,
    }


def plots(
    scores: list[dict[str, Any]], results: dict[str, dict[str, Any]], truths: dict[str, Any], out: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5))
    false_rate = {s["detector"]: s["overall"]["false_rollback_rate"] or 0.0 for s in scores}
    for label, doc in results.items():
        if false_rate.get(label, 1.0) > 0.15:
            continue  # a detector that rolls back most healthy deploys "beats" any floor: not shown
        xs, ys = [], []
        for r in doc["results"]:
            meta, truth = truths.get(r["scenario"], ({}, {}))
            if truth.get("kind") != "err_step" or r["decision"] != "rollback":
                continue
            floor = wald_floor_s(truth, meta)
            if floor:
                xs.append(floor)
                ys.append(max(r["decided_at"] - truth["onset"], 1.0))
        if xs:
            ax.scatter(xs, ys, s=10, alpha=0.6, label=label)
    ax.plot([15, 1800], [15, 1800], "k--", lw=1, label="Wald's floor")
    ax.plot([15, 1800], [30, 3600], "k:", lw=1, label="2× floor")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(10, 1e4)
    ax.set_xlabel("Wald's floor for the scenario (s)")
    ax.set_ylabel("detection delay (s)")
    ax.set_title("5xx steps: delay against Wald's floor (caught; detectors with ≤ 15% false rollbacks)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "delay-vs-floor.png", dpi=110)
    plt.close(fig)

    families = sorted({f for s in scores for f, row in s["families"].items() if row["healthy"]})
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / max(len(scores), 1)
    for i, s in enumerate(scores):
        vals = [100 * (s["families"][f]["false_rollback_rate"] or 0.0) for f in families]
        ax.bar([j + i * width for j in range(len(families))], vals, width, label=s["detector"])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(families))])
    ax.set_xticklabels(families, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("false rollbacks (% of healthy deploys)")
    ax.set_title("False rollbacks per healthy family")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out / "false-rollbacks-by-family.png", dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=Path("/tmp/wd-corpus"))
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--plots", type=Path, default=Path("docs/img"))
    p.add_argument(
        "--only",
        help="comma-separated detectors to run again (default: all); the others' "
        "results from an earlier run on the same corpus are reused",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only.split(",")) if args.only else None
    if not corpus_is_current(args.corpus, args.count, args.seed):
        t0 = time.monotonic()
        generate_corpus(args.corpus, args.count, args.seed, jobs=2)
        took = time.monotonic() - t0
        print(f"corpus: {args.count} scenarios (seed {args.seed}) in {took:.1f}s -> {args.corpus}")
        if wanted:
            print("a new corpus: every detector runs again (earlier results were for another corpus)")
            wanted = None
    truths = load_truths(args.corpus)
    walls_file = args.out / "wall.json"
    walls: dict[str, float] = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    for detector, extra in RUNS:
        if wanted and detector not in wanted:
            continue  # --only: the other detectors' earlier results (same corpus) are scored again
        path, wall = run_detector(args.corpus, args.out, detector, extra)
        walls[json.loads(path.read_text())["detector"]] = wall
    walls_file.write_text(json.dumps(walls, indent=1))
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(args.out.glob("results-*.json")):
        doc = json.loads(path.read_text())
        docs[doc["detector"]] = doc
    scores = [score(doc, truths) for doc in docs.values()]
    print()
    print(table(scores))
    print()
    print("\n".join(targets_text(s) for s in scores))
    for s in scores:
        print()
        print(family_table(s))
    summary: dict[str, Any] = {"count": args.count, "seed": args.seed, "wall_s": walls, "scores": scores}
    ours = docs.get("watchdog")
    if ours is not None:
        mine = next(s for s in scores if s["detector"] == "watchdog")
        fr, blind = mine["targets"]["false_rollbacks"], mine["targets"]["blind_promotions"]
        err = mine["families"].get("err_step", {})
        checks = {
            "false rollbacks <= 0.5%": (fr["rate"] or 0) <= fr["rate_target"],
            "false rollbacks 95% upper bound <= 1%": (fr["upper95"] or 1) <= fr["upper95_target"],
            "no promotion in the blind families": blind["met"],
            "misses <= 2% for effects >= 2x at >= 1 req/s": (mine["strong_effects"]["miss_rate"] or 0)
            <= 0.02,
            "median delay <= 2x Wald's floor on 5xx steps": (err.get("delay_ratio_median") or 99) <= 2.0,
        }
        peers = {}
        for label, doc in docs.items():
            if label in ("watchdog", "oracle"):
                continue
            theirs = next(s for s in scores if s["detector"] == label)
            cmp = compare(ours, doc, truths)
            cmp["their_false_rollback_rate"] = theirs["overall"]["false_rollback_rate"]
            cmp["their_miss_rate"] = theirs["overall"]["miss_rate"]
            peers[label] = cmp
        summary["peers"] = peers
        summary["targets"] = checks
        print("\nagainst the peers (median delay on regressions both caught):")
        for label, c in peers.items():
            fr, miss = 100 * (c["their_false_rollback_rate"] or 0), 100 * (c["their_miss_rate"] or 0)
            print(
                f"  {label:<22} ours {c['our_median_delay_s']}s vs {c['their_median_delay_s']}s "
                f"(n={c['caught_by_both']}); their false rollbacks {fr:.2f}%, misses {miss:.1f}%"
            )
        print("\ntargets:")
        for k, ok in checks.items():
            print(f"  [{'x' if ok else ' '}] {k}")
        fams = {family_of(t) for _m, t in truths.values()}
        summary["families"] = sorted(fams)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    plots(scores, docs, truths, args.plots)
    print(f"\nsummary: {args.out / 'summary.json'}; plots: {args.plots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
