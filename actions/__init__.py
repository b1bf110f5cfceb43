"""Side effects on the outside world: GitHub Actions, smoke checks, notifiers.

Each action is reached through a client object handed in, is idempotent or guarded by the
pipeline's idempotency keys, and raises ``ActionRetryable`` or ``ActionFailed``. Actions import
only the watchdog's leaf modules (errors, clock, config models), never the engine or the store.
"""
