"""The demo stamps API, tested as the watchdog meets it: a real process answering real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from watchdog.demo.service import LATENCY_BUCKETS, DemoServiceError, ServiceProcess
from watchdog.demo.versions import VERSIONS, UnknownVersionError

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(client: httpx.Client, url: str) -> tuple[dict[str, str], dict[Sample, float]]:
    """Family name -> type, and (sample name, labels) -> value, from one /metrics scrape."""
    r = client.get(f"{url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    types: dict[str, str] = {}
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(r.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return types, samples


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict[Sample, float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def claim(
    client: httpx.Client,
    url: str,
    token: str,
    *,
    dry: bool = False,
    header_dry: bool = False,
    proof: str | None = None,
    tenant: str = "t1",
    card: str = "c1",
) -> httpx.Response:
    body: dict[str, object] = {"tenant": tenant, "card": card, "token": token}
    if dry:
        body["dry_run"] = True
    headers = {"X-Dry-Run": "1"} if header_dry else {}
    if proof is not None:
        headers["X-Device-Proof"] = proof
    return client.post(f"{url}/v1/stamps/claim", json=body, headers=headers)


@pytest.fixture(scope="module")
def good() -> Iterator[ServiceProcess]:
    # v1.2.0 has the lowest error rates; the seed fixes the draws of these sequential requests.
    with ServiceProcess("v1.2.0", "baseline", seed=11) as proc:
        yield proc


@pytest.fixture()
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as c:
        yield c


def test_health_reports_version(good: ServiceProcess, client: httpx.Client) -> None:
    r = client.get(f"{good.url}/health")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"status": "ok", "version": "v1.2.0", "cohort": "baseline"}


def test_claim_dry_run_has_no_side_effects(good: ServiceProcess, client: httpx.Client) -> None:
    _, before = scrape(client, good.url)
    for in_body in (True, False):
        r = claim(client, good.url, "dry-token-1", proof="p", card="dry", dry=in_body, header_dry=not in_body)
        assert r.status_code == 200
        assert r.json()["dry_run"] is True and r.json()["would_claim"] is True
    _, after = scrape(client, good.url)
    for name in ("stamps_claims_total", "stamps_token_reuse_total", "device_proof_attempts_total"):
        assert value(after, name, cohort="baseline") == value(before, name, cohort="baseline")
    r = claim(client, good.url, "dry-token-1", card="dry")
    assert r.status_code == 200 and r.json() == {"claimed": True, "stamps": 1, "tenant": "t1", "card": "dry"}
    r = claim(client, good.url, "dry-token-1", dry=True, card="dry")
    assert r.status_code == 200 and r.json()["would_claim"] is False and r.json()["reason"] == "token_reused"


def test_token_reuse_is_409_and_counted(good: ServiceProcess, client: httpx.Client) -> None:
    _, before = scrape(client, good.url)
    assert claim(client, good.url, "reuse-me", card="reuse").status_code == 200
    r = claim(client, good.url, "reuse-me", card="reuse")
    assert r.status_code == 409 and r.json()["error"] == "token_reused"
    assert claim(client, good.url, "reuse-me", card="other").status_code == 409
    assert claim(client, good.url, "reuse-me", tenant="t2", card="reuse").status_code == 200
    _, after = scrape(client, good.url)
    delta = value(after, "stamps_token_reuse_total", cohort="baseline") - value(
        before, "stamps_token_reuse_total", cohort="baseline"
    )
    assert delta == 2
    assert (
        value(after, "stamps_claims_total", cohort="baseline")
        - value(before, "stamps_claims_total", cohort="baseline")
        == 2
    )


def test_device_proof_is_checked_and_counted(good: ServiceProcess, client: httpx.Client) -> None:
    _, before = scrape(client, good.url)
    codes = Counter(
        claim(client, good.url, f"proof-{i}", proof=f"proof-{i}", card="p").status_code for i in range(40)
    )
    r = claim(client, good.url, "empty-proof", proof="", card="p")
    assert r.status_code == 401 and r.json()["error"] == "device_proof_failed"
    # The empty proof did not consume the token.
    assert claim(client, good.url, "empty-proof", card="p").status_code == 200
    _, after = scrape(client, good.url)
    assert codes[200] >= 35 and set(codes) <= {200, 401, 500}
    attempts = value(after, "device_proof_attempts_total", cohort="baseline") - value(
        before, "device_proof_attempts_total", cohort="baseline"
    )
    failures = value(after, "device_proof_failures_total", cohort="baseline") - value(
        before, "device_proof_failures_total", cohort="baseline"
    )
    assert attempts == 40 - codes[500] + 1
    assert failures == codes[401] + 1


def test_redeem_needs_enough_stamps(good: ServiceProcess, client: httpx.Client) -> None:
    url = f"{good.url}/v1/rewards/redeem"
    card = {"tenant": "t3", "card": "redeem"}
    r = client.post(url, json={**card, "reward": "coffee", "dry_run": True})
    assert r.status_code == 200 and r.json()["would_redeem"] is False
    r = client.post(url, json={**card, "reward": "coffee"})
    assert r.status_code == 409 and r.json()["error"] == "not_enough_stamps"
    for i in range(5):
        assert claim(client, good.url, f"redeem-{i}", tenant="t3", card="redeem").status_code == 200
    r = client.post(url, json={**card, "reward": "coffee"}, headers={"X-Dry-Run": "1"})
    assert r.status_code == 200 and r.json()["would_redeem"] is True and r.json()["stamps"] == 5
    r = client.post(url, json={**card, "reward": "coffee"})
    assert r.status_code == 200 and r.json() == {"redeemed": True, "reward": "coffee", "stamps": 0, "cost": 5}
    assert client.post(url, json={**card, "reward": "coffee"}).status_code == 409
    assert client.post(url, json={**card, "reward": "yacht"}).status_code == 400


def test_bad_requests_are_4xx(good: ServiceProcess, client: httpx.Client) -> None:
    claim_url = f"{good.url}/v1/stamps/claim"
    assert client.post(claim_url, content=b"{not json").status_code == 400
    assert client.post(claim_url, json={"tenant": "t1", "card": "c1"}).status_code == 400
    assert (
        client.post(
            claim_url, json={"tenant": "t1", "card": "c1", "token": "x", "dry_run": "yes"}
        ).status_code
        == 400
    )
    assert client.get(claim_url).status_code == 405
    assert client.get(f"{good.url}/nope").status_code == 404


def test_pwa_index_manifest_and_service_worker(good: ServiceProcess, client: httpx.Client) -> None:
    index = client.get(f"{good.url}/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    for needle in (
        'rel="manifest" href="/manifest.webmanifest"',
        'register("/sw.js")',
        'fetch("/health")',
        '"X-Dry-Run": "1"',
        "dry_run: true",
        "v1.2.0",
    ):
        assert needle in index.text
    manifest = client.get(f"{good.url}/manifest.webmanifest")
    assert manifest.status_code == 200
    assert manifest.headers["content-type"] == "application/manifest+json"
    m = json.loads(manifest.text)
    assert m["name"] and m["short_name"] and m["start_url"] == "/" and m["display"] == "standalone"
    assert {icon["sizes"] for icon in m["icons"]} >= {"192x192", "512x512"}
    for icon in m["icons"]:
        r = client.get(f"{good.url}{icon['src']}")
        assert r.status_code == 200 and r.headers["content-type"] == icon["type"] == "image/png"
        assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
        side = int(icon["sizes"].split("x")[0])
        assert int.from_bytes(r.content[16:20], "big") == side
    sw = client.get(f"{good.url}/sw.js")
    assert sw.status_code == 200 and sw.headers["content-type"].startswith("application/javascript")
    assert 'addEventListener("fetch"' in sw.text and "stamps-shell-v1.2.0" in sw.text


def test_metrics_names_labels_and_counts(client: httpx.Client) -> None:
    with ServiceProcess("v1.0.0", "canary", seed=3) as svc:
        seen: Counter[tuple[str, int]] = Counter()
        for _ in range(12):
            seen[("/health", client.get(f"{svc.url}/health").status_code)] += 1
        real: Counter[int] = Counter()
        for i in range(20):
            code = claim(client, svc.url, f"m-{i % 15}", proof="ok").status_code
            real[code] += 1
            seen[("/v1/stamps/claim", code)] += 1
        for i in range(6):
            seen[("/v1/stamps/claim", claim(client, svc.url, f"d-{i}", dry=True).status_code)] += 1
        r = client.post(
            f"{svc.url}/v1/rewards/redeem", json={"tenant": "t1", "card": "c1", "reward": "coffee"}
        )
        seen[("/v1/rewards/redeem", r.status_code)] += 1
        seen[("/", client.get(f"{svc.url}/").status_code)] += 1
        seen[("unmatched", client.get(f"{svc.url}/missing").status_code)] += 1
        scrape(client, svc.url)
        types, samples = scrape(client, svc.url)

    expected_types = {
        "http_requests": "counter",
        "http_request_duration_seconds": "histogram",
        "stamps_claims": "counter",
        "stamps_token_reuse": "counter",
        "device_proof_attempts": "counter",
        "device_proof_failures": "counter",
        "cost_per_tenant": "gauge",
        "demo_build_info": "gauge",
    }
    assert {k: v for k, v in types.items() if k in expected_types} == expected_types
    assert all(k in expected_types or k.endswith("_created") for k in types)
    names = {n for n, _ in samples}
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_count",
        "http_request_duration_seconds_sum",
        "stamps_claims_total",
        "stamps_token_reuse_total",
        "device_proof_attempts_total",
        "device_proof_failures_total",
        "cost_per_tenant",
        "demo_build_info",
    ):
        assert name in names
    label_sets = {
        "http_requests_total": {"cohort", "code", "route"},
        "http_request_duration_seconds_bucket": {"cohort", "le"},
        "http_request_duration_seconds_count": {"cohort"},
        "http_request_duration_seconds_sum": {"cohort"},
        "stamps_claims_total": {"cohort"},
        "stamps_token_reuse_total": {"cohort"},
        "device_proof_attempts_total": {"cohort"},
        "device_proof_failures_total": {"cohort"},
        "cost_per_tenant": {"cohort", "tenant"},
        "demo_build_info": {"version", "cohort"},
    }
    for (name, labels), _ in samples.items():
        if name in label_sets:
            assert {k for k, _ in labels} == label_sets[name], name
            assert dict(labels)["cohort"] == "canary"

    counted = {
        (dict(labels)["route"], int(dict(labels)["code"])): v
        for (name, labels), v in samples.items()
        if name == "http_requests_total" and v > 0
    }
    assert counted == dict(seen)  # /metrics itself is not counted
    assert value(samples, "http_request_duration_seconds_count", cohort="canary") == sum(seen.values())
    les = sorted(float(dict(lb)["le"]) for (n, lb) in samples if n == "http_request_duration_seconds_bucket")
    assert les == [*LATENCY_BUCKETS, float("inf")]
    assert value(samples, "http_request_duration_seconds_bucket", cohort="canary", le="+Inf") == sum(
        seen.values()
    )
    assert real[409] >= 3  # tokens m-0..m-4 were sent twice
    assert value(samples, "stamps_claims_total", cohort="canary") == real[200]
    assert value(samples, "stamps_token_reuse_total", cohort="canary") == real[409]
    assert value(samples, "device_proof_failures_total", cohort="canary") == real[401]
    assert value(samples, "device_proof_attempts_total", cohort="canary") == 20 - real[500]
    assert value(samples, "demo_build_info", version="v1.0.0", cohort="canary") == 1
    assert value(samples, "cost_per_tenant", cohort="canary", tenant="t1") > 0


def _hammer(url: str, n: int, seed: int) -> Counter[int]:
    """n claims (a third of them dry runs) from 24 threads; returns the status codes."""

    http = httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=24))

    def one(i: int) -> int:
        body = {"tenant": "t1", "card": f"c{i % 10}", "token": f"h{seed}-{i}", "dry_run": i % 3 == 0}
        return http.post(f"{url}/v1/stamps/claim", json=body).status_code

    with http, ThreadPoolExecutor(24) as pool:
        return Counter(pool.map(one, range(n)))


def _latency(samples: dict[Sample, float], cohort: str) -> tuple[float, float]:
    """Mean latency and the share of requests at or under 200 ms, from the server's own histogram."""
    count = value(samples, "http_request_duration_seconds_count", cohort=cohort)
    mean = value(samples, "http_request_duration_seconds_sum", cohort=cohort) / count
    fast = value(samples, "http_request_duration_seconds_bucket", cohort=cohort, le="0.2") / count
    return mean, fast


def test_bad_version_errors_more_and_is_slower(client: httpx.Client) -> None:
    n = 300
    with (
        ServiceProcess("v1.0.0", "baseline", seed=21) as ok,
        ServiceProcess("v1.1.0", "canary", seed=22) as bad,
    ):
        with ThreadPoolExecutor(2) as pool:
            ok_codes_f = pool.submit(_hammer, ok.url, n, 1)
            bad_codes_f = pool.submit(_hammer, bad.url, n, 2)
            ok_codes, bad_codes = ok_codes_f.result(), bad_codes_f.result()
        _, ok_samples = scrape(client, ok.url)
        _, bad_samples = scrape(client, bad.url)
    ok_5xx = sum(v for k, v in ok_codes.items() if k >= 500)
    bad_5xx = sum(v for k, v in bad_codes.items() if k >= 500)
    # Expected 0.6 vs 24 of 300: the bounds are many standard deviations from either.
    assert ok_5xx <= 5
    assert bad_5xx >= 10
    assert (
        value(bad_samples, "http_requests_total", cohort="canary", code="500", route="/v1/stamps/claim")
        == bad_5xx
    )
    ok_mean, ok_fast = _latency(ok_samples, "baseline")
    bad_mean, bad_fast = _latency(bad_samples, "canary")
    # Lognormal: good mean ~0.044 s with 99.98% under 200 ms; bad mean ~0.2 s with ~65% under 200 ms.
    assert bad_mean > 2 * ok_mean
    assert bad_mean > 0.12
    assert ok_fast >= 0.9
    assert bad_fast <= 0.8


def test_version_table_matches_its_promises() -> None:
    assert {"v1.0.0", "v1.0.1", "v1.1.0", "v1.2.0"} <= set(VERSIONS)
    for name in ("v1.0.0", "v1.0.1", "v1.2.0"):
        p = VERSIONS[name]
        assert p.error_rate < 0.01 and p.latency_quantile_s(0.95) < 0.15 and p.health_ok
    bad = VERSIONS["v1.1.0"]
    assert bad.error_rate >= 0.05
    assert 0.12 <= bad.latency_quantile_s(0.5) <= 0.2
    assert bad.latency_quantile_s(0.95) > 0.3 and bad.latency_quantile_s(0.99) > 0.8
    assert bad.device_proof_failure_rate > 5 * VERSIONS["v1.0.0"].device_proof_failure_rate


def test_restart_keeps_port_resets_counters_and_serves_new_version(client: httpx.Client) -> None:
    with ServiceProcess("v1.1.0", "canary", seed=5) as svc:
        port, pid, url = svc.port, svc.pid, svc.url
        for i in range(6):
            claim(client, url, f"r-{i}")
        _, before = scrape(client, url)
        assert total(before, "http_requests_total") == 6
        svc.restart("v1.2.0")
        assert (svc.port, svc.url, svc.version) == (port, url, "v1.2.0")
        assert svc.pid != pid and svc.running
        assert client.get(f"{url}/health").json()["version"] == "v1.2.0"
        _, after = scrape(client, url)
        assert total(after, "http_requests_total") == 1
        assert value(after, "stamps_claims_total", cohort="canary") == 0
        assert value(after, "demo_build_info", version="v1.2.0", cohort="canary") == 1
        assert value(after, "demo_build_info", version="v1.1.0", cohort="canary") == 0
        # The store is per process too: an old token is fresh again.
        assert claim(client, url, "r-0").status_code == 200
        svc.restart()
        assert svc.port == port and svc.version == "v1.2.0"
        assert client.get(f"{url}/health").status_code == 200
    assert not svc.running
    with pytest.raises(httpx.ConnectError):
        client.get(f"{url}/health")


def test_stopped_service_starts_again_on_its_port(client: httpx.Client) -> None:
    svc = ServiceProcess("v1.0.1", "baseline").start()
    try:
        port = svc.port
        svc.stop()
        svc.start()
        assert svc.port == port
        assert client.get(f"{svc.url}/health").json()["version"] == "v1.0.1"
    finally:
        svc.stop()


def test_unhealthy_version_fails_health(client: httpx.Client) -> None:
    broken = next(v for v, p in VERSIONS.items() if not p.health_ok)
    with ServiceProcess(broken, "canary") as svc:
        r = client.get(f"{svc.url}/health")
        assert r.status_code == 503 and r.json()["status"] == "unhealthy"


def test_unknown_version_is_refused_clearly() -> None:
    with pytest.raises(UnknownVersionError, match=r"v9\.9\.9.*known versions: v1\.0\.0"):
        ServiceProcess("v9.9.9", "canary")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "watchdog.demo.service",
            "--port",
            "0",
            "--version",
            "v9.9.9",
            "--cohort",
            "canary",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 2
    assert "unknown demo version 'v9.9.9'" in done.stderr and done.stdout == ""


def test_restart_to_unknown_version_keeps_the_old_one(client: httpx.Client) -> None:
    with ServiceProcess("v1.0.0", "baseline") as svc:
        pid = svc.pid
        with pytest.raises(UnknownVersionError):
            svc.restart("v0.0.0-nope")
        assert svc.pid == pid and svc.version == "v1.0.0"
        assert client.get(f"{svc.url}/health").status_code == 200


def test_port_taken_by_another_process_is_an_error() -> None:
    with ServiceProcess("v1.0.0", "baseline") as first:
        second = ServiceProcess("v1.0.0", "canary", port=first.port, bind_retry_s=0.3)
        with pytest.raises(DemoServiceError, match="exited before it was ready"):
            second.start()


def test_cli_prints_ready_line_and_exits_cleanly_on_sigterm(client: httpx.Client) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "watchdog.demo.service",
        "--port",
        "0",
        "--version",
        "v1.0.1",
        "--cohort",
        "canary",
        "--seed",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["ready"] is True and ready["version"] == "v1.0.1" and ready["cohort"] == "canary"
        assert ready["pid"] == proc.pid and ready["port"] > 0
        assert client.get(f"http://127.0.0.1:{ready['port']}/health").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
