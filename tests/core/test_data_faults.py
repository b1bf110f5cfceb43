"""The data-fault matrix: the faults real monitoring produces, through each of the three sources.

Missing data is not evidence: a hole, a restart or garbage never rolls a healthy release back,
and a release nobody could observe is never promoted. Each test asserts the decision and the
reason the decision log gives for it.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sentry_sdk

from actions.pagerduty import PagerDuty
from tests.fixtures.broken import BrokenFor, SentryCapture
from tests.fixtures.faults import SOURCES, START, STEP, config, make_deploy, run_watch, serve
from watchdog.clock import SimClock
from watchdog.emulator.pagerduty import ROUTING_KEY, PagerDutyEmulator
from watchdog.engine import Engine
from watchdog.errors import SourceGarbled
from watchdog.observability import configure_logging, init_sentry, register_secrets
from watchdog.phases import DecisionKind, SignalState
from watchdog.quality import check_answer
from watchdog.series import Selector, Series
from watchdog.sources import PrometheusSource
from watchdog.sources.base import parse_matrix
from watchdog.sources.prometheus import LONG_QUERY
from watchdog.store import ReleaseRef, Store

pytestmark = pytest.mark.slow
DAYS_OF_HISTORY = 20.0 * 86400 * 20  # a process up for 20 days at 20 req/s


def minute(m: float) -> float:
    """``m`` minutes into the data (the deploy is at minute 20)."""
    return START + m * 60


@pytest.mark.parametrize("source", SOURCES)
def test_a_long_gap_on_old_counters_is_counted_across_not_as_new_events(source: str, tmp_path: Path) -> None:
    """Before/after, a release that restarts nothing, counters with days of history, and an 6½-minute
    hole — longer than the lookback. The hole's events are the difference across it; read as a new
    series they were the counters' whole history (and a rollback)."""
    d = make_deploy(canary=False, history_events=DAYS_OF_HISTORY)
    d.drop(d.deploy_at + 600, d.deploy_at + 990, ("app-all",))
    out = run_watch(source, d, tmp_path, min_coverage=0.7)
    assert out.decision == "promote", [e.reason for e in out.store.decisions()]
    blind = out.entries(DecisionKind.BLIND.value)
    assert [e.result for e in blind] == ["blind", "seeing"]
    assert "no sample of the release for" in blind[0].reason


@pytest.mark.parametrize("source", SOURCES)
def test_a_gap_that_leaves_too_little_coverage_ends_inconclusive_never_promoted(
    source: str, tmp_path: Path
) -> None:
    d = make_deploy(canary=False, history_events=DAYS_OF_HISTORY)
    d.drop(d.deploy_at + 300, d.deploy_at + 960, ("app-all",))  # 11 minutes of a 30-minute watch
    out = run_watch(source, d, tmp_path)
    assert out.decision == "inconclusive"
    (entry,) = out.entries(DecisionKind.INCONCLUSIVE.value)
    assert "http_5xx: data in 6" in entry.reason and "(needs 80%)" in entry.reason
    assert "held for a human" in entry.reason
    assert out.store.current_pin("prod", "svc").tag == "v1"


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_release_is_still_caught_after_a_long_gap(source: str, tmp_path: Path) -> None:
    d = make_deploy(canary=False, history_events=DAYS_OF_HISTORY, err_after=0.08)
    d.drop(d.deploy_at + 60, d.deploy_at + 480, ("app-all",))
    out = run_watch(source, d, tmp_path)
    assert out.decision == "rollback"
    (entry,) = out.entries(DecisionKind.ROLLBACK_DECIDED.value)
    assert entry.evidence["failed"][0]["signal"] == "http_5xx"


@pytest.mark.parametrize("source", SOURCES)
def test_a_canary_watch_through_a_monitoring_outage_is_not_failed(source: str, tmp_path: Path) -> None:
    """Every series gone for 7 minutes (Prometheus or the scraper down), counters with history."""
    d = make_deploy(canary=True, history_events=DAYS_OF_HISTORY)
    d.drop(d.deploy_at + 300, d.deploy_at + 720, ("app-canary", "app-baseline", "blackbox"))
    out = run_watch(source, d, tmp_path, min_coverage=0.7)
    assert out.decision == "promote", [e.reason for e in out.store.decisions()]


@pytest.mark.parametrize("source", SOURCES)
def test_a_restart_mid_watch_with_lost_scrapes_creates_no_events(source: str, tmp_path: Path) -> None:
    d = make_deploy(canary=True, history_events=DAYS_OF_HISTORY, restart_at=minute(20 + 12))
    t = minute(20 + 12)
    d.drop(t - 2 * STEP, t + STEP, ("app-canary",))  # the restart itself is never scraped
    out = run_watch(source, d, tmp_path)
    assert out.decision == "promote", [e.reason for e in out.store.decisions()]


@pytest.mark.parametrize("source", SOURCES)
def test_a_canary_whose_exporter_dies_is_never_promoted(source: str, tmp_path: Path) -> None:
    """The canary's /metrics stops 2 minutes after the deploy and never comes back; its blackbox
    probe keeps passing. One early tick with data is not a watch."""
    d = make_deploy(canary=True)
    d.drop(d.deploy_at + 120, d.end, ("app-canary",))
    out = run_watch(source, d, tmp_path)
    assert out.decision == "inconclusive"
    (entry,) = out.entries(DecisionKind.INCONCLUSIVE.value)
    assert "http_5xx: data in 7% of 120 steps (needs 80%)" in entry.reason
    assert entry.evidence["unseen"] == {"http_5xx": "data in 7% of 120 steps (needs 80%)"}
    assert out.store.current_pin("prod", "svc").tag == "v1"
    blind = out.entries(DecisionKind.BLIND.value)
    assert blind and "http_5xx: no sample of the release for" in blind[0].reason


@pytest.mark.parametrize("source", SOURCES)
def test_a_canary_that_vanishes_while_its_probe_fails_is_rolled_back(source: str, tmp_path: Path) -> None:
    """A crash-looping canary: its series stop and the blackbox probe of it fails."""
    d = make_deploy(canary=True, probe_fails_from=minute(21))
    d.drop(minute(21), d.end, ("app-canary",))
    out = run_watch(source, d, tmp_path)
    assert out.decision == "rollback"
    (entry,) = out.entries(DecisionKind.ROLLBACK_DECIDED.value)
    assert entry.evidence["failed"][0]["signal"] == "healthcheck"


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("NaN", "NaN or infinite"),
        ("+Inf", "NaN or infinite"),
        ("-40", "negative"),
        ("1", "went down and came back"),
    ],
)
def test_garbage_samples_make_the_signal_blind_for_that_tick_not_failed(
    source: str, value: str, reason: str, tmp_path: Path
) -> None:
    """One bad sample of the canary's request counter: dropped, said, and never evidence."""
    d = make_deploy(canary=True, history_events=DAYS_OF_HISTORY)
    at = minute(30)
    d.set("http_requests_total", "canary", at, value, code="200")
    out = run_watch(source, d, tmp_path)
    assert out.decision == "promote", [e.reason for e in out.store.decisions()]
    errors = [
        v for v in out.store.verdicts(1) if v.signal == "http_5xx" and v.state == SignalState.ERROR.value
    ]
    assert len(errors) == 1 and reason in errors[0].summary, [v.summary for v in out.store.verdicts(1)]


# ----------------------------------------------------------------------------- garbled answers

GARBLED = {
    "html": (200, "text/html", b"<html><body>502 Bad Gateway</body></html>", "not a query result"),
    "truncated json": (
        200,
        "application/json",
        b'{"status":"success","data":{"resultType":"matr',
        "not a query",
    ),
    "no data": (200, "application/json", b'{"status":"success"}', "not a query result"),
    "vector": (
        200,
        "application/json",
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"x"},'
        b'"value":[1764301800,"1"]}]}}',
        "instant vector",
    ),
    "values not pairs": (
        200,
        "application/json",
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1]]}]}}',
        "not [time",
    ),
    "duplicate series": (
        200,
        "application/json",
        json.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [
                        {
                            "metric": {"__name__": "http_requests_total", "cohort": "canary"},
                            "values": [[START, "1"]],
                        }
                    ]
                    * 2,
                },
            }
        ).encode(),
        "holds this series 2 times",
    ),
}


class _Broken(BaseHTTPRequestHandler):
    answer: tuple[int, str, bytes, str]

    def do_GET(self) -> None:
        status, ctype, body, _ = self.answer
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # a query too long for a URL comes as a form body
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.do_GET()

    def log_message(self, *_args: object) -> None:
        """Quiet."""


def _answered(url: str, selector: Selector) -> object:
    """What ``fetch`` made of the answer: the series' labels and samples, or the error."""
    try:
        got = PrometheusSource(url).fetch(selector, START - 600, START + 600)
    except SourceGarbled as exc:
        return ("garbled", re.sub(r"(answered|answer to) '.*?'(… \(\d+ characters\))?", r"\1 Q", str(exc)))
    return [(dict(s.labels), s.t.tolist(), [repr(v) for v in s.v.tolist()]) for s in got]  # NaN == NaN


WELL_FORMED = json.dumps(
    {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"__name__": "x_total", "job": "a"},
                    "values": [[START, "1"], [START + 15, "+Inf"]],
                },
                {"metric": {"__name__": "x_total", "job": "b"}, "values": [[START + 1.5, "NaN"]]},
                {"metric": {"__name__": "x_total", "job": "c"}, "values": []},
                {"metric": {"__name__": "x_total", "job": "d"}, "values": [[START, "2"]], "extra": 1},
            ],
        },
    }
).encode()


@pytest.mark.parametrize("kind", [*sorted(GARBLED), "well formed"])
def test_a_long_query_posted_reads_its_answer_as_a_short_one_does(kind: str) -> None:
    """Answers are parsed series by series as they are read (``SeriesReader``, for memory); what
    comes out, or the error naming what was wrong, is what parsing the answer whole gives, for a
    short query and for one past ``LONG_QUERY`` (posted as a form)."""
    answer = GARBLED.get(kind, (200, "application/json", WELL_FORMED, ""))
    handler = type("Broken", (_Broken,), {"answer": answer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    short = Selector.of("x_total", {"job": "a"})
    long = Selector.of("x_total", {"job": "|".join(f"service-{i:05d}" for i in range(LONG_QUERY // 10))})
    try:
        assert len(short.promql()) < LONG_QUERY < len(long.promql())
        by_get, by_post = _answered(url, short), _answered(url, long)
    finally:
        server.shutdown()
        server.server_close()
    assert by_post == by_get
    try:
        whole = parse_matrix(json.loads(answer[2])["data"]["result"], "x")
    except (ValueError, KeyError, SourceGarbled):
        assert by_get[0] == "garbled"  # type: ignore[index]
    else:
        assert by_get == [(dict(s.labels), s.t.tolist(), [repr(v) for v in s.v.tolist()]) for s in whole]
    if kind == "well formed":
        assert [labels["job"] for labels, _, _ in by_post] == ["a", "b", "c", "d"]  # type: ignore[union-attr]
    elif kind != "duplicate series":  # two copies parse; the checks of the answer find them
        assert by_post[0] == "garbled" and answer[3] in by_post[1]  # type: ignore[index]


@pytest.mark.parametrize("kind", sorted(GARBLED))
def test_a_garbled_prometheus_answer_makes_the_signal_blind_and_never_raises(
    kind: str, tmp_path: Path
) -> None:
    handler = type("Broken", (_Broken,), {"answer": GARBLED[kind]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        d = make_deploy(canary=True)
        cfg = config(tmp_path, d)
        clock = SimClock(d.deploy_at)
        store = Store.open(cfg.store.url)
        engine = Engine(cfg, store, PrometheusSource(f"http://127.0.0.1:{server.server_address[1]}"), clock)
        engine.pin("prod", "svc", ReleaseRef("v1"), actor="test", reason="seed")
        engine.announce("prod", "svc", ReleaseRef("v2"))
        for _ in range(3):
            engine.tick()  # never raises
            clock.advance(STEP)
    finally:
        server.shutdown()
        server.server_close()
    (verdict,) = [v for v in store.verdicts(1) if v.signal == "http_5xx"]
    assert verdict.state == SignalState.ERROR.value and GARBLED[kind][3] in verdict.summary
    (blind,) = [e for e in store.decisions() if e.kind == DecisionKind.BLIND.value]
    assert blind.result == "blind" and GARBLED[kind][3] in blind.reason
    assert store.open_incidents() == [] and engine.faults == 0


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([[START + 30, "5"], [START + 15, "6"]], "out of time order"),
        ([[START, "5"], [START + 10_000_000, "6"]], "outside the range asked for"),
    ],
)
def test_samples_out_of_order_or_in_the_future_are_dropped_and_said(
    values: list[list[object]], reason: str
) -> None:
    series = [Series.from_pairs({"__name__": "x_total"}, values)]
    checked = check_answer(series, START - 300, START + 60, counter=True, confirm_s=60)
    assert checked.series[0].t.tolist() == [START if "range" in reason else START + 30]
    assert reason in str(checked.faults[0])


# ----------------------------------------------------------------------------- faults are seen


def test_one_watch_raising_is_reported_and_the_others_still_advance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_secrets(["ghp_0123456789abcdef"])
    configure_logging("json", "info", stream=sys.stdout)
    transport = SentryCapture()
    init_sentry("https://key@127.0.0.1/1", "test", "0", transport=transport)
    try:
        d = make_deploy(canary=True, watch_s=300)
        cfg = config(tmp_path, d)
        broken = cfg.services[0].model_copy(update={"name": "broken", "match": {"job": "broken"}})
        cfg = cfg.model_copy(update={"services": [broken, cfg.services[0]]})
        clock = SimClock(START)
        with serve("replay", d, clock, tmp_path) as inner:
            store = Store.open(cfg.store.url)
            engine = Engine(
                cfg,
                store,
                BrokenFor(inner, "an unexpected bug with a token ghp_0123456789abcdef in its text"),
                clock,
            )
            for svc in ("broken", "svc"):
                engine.pin("prod", svc, ReleaseRef("v1"), actor="test", reason="seed")
            clock.set(d.deploy_at)
            for svc in ("broken", "svc"):
                engine.announce("prod", svc, ReleaseRef("v2"))
            while clock.now() <= d.end:
                engine.tick()
                clock.advance(STEP)
        sentry_sdk.flush()
    finally:
        sentry_sdk.init()  # no DSN: off again
        configure_logging("console", "warning")
    promoted = [e.service for e in store.decisions() if e.kind == DecisionKind.PROMOTED.value]
    assert promoted == ["svc"]  # the healthy service's watch ran to its end
    assert engine.faults >= 20  # the broken one failed at every tick, and said so every time
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x.get("event") == "watch evaluation failed"]
    assert failed and failed[0]["error_type"] == "RuntimeError" and failed[0]["service"] == "broken"
    assert "an unexpected bug" in failed[0]["error"] and "ghp_0123456789abcdef" not in json.dumps(lines)
    assert transport.events, "Sentry received nothing"
    assert "an unexpected bug" in json.dumps(transport.events)
    assert "ghp_0123456789abcdef" not in json.dumps(transport.events)


def test_a_watch_blind_for_longer_than_the_limit_pages_once_and_resolves_when_data_returns(
    tmp_path: Path, pagerduty_emulator: PagerDutyEmulator
) -> None:
    d = make_deploy(canary=True)
    d.drop(d.deploy_at + 120, d.deploy_at + 1020, ("app-canary",))  # 15 minutes without the canary
    with httpx.Client() as http:
        pager = PagerDuty(pagerduty_emulator.url, ROUTING_KEY, http)
        out = run_watch("replay", d, tmp_path, pager=pager, blind_page_after_s=300, on_inconclusive="hold")
    assert out.decision == "inconclusive"  # 15 of 30 minutes unseen
    alert = pagerduty_emulator.alert("rollback-watchdog/blind/prod/svc/watch-1")
    assert alert.triggers == 1 and alert.status == "resolved"
    assert (
        "blind on svc v2 in prod" in alert.summary and "http_5xx: no sample of the release" in alert.summary
    )
    results = [e.result for e in out.entries(DecisionKind.BLIND.value)]
    assert results == ["blind", "paged", "seeing"]


def test_a_reader_remembers_label_sets_and_reads_them_as_parsing_afresh_does() -> None:
    """The Prometheus source's reader remembers the label sets it has read: a series answered
    again gets the same labels, identity and groupings at once; labels in any order get the key
    of their sorted names; what is not a series of string labels stays for ``parse_matrix`` to
    judge; and past its limit the reader starts afresh without reading anything differently."""
    from watchdog.series import label_key
    from watchdog.sources.base import SeriesReader

    reader = SeriesReader(limit=2)
    body = json.dumps(
        [
            {"metric": {"job": "a", "__name__": "x_total"}, "values": [[1, "1"], [2, "2"]]},
            {"metric": {"__name__": "x_total", "job": "b"}, "values": []},
            {"metric": {"__name__": "x_total", "job": ["not", "a", "label"]}, "values": [[1, "1"]]},
        ]
    )
    first = json.loads(body, object_pairs_hook=reader)
    again = json.loads(body, object_pairs_hook=reader)
    answered = ({"job": "a", "__name__": "x_total"}, {"__name__": "x_total", "job": "b"})
    for s, labels in zip(first[:2], answered, strict=True):
        assert dict(s.labels) == labels and s.key == label_key(labels)
    assert first[0].t.tolist() == [1.0, 2.0] and first[0].v.tolist() == [1.0, 2.0] and first[1].t.size == 0
    assert again[0].labels is first[0].labels and again[0].key is first[0].key
    assert again[0].group(("job",)) == ("a",) and first[0]._groups is again[0]._groups
    assert type(first[2]) is dict and type(again[2]) is dict
    third = json.loads(
        json.dumps([{"metric": {"__name__": "y_total"}, "values": [[3, "NaN"]]}]), object_pairs_hook=reader
    )
    fourth = json.loads(body, object_pairs_hook=reader)  # the limit was reached: read afresh
    assert third[0].key == ("__name__", "y_total") and math.isnan(third[0].v[0])
    assert [(dict(s.labels), s.t.tolist(), s.v.tolist()) for s in fourth[:2]] == [
        (dict(s.labels), s.t.tolist(), s.v.tolist()) for s in first[:2]
    ]
