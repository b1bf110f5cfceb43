"""How each release of the demo stamps API behaves, so a "bad deploy" is a table row, not a code path.

The watchdog never sees this table: it only sees what the behaviour does to the metrics, the same
way it would see a real release. Latency is lognormal (median, sigma), which gives the long right
tail real services have; the numbers are chosen so that a good release has p95 well under 300 ms
and the bad one (``v1.1.0``) has p95 above 300 ms and p99 above 800 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_Z95 = 1.6448536269514722
_Z99 = 2.3263478740408408


@dataclass(frozen=True)
class VersionProfile:
    """One release's behaviour.

    ``error_rate`` is the chance that a claim or redeem answers 500 (other routes never fail that
    way). ``token_reuse_rate`` is the chance that a fresh claim token is wrongly rejected as
    reused (409, counted in ``stamps_token_reuse_total``): a dedup bug, on top of the deliberate
    reuse the traffic generator sends. ``device_proof_failure_rate`` is the chance that a
    non-empty device proof is rejected (401). ``cost_per_request`` is the mean cost of one
    request in an arbitrary unit. ``latency_cap_s`` bounds one sleep so a tail draw cannot hold a
    server thread for long.
    """

    version: str
    description: str
    error_rate: float
    latency_median_s: float
    latency_sigma: float
    token_reuse_rate: float
    device_proof_failure_rate: float
    cost_per_request: float
    health_ok: bool = True
    latency_cap_s: float = 2.5

    def __post_init__(self) -> None:
        for name in ("error_rate", "token_reuse_rate", "device_proof_failure_rate"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{self.version}: {name}={p} is not a probability")
        if self.latency_median_s <= 0 or self.latency_sigma < 0 or self.latency_cap_s <= 0:
            raise ValueError(f"{self.version}: latency parameters must be positive")
        if self.cost_per_request <= 0:
            raise ValueError(f"{self.version}: cost_per_request must be positive")

    def latency_quantile_s(self, q: float) -> float:
        """The uncapped lognormal quantile for q in {0.5, 0.95, 0.99}, to document and test the table."""
        z = {0.5: 0.0, 0.95: _Z95, 0.99: _Z99}[q]
        return self.latency_median_s * math.exp(z * self.latency_sigma)


VERSIONS: dict[str, VersionProfile] = {
    p.version: p
    for p in (
        VersionProfile(
            version="v1.0.0",
            description="good: the long-running stable release",
            error_rate=0.002,
            latency_median_s=0.040,
            latency_sigma=0.45,
            token_reuse_rate=0.0,
            device_proof_failure_rate=0.01,
            cost_per_request=1.0,
        ),
        VersionProfile(
            version="v1.0.1",
            description="good: a patch release, marginally slower and cheaper",
            error_rate=0.003,
            latency_median_s=0.045,
            latency_sigma=0.5,
            token_reuse_rate=0.0,
            device_proof_failure_rate=0.012,
            cost_per_request=0.95,
        ),
        VersionProfile(
            version="v1.1.0",
            description="bad: 8% 5xx on claim/redeem, slow long tail, device-proof and dedup regressions",
            error_rate=0.08,
            latency_median_s=0.150,
            latency_sigma=0.75,
            token_reuse_rate=0.03,
            device_proof_failure_rate=0.15,
            cost_per_request=1.8,
        ),
        VersionProfile(
            version="v1.2.0",
            description="good: the fixed release after v1.1.0",
            error_rate=0.001,
            latency_median_s=0.035,
            latency_sigma=0.4,
            token_reuse_rate=0.0,
            device_proof_failure_rate=0.008,
            cost_per_request=0.9,
        ),
        VersionProfile(
            version="v1.3.0",
            description="broken: fails its health check and half of claims/redeems",
            error_rate=0.5,
            latency_median_s=0.050,
            latency_sigma=0.5,
            token_reuse_rate=0.0,
            device_proof_failure_rate=0.01,
            cost_per_request=1.0,
            health_ok=False,
        ),
    )
}


class UnknownVersionError(LookupError):
    """A demo version that is not in the table (a typo in a scenario or a deploy ref)."""


def get_profile(version: str) -> VersionProfile:
    """Look a version up, naming the known ones when it is missing so the operator can fix the typo."""
    try:
        return VERSIONS[version]
    except KeyError:
        known = ", ".join(sorted(VERSIONS))
        raise UnknownVersionError(f"unknown demo version {version!r}; known versions: {known}") from None
