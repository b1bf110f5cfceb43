"""The daemon's heap: one full collection every few ticks, at a time of the daemon's choosing.

A replica watching a thousand services holds a large heap that changes little between ticks (the
configuration, each watch's detectors, the label sets and samples of every series it reads), and
each tick makes and drops a great many small objects. CPython's cyclic collector then runs a full
collection — a walk over every container object in the process — whenever the objects that
survived its younger generations pass a quarter of the old ones: at 1,000 services about twice a
tick, a fifth of the tick's CPU (``benchmarks/scale.py``), to find almost nothing, since the
objects a tick drops are freed by their reference counts.

``HeapKeeper`` takes the oldest generation off the collector's own schedule and collects it itself
after every ``full_every``-th tick, then freezes what survived (``gc.freeze``): the automatic passes
over the young generations go on as before and walk only what was made since. Nothing is freed
less in the end: each full collection unfreezes everything first, so a cycle that became garbage
meanwhile lives ``full_every`` ticks at most (at 1,000 services a full collection after 20 ticks
finds none at all). ADR 0021.
"""

from __future__ import annotations

import gc

#: Ticks between full collections: at the default 15 s tick, one every five minutes.
FULL_EVERY = 20
#: ``gc``'s third threshold while a keeper runs: collections of the middle generation before the
#: oldest is collected automatically — never, in practice (the keeper does it).
_NEVER = 1 << 30


class HeapKeeper:
    """Call ``after_tick`` once per tick of the daemon (the first call collects and freezes)."""

    def __init__(self, full_every: int = FULL_EVERY) -> None:
        if full_every < 1:
            raise ValueError(f"full_every must be at least 1, got {full_every}")
        self.full_every = full_every
        self.ticks = 0
        self.collections = 0  # full collections this keeper ran
        self._thresholds: tuple[int, int, int] | None = None  # the collector's own, while kept

    def after_tick(self) -> None:
        if self.ticks % self.full_every == 0:
            self.collect()
        self.ticks += 1

    def collect(self) -> int:
        """A full collection of everything, frozen or not; what survives is frozen. Returns the
        number of unreachable objects found."""
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(self._thresholds[0], self._thresholds[1], _NEVER)
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.collections += 1
        return found

    def release(self) -> None:
        """Hand the heap back to the collector's own schedule (the daemon stops)."""
        gc.unfreeze()
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
