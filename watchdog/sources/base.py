"""The one interface every metric source implements."""

from __future__ import annotations

from typing import Protocol

from watchdog.series import Selector, Series


class MetricSource(Protocol):
    """Raw samples in, nothing computed: counting is shared in ``watchdog.series``."""

    name: str

    def fetch(self, selector: Selector, start: float, end: float) -> list[Series]:
        """Samples of every series matching ``selector`` with timestamps in ``[start, end]``.

        Raises ``SourceUnavailable`` when the source cannot answer; never returns made-up data.
        """
        ...
