"""Score benchmark results against the scenarios' ground truth (``truth.json``).

    python benchmarks/score.py --scenarios DIR results-watchdog.json [results-argo.json ...] [--json out.json]

Prints, overall and per scenario family: false rollbacks (rate and 95% Clopper-Pearson interval),
misses, delay median and p90 in seconds, the median ratio of the delay to Wald's floor (5xx
steps), and CPU per scenario; then the issue's targets. The floor is Wald's lower bound on the
expected number of observations of any sequential test with error rates α = 0.01, β = 0.02,
E₁[N] ≥ d(1−β‖α) / KL(P₁‖P₀), in bad events of the canary/baseline comparison (or requests,
before/after), turned into seconds with the scenario's own event rate and rounded up to whole
scrape steps (at least one), as ``shared/scenario-format.md`` defines.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

ALPHA, BETA = 0.01, 0.02
FLOOR_FAMILIES = ("err_step", "ba_err_step")


def _kl_bernoulli(p: float, q: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    q = min(max(q, 1e-12), 1 - 1e-12)
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def wald_floor_s(truth: dict[str, Any], meta: dict[str, Any]) -> float | None:
    """Wald's floor for a 5xx step, in seconds rounded up to whole scrape steps (≥ 1 step)."""
    effect = truth.get("effect") or {}
    if truth.get("kind") not in FLOOR_FAMILIES or "from" not in effect or "to" not in effect:
        return None
    p0, p1 = float(effect["from"]), float(effect["to"])
    rps = float(truth.get("rps") or 0.0)
    if p1 <= p0 or rps <= 0:
        return None
    d = _kl_bernoulli(1 - BETA, ALPHA)
    if meta.get("canary"):
        rho = float(truth["canary_share"])
        theta1 = rho * p1 / (rho * p1 + (1 - rho) * p0)
        kl = _kl_bernoulli(theta1, rho)  # per bad event, conditional on the total
        rate = rps * (rho * p1 + (1 - rho) * p0)  # bad events per second under H1
    else:
        kl = _kl_bernoulli(p1, p0)  # per request
        rate = rps
    seconds = d / kl / rate
    step = float(meta["step_s"])
    return max(1, math.ceil(seconds / step - 1e-9)) * step


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


@dataclass
class Tally:
    healthy: int = 0
    false_rollbacks: int = 0
    regressions: int = 0
    misses: int = 0
    errors: int = 0
    delays: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        lo, hi = clopper_pearson(self.false_rollbacks, self.healthy)
        return {
            "healthy": self.healthy,
            "false_rollbacks": self.false_rollbacks,
            "false_rollback_rate": self.false_rollbacks / self.healthy if self.healthy else None,
            "false_rollback_ci95": [lo, hi] if self.healthy else None,
            "regressions": self.regressions,
            "misses": self.misses,
            "miss_rate": self.misses / self.regressions if self.regressions else None,
            "errors": self.errors,
            "delay_median_s": _q(self.delays, 0.5),
            "delay_p90_s": _q(self.delays, 0.9),
            "delay_ratio_median": _q(self.ratios, 0.5),
            "delay_ratio_p90": _q(self.ratios, 0.9),
            "cpu_per_scenario_s": sum(self.cpu) / len(self.cpu) if self.cpu else None,
        }


def _q(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def load_truths(scenarios: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    out = {}
    for d in sorted(p for p in scenarios.iterdir() if p.is_dir()):
        meta = json.loads((d / "meta.json").read_text())
        truth = json.loads((d / "truth.json").read_text())
        out[str(meta.get("name", d.name))] = (meta, truth)
    return out


def family_of(truth: dict[str, Any]) -> str:
    return str(truth.get("family") or truth.get("kind") or "unknown")


def strong_effect(truth: dict[str, Any], meta: dict[str, Any]) -> bool:
    """The issue's miss target covers effects ≥ 2× with ≥ 1 req/s of canary (or release) traffic."""
    effect = truth.get("effect") or {}
    try:
        ratio = float(effect["to"]) / float(effect["from"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return False
    traffic = float(truth.get("rps") or 0.0) * (
        float(truth.get("canary_share") or 1.0) if meta.get("canary") else 1.0
    )
    return ratio >= 2.0 and traffic >= 1.0


def score(
    results: dict[str, Any], truths: dict[str, tuple[dict[str, Any], dict[str, Any]]]
) -> dict[str, Any]:
    overall, strong = Tally(), Tally()
    families: dict[str, Tally] = defaultdict(Tally)
    for r in results["results"]:
        if r["scenario"] not in truths:
            continue
        meta, truth = truths[r["scenario"]]
        tallies = [overall, families[family_of(truth)]]
        if truth.get("regression") and strong_effect(truth, meta):
            tallies.append(strong)
        for t in tallies:
            t.cpu.append(float(r.get("cpu_s") or 0.0))
            if r["decision"] == "error":
                t.errors += 1
            if truth.get("regression"):
                t.regressions += 1
                if r["decision"] != "rollback":
                    t.misses += 1
                    continue
                delay = float(r["decided_at"]) - float(truth["onset"])
                t.delays.append(delay)
                floor = wald_floor_s(truth, meta)
                if floor:
                    t.ratios.append(max(delay, 0.0) / floor)
            else:
                t.healthy += 1
                if r["decision"] == "rollback":
                    t.false_rollbacks += 1
    return {
        "detector": results.get("detector"),
        "overall": overall.row(),
        "strong_effects": strong.row(),
        "families": {k: v.row() for k, v in sorted(families.items())},
    }


def _fmt(x: Any, pct: bool = False, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.{digits}f}%" if pct else f"{x:.{digits}f}"


def table(scores: Iterable[dict[str, Any]], key: str = "overall") -> str:
    head = (
        f"{'detector':<16} {'false rb':>9} {'95% CI':>15} {'miss':>7} {'miss≥2×':>8} {'delay p50':>9} "
        f"{'p90':>7} {'÷floor':>7} {'cpu/sc':>7}"
    )
    lines = [head, "-" * len(head)]
    for s in scores:
        o, st = s[key], s["strong_effects"]
        ci = o["false_rollback_ci95"]
        ci_txt = f"[{_fmt(ci[0], True, 2)},{_fmt(ci[1], True, 2)}]" if ci else "-"
        lines.append(
            f"{s['detector']:<16} {_fmt(o['false_rollback_rate'], True, 2):>9} {ci_txt:>15} "
            f"{_fmt(o['miss_rate'], True):>7} {_fmt(st['miss_rate'], True):>8} "
            f"{_fmt(o['delay_median_s'], digits=0):>9} {_fmt(o['delay_p90_s'], digits=0):>7} "
            f"{_fmt(o['delay_ratio_median'], digits=2):>7} {_fmt(o['cpu_per_scenario_s'], digits=3):>7}"
        )
    return "\n".join(lines)


def family_table(s: dict[str, Any]) -> str:
    head = f"{'family':<20} {'n':>5} {'false rb':>9} {'miss':>7} {'delay p50':>9} {'p90':>7} {'÷floor':>7}"
    lines = [f"{s['detector']} by family", head, "-" * len(head)]
    for fam, o in s["families"].items():
        n = o["healthy"] + o["regressions"]
        lines.append(
            f"{fam:<20} {n:>5} {_fmt(o['false_rollback_rate'], True, 2):>9} {_fmt(o['miss_rate'], True):>7} "
            f"{_fmt(o['delay_median_s'], digits=0):>9} {_fmt(o['delay_p90_s'], digits=0):>7} "
            f"{_fmt(o['delay_ratio_median'], digits=2):>7}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", required=True, type=Path)
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--json", type=Path, help="also write the scores as JSON")
    p.add_argument("--families", action="store_true", help="print the per-family table of every detector")
    args = p.parse_args(argv)
    truths = load_truths(args.scenarios)
    scores = [score(json.loads(r.read_text()), truths) for r in args.results]
    print(table(scores))
    if args.families:
        for s in scores:
            print()
            print(family_table(s))
    if args.json:
        args.json.write_text(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
