"""A stand-in for a Teams Workflows webhook, served over real HTTP, that refuses invalid cards loudly.

Teams renders a card it cannot read as an empty or "unsupported" message, silently. This receiver
is stricter than Teams so that a test notices: it checks the envelope (``type: message``, an
attachment of ``application/vnd.microsoft.card.adaptive`` with the card in ``content``), validates
each card against the published Adaptive Card 1.5 schema
(``shared/specs/adaptive-card-1.5.schema.json``, JSON Schema draft-06) and answers 400 naming the
problem for an invalid one, 202 (as Workflows does) otherwise. The webhook URL carries a signature
(``sig=``) as Workflows URLs do; a post without the right one is refused with 401. It records
every card it accepted.

Use it in-process (``with TeamsReceiver() as teams: ...`` with ``webhook_url=teams.webhook_url``)
or standalone: ``python -m watchdog.emulator.teams --port 8095``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from watchdog.emulator.base import (
    Answer,
    EmulatorHandler,
    ExchangeListener,
    Fault,
    HttpEmulator,
    HttpRequest,
)

__all__ = ["CARD_CONTENT_TYPE", "SCHEMA_PATH", "SIGNATURE", "WORKFLOW_PATH", "TeamsReceiver"]

#: The published Adaptive Card schema, beside the repository (``../shared/specs``).
SCHEMA_PATH = (
    Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "adaptive-card-1.5.schema.json"
)
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
#: The webhook URL's signature the receiver accepts unless told otherwise (a secret, in Teams).
SIGNATURE = "tEaMsSiGnAtUrE0123456789abcdefXYZ_-w"
WORKFLOW_PATH = "/workflows/5f0c1e2d3b4a/triggers/manual/paths/invoke"


def card_problems(validator: Any, content: Any) -> list[str]:
    """What makes ``content`` no valid Adaptive Card, one line each (the best match per error)."""
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

    problems: list[str] = []
    for error in sorted(validator.iter_errors(content), key=lambda e: list(e.absolute_path)):
        best = best_match([error]) or error
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in best.absolute_path)
        problems.append(f"card{where}: {best.message}")
    return problems


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(EmulatorHandler):
    server_version = "teams-workflows-emulator"
    sys_version = ""
    do_POST = do_GET = EmulatorHandler.serve


class TeamsReceiver(HttpEmulator[_Reply]):
    """Takes Workflows webhook posts at ``webhook_url``; ``cards()`` are the accepted cards, in order.

    ``schema`` is the Adaptive Card schema as loaded JSON (default: :data:`SCHEMA_PATH`). Needs the
    ``jsonschema`` package (a test dependency)."""

    service = "Teams"
    handler = _Handler

    def __init__(
        self,
        *,
        schema: Mapping[str, Any] | None = None,
        signature: str = SIGNATURE,
        host: str = "127.0.0.1",
        port: int = 0,
        on_exchange: ExchangeListener | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        from jsonschema import Draft6Validator  # type: ignore[import-untyped]

        super().__init__(host=host, port=port, now=now, on_exchange=on_exchange)
        loaded = schema if schema is not None else json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        self._validator = Draft6Validator(loaded)
        self._signature = signature
        self._messages: list[dict[str, Any]] = []
        self.refusals: list[str] = []

    def __repr__(self) -> str:
        return "TeamsReceiver()"

    @property
    def webhook_url(self) -> str:
        """The URL to post to, signature included, as Teams shows it when the flow is made."""
        query = f"api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self._signature}"
        return f"{self.url}{WORKFLOW_PATH}?{query}"

    def messages(self) -> list[dict[str, Any]]:
        """Every accepted post's body, oldest first."""
        with self._lock:
            return list(self._messages)

    def cards(self) -> list[dict[str, Any]]:
        """Every accepted card (the attachments' ``content``), oldest first."""
        return [a["content"] for m in self.messages() for a in m["attachments"]]

    def problems(self, content: Any) -> list[str]:
        """Why ``content`` is no valid Adaptive Card 1.5 (empty when it is one)."""
        return card_problems(self._validator, content)

    # ======================================================================= request handling

    def _fault_reply(self, fault: Fault) -> _Reply:
        status = cast(int, fault.status)
        body = fault.body if fault.body is not None else _error(f"Injected{status}", f"injected {status}")
        return _Reply(status, body, dict(fault.headers))

    def _render(self, reply: _Reply) -> Answer:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        headers = {"content-type": "application/json", **{k.lower(): v for k, v in reply.headers.items()}}
        headers["content-length"] = str(len(payload))
        return Answer(reply.status, headers, payload)

    def _serve(self, request: HttpRequest) -> tuple[str | None, _Reply]:
        if request.path != WORKFLOW_PATH:
            return None, _Reply(404, _error("WorkflowNotFound", "The workflow could not be found."))
        if request.method != "POST":
            return None, _Reply(405, _error("MethodNotAllowed", "Use POST."), {"allow": "POST"})
        if request.query.get("sig") != [self._signature]:
            return None, _Reply(401, _error("DirectApiInvalidAuthorizationSignature", "Invalid signature."))
        problems = self._envelope_problems(request.json)
        if problems:
            with self._lock:
                self.refusals.extend(problems)
            return "invoke", _Reply(400, _error("InvalidCard", "; ".join(problems)))
        with self._lock:
            self._messages.append(request.json)
        return "invoke", _Reply(202, None)

    def _envelope_problems(self, body: Any) -> list[str]:
        if not isinstance(body, dict):
            return ["the body is not a JSON object"]
        if body.get("type") != "message":
            return ['"type" must be "message"']
        attachments = body.get("attachments")
        if not isinstance(attachments, list) or not attachments:
            return ['"attachments" must be a non-empty list']
        problems: list[str] = []
        for i, attachment in enumerate(attachments):
            if not isinstance(attachment, dict) or attachment.get("contentType") != CARD_CONTENT_TYPE:
                problems.append(f'attachments[{i}].contentType must be "{CARD_CONTENT_TYPE}"')
                continue
            content = attachment.get("content")
            problems += [f"attachments[{i}].{p}" for p in self.problems(content)]
            if isinstance(content, dict) and content.get("version") != "1.5":
                problems.append(f'attachments[{i}].card.version must be "1.5"')
        return problems


def _error(code: str, message: str) -> dict[str, Any]:
    """Azure's error shape, as a Workflows trigger answers."""
    return {"error": {"code": code, "message": message}}


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    """Run the receiver as a server until interrupted (for the demo and Docker)."""
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.emulator.teams",
        description="Receive Teams Workflows webhook posts and validate their Adaptive Cards.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8095)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    receiver = TeamsReceiver(host=args.host, port=args.port)
    receiver.serve_until_terminated(f"at {receiver.webhook_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
