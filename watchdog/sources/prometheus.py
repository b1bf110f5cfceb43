"""Prometheus through prometheus-api-client, reading raw samples with a range selector.

An instant query of ``selector[Ns]`` at ``end`` returns the stored samples themselves (no
``increase()`` extrapolation), so the counts match direct scraping exactly for the same samples.
Every query has a timeout; any failure is ``SourceUnavailable``, and any answer that is not a
well-formed matrix (HTML from a proxy, truncated JSON, a body without ``data``, a vector where a
matrix was asked for) is ``SourceGarbled``: never a verdict, never an exception out of the tick.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from watchdog.errors import SourceGarbled, SourceUnavailable
from watchdog.series import Selector, Series
from watchdog.sources.base import parse_matrix

#: What prometheus-api-client raises when a 200 answer is not the JSON it expects.
#: (requests' own JSONDecodeError is also a RequestException: it must be caught first.)
_GARBLED = (requests.JSONDecodeError, KeyError, TypeError, ValueError)


class PrometheusSource:
    name = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        extra_matchers: tuple[Any, ...] = (),
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._extra = extra_matchers
        # Retries are the scheduler's business (the next tick asks again); one quick retry on
        # connection errors only, so a tick never blocks for long.
        retry = Retry(total=1, connect=1, read=0, status=0, backoff_factor=0.1)
        self._prom = PrometheusConnect(
            url=self.url, headers=headers or {}, auth=auth, retry=retry, timeout=math.ceil(timeout_s)
        )

    def fetch(self, selector: Selector, start: float, end: float) -> list[Series]:
        sel = selector.with_matchers(*self._extra) if self._extra else selector
        span = max(1, math.ceil(end - start))
        query = f"{sel.promql()}[{span}s]"
        try:
            result = self._prom.custom_query(query, params={"time": f"{end:.3f}"}, timeout=self.timeout_s)
        except _GARBLED as exc:
            raise SourceGarbled(
                f"prometheus at {self.url} answered {query!r} with something that is not a query result "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        except (requests.RequestException, PrometheusApiClientException) as exc:
            raise SourceUnavailable(f"prometheus at {self.url} did not answer {query!r}: {exc}") from exc
        # the range selector is rounded up to whole seconds: samples just before ``start`` are ours to
        # trim; anything after ``end`` is left for the checks to find (Prometheus never sends it)
        return [s.between(start, math.inf) for s in parse_matrix(result, f"prometheus answer to {query!r}")]

    def fetch_expr(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        """Evaluate a raw PromQL expression over a range (the escape hatch for gauge signals)."""
        try:
            result = self._prom.custom_query_range(
                expr,
                start_time=_dt(start),
                end_time=_dt(end),
                step=f"{max(step_s, 1):g}s",
                timeout=self.timeout_s,
            )
        except _GARBLED as exc:
            raise SourceGarbled(
                f"prometheus at {self.url} answered {expr!r} with something that is not a query result "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        except (requests.RequestException, PrometheusApiClientException) as exc:
            raise SourceUnavailable(f"prometheus at {self.url} did not answer {expr!r}: {exc}") from exc
        return parse_matrix(result, f"prometheus answer to {expr!r}")


def _dt(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, tz=datetime.UTC)
