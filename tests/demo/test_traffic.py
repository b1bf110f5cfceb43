"""The traffic generator against real demo services: split, mix, restarts and stopping.

Bounds are loose on purpose: the tests count requests and compare proportions, and only wait for
counts to be reached (with generous deadlines), so a loaded 2-core machine does not make them flaky.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from watchdog.clock import RealClock
from watchdog.demo.service import ServiceProcess
from watchdog.demo.traffic import REQUEST_MIX, Target, TrafficGenerator, parse_target

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], bool], deadline_s: float = 20.0) -> None:
    """Poll until the condition holds; the deadline only guards against a hang, it is not the assertion."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.05)


def counted_requests(url: str) -> float:
    """The service's own count of the requests it answered (http_requests_total over all series)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "http_requests_total"
    )


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    with (
        ServiceProcess("v1.0.0", "baseline", seed=1) as base,
        ServiceProcess("v1.0.1", "canary", seed=2) as canary,
    ):
        yield base, canary


def test_rate_split_and_mix(services: tuple[ServiceProcess, ServiceProcess]) -> None:
    base, canary = services
    before = {s.url: counted_requests(s.url) for s in services}
    clock = RealClock()
    gen = TrafficGenerator(
        [Target(base.url, 0.75, "baseline"), Target(canary.url, 0.25, "canary")],
        80.0,
        clock,
        np.random.default_rng(7),
    )
    start = clock.now()
    gen.start()
    try:
        wait_for(lambda: sum(s.sent for s in gen.stats().values()) >= 300)
        stats = gen.stats()
        elapsed = clock.now() - start
    finally:
        gen.stop()
    dispatched = sum(s.sent + s.dropped for s in stats.values())
    # Poisson(80/s): the generator's own count against its own clock, with a very wide band.
    assert 0.5 * 80 * elapsed <= dispatched + 20 <= 1.6 * 80 * elapsed + 40
    sent = {k: s.sent for k, s in stats.items()}
    assert 0.15 <= sent["canary"] / sum(sent.values()) <= 0.35
    kinds: dict[str, int] = {}
    for s in stats.values():
        for kind, n in s.by_kind.items():
            kinds[kind] = kinds.get(kind, 0) + n
    assert set(kinds) <= set(REQUEST_MIX)
    assert max(kinds, key=lambda k: kinds[k]) == "claim"
    assert kinds.get("claim_dry_run", 0) > 0.1 * sum(kinds.values())
    assert kinds.get("health", 0) > 0 and kinds.get("claim_reuse", 0) < 0.1 * sum(kinds.values())

    final = gen.stats()
    for target, svc in (("baseline", base), ("canary", canary)):
        s = final[target]
        assert s.failed == 0 and s.responses == s.sent
        assert sum(s.by_status.values()) == s.responses
        assert s.by_status.get(200, 0) > 0.7 * s.responses
        # Every response the generator got was counted by that service, and nothing else was.
        assert counted_requests(svc.url) - before[svc.url] == s.responses


def test_set_targets_moves_traffic_live(services: tuple[ServiceProcess, ServiceProcess]) -> None:
    base, canary = services
    gen = TrafficGenerator(
        [Target(base.url, 1.0, "baseline"), Target(canary.url, 0.0, "canary")],
        50.0,
        RealClock(),
        np.random.default_rng(8),
    )
    with gen:
        wait_for(lambda: gen.stats()["baseline"].sent >= 40)
        assert gen.stats()["canary"].sent == 0
        gen.set_targets([Target(base.url, 0.0, "baseline"), Target(canary.url, 1.0, "canary")])
        moved_at = gen.stats()["baseline"].sent
        wait_for(lambda: gen.stats()["canary"].sent >= 60)
        # At most the requests already queued when the weights changed still went to the baseline.
        assert gen.stats()["baseline"].sent - moved_at <= 20
        gen.set_targets([Target(canary.url, 1.0, "canary-renamed")])
        wait_for(
            lambda: gen.stats().get("canary-renamed") is not None and gen.stats()["canary-renamed"].sent >= 5
        )
    assert "baseline" in gen.stats()  # counters of removed targets are kept


def test_survives_target_stop_and_restart() -> None:
    with (
        ServiceProcess("v1.0.0", "baseline", seed=3) as base,
        ServiceProcess("v1.1.0", "canary", seed=4) as canary,
    ):
        gen = TrafficGenerator(
            [Target(base.url, 0.5, "baseline"), Target(canary.url, 0.5, "canary")],
            50.0,
            RealClock(),
            np.random.default_rng(9),
        )
        with gen:
            wait_for(lambda: gen.stats()["canary"].responses >= 20)
            canary.stop()
            wait_for(lambda: gen.stats()["canary"].failed >= 5)
            assert gen.running
            canary.start()
            seen = gen.stats()["canary"].responses
            wait_for(lambda: gen.stats()["canary"].responses >= seen + 10)
            canary.restart("v1.2.0")
            seen = gen.stats()["canary"].responses
            wait_for(lambda: gen.stats()["canary"].responses >= seen + 10)
            assert gen.running
        stats = gen.stats()
        assert stats["canary"].failed >= 5
        assert stats["canary"].sent == stats["canary"].responses + stats["canary"].failed
        assert stats["baseline"].failed == 0
        assert httpx.get(f"{canary.url}/health", timeout=10).json()["version"] == "v1.2.0"
        assert counted_requests(canary.url) > 0


def test_unreachable_target_is_counted_not_raised() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = TrafficGenerator(
        [Target(f"http://127.0.0.1:{port}", 1.0)], 40.0, RealClock(), np.random.default_rng(1)
    )
    with gen:
        wait_for(lambda: gen.stats()[f"http://127.0.0.1:{port}"].failed >= 10)
    s_ = gen.stats()[f"http://127.0.0.1:{port}"]
    assert s_.responses == 0 and s_.failed == s_.sent


def test_stop_ends_sending_even_with_slow_requests_in_flight() -> None:
    with ServiceProcess("v1.1.0", "canary", seed=6) as slow:
        gen = TrafficGenerator(
            [Target(slow.url, 1.0, "slow")], 80.0, RealClock(), np.random.default_rng(2), workers=4
        )
        gen.start()
        wait_for(lambda: gen.stats()["slow"].sent >= 20)
        gen.stop(timeout_s=0.5)
        assert not gen.running
        after_stop = gen.stats()["slow"].sent
        time.sleep(0.3)
        assert gen.stats()["slow"].sent == after_stop
        # A slow target saturates 4 workers: the excess is dropped, not queued without bound.
        assert gen.stats()["slow"].dropped > 0
    gen.stop()  # stopping twice is harmless


def test_parse_target() -> None:
    assert parse_target("http://127.0.0.1:8000=0.2") == Target("http://127.0.0.1:8000", 0.2)
    assert parse_target("http://h:1/?a=b=0.5").weight == 0.5
    assert parse_target("http://h:1") == Target("http://h:1", 1.0)
    with pytest.raises(ValueError):
        Target("h:1", 1.0)
    with pytest.raises(ValueError):
        Target("http://h:1", -1.0)


def test_cli_runs_for_its_duration_and_reports(services: tuple[ServiceProcess, ServiceProcess]) -> None:
    base, canary = services
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "watchdog.demo.traffic",
        "--target",
        f"{base.url}=0.8",
        "--target",
        f"{canary.url}=0.2",
        "--rate",
        "40",
        "--duration",
        "1.5",
        "--seed",
        "5",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    targets = summary["targets"]
    assert set(targets) == {base.url, canary.url}
    assert targets[base.url]["sent"] > 0 and targets[base.url]["failed"] == 0
    assert sum(t["sent"] for t in targets.values()) > 10
