"""A receiver of the watchdog's signed webhooks, served over real HTTP: what a user's endpoint should do.

It verifies each delivery with :func:`actions.webhook.verify` (the signature over the timestamp
and the body, the timestamp within ``max_age_s`` of its clock) and answers 401 with the reason when
either fails. A delivery id (``X-Watchdog-Delivery``) it has accepted before is answered 200 with
``"duplicate": true`` and recorded as a duplicate, not accepted again: the watchdog sends a notice
again when an answer was lost, and receivers are expected to be idempotent, as GitHub advises for
its webhooks. The clock is injected, so tests on simulated time check expiry without waiting.

Use it in-process (``with WebhookReceiver(secret=b"...") as hook: ...`` with ``url=hook.url``) or
standalone: ``python -m watchdog.emulator.webhook --port 8094`` (secret from $WEBHOOK_SECRET).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from actions.webhook import DELIVERY_HEADER, EVENT_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from watchdog.clock import RealClock
from watchdog.emulator.base import (
    Answer,
    EmulatorHandler,
    ExchangeListener,
    Fault,
    HttpEmulator,
    HttpRequest,
)

__all__ = ["PATH", "Delivery", "WebhookReceiver"]

#: Where the receiver takes deliveries (``url`` includes it).
PATH = "/hooks/watchdog"


class _Now(Protocol):
    def now(self) -> float: ...


@dataclass(frozen=True)
class Delivery:
    """One delivery the receiver took: its id, event, signed timestamp, the notice and when it came."""

    delivery_id: str
    event: str | None
    timestamp: int
    notice: Mapping[str, Any]
    body: bytes
    received_at: float


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(EmulatorHandler):
    server_version = "webhook-receiver"
    sys_version = ""
    do_POST = do_GET = EmulatorHandler.serve


class WebhookReceiver(HttpEmulator[_Reply]):
    """Takes signed deliveries at ``url``; ``deliveries()`` the accepted, ``duplicates()`` the replays."""

    service = "Webhook"
    handler = _Handler

    def __init__(
        self,
        *,
        secret: bytes,
        clock: _Now | None = None,
        max_age_s: float = 300.0,
        host: str = "127.0.0.1",
        port: int = 0,
        on_exchange: ExchangeListener | None = None,
    ) -> None:
        self._clock = clock or RealClock()
        super().__init__(host=host, port=port, now=self._clock.now, on_exchange=on_exchange)
        self._secret = secret
        self.max_age_s = max_age_s
        self._deliveries: list[Delivery] = []
        self._duplicates: list[Delivery] = []
        self.refusals: list[str] = []

    def __repr__(self) -> str:
        return f"WebhookReceiver(max_age_s={self.max_age_s:g})"

    @property
    def url(self) -> str:
        return super().url + PATH

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def duplicates(self) -> list[Delivery]:
        with self._lock:
            return list(self._duplicates)

    # ======================================================================= request handling

    def _fault_reply(self, fault: Fault) -> _Reply:
        body = fault.body if fault.body is not None else {"error": f"injected {fault.status}"}
        return _Reply(cast(int, fault.status), body, dict(fault.headers))

    def _render(self, reply: _Reply) -> Answer:
        payload = json.dumps(reply.body).encode()
        headers = {"content-type": "application/json", **{k.lower(): v for k, v in reply.headers.items()}}
        headers["content-length"] = str(len(payload))
        return Answer(reply.status, headers, payload)

    def _serve(self, request: HttpRequest) -> tuple[str | None, _Reply]:
        if request.path != PATH:
            return None, _Reply(404, {"error": f"nothing at {request.path}"})
        if request.method != "POST":
            return None, _Reply(405, {"error": "use POST"}, {"allow": "POST"})
        with self._lock:
            return "receive", self._receive(request)

    def _receive(self, request: HttpRequest) -> _Reply:
        try:
            verify(self._secret, request.headers, request.body, self._clock.now(), self.max_age_s)
        except SignatureError as exc:
            self.refusals.append(exc.reason)
            return _Reply(401, {"error": exc.reason})
        delivery_id = request.headers.get(DELIVERY_HEADER.lower())
        if not delivery_id:
            return _Reply(400, {"error": f"missing {DELIVERY_HEADER}"})
        if not isinstance(request.json, dict):
            return _Reply(400, {"error": "the body is not a JSON object"})
        delivery = Delivery(
            delivery_id=delivery_id,
            event=request.headers.get(EVENT_HEADER.lower()),
            timestamp=int(request.headers[TIMESTAMP_HEADER.lower()]),
            notice=request.json,
            body=request.body,
            received_at=self._clock.now(),
        )
        duplicate = any(d.delivery_id == delivery_id for d in self._deliveries)
        (self._duplicates if duplicate else self._deliveries).append(delivery)
        return _Reply(200, {"ok": True, "duplicate": duplicate})


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    """Run the receiver as a server until interrupted (for the demo and Docker)."""
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.emulator.webhook",
        description="Receive and verify the watchdog's signed webhooks (secret: $WEBHOOK_SECRET).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8094)
    parser.add_argument("--max-age", type=float, default=300.0, help="seconds a timestamp stays valid")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        parser.error("set WEBHOOK_SECRET to the notifier's secret")
    receiver = WebhookReceiver(secret=secret.encode(), max_age_s=args.max_age, host=args.host, port=args.port)
    receiver.serve_until_terminated(f"at {PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
