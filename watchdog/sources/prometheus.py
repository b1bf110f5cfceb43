"""Prometheus, reading raw samples with a range selector (raw PromQL ranges through
prometheus-api-client).

An instant query of ``selector[Ns]`` at ``end`` returns the stored samples themselves (no
``increase()`` extrapolation), so the counts match direct scraping exactly for the same samples.
Every query has a timeout; any failure is ``SourceUnavailable``, and any answer that is not a
well-formed matrix (HTML from a proxy, truncated JSON, a body without ``data``, a vector where a
matrix was asked for) is ``SourceGarbled``: never a verdict, never an exception out of the tick.
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import requests
import requests.adapters
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from watchdog.errors import SourceGarbled, SourceUnavailable
from watchdog.series import Selector, Series, mark_ordered
from watchdog.sources.base import SeriesReader, parse_matrix

#: What prometheus-api-client raises when a 200 answer is not the JSON it expects.
#: (requests' own JSONDecodeError is also a RequestException: it must be caught first.)
_GARBLED = (requests.JSONDecodeError, KeyError, TypeError, ValueError)


#: Queries longer than this go in a POST body instead of the URL.
LONG_QUERY = 4096


def shown(query: str, limit: int = 240) -> str:
    """A query as errors and logs name it: in full when short, else its start and its length (one
    over a thousand services is mostly the alternation of their names)."""
    if len(query) <= limit:
        return repr(query)
    return f"{query[:limit]!r}… ({len(query)} characters)"


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
        self._headers, self._auth, self._retry = headers or {}, auth, retry
        self._session: requests.Session | None = None  # for instant queries (see _instant)
        self._reader = SeriesReader()  # remembers the label sets of its answers

    def _instant(self, query: str, at: float) -> Any:
        """An instant query, its answer parsed series by series as it is read (``SeriesReader``):
        a batched answer holds every watched service's samples, and read whole into lists and
        strings first it would cost several times their size at once. A query over every watched
        service holds an alternation of all of them (``watchdog.sources.batch``): past
        ``LONG_QUERY`` characters it is sent as a form body, as Prometheus's API allows, since
        proxies in front of it limit the length of URLs."""
        if self._session is None:
            self._session = requests.Session()
            self._session.mount(self.url, requests.adapters.HTTPAdapter(max_retries=self._retry))
        form = {"query": query, "time": f"{at:.3f}"}
        long = len(query) > LONG_QUERY
        answer = self._session.request(
            "POST" if long else "GET",
            f"{self.url}/api/v1/query",
            params=None if long else form,
            data=form if long else None,
            headers=self._headers,
            auth=self._auth,
            timeout=self.timeout_s,
        )
        if answer.status_code != 200:
            raise PrometheusApiClientException(
                f"HTTP Status Code {answer.status_code} ({answer.content[:200]!r})"
            )
        return json.loads(answer.content, object_pairs_hook=self._reader)["data"]["result"]

    def fetch(self, selector: Selector, start: float, end: float) -> list[Series]:
        sel = selector.with_matchers(*self._extra) if self._extra else selector
        # one second more than the range, so a sample exactly at ``start`` is in, whether the
        # server's range selectors are closed on the left (Prometheus 2) or open (Prometheus 3)
        span = max(1, math.ceil(end - start)) + 1
        query = f"{sel.promql()}[{span}s]"
        try:
            result = self._instant(query, end)
        except _GARBLED as exc:
            raise SourceGarbled(
                f"prometheus at {self.url} answered {shown(query)} with something that is not a query "
                f"result ({type(exc).__name__}: {exc})"
            ) from exc
        except (requests.RequestException, PrometheusApiClientException) as exc:
            raise SourceUnavailable(f"prometheus at {self.url} did not answer {shown(query)}: {exc}") from exc
        # the range selector is rounded up to whole seconds: samples just before ``start`` are ours to
        # trim; anything after ``end`` is left for the checks to find (Prometheus never sends it)
        where = f"prometheus answer to {shown(query)}"
        series = parse_matrix(result, where)
        mark_ordered(series)
        return [s.between(start, math.inf) for s in series]

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
