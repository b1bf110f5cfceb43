"""The demo "stamps API": a stand-in for the loyalty product's real service, run as its own process.

It exists so the watchdog can be shown (and tested) end to end against something that behaves like
a release: each process serves one version from ``watchdog.demo.versions`` and exports the same
Prometheus metrics the real service does, so a bad release shows up in the numbers and a rollback
(``ServiceProcess.restart``) really makes it go away.

Run it with ``python -m watchdog.demo.service --port 0 --version v1.1.0 --cohort canary``; it
prints one JSON line when it is listening, so a parent can learn the port it got.
"""

from __future__ import annotations

import argparse
import collections
import errno
import html
import json
import math
import os
import queue
import re
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from watchdog.clock import Clock, RealClock
from watchdog.demo.versions import VERSIONS, UnknownVersionError, VersionProfile, get_profile
from watchdog.errors import WatchdogError

LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.5, 5.0)
# The classic text format: every Prometheus (2.x and 3.x) parses it; what generate_latest writes is
# compatible with it.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_TYPE = "application/json"
REWARDS: dict[str, int] = {"coffee": 5, "pastry": 8, "lunch": 10}
MAX_BODY_BYTES = 64 * 1024
MAX_TENANT_SERIES = 50
OTHER_TENANT = "_other"
COST_EWMA_ALPHA = 0.1
MAX_REMEMBERED_TOKENS = 500_000
UNMATCHED_ROUTE = "unmatched"
DRAIN_TIMEOUT_S = 3.0

CLAIM_ROUTE = "/v1/stamps/claim"
REDEEM_ROUTE = "/v1/rewards/redeem"
_IDENT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_.:+/=-]{1,128}$")
_COHORT = re.compile(r"^[a-z0-9_-]{1,32}$")


class DemoServiceError(WatchdogError):
    """The demo service process could not be started or did not become ready."""


@dataclass(frozen=True)
class Response:
    """What one request answers: kept as data so the logic is testable without a socket."""

    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


def json_response(
    status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return Response(status, json.dumps(payload).encode(), JSON_TYPE, dict(headers or {}))


class DemoMetrics:
    """The service's metrics in a registry of its own, so one process never mixes in another's.

    The label-only-by-cohort series start at zero, and so do the 200 and 500 series of each route,
    so rates and error ratios are 0 rather than "no data" before the first event.
    """

    def __init__(self, version: str, cohort: str, routes: Sequence[str]) -> None:
        self.cohort = cohort
        self.registry = CollectorRegistry()
        r = self.registry
        # prometheus_client appends "_total" to counter names: these expose http_requests_total etc.
        self.requests = Counter(
            "http_requests", "HTTP requests answered (not /metrics).", ["cohort", "code", "route"], registry=r
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer one request, including the release's simulated work.",
            ["cohort"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.claims = Counter(
            "stamps_claims", "Stamps granted by real (not dry-run) claims.", ["cohort"], registry=r
        )
        self.token_reuse = Counter(
            "stamps_token_reuse", "Claims refused because the token was already used.", ["cohort"], registry=r
        )
        self.proof_attempts = Counter(
            "device_proof_attempts", "Device proofs checked on real claims.", ["cohort"], registry=r
        )
        self.proof_failures = Counter(
            "device_proof_failures", "Device proofs rejected on real claims.", ["cohort"], registry=r
        )
        self.cost = Gauge(
            "cost_per_tenant",
            "EWMA of the cost of one request, per tenant (arbitrary unit).",
            ["cohort", "tenant"],
            registry=r,
        )
        self.build_info = Gauge(
            "demo_build_info", "The release this process serves.", ["version", "cohort"], registry=r
        )
        self.build_info.labels(version, cohort).set(1)
        for counter in (self.claims, self.token_reuse, self.proof_attempts, self.proof_failures):
            counter.labels(cohort)
        self.duration.labels(cohort)
        for route in routes:
            self.requests.labels(cohort, "200", route)
        for route in (CLAIM_ROUTE, REDEEM_ROUTE):
            self.requests.labels(cohort, "500", route)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StampsStore:
    """The in-memory state of cards and used tokens; a process restart forgets it, like a fresh pod."""

    def __init__(self, max_tokens: int = MAX_REMEMBERED_TOKENS) -> None:
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str], None] = {}
        self._stamps: dict[tuple[str, str], int] = {}
        self._max_tokens = max_tokens

    def is_used(self, tenant: str, token: str) -> bool:
        with self._lock:
            return (tenant, token) in self._used

    def claim(self, tenant: str, card: str, token: str) -> int | None:
        """Consume the token and add a stamp; None when the token was used before (check and add at once)."""
        with self._lock:
            key = (tenant, token)
            if key in self._used:
                return None
            self._used[key] = None
            if len(self._used) > self._max_tokens:
                del self._used[next(iter(self._used))]
            n = self._stamps.get((tenant, card), 0) + 1
            self._stamps[(tenant, card)] = n
            return n

    def stamps(self, tenant: str, card: str) -> int:
        with self._lock:
            return self._stamps.get((tenant, card), 0)

    def redeem(self, tenant: str, card: str, cost: int) -> tuple[bool, int]:
        """Take ``cost`` stamps if the card has them; returns (done, stamps left)."""
        with self._lock:
            have = self._stamps.get((tenant, card), 0)
            if have < cost:
                return False, have
            self._stamps[(tenant, card)] = have - cost
            return True, have - cost


@dataclass(frozen=True)
class Request:
    """One parsed request as the route handlers see it (headers lower-cased)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


Handler = Callable[[Request], Response]


class DemoService:
    """The request logic of one release, independent of the HTTP server that feeds it.

    Every random draw goes through one seeded generator (under a lock: numpy generators are not
    thread-safe) and every wait through the injected clock, so the latency the histogram records
    is the latency the release really had.
    """

    def __init__(
        self, profile: VersionProfile, cohort: str, *, rng: np.random.Generator, clock: Clock
    ) -> None:
        self.profile = profile
        self.cohort = cohort
        self._rng = rng
        self._rng_lock = threading.Lock()
        self._clock = clock
        self.store = StampsStore()
        self._routes: dict[str, dict[str, Handler]] = {
            "/health": {"GET": self._health},
            CLAIM_ROUTE: {"POST": self._claim},
            REDEEM_ROUTE: {"POST": self._redeem},
            "/": {"GET": self._index},
            "/manifest.webmanifest": {"GET": self._manifest},
            "/sw.js": {"GET": self._service_worker},
            "/icon-192.png": {"GET": lambda _req: _png_response(192)},
            "/icon-512.png": {"GET": lambda _req: _png_response(512)},
        }
        self.metrics = DemoMetrics(profile.version, cohort, list(self._routes))
        self._cost_lock = threading.Lock()
        self._cost: dict[str, float] = {}

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one request; ``headers`` keys must be lower-case."""
        path = urlsplit(raw_path).path or "/"
        if path == "/metrics":
            if method != "GET":
                return json_response(405, {"error": "method_not_allowed"}, {"Allow": "GET"})
            return Response(200, self.metrics.exposition(), METRICS_CONTENT_TYPE)
        start = self._clock.now()
        self._clock.sleep(self._draw_latency())
        route = path if path in self._routes else UNMATCHED_ROUTE
        methods = self._routes.get(path)
        if methods is None:
            response = json_response(404, {"error": "not_found", "path": path})
        elif method not in methods:
            response = json_response(405, {"error": "method_not_allowed"}, {"Allow": ", ".join(methods)})
        else:
            try:
                response = methods[method](Request(method, path, headers, body))
            except Exception as exc:  # a bug here must still look like a 500, as in a real service
                response = json_response(500, {"error": "internal", "detail": type(exc).__name__})
        elapsed = max(0.0, self._clock.now() - start)
        self.metrics.requests.labels(self.cohort, str(response.status), route).inc()
        self.metrics.duration.labels(self.cohort).observe(elapsed)
        return response

    def _uniform(self) -> float:
        with self._rng_lock:
            return float(self._rng.random())

    def _draw_latency(self) -> float:
        p = self.profile
        with self._rng_lock:
            x = float(self._rng.lognormal(mean=math.log(p.latency_median_s), sigma=p.latency_sigma))
        return min(x, p.latency_cap_s)

    def _record_cost(self, tenant: str) -> None:
        with self._rng_lock:
            cost = self.profile.cost_per_request * float(self._rng.lognormal(0.0, 0.1))
        with self._cost_lock:
            if tenant not in self._cost and len(self._cost) >= MAX_TENANT_SERIES:
                tenant = OTHER_TENANT
            prev = self._cost.get(tenant)
            value = cost if prev is None else prev + COST_EWMA_ALPHA * (cost - prev)
            self._cost[tenant] = value
            self.metrics.cost.labels(self.cohort, tenant).set(value)

    def _internal_error(self) -> Response:
        return json_response(500, {"error": "internal", "version": self.profile.version})

    def _health(self, _req: Request) -> Response:
        ok = self.profile.health_ok
        payload = {
            "status": "ok" if ok else "unhealthy",
            "version": self.profile.version,
            "cohort": self.cohort,
        }
        return json_response(200 if ok else 503, payload)

    def _claim(self, req: Request) -> Response:
        parsed = _parse_body(req, ("tenant", "card"), "token")
        if isinstance(parsed, Response):
            return parsed
        tenant, card, token, dry_run = parsed
        self._record_cost(tenant)
        if self._uniform() < self.profile.error_rate:
            return self._internal_error()
        proof = req.headers.get("x-device-proof")
        if dry_run:
            reason = None
            if proof is not None and not proof.strip():
                reason = "device_proof_invalid"
            elif self.store.is_used(tenant, token):
                reason = "token_reused"
            return json_response(
                200,
                {
                    "dry_run": True,
                    "would_claim": reason is None,
                    "reason": reason,
                    "tenant": tenant,
                    "card": card,
                    "stamps": self.store.stamps(tenant, card),
                },
            )
        if proof is not None:
            self.metrics.proof_attempts.labels(self.cohort).inc()
            if not proof.strip() or self._uniform() < self.profile.device_proof_failure_rate:
                self.metrics.proof_failures.labels(self.cohort).inc()
                return json_response(401, {"claimed": False, "error": "device_proof_failed"})
        wrongly_reused = self._uniform() < self.profile.token_reuse_rate
        stamps = None if wrongly_reused else self.store.claim(tenant, card, token)
        if stamps is None:
            self.metrics.token_reuse.labels(self.cohort).inc()
            return json_response(409, {"claimed": False, "error": "token_reused"})
        self.metrics.claims.labels(self.cohort).inc()
        return json_response(200, {"claimed": True, "stamps": stamps, "tenant": tenant, "card": card})

    def _redeem(self, req: Request) -> Response:
        parsed = _parse_body(req, ("tenant", "card"), "reward")
        if isinstance(parsed, Response):
            return parsed
        tenant, card, reward, dry_run = parsed
        cost = REWARDS.get(reward)
        if cost is None:
            return json_response(400, {"error": "unknown_reward", "rewards": sorted(REWARDS)})
        self._record_cost(tenant)
        if self._uniform() < self.profile.error_rate:
            return self._internal_error()
        if dry_run:
            have = self.store.stamps(tenant, card)
            return json_response(
                200,
                {
                    "dry_run": True,
                    "would_redeem": have >= cost,
                    "stamps": have,
                    "cost": cost,
                    "reward": reward,
                },
            )
        done, left = self.store.redeem(tenant, card, cost)
        if not done:
            return json_response(
                409,
                {
                    "redeemed": False,
                    "error": "not_enough_stamps",
                    "stamps": left,
                    "cost": cost,
                },
            )
        return json_response(200, {"redeemed": True, "reward": reward, "stamps": left, "cost": cost})

    def _index(self, _req: Request) -> Response:
        body = _INDEX_HTML.replace("{{VERSION}}", html.escape(self.profile.version)).replace(
            "{{COHORT}}", html.escape(self.cohort)
        )
        return Response(200, body.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-cache"})

    def _manifest(self, _req: Request) -> Response:
        manifest = {
            "id": "/",
            "name": "Stamps — demo loyalty card",
            "short_name": "Stamps",
            "description": f"Digital stamp cards (demo service {self.profile.version})",
            "start_url": "/",
            "scope": "/",
            "display": "standalone",
            "background_color": "#fffaf3",
            "theme_color": "#6b3e26",
            "icons": [
                {"src": "/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
                {"src": "/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
            ],
        }
        return Response(200, json.dumps(manifest).encode(), "application/manifest+json")

    def _service_worker(self, _req: Request) -> Response:
        body = _SERVICE_WORKER_JS.replace("{{VERSION}}", self.profile.version)
        return Response(
            200, body.encode(), "application/javascript; charset=utf-8", {"Cache-Control": "no-cache"}
        )


def _parse_body(req: Request, idents: tuple[str, str], item: str) -> tuple[str, str, str, bool] | Response:
    """Validate the JSON body of claim/redeem: two identifiers, one more field, and the dry-run flag."""
    try:
        payload = json.loads(req.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return json_response(400, {"error": "invalid_json"})
    if not isinstance(payload, dict):
        return json_response(400, {"error": "invalid_request", "detail": "body must be a JSON object"})
    values: list[str] = []
    for name in (*idents, item):
        value = payload.get(name)
        pattern = _TOKEN if name == "token" else _IDENT
        if not isinstance(value, str) or not pattern.match(value):
            return json_response(
                400, {"error": "invalid_request", "detail": f"{name!r} is missing or invalid"}
            )
        values.append(value)
    flag = payload.get("dry_run", False)
    if not isinstance(flag, bool):
        return json_response(400, {"error": "invalid_request", "detail": "'dry_run' must be a boolean"})
    header = req.headers.get("x-dry-run", "").strip().lower()
    dry_run = flag or header in ("1", "true", "yes")
    return values[0], values[1], values[2], dry_run


def _png(size: int, rgb: tuple[int, int, int] = (0x6B, 0x3E, 0x26)) -> bytes:
    """A solid square PNG, made here so the manifest's icons exist without shipping binary files."""
    row = b"\x00" + bytes(rgb) * size
    raw = zlib.compress(row * size, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


_PNG_CACHE: dict[int, bytes] = {}


def _png_response(size: int) -> Response:
    data = _PNG_CACHE.get(size)
    if data is None:
        data = _PNG_CACHE[size] = _png(size)
    return Response(200, data, "image/png", {"Cache-Control": "max-age=86400"})


_INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="theme-color" content="#6b3e26">
<title>Stamps (demo)</title>
<link rel="manifest" href="/manifest.webmanifest">
<link rel="icon" href="/icon-192.png">
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; background: #fffaf3; color: #3b2416; }
code { background: #f3e7da; padding: 0 .3em; }
</style>
</head>
<body>
<h1>Stamps</h1>
<p>Demo stamps API, version <code>{{VERSION}}</code>, cohort <code>{{COHORT}}</code>.</p>
<p>Health: <span id="health">checking…</span></p>
<p>Dry-run claim: <span id="claim">checking…</span></p>
<script>
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch(function () {});
}
fetch("/health").then(function (r) { return r.json(); }).then(function (h) {
  document.getElementById("health").textContent = h.status + " (" + h.version + ")";
}).catch(function (e) { document.getElementById("health").textContent = "error: " + e; });
var token = (self.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now());
fetch("/v1/stamps/claim", {
  method: "POST",
  headers: {"Content-Type": "application/json", "X-Dry-Run": "1"},
  body: JSON.stringify({tenant: "web", card: "visitor", token: token, dry_run: true})
}).then(function (r) { return r.json(); }).then(function (c) {
  document.getElementById("claim").textContent = c.would_claim ? "would claim" : "refused";
}).catch(function (e) { document.getElementById("claim").textContent = "error: " + e; });
</script>
</body>
</html>
"""

_SERVICE_WORKER_JS = """// Stamps demo service worker: caches the app shell, never the API.
const CACHE = "stamps-shell-{{VERSION}}";
const SHELL = ["/", "/manifest.webmanifest", "/icon-192.png"];
self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)));
  self.skipWaiting();
});
self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((keys) =>
    Promise.all(keys.filter((key) => key !== CACHE).map((key) => caches.delete(key)))));
  self.clients.claim();
});
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.pathname.startsWith("/v1/") ||
      url.pathname === "/health" || url.pathname === "/metrics") {
    return;
  }
  event.respondWith(caches.match(event.request).then((hit) => hit || fetch(event.request)));
});
"""


class DemoHTTPServer(ThreadingHTTPServer):
    """A thread per connection; the reuse flag lets a restarted release bind the same port at once.

    ``drain`` is the graceful part of a SIGTERM: requests already being handled finish (their
    connections are then closed) instead of being cut, as a real rollout's termination would do.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: DemoService) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        self.draining = False
        self._active = 0
        self._active_cond = threading.Condition()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall; we need no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.server_address[0] if isinstance(self.server_address[0], str) else "localhost"
        self.server_port = int(self.server_address[1])

    def begin_request(self) -> None:
        with self._active_cond:
            self._active += 1

    def end_request(self) -> None:
        with self._active_cond:
            self._active -= 1
            self._active_cond.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Stop accepting, then wait up to ``timeout_s`` for requests in progress; True if all finished."""
        self.draining = True
        self.shutdown()
        with self._active_cond:
            return self._active_cond.wait_for(lambda: self._active == 0, timeout=timeout_s)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed
    # ACK and every response gains ~40 ms that the histogram would never show.
    disable_nagle_algorithm = True
    server_version = "stamps-demo"
    timeout = 30

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        server = self.server
        assert isinstance(server, DemoHTTPServer)
        server.begin_request()
        try:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self._send(
                    json_response(413 if length > 0 else 400, {"error": "bad_content_length"}), close=True
                )
                return
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            response = server.service.handle(method, self.path, headers, body)
            self._send(response, close=server.draining)
        finally:
            server.end_request()

    def _send(self, response: Response, *, close: bool) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: at 100 req/s an access log on stderr would only be noise (the metrics tell the story)."""


def bind_server(
    host: str, port: int, service: DemoService, clock: Clock, *, retry_for_s: float = 0.0
) -> DemoHTTPServer:
    """Bind, retrying a busy fixed port for a while: the release we replace may still be letting go of it."""
    deadline = clock.now() + retry_for_s
    while True:
        try:
            return DemoHTTPServer((host, port), service)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0 or clock.now() >= deadline:
                raise
            clock.sleep(0.05)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.demo.service",
        description="Demo stamps API serving one release; prints a JSON ready line with its port.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--version", required=True, help="release to serve: " + ", ".join(sorted(VERSIONS)))
    parser.add_argument("--cohort", required=True, help="cohort label, e.g. baseline or canary")
    parser.add_argument("--seed", type=int, default=None, help="seed of the release's random behaviour")
    parser.add_argument(
        "--bind-retry-s", type=float, default=5.0, help="keep retrying a busy fixed port this long"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        profile = get_profile(args.version)
    except UnknownVersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not _COHORT.match(args.cohort):
        print(f"error: invalid cohort {args.cohort!r} (lower-case letters, digits, - and _)", file=sys.stderr)
        return 2
    clock = RealClock()
    service = DemoService(profile, args.cohort, rng=np.random.default_rng(args.seed), clock=clock)
    try:
        server = bind_server(args.host, args.port, service, clock, retry_for_s=args.bind_retry_s)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    ready = {
        "ready": True,
        "host": args.host,
        "port": server.server_port,
        "version": profile.version,
        "cohort": args.cohort,
        "pid": os.getpid(),
    }
    print(json.dumps(ready), flush=True)
    while not stop.wait(0.5):
        pass
    server.drain(DRAIN_TIMEOUT_S)
    server.server_close()
    return 0


def _project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class ServiceProcess:
    """One demo release running as a child process, restartable on the same port.

    Keeping the port across ``restart`` is what lets scrapers and the traffic generator keep their
    URLs while a deploy or rollback swaps the release underneath, as a real rollout would.
    """

    def __init__(
        self,
        version: str,
        cohort: str,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        seed: int | None = None,
        ready_timeout_s: float = 15.0,
        stop_timeout_s: float = 5.0,
        bind_retry_s: float = 5.0,
    ) -> None:
        get_profile(version)
        if not _COHORT.match(cohort):
            raise ValueError(f"invalid cohort {cohort!r}")
        self._version = version
        self._cohort = cohort
        self._port = port
        self._host = host
        self._seed = seed
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._bind_retry_s = bind_retry_s
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=50)
        self.starts = 0

    @property
    def version(self) -> str:
        return self._version

    @property
    def cohort(self) -> str:
        return self._cohort

    @property
    def port(self) -> int:
        if self._port == 0:
            raise DemoServiceError("the service has not been started yet: its port is not known")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{_format_host(self._host)}:{self.port}"

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def start(self) -> ServiceProcess:
        with self._lock:
            if self.running:
                return self
            self._spawn()
            return self

    def restart(self, version: str | None = None) -> None:
        """Stop the running release and start ``version`` (default: the same one) on the same port."""
        with self._lock:
            if version is not None:
                get_profile(version)
            self._terminate()
            if version is not None:
                self._version = version
            self._spawn()

    def stop(self) -> None:
        with self._lock:
            self._terminate()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"ServiceProcess(version={self._version!r}, cohort={self._cohort!r}, "
            f"port={self._port}, pid={self.pid})"
        )

    def _command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "watchdog.demo.service",
            "--host",
            self._host,
            "--port",
            str(self._port),
            "--version",
            self._version,
            "--cohort",
            self._cohort,
            "--bind-retry-s",
            str(self._bind_retry_s),
        ]
        if self._seed is not None:
            cmd += ["--seed", str(self._seed)]
        return cmd

    def _spawn(self) -> None:
        env = dict(os.environ)
        root = str(_project_root())
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._stderr_tail.clear()
        proc = subprocess.Popen(
            self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None and proc.stderr is not None
        lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=_pump_stdout, args=(proc.stdout, lines), daemon=True),
            threading.Thread(target=_pump_stderr, args=(proc.stderr, self._stderr_tail), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self._proc = proc
        try:
            line = lines.get(timeout=self._ready_timeout_s)
        except queue.Empty:
            self._terminate()
            what = f"{self._version} ({self._cohort})"
            why = f"was not ready within {self._ready_timeout_s}s"
            raise DemoServiceError(f"{what} {why}{self._tail()}") from None
        if line is None:
            self._terminate()
            what = f"{self._version} ({self._cohort})"
            why = f"exited before it was ready (code {proc.returncode})"
            raise DemoServiceError(f"{what} {why}{self._tail()}")
        try:
            ready = json.loads(line)
            port = int(ready["port"])
            if ready.get("ready") is not True:
                raise ValueError("not ready")
        except (ValueError, KeyError, TypeError) as exc:
            self._terminate()
            raise DemoServiceError(f"unexpected ready line from the demo service: {line!r}") from exc
        self._port = port
        self.starts += 1

    def _tail(self) -> str:
        text = "".join(self._stderr_tail).strip()
        return f": {text}" if text else ""

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for reader in self._readers:
            reader.join(timeout=1.0)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        self._proc = None
        self._readers = []


def _pump_stdout(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    """Hand over the ready line, then keep draining so the child can never block on a full pipe."""
    first = True
    for raw in stream:
        if first:
            lines.put(raw.decode(errors="replace"))
            first = False
    if first:
        lines.put(None)


def _pump_stderr(stream: IO[bytes], tail: collections.deque[str]) -> None:
    for raw in stream:
        tail.append(raw.decode(errors="replace"))


if __name__ == "__main__":
    raise SystemExit(main())
