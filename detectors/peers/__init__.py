"""Re-implementations of the rollback rules people use today, as pure functions of one deploy.

Each peer takes an ``Observations`` and returns a ``PeerDecision``; the benchmark runs them on the
same arrays as our detectors. Module docstrings name the upstream sources each one follows.
"""

from detectors.peers.argo import argo_peer
from detectors.peers.burnrate import WORKBOOK_ALERTS, BurnRateAlert, burnrate_peer
from detectors.peers.kayenta import Classification, MannWhitneyResult, classify, kayenta_peer, mann_whitney
from detectors.peers.naive import naive_peer, two_proportion_z

__all__ = [
    "WORKBOOK_ALERTS",
    "BurnRateAlert",
    "Classification",
    "MannWhitneyResult",
    "argo_peer",
    "burnrate_peer",
    "classify",
    "kayenta_peer",
    "mann_whitney",
    "naive_peer",
    "two_proportion_z",
]
