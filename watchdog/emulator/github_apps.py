"""GitHub Apps for the GitHub emulator: the app JWT's checks and the installation tokens minted.

Kept apart from :mod:`watchdog.emulator.github`, which serves the routes: this module knows the
apps (id → public key), their installations (id → app, repository), checks a JWT as GitHub does
(RS256 against the app's public key, ``iss`` the app's id, ``exp - iat`` at most 600 s, ``iat`` not
in the future and ``exp`` not past on the emulator's clock, within ``leeway_s`` for a client whose
clock differs) and accepts each installation token it minted until it expires, an hour later.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

#: How long an installation token lasts (GitHub: one hour).
TOKEN_LIFETIME_S = 3600.0
#: The longest a JWT may live, ``exp - iat`` (GitHub: 10 minutes).
MAX_JWT_LIFETIME_S = 600
#: The permissions an emulated app is granted unless told otherwise: what the watchdog needs.
DEFAULT_PERMISSIONS = {
    "actions": "write",
    "contents": "read",
    "deployments": "read",
    "issues": "write",
    "metadata": "read",
}
#: GitHub's answer to a JWT it cannot verify: a wrong key, another app's id, a malformed token.
UNDECODABLE = "A JSON web token could not be decoded"
_TOKEN_CHARS = string.ascii_letters + string.digits


def bot_login(app_id: int) -> str:
    """The login an emulated app's installation tokens act as (its bot account)."""
    return f"{app_slug(app_id)}[bot]"


def app_slug(app_id: int) -> str:
    return f"watchdog-app-{app_id}"


class JwtRefused(Exception):
    """A JWT GitHub would answer 401 to, with GitHub's message."""


@dataclass(frozen=True)
class Installation:
    id: int
    app_id: int
    repo: str  # owner/name


@dataclass(frozen=True)
class Minted:
    token: str
    installation: Installation
    expires_at: float


class AppRegistry:
    """The emulator's apps, installations and live installation tokens (guarded by the
    emulator's lock)."""

    def __init__(
        self,
        apps: Mapping[int, str],
        installations: Mapping[int, tuple[int, str]],
        *,
        leeway_s: float = 30.0,
        permissions: Mapping[str, str] | None = None,
    ) -> None:
        self._keys: dict[int, rsa.RSAPublicKey] = {}
        for app_id, pem in apps.items():
            key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
            if not isinstance(key, rsa.RSAPublicKey):
                raise ValueError(f"app {app_id}: the public key must be RSA (GitHub's JWTs are RS256)")
            self._keys[app_id] = key
        self.installations: dict[int, Installation] = {}
        for installation_id, (app_id, repo) in installations.items():
            if app_id not in self._keys:
                raise ValueError(f"installation {installation_id}: no app {app_id}")
            self.installations[installation_id] = Installation(installation_id, app_id, repo)
        self.leeway_s = leeway_s
        self.permissions = dict(permissions or DEFAULT_PERMISSIONS)
        self._tokens: dict[str, Minted] = {}

    @property
    def app_ids(self) -> list[int]:
        return list(self._keys)

    def verify(self, authorization: str, now: float) -> int:
        """The id of the app whose JWT ``authorization`` (``Bearer <jwt>``) holds; JwtRefused with
        GitHub's message when GitHub would refuse it."""
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise JwtRefused(UNDECODABLE)
        token = credential.strip()
        try:
            if jwt.get_unverified_header(token).get("alg") != "RS256":
                raise JwtRefused(UNDECODABLE)
            unverified = jwt.decode(token, options={"verify_signature": False})
            app_id = int(str(unverified.get("iss")))
        except (jwt.InvalidTokenError, ValueError) as exc:
            raise JwtRefused(UNDECODABLE) from exc
        key = self._keys.get(app_id)
        if key is None:
            raise JwtRefused(UNDECODABLE)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidTokenError as exc:  # signed with another key
            raise JwtRefused(UNDECODABLE) from exc
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now + self.leeway_s:
            raise JwtRefused(
                "'Issued at' claim ('iat') must be an Integer representing the time that the "
                "assertion was issued"
            )
        if not isinstance(exp, int) or exp <= now - self.leeway_s:
            raise JwtRefused(
                "'Expiration time' claim ('exp') must be a numeric value representing the future "
                "time at which the assertion expires"
            )
        if exp - iat > MAX_JWT_LIFETIME_S:
            raise JwtRefused("'Expiration time' claim ('exp') is too far in the future")
        return app_id

    def installation_of(self, app_id: int, repo: str) -> Installation | None:
        """The app's installation that covers ``repo`` (owner/name, case-insensitive)."""
        return next(
            (i for i in self.installations.values() if i.app_id == app_id and i.repo.lower() == repo.lower()),
            None,
        )

    def mint(self, installation: Installation, now: float) -> Minted:
        minted = Minted(
            "ghs_" + "".join(secrets.choice(_TOKEN_CHARS) for _ in range(36)),
            installation,
            now + TOKEN_LIFETIME_S,
        )
        self._tokens[minted.token] = minted
        return minted

    def login_for(self, token: str, now: float) -> str | None:
        """The bot login an installation token acts as, or None (unknown, or expired)."""
        minted = self._tokens.get(token)
        if minted is None or now >= minted.expires_at:
            return None
        return bot_login(minted.installation.app_id)

    def minted(self) -> list[Minted]:
        """Every installation token minted, oldest first (expired ones too)."""
        return list(self._tokens.values())
