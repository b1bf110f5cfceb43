"""Who is asking: bearer tokens (by reference in the config), each held by a named actor in a role.

Every role reads. ``deployer`` also announces deploys; ``operator`` also overrides. A token is
compared with every configured one in constant time (``hmac.compare_digest``, no early exit), so
the answer's timing says nothing about which token, or how much of one, was right.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from watchdog.config import ApiRole, ApiToken


@dataclass(frozen=True)
class Principal:
    """The holder of a valid token: the actor its writes are logged as."""

    name: str
    role: ApiRole

    @property
    def actor(self) -> str:
        return f"api:{self.name}"


class Tokens:
    def __init__(self, tokens: list[ApiToken]) -> None:
        self._entries = [(t.token.get_secret_value().encode(), Principal(t.name, t.role)) for t in tokens]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def identify(self, authorization: str | None) -> Principal | None:
        """The principal whose token the ``Authorization: Bearer …`` header carries, or None."""
        if not authorization:
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        presented = given.strip().encode()
        found: Principal | None = None
        for secret, who in self._entries:  # every entry, always: no early exit
            if hmac.compare_digest(secret, presented):
                found = who
        return found
