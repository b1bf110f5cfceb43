"""How a watchdog in shadow mode would have done: each of its decisions against what the team did.

In shadow mode (``EnvironmentPolicy.mode``) the watchdog decides and logs but changes nothing. This
reads the store afterwards: for every "would have rolled back" and every shadow promotion, what
became of that release in that environment — rolled back by hand, hotfixed by a newer deploy soon
after, kept, or not known yet — and whether the watchdog agreed with the humans.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from watchdog.phases import Actor, DecisionKind, DecisionResult, IncidentPhase, WatchKind
from watchdog.store import DecisionEntry, Incident, Release, Store, Watch

#: How many rows one report reads at most of each kind (decisions, deploys, incidents).
MAX_ROWS = 100_000


class Shadowed(enum.StrEnum):
    """What the watchdog would have done."""

    WOULD_ROLL_BACK = "would_roll_back"
    PROMOTED = "promoted"


class Outcome(enum.StrEnum):
    """What became of the release."""

    ROLLED_BACK = "rolled_back"  # a human rolled it back, or redeployed an older release soon after
    HOTFIXED = "hotfixed"  # a newer release was deployed within the hotfix window
    KEPT = "kept"  # still pinned, or the next deploy came after the window
    UNKNOWN = "unknown"  # too early to tell


class Agreement(enum.StrEnum):
    AGREED = "agreed"
    DISAGREED = "disagreed"  # a false alarm (would roll back, kept) or a miss (promoted, rolled back)
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ShadowCase:
    decision_id: int
    at: float
    env: str
    service: str
    release: str
    shadowed: Shadowed
    outcome: Outcome
    agreement: Agreement
    detail: str  # what the outcome rests on
    reason: str  # the shadow decision's own reason


@dataclass(frozen=True)
class ShadowReport:
    env: str | None
    since: float
    now: float
    hotfix_window_s: float
    cases: list[ShadowCase] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(case.agreement.value for case in self.cases)
        wrong = [case for case in self.cases if case.agreement is Agreement.DISAGREED]
        return {
            "cases": len(self.cases),
            "agreed": c[Agreement.AGREED],
            "disagreed": c[Agreement.DISAGREED],
            "unknown": c[Agreement.UNKNOWN],
            "false_alarms": sum(case.shadowed is Shadowed.WOULD_ROLL_BACK for case in wrong),
            "misses": sum(case.shadowed is Shadowed.PROMOTED for case in wrong),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "since": self.since,
            "now": self.now,
            "hotfix_window_s": self.hotfix_window_s,
            "counts": self.counts,
            "cases": [asdict(case) for case in self.cases],
        }


def _agreement(shadowed: Shadowed, outcome: Outcome) -> Agreement:
    if outcome is Outcome.UNKNOWN:
        return Agreement.UNKNOWN
    bad = outcome in (Outcome.ROLLED_BACK, Outcome.HOTFIXED)
    return Agreement.AGREED if bad == (shadowed is Shadowed.WOULD_ROLL_BACK) else Agreement.DISAGREED


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass
class _History:
    """One (env, service)'s deploys and humans' rollbacks, read once."""

    store: Store
    env: str
    service: str
    deploys: list[Watch] = field(init=False)  # oldest first
    by_hand: list[Incident] = field(init=False)

    def __post_init__(self) -> None:
        deploys = self.store.page(
            Watch, limit=MAX_ROWS, env=self.env, service=self.service, kind=WatchKind.DEPLOY
        )
        self.deploys = sorted(deploys, key=lambda w: (w.started_at, w.id))
        incidents = self.store.page(Incident, limit=MAX_ROWS, env=self.env, service=self.service)
        self.by_hand = [
            i
            for i in incidents
            if i.actor != Actor.AUTOMATIC.value
            and i.phase not in (IncidentPhase.VETOING, IncidentPhase.VETOED)
        ]

    def outcome(self, release: Release, at: float, now: float, window_s: float) -> tuple[Outcome, str]:
        mine = [w for w in self.deploys if w.release_id == release.id and w.started_at <= at]
        deployed = mine[-1].started_at if mine else release.created_at
        for i in self.by_hand:
            if i.from_release_id == release.id and i.created_at >= deployed:
                return (
                    Outcome.ROLLED_BACK,
                    f"rolled back by {i.actor} at {_when(i.created_at)} (incident {i.id})",
                )
        later = [w for w in self.deploys if w.started_at > deployed and w.release_id != release.id]
        pin = self.store.current_pin(self.env, self.service)
        if later and later[0].started_at <= deployed + window_s:
            after = later[0]
            other = self.store.release(after.release_id)
            gap = f"{after.started_at - deployed:.0f}s after it"
            if other.created_at < release.created_at:  # an older release went back out
                return Outcome.ROLLED_BACK, f"{other.tag} (older) redeployed {gap}"
            return Outcome.HOTFIXED, f"{other.tag} deployed {gap}"
        if pin is not None and pin.id == release.id:
            return Outcome.KEPT, "still the pinned release"
        if later:
            return (
                Outcome.KEPT,
                f"next deploy ({self.store.release(later[0].release_id).tag}) after the window",
            )
        if now >= deployed + window_s:
            return Outcome.KEPT, "still the newest deploy after the window"
        return Outcome.UNKNOWN, f"deployed {now - deployed:.0f}s ago, inside the hotfix window"


def _cases(store: Store, env: str | None, since: float) -> list[tuple[DecisionEntry, Shadowed, str]]:
    wanted = (
        (DecisionKind.ROLLBACK_DECIDED, DecisionResult.SHADOW_ROLLBACK, Shadowed.WOULD_ROLL_BACK),
        (DecisionKind.PROMOTED, DecisionResult.SHADOW, Shadowed.PROMOTED),
    )
    out = []
    for kind, result, shadowed in wanted:
        for e in store.page(DecisionEntry, limit=MAX_ROWS, since=since, env=env, kind=kind, result=result):
            tag = e.from_tag if shadowed is Shadowed.WOULD_ROLL_BACK else e.to_tag
            if tag is not None:
                out.append((e, shadowed, tag))
    return sorted(out, key=lambda c: c[0].id)


def shadow_report(
    store: Store, *, env: str | None, since: float, now: float, hotfix_window_s: float
) -> ShadowReport:
    """Every shadow decision since ``since`` (in ``env``, or everywhere), with what became of it."""
    histories: dict[tuple[str, str], _History] = {}
    cases = []
    for e, shadowed, tag in _cases(store, env, since):
        release = store.find_release(e.env, e.service, tag)
        if release is None:
            continue
        key = (e.env, e.service)
        history = histories.get(key) or histories.setdefault(key, _History(store, *key))
        outcome, detail = history.outcome(release, e.at, now, hotfix_window_s)
        cases.append(
            ShadowCase(
                decision_id=e.id,
                at=e.at,
                env=e.env,
                service=e.service,
                release=tag,
                shadowed=shadowed,
                outcome=outcome,
                agreement=_agreement(shadowed, outcome),
                detail=detail,
                reason=e.reason,
            )
        )
    return ShadowReport(env, since, now, hotfix_window_s, cases)


def format_report(report: ShadowReport) -> str:
    """The report as a table, then the counts."""
    head = ("when", "env", "service", "release", "would have", "what happened", "verdict", "detail")
    rows = [
        (
            _when(c.at),
            c.env,
            c.service,
            c.release,
            "rolled back" if c.shadowed is Shadowed.WOULD_ROLL_BACK else "promoted",
            c.outcome.value.replace("_", " "),
            c.agreement.value,
            c.detail,
        )
        for c in report.cases
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in [head, *rows]
    ]
    n = report.counts
    scope = report.env or "all environments"
    if not rows:
        lines = [f"(no shadow decisions in {scope} since {_when(report.since)})"]
    lines.append(
        f"{scope}: {n['cases']} shadow decisions: {n['agreed']} agreed, {n['disagreed']} disagreed "
        f"({n['false_alarms']} false alarms, {n['misses']} misses), {n['unknown']} not known yet "
        f"(hotfix window {report.hotfix_window_s:.0f}s)"
    )
    return "\n".join(lines)
