"""What every HTTP-speaking action shares: one request with the watchdog's error rule, and reading
a server's ``Retry-After``."""

from __future__ import annotations

from collections.abc import Callable, Collection
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from watchdog.errors import ActionRetryable, action_error


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


def body_text(response: httpx.Response) -> str:
    """The start of an answer's body, or its reason phrase: a complaint when the vendor has no shape."""
    return response.text[:200].strip() or response.reason_phrase


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    service: str,
    what: str,
    scrub: Callable[[str], str],
    log: Any,
    complaint: Callable[[httpx.Response], str] = body_text,
    also_retryable: Collection[int] = (),
    quiet: Collection[int] = (),
    **request: Any,
) -> httpx.Response:
    """One request to a vendor; its 2xx answer, or the error the caller can act on.

    No answer (a timeout, a refused or dropped connection) and the statuses ``retryable_status``
    names — plus the vendor's own ``also_retryable`` (Statuspage's 420) — are ``ActionRetryable``,
    with the server's ``Retry-After``; any other status is final. Messages say ``service``, ``what``
    and the vendor's ``complaint``, passed through ``scrub`` (the client's secret, the registered
    ones). ``log`` gets ``<service>.unreachable`` / ``<service>.refused`` lines (not for ``quiet``
    statuses, like a lookup's expected 404)."""
    name = service.lower()
    try:
        response = http.request(method, url, **request)
    except httpx.TransportError as exc:  # timeouts, refused and dropped connections
        log.warning(f"{name}.unreachable", what=what, error=type(exc).__name__)
        raise action_error(scrub(f"{service} {what}: {type(exc).__name__}: {exc}"), service=service) from exc
    status = response.status_code
    if response.is_success:
        return response
    said = scrub(complaint(response))
    if status not in quiet:
        log.warning(f"{name}.refused", what=what, status=status, complaint=said)
    message = f"{service} {what}: answered {status}: {said}"
    wait = retry_after(response)
    if status in also_retryable:
        raise ActionRetryable(message, wait, service=service, status=status)
    raise action_error(message, service=service, status=status, retry_after=wait)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """A 2xx answer's JSON object (a list comes back as ``{"items": [...]}``; anything else as {})."""
    try:
        answer = response.json()
    except ValueError:
        return {}
    if isinstance(answer, list):
        return {"items": [a for a in answer if isinstance(a, dict)]}
    return answer if isinstance(answer, dict) else {}
