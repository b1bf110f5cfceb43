"""Score benchmark results against the scenarios' ground truth (``truth.json``).

    python benchmarks/score.py --scenarios DIR results-watchdog.json [results-argo.json ...] [--json out.json]

Prints, overall and per scenario family: false rollbacks (rate and 95% Clopper-Pearson interval),
misses, promotions and inconclusive watches, delay median and p90 in seconds, the median ratio of
the delay to Wald's floor (5xx steps), and CPU per scenario; then the issue's targets: the
whole corpus's false-rollback rate against "≤ 0.5 %, 95 % upper bound ≤ 1 %", and the promotions
in each blind family against 0. A scenario whose truth says ``"expect": "inconclusive"`` (its data
cannot tell: the canary's exporter died) is healthy for false rollbacks, and a promotion there is
an error of its own kind, counted as ``blind_promotions``. The floor is Wald's lower bound on the
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
FLOOR_FAMILIES = ("err_step", "ba_err_step", "tiny_share_err_step", "ba_no_restart_err_step")
FALSE_ROLLBACK_TARGET = 0.005  # of the healthy deploys
FALSE_ROLLBACK_UPPER_TARGET = 0.01  # the upper end of its 95 % Clopper-Pearson interval


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
    promotions: int = 0
    inconclusives: int = 0
    blind: int = 0  # healthy scenarios whose only right decision is "inconclusive"
    blind_promotions: int = 0
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
            "promotions": self.promotions,
            "inconclusives": self.inconclusives,
            "blind": self.blind,
            "blind_promotions": self.blind_promotions,
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
        frm, to = float(effect["from"]), float(effect["to"])
    except (KeyError, TypeError, ValueError):
        return False
    ratio = to / frm if frm > 0 else (math.inf if to > 0 else 0.0)  # a probe that never failed now fails
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
        blind = truth.get("expect") == "inconclusive"
        for t in tallies:
            t.cpu.append(float(r.get("cpu_s") or 0.0))
            t.errors += int(r["decision"] == "error")
            t.promotions += int(r["decision"] == "promote")
            t.inconclusives += int(r["decision"] == "inconclusive")
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
                t.false_rollbacks += int(r["decision"] == "rollback")
                t.blind += int(blind)
                t.blind_promotions += int(blind and r["decision"] == "promote")
    return {
        "detector": results.get("detector"),
        "overall": overall.row(),
        "strong_effects": strong.row(),
        "families": {k: v.row() for k, v in sorted(families.items())},
        "targets": targets(overall, families),
    }


def targets(overall: Tally, families: dict[str, Tally]) -> dict[str, Any]:
    """The issue's targets that the whole corpus decides: false rollbacks, and no blind promotion."""
    _lo, hi = clopper_pearson(overall.false_rollbacks, overall.healthy)
    rate = overall.false_rollbacks / overall.healthy if overall.healthy else None
    blind = {k: v for k, v in sorted(families.items()) if v.blind}
    return {
        "false_rollbacks": {
            "count": overall.false_rollbacks,
            "of": overall.healthy,
            "rate": rate,
            "upper95": hi if overall.healthy else None,
            "rate_target": FALSE_ROLLBACK_TARGET,
            "upper95_target": FALSE_ROLLBACK_UPPER_TARGET,
            "met": rate is not None and rate <= FALSE_ROLLBACK_TARGET and hi <= FALSE_ROLLBACK_UPPER_TARGET,
        },
        "blind_promotions": {
            "count": overall.blind_promotions,
            "of": overall.blind,
            "target": 0,
            "met": overall.blind_promotions == 0,
            "families": {k: {"count": v.blind_promotions, "of": v.blind} for k, v in blind.items()},
        },
    }


def targets_text(s: dict[str, Any]) -> str:
    """One line for the corpus's false rollbacks, one per blind family."""
    fr, bp = s["targets"]["false_rollbacks"], s["targets"]["blind_promotions"]

    def met(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    lines = [
        f"{s['detector']}: false rollbacks {fr['count']} of {fr['of']} healthy "
        f"({_fmt(fr['rate'], True, 2)}), "
        f"95% upper bound {_fmt(fr['upper95'], True, 2)}; target ≤ {_fmt(fr['rate_target'], True, 1)}, "
        f"upper bound ≤ {_fmt(fr['upper95_target'], True, 0)}: {met(fr['met'])}"
    ]
    for fam, b in bp["families"].items():
        lines.append(
            f"{s['detector']}: promotions in the blind family {fam}: {b['count']} of {b['of']}; "
            f"target 0: {met(b['count'] == 0)}"
        )
    return "\n".join(lines)


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
    head = (
        f"{'family':<24} {'n':>5} {'false rb':>9} {'miss':>7} {'promote':>7} {'inconcl':>7} "
        f"{'delay p50':>9} {'p90':>7} {'÷floor':>7}"
    )
    lines = [f"{s['detector']} by family", head, "-" * len(head)]
    for fam, o in s["families"].items():
        n = o["healthy"] + o["regressions"]
        lines.append(
            f"{fam:<24} {n:>5} {_fmt(o['false_rollback_rate'], True, 2):>9} {_fmt(o['miss_rate'], True):>7} "
            f"{o.get('promotions', 0):>7} {o.get('inconclusives', 0):>7} "
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
    print()
    print("\n".join(targets_text(s) for s in scores))
    if args.families:
        for s in scores:
            print()
            print(family_table(s))
    if args.json:
        args.json.write_text(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
