"""What every outside-service emulator shares: real HTTP on loopback, injected faults, a request log.

The GitHub, PagerDuty and Unleash emulators differ in what they serve, not in how they serve it.
:class:`HttpEmulator` runs a threaded server on a free port, reads each request, applies the first
matching :class:`Fault` (a delay, an injected answer, a dropped connection), asks the emulator to
serve it otherwise, logs the :class:`Exchange` and tells listeners, then writes the answer — or
closes the connection without one. A subclass supplies the service: how it serves a request, how an
injected fault answers in the service's own error shape, and how a reply goes on the wire.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import signal
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Answer",
    "EmulatorHandler",
    "Exchange",
    "ExchangeListener",
    "Fault",
    "HttpEmulator",
    "HttpRequest",
]


@dataclass
class Fault:
    """A queued misbehaviour for requests matching ``method`` and the ``path`` regex.

    Order of effects: wait ``delay`` seconds (a request whose delay the emulator is stopped
    during is dropped, never served); then ``drop="before"`` closes the connection without
    processing, a ``status`` answers with that status/body/headers without processing,
    ``drop="after"`` processes the request for real and closes the connection without answering;
    otherwise the request is served normally (a pure delay), and its answer waits ``late``
    seconds after the work is done (a client that gave up meanwhile never hears that it was).
    Fires ``times`` times.
    """

    method: str
    path: str
    status: int | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: Literal["before", "after"] | None = None
    times: int = 1
    fired: int = 0
    late: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method.upper() == method.upper()) and bool(
            re.search(self.path, path)
        )

    @property
    def exhausted(self) -> bool:
        return self.fired >= self.times


@dataclass(frozen=True)
class Exchange:
    """One handled request and its response, as recorded in the request log.

    ``path`` is the API path (no query); ``operation`` the operationId (in the service's API
    description) that served it (None for unknown paths, auth failures and, except at PagerDuty,
    faults that answered instead). ``dropped`` is True when the connection was closed without a
    response; then ``status`` is what would have been sent, or None when the request was dropped
    before being processed.
    """

    seq: int
    method: str
    path: str
    query: Mapping[str, list[str]]
    request_headers: Mapping[str, str]
    request_body: bytes
    request_json: Any
    status: int | None
    response_headers: Mapping[str, str]
    response_body: bytes
    response_json: Any
    operation: str | None
    fault: Fault | None
    dropped: bool
    at: float


ExchangeListener = Callable[[Exchange], None]


@dataclass(frozen=True)
class HttpRequest:
    """A request as read off the wire: upper-case method, header names in lower case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass(frozen=True)
class Answer:
    """A response as it goes on the wire: status, headers (names in lower case) and body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes = b""


ReplyT = TypeVar("ReplyT")


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


class HttpEmulator(ABC, Generic[ReplyT]):
    """An outside service served on ``host`` (port 0 = a free port), with faults and a request log.

    ``ReplyT`` is the subclass's own reply type: :meth:`_serve` and :meth:`_fault_reply` make one,
    :meth:`_render` puts it on the wire. ``_lock`` (reentrant) guards the subclass's state and the
    faults; the log has a lock of its own so that reading it never waits for a request being served.
    """

    #: The service's name, as errors and the server thread show it ("GitHub").
    service: ClassVar[str]
    #: The request handler class: sets the methods served and the ``Server`` header.
    handler: ClassVar[type[EmulatorHandler]]

    def __init__(
        self,
        *,
        host: str,
        port: int,
        now: Callable[[], float],
        on_exchange: ExchangeListener | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._now = now
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._logger = logging.getLogger(type(self).__module__)
        self._faults: list[Fault] = []
        self._log: list[Exchange] = []
        self._log_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._listeners: list[ExchangeListener] = [on_exchange] if on_exchange else []
        self.listener_errors: list[BaseException] = []
        self.internal_errors: list[BaseException] = []

    # ----------------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError(f"the {self.service} emulator is already running")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.service.lower()}-emulator",
            daemon=True,
        )
        self._server_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests held by an injected delay are let go at once, unanswered."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
            self._server_thread = None

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def serve_until_terminated(self, detail: str = "") -> None:
        """Serve until SIGTERM or Ctrl-C, then stop: the main loop of a standalone emulator.

        Logs ``<service> emulator serving at <url>`` and ``detail`` once the server listens.
        """
        terminated = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: terminated.set())
        self.start()
        self._logger.info(
            "%s emulator serving at %s%s", self.service, self.url, f" {detail}" if detail else ""
        )
        try:
            terminated.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    @property
    def url(self) -> str:
        """Base URL of the server (no path prefix): ``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError(f"the {self.service} emulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else str(host)
        return f"http://{shown}:{port}"

    # ----------------------------------------------------------------------- faults

    def inject(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        drop: Literal["before", "after"] | None = None,
        times: int = 1,
        late: float = 0.0,
    ) -> Fault:
        """Queue a fault for requests whose method matches (``*`` = any) and path matches the regex.

        Effects in order: wait ``delay`` seconds; ``drop="before"`` closes the connection without
        processing; a ``status`` answers with it (default body: the service's error shape) without
        processing; ``drop="after"`` processes the request, then closes without answering.
        """
        if times < 1:
            raise ValueError("a fault fires at least once")
        re.compile(path)
        fault = Fault(method, path, status, body, dict(headers or {}), delay, drop, times, late=late)
        with self._lock:
            self._faults.append(fault)
        return fault

    def inject_error(self, method: str, path: str, status: int = 502, *, times: int = 1) -> Fault:
        """Answer with an error (502 by default) in the service's error shape, without processing."""
        return self.inject(method, path, status=status, times=times)

    def inject_delay(self, method: str, path: str, seconds: float, *, times: int = 1) -> Fault:
        """Serve matching requests normally but only after ``seconds`` (to make clients time out)."""
        return self.inject(method, path, delay=seconds, times=times)

    def inject_late_answer(self, method: str, path: str, seconds: float, *, times: int = 1) -> Fault:
        """Process matching requests at once but answer only ``seconds`` later: the work is done
        (a dispatched run exists) when a client that timed out asks again."""
        return self.inject(method, path, late=seconds, times=times)

    def inject_accept_then_drop(self, method: str, path: str, *, times: int = 1) -> Fault:
        """Process matching requests for real, then close the connection without an answer."""
        return self.inject(method, path, drop="after", times=times)

    def inject_drop(self, method: str, path: str, *, times: int = 1) -> Fault:
        """Close the connection of matching requests without processing them."""
        return self.inject(method, path, drop="before", times=times)

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ----------------------------------------------------------------------- request log

    def add_listener(self, listener: ExchangeListener) -> None:
        """Call ``listener`` with every exchange, before its response is sent."""
        self._listeners.append(listener)

    def requests(
        self, method: str | None = None, path: str | None = None, operation: str | None = None
    ) -> list[Exchange]:
        """Logged exchanges, oldest first, filtered by method, path regex and/or operationId."""
        with self._log_lock:
            logged = list(self._log)
        return [
            ex
            for ex in logged
            if (method is None or ex.method == method.upper())
            and (path is None or re.search(path, ex.path))
            and (operation is None or ex.operation == operation)
        ]

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    # ----------------------------------------------------------------------- what a service supplies

    @abstractmethod
    def _serve(self, request: HttpRequest) -> tuple[str | None, ReplyT]:
        """Serve a request for real: the operationId that served it (None if none did) and the reply."""

    @abstractmethod
    def _fault_reply(self, fault: Fault) -> ReplyT:
        """The reply of a fault with a ``status``: its body, or the service's error body for it."""

    @abstractmethod
    def _render(self, reply: ReplyT) -> Answer:
        """Put a reply on the wire: the service's headers and the body as bytes."""

    def _unserved_operation(self, request: HttpRequest) -> str | None:
        """The operationId to log for a request a fault kept from being served."""
        return None

    # ======================================================================= request handling

    def _handle(self, method: str, target: str, raw_headers: Mapping[str, str], body: bytes) -> Exchange:
        """Serve one request end to end (fault, then the service) and log it."""
        parts = urlsplit(target)
        request = HttpRequest(
            method=method.upper(),
            path=parts.path or "/",
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in raw_headers.items()},
            body=body,
            json=_json_or_none(body),
        )
        fault = self._take_fault(request.method, request.path)
        stopped = fault is not None and fault.delay > 0 and self._stopping.wait(fault.delay)
        answer: Answer | None
        if stopped or (fault is not None and fault.drop == "before"):
            # a delayed request the emulator stops during is never served
            operation, answer = self._unserved_operation(request), None
        elif fault is not None and fault.status is not None:
            operation, answer = self._unserved_operation(request), self._render(self._fault_reply(fault))
        else:
            operation, reply = self._serve(request)
            answer = self._render(reply)
            if fault is not None and fault.late > 0:
                self._stopping.wait(fault.late)
        with self._log_lock:
            exchange = Exchange(
                seq=next(self._seq),
                method=request.method,
                path=request.path,
                query=request.query,
                request_headers=request.headers,
                request_body=body,
                request_json=request.json,
                status=answer.status if answer else None,
                response_headers=answer.headers if answer else {},
                response_body=answer.body if answer else b"",
                response_json=_json_or_none(answer.body) if answer else None,
                operation=operation,
                fault=fault,
                dropped=answer is None or (fault is not None and fault.drop == "after"),
                at=self._now(),
            )
            self._log.append(exchange)
        for listener in list(self._listeners):
            try:
                listener(exchange)
            except Exception as exc:
                self._logger.exception("exchange listener failed")
                self.listener_errors.append(exc)
        return exchange

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fault.matches(method, path):
                    fault.fired += 1
                    return fault
        return None


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: HttpEmulator[Any]) -> None:
        self.emulator = emulator
        super().__init__(address, emulator.handler)


class EmulatorHandler(BaseHTTPRequestHandler):
    """Turns HTTP into :meth:`HttpEmulator._handle` calls, with keep-alive like the real services.

    A service's subclass names the methods it serves (``do_GET = do_POST = EmulatorHandler.serve``);
    any other method gets the standard library's 501, unlogged.
    """

    protocol_version = "HTTP/1.1"
    #: Answers go out at once: with Nagle's algorithm a kept-alive connection's small answer waits
    #: for the client's delayed ACK (some 40 ms a request), which no real service makes us wait.
    disable_nagle_algorithm = True

    def serve(self) -> None:
        emulator = cast(_Server, self.server).emulator
        length = int(self.headers.get("content-length") or 0)
        try:
            body = self.rfile.read(length) if length > 0 else b""
        except OSError:
            body = b""
        if len(body) < length:  # the client went away mid-request: nothing arrived to handle
            self.close_connection = True
            return
        exchange = emulator._handle(self.command, self.path, dict(self.headers.items()), body)
        if exchange.dropped or exchange.status is None:
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(exchange.status)
            for name, value in exchange.response_headers.items():
                self.send_header(name, value)
            self.end_headers()
            if exchange.response_body:
                self.wfile.write(exchange.response_body)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        cast(_Server, self.server).emulator._logger.debug("%s - %s", self.address_string(), format % args)
