"""What every HTTP-speaking action shares: reading a server's ``Retry-After``."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (RFC 9110): delta-seconds, or an HTTP date measured from the answer's
    ``Date`` header (not our clock, which may be skewed); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        delta = parsedate_to_datetime(value) - parsedate_to_datetime(response.headers["date"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, delta.total_seconds())
