"""The verdict a detector returns: the outcome *and* the numbers a human needs to check it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.StrEnum):
    """What one detector concluded about one signal at one moment.

    ``NO_DATA`` is never evidence against a release: a detector with nothing to look at says so.
    (Failures of the *source* are not a detector's business: the watchdog records them as
    ``error``, see ``watchdog.phases``.)
    """

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class Verdict:
    """A detector's answer with its evidence.

    ``statistic`` and ``threshold`` are on the same scale (the detector says which in
    ``evidence["statistic_name"]``); ``evidence`` holds the counts, bounds and parameters that
    produced the outcome, enough to explain and replay it.
    """

    outcome: Outcome
    detector: str
    statistic: float | None = None
    threshold: float | None = None
    summary: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "detector": self.detector,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "summary": self.summary,
            "evidence": self.evidence,
        }
