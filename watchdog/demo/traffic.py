"""Synthetic user traffic for the demo stamps API, split across cohorts like a load balancer would.

The watchdog only judges a release by what traffic does to the metrics, so the demo needs steady,
realistic traffic: mostly claims (real ones with fresh tokens and dry runs), a little deliberate
token reuse, some redeems, health checks and the odd PWA page load, arriving as a Poisson process.

Every random choice is drawn from one seeded generator in the dispatcher thread, and every wait
goes through the injected clock; the HTTP calls run on a small thread pool. A target that is down
(a release being restarted) is counted as failed requests, never an exception.
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

import httpx
import numpy as np

from watchdog.clock import Clock, RealClock

# The share of each kind of request; deliberate token reuse is kept rare, as in real use.
REQUEST_MIX: dict[str, float] = {
    "claim": 0.438,
    "claim_dry_run": 0.24,
    "claim_reuse": 0.002,
    "redeem": 0.06,
    "redeem_dry_run": 0.05,
    "health": 0.18,
    "pwa_index": 0.03,
}
TENANTS: tuple[str, ...] = ("t1", "t2", "t3", "t4", "t5")
TENANT_WEIGHTS: tuple[float, ...] = (0.4, 0.25, 0.15, 0.12, 0.08)
REWARD_CHOICES: tuple[str, ...] = ("coffee", "pastry", "lunch")
REWARD_WEIGHTS: tuple[float, ...] = (0.7, 0.2, 0.1)
RECENT_TOKENS = 256
MAX_TICK_S = 0.05
MAX_LAG_S = 1.0


@dataclass(frozen=True)
class Target:
    """One place to send traffic (a cohort's service) and its share of the traffic.

    ``name`` keys the counters; it defaults to ``base_url``.
    """

    base_url: str
    weight: float
    name: str | None = None

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"target weight must be >= 0, got {self.weight}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"target URL must be http(s): {self.base_url!r}")

    @property
    def key(self) -> str:
        return self.name or self.base_url


@dataclass(frozen=True)
class PlannedRequest:
    """One request decided by the dispatcher, sent later by a worker."""

    kind: str
    method: str
    path: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetStats:
    """A snapshot of one target's counters.

    ``sent`` requests were put on the wire; each ends as a ``response`` (any HTTP status) or as
    ``failed`` (no response: refused, reset, timed out). ``dropped`` were never sent because the
    pool was saturated (the target is slower than the rate allows).
    """

    sent: int
    responses: int
    failed: int
    dropped: int
    by_status: Mapping[int, int]
    by_kind: Mapping[str, int]

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.by_status.items() if code >= 500)


class _Counters:
    def __init__(self) -> None:
        self.sent = 0
        self.responses = 0
        self.failed = 0
        self.dropped = 0
        self.by_status: collections.Counter[int] = collections.Counter()
        self.by_kind: collections.Counter[str] = collections.Counter()

    def snapshot(self) -> TargetStats:
        return TargetStats(
            self.sent, self.responses, self.failed, self.dropped, dict(self.by_status), dict(self.by_kind)
        )


class TrafficGenerator:
    """Sends a realistic request mix to weighted targets at a Poisson rate until stopped.

    ``set_targets`` and ``set_rate`` act on a running generator, so a demo can shift the canary
    share or point at a new URL without stopping traffic. ``client`` is used as given (and not
    closed); without one the generator makes and closes its own.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        rate_per_s: float,
        clock: Clock,
        rng: np.random.Generator,
        client: httpx.Client | None = None,
        *,
        workers: int = 16,
        max_pending: int | None = None,
        timeout_s: float = 4.0,
        mix: Mapping[str, float] | None = None,
        cards_per_tenant: int = 20,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        mix = dict(REQUEST_MIX if mix is None else mix)
        unknown = set(mix) - set(REQUEST_MIX)
        if unknown or not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError(f"invalid request mix {mix!r}; kinds are {sorted(REQUEST_MIX)}")
        self._clock = clock
        self._rng = rng
        self._client = client
        self._owns_client = client is None
        self._workers = workers
        self._max_pending = max_pending if max_pending is not None else 4 * workers
        self._timeout_s = timeout_s
        self._kinds = list(mix)
        total = sum(mix.values())
        self._kind_p = np.array([mix[k] / total for k in self._kinds])
        self._tenant_p = np.array(TENANT_WEIGHTS) / sum(TENANT_WEIGHTS)
        self._reward_p = np.array(REWARD_WEIGHTS) / sum(REWARD_WEIGHTS)
        self._cards = cards_per_tenant
        self._lock = threading.Lock()
        self._targets: tuple[Target, ...] = ()
        self._counters: dict[str, _Counters] = {}
        self._recent: dict[str, collections.deque[tuple[str, str, str]]] = {}
        self._rate = 0.0
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._active_client: httpx.Client | None = None
        self.set_targets(targets)
        self.set_rate(rate_per_s)

    def set_targets(self, targets: Sequence[Target]) -> None:
        keys = [t.key for t in targets]
        if len(set(keys)) != len(keys):
            raise ValueError(f"target names must be unique: {keys}")
        with self._lock:
            self._targets = tuple(targets)
            for key in keys:
                self._counters.setdefault(key, _Counters())

    def set_rate(self, rate_per_s: float) -> None:
        if not rate_per_s >= 0:
            raise ValueError(f"rate must be >= 0, got {rate_per_s}")
        with self._lock:
            self._rate = float(rate_per_s)

    @property
    def targets(self) -> tuple[Target, ...]:
        with self._lock:
            return self._targets

    @property
    def running(self) -> bool:
        thread = self._dispatcher
        return thread is not None and thread.is_alive()

    def stats(self) -> dict[str, TargetStats]:
        """Counters per target key, including targets that were since removed by ``set_targets``."""
        with self._lock:
            return {key: c.snapshot() for key, c in self._counters.items()}

    def start(self) -> TrafficGenerator:
        with self._lock:
            if self._dispatcher is not None:
                raise RuntimeError("traffic generator already started")
            self._stop.clear()
            self._active_client = self._client or httpx.Client(
                timeout=httpx.Timeout(self._timeout_s, connect=min(1.0, self._timeout_s)),
                limits=httpx.Limits(
                    max_connections=2 * self._workers, max_keepalive_connections=2 * self._workers
                ),
            )
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="demo-traffic")
            self._dispatcher = threading.Thread(target=self._run, name="demo-traffic-dispatcher", daemon=True)
            self._dispatcher.start()
        return self

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop sending; waits at most about ``timeout_s`` for requests in flight, then lets them fail."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            return
        self._stop.set()
        dispatcher.join(timeout=max(timeout_s, 2 * MAX_TICK_S))
        pool = self._pool
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)
        if self._owns_client and self._active_client is not None:
            self._active_client.close()
        with self._lock:
            self._dispatcher = None
            self._pool = None
            self._active_client = None

    def __enter__(self) -> TrafficGenerator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        next_t = self._clock.now()
        while not self._stop.is_set():
            with self._lock:
                rate = self._rate
            if rate <= 0:
                self._clock.sleep(MAX_TICK_S)
                next_t = self._clock.now()
                continue
            next_t += float(self._rng.exponential(1.0 / rate))
            now = self._clock.now()
            if next_t < now - MAX_LAG_S:
                next_t = now
            while not self._stop.is_set():
                wait = next_t - self._clock.now()
                if wait <= 0:
                    break
                self._clock.sleep(min(wait, MAX_TICK_S))
            if not self._stop.is_set():
                self._dispatch_one()

    def _dispatch_one(self) -> None:
        targets = self.targets
        weights = np.array([t.weight for t in targets], dtype=float)
        if not targets or weights.sum() <= 0:
            return
        target = targets[int(self._rng.choice(len(targets), p=weights / weights.sum()))]
        planned = self._plan(target.key)
        pool = self._pool
        with self._lock:
            counters = self._counters[target.key]
            if pool is None or self._in_flight >= self._max_pending:
                counters.dropped += 1
                return
            self._in_flight += 1
        try:
            future = pool.submit(self._send, target, planned)
        except RuntimeError:
            self._finish(None)
            return
        future.add_done_callback(self._finish)

    def _finish(self, _future: Future[None] | None) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _plan(self, key: str) -> PlannedRequest:
        rng = self._rng
        kind = self._kinds[int(rng.choice(len(self._kinds), p=self._kind_p))]
        tenant = TENANTS[int(rng.choice(len(TENANTS), p=self._tenant_p))]
        card = f"c{int(rng.integers(1, self._cards + 1))}"
        recent = self._recent.setdefault(key, collections.deque(maxlen=RECENT_TOKENS))
        if kind == "claim_reuse" and not recent:
            kind = "claim"
        if kind == "claim_reuse":
            tenant, card, token = recent[int(rng.integers(0, len(recent)))]
            return PlannedRequest(
                kind,
                "POST",
                "/v1/stamps/claim",
                {"tenant": tenant, "card": card, "token": token},
                {"X-Device-Proof": self._proof()},
            )
        if kind in ("claim", "claim_dry_run"):
            token = f"tok-{int(rng.integers(0, 2**62)):016x}"
            if kind == "claim":
                recent.append((tenant, card, token))
                body = {"tenant": tenant, "card": card, "token": token}
                return PlannedRequest(
                    kind, "POST", "/v1/stamps/claim", body, {"X-Device-Proof": self._proof()}
                )
            return self._dry_run(kind, "/v1/stamps/claim", {"tenant": tenant, "card": card, "token": token})
        if kind in ("redeem", "redeem_dry_run"):
            reward = REWARD_CHOICES[int(rng.choice(len(REWARD_CHOICES), p=self._reward_p))]
            body = {"tenant": tenant, "card": card, "reward": reward}
            if kind == "redeem":
                return PlannedRequest(kind, "POST", "/v1/rewards/redeem", body)
            return self._dry_run(kind, "/v1/rewards/redeem", body)
        if kind == "health":
            return PlannedRequest(kind, "GET", "/health")
        return PlannedRequest(kind, "GET", "/")

    def _dry_run(self, kind: str, path: str, body: dict[str, Any]) -> PlannedRequest:
        """Half the dry runs say so in the body, half in the header, since clients do both."""
        if self._rng.random() < 0.5:
            return PlannedRequest(kind, "POST", path, {**body, "dry_run": True})
        return PlannedRequest(kind, "POST", path, body, {"X-Dry-Run": "1"})

    def _proof(self) -> str:
        return f"proof-{int(self._rng.integers(0, 2**62)):x}"

    def _send(self, target: Target, planned: PlannedRequest) -> None:
        client = self._active_client
        if self._stop.is_set() or client is None:
            return
        with self._lock:
            counters = self._counters[target.key]
            counters.sent += 1
            counters.by_kind[planned.kind] += 1
        url = target.base_url.rstrip("/") + planned.path
        try:
            response = client.request(
                planned.method,
                url,
                json=dict(planned.body) if planned.body is not None else None,
                headers=dict(planned.headers),
            )
        except Exception:  # refused, reset, timed out, or the client closed under us at stop: no response
            with self._lock:
                counters.failed += 1
            return
        with self._lock:
            counters.responses += 1
            counters.by_status[response.status_code] += 1


def parse_target(text: str) -> Target:
    """``URL=weight`` (or a bare URL, weight 1); the weight is after the last ``=``."""
    url, sep, weight = text.rpartition("=")
    if not sep or "://" not in url:
        return Target(text, 1.0)
    try:
        return Target(url, float(weight))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad target {text!r}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.demo.traffic",
        description="Send demo stamps-API traffic to weighted targets; prints a JSON summary at the end.",
    )
    parser.add_argument(
        "--target",
        action="append",
        type=parse_target,
        required=True,
        metavar="URL=WEIGHT",
        help="a service base URL and its traffic share; repeat for each cohort",
    )
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second over all targets")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds to run; 0 runs until interrupted"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=16)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    clock = RealClock()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    gen = TrafficGenerator(
        args.target, args.rate, clock, np.random.default_rng(args.seed), workers=args.workers
    )
    start = clock.now()
    gen.start()
    try:
        while not stop.is_set() and (args.duration <= 0 or clock.now() - start < args.duration):
            clock.sleep(0.1)
    finally:
        gen.stop()
    elapsed = clock.now() - start
    summary = {
        "elapsed_s": round(elapsed, 3),
        "rate_per_s": args.rate,
        "targets": {
            key: {
                "sent": s.sent,
                "responses": s.responses,
                "failed": s.failed,
                "dropped": s.dropped,
                "by_status": {str(k): v for k, v in sorted(s.by_status.items())},
                "by_kind": dict(s.by_kind),
            }
            for key, s in gen.stats().items()
        },
    }
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
