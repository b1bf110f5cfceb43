"""A GitHub App installation as the watchdog's GitHub identity, as a PyGithub ``Auth``.

An app authenticates in two steps: a JWT signed with its private key (RS256; ``iat`` 60 s in the
past against clock drift, ``exp`` at most 10 minutes after) buys an installation token at
``POST /app/installations/{id}/access_tokens``; that token, valid for an hour, is what every other
request carries. PyGithub's ``Auth.AppInstallationAuth`` does this on wall time (``time.time()``
for the JWT, ``datetime.now()`` for the expiry) and refreshes only 20 s before the token expires,
so a request sent just before that could still meet an expired token at GitHub. Here both come
from the injected clock, and the token is replaced ``refresh_before_s`` before it expires. The
JWT is still PyGithub's ``Auth.AppAuth`` (``GithubIntegration`` takes no other), given a signing
function that stamps the times from our clock instead of the wall-clock ones it is handed.

Every token minted is registered with the log scrubber (``watchdog.observability``) before it is
used, so neither a log line nor an error report can show it. PyGithub logs each response body at
DEBUG, the one that brings a new token too, before the token can be registered: a filter on its
logger masks the ``"token"`` field of those bodies.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import jwt
import structlog
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, GithubException
from github.GithubIntegration import GithubIntegration
from github.InstallationAuthorization import InstallationAuthorization
from github.Requester import Requester, WithRequester

from watchdog.clock import Clock
from watchdog.errors import ConfigError
from watchdog.observability import register_secrets

log = structlog.get_logger("actions.github_app")

#: ``iat`` this far in the past, as GitHub recommends against clock drift.
JWT_BACKDATE_S = 60
#: ``exp`` this far ahead: ``exp - iat`` is 600 s, the most GitHub takes.
JWT_LIFETIME_S = 540


#: A ``"token": "..."`` field in a JSON body PyGithub logs.
_TOKEN_FIELD = re.compile(r'("token"\s*:\s*")[^"]*(")')


class _MaskTokenFields(logging.Filter):
    """Masks the token fields in PyGithub's debug lines (its response bodies)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _TOKEN_FIELD.sub(r"\1***\2", a) if isinstance(a, str) else a for a in record.args
            )
        return True


_MASK_TOKEN_FIELDS = _MaskTokenFields()


class AppAuthFailed(GithubException):
    """GitHub did not give the app an installation token. It keeps GitHub's status and headers
    (``actions.github.github_error`` maps it like any answer: 5xx and rate limits are retryable, a
    refused key final) and says which app and installation, never anything of the key."""


def _load_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        problem = f"github.app.private_key: not an unencrypted private key in PEM ({type(exc).__name__})"
        raise ConfigError([problem]) from None  # the parser's message may quote the key
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(["github.app.private_key: not an RSA key (GitHub's app JWTs are RS256)"])
    return key


class InstallationTokenAuth(Auth.Auth, WithRequester["InstallationTokenAuth"]):
    """The installation token of one GitHub App installation, minted when first needed and again
    ``refresh_before_s`` before it expires, on ``clock``. ``installation_id=None``: the
    installation on ``repo``'s account, looked up once (``GET /repos/{owner}/{repo}/installation``).

    One instance serves every requester built from the workflow client's (the deployments
    poller's too, on its own thread): it mints through a requester of its own, the first one's
    settings with the app's JWT, and one thread at a time."""

    def __init__(
        self,
        app_id: int,
        private_key: str,
        clock: Clock,
        *,
        repo: str,
        installation_id: int | None = None,
        refresh_before_s: float = 300.0,
    ) -> None:
        super().__init__()
        requester_log = logging.getLogger("github.Requester")
        if _MASK_TOKEN_FIELDS not in requester_log.filters:
            requester_log.addFilter(_MASK_TOKEN_FIELDS)
        self.app_id = app_id
        self.repo = repo
        self.refresh_before_s = refresh_before_s
        self._installation_id = installation_id
        self._key = _load_key(private_key)
        self._clock = clock
        self._app = Auth.AppAuth(app_id, sign_func=self._sign)
        self._lock = threading.Lock()
        self._integration: GithubIntegration | None = None
        self._current: InstallationAuthorization | None = None
        self._refresh_at = 0.0

    @property
    def installation_id(self) -> int | None:
        """The installation's id: configured, or once looked up (None before)."""
        return self._installation_id

    def _sign(self, payload: dict[str, Any]) -> str:
        """The app's JWT: PyGithub's claims (``iss``) with ``iat``/``exp`` from our clock, not the
        wall-clock ones PyGithub computed."""
        now = int(self._clock.now())
        claims = {**payload, "iat": now - JWT_BACKDATE_S, "exp": now + JWT_LIFETIME_S}
        return jwt.encode(claims, self._key, algorithm="RS256")

    def withRequester(self, requester: Requester) -> InstallationTokenAuth:
        """Bind to the first requester (PyGithub calls this for each one built with this auth):
        tokens are minted with its settings (base URL, timeouts), on a connection of their own."""
        with self._lock:
            if self._integration is None:
                super().withRequester(requester)
                self._integration = GithubIntegration(**{**requester.kwargs, "auth": self._app})
        return self

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        with self._lock:
            if self._current is None or self._clock.now() >= self._refresh_at:
                self._current = self._mint()
                expires_at = self._current.expires_at.timestamp()
                self._refresh_at = expires_at - self.refresh_before_s
            return self._current.token

    @property
    def _masked_token(self) -> str:
        return "token (installation token removed)"

    def _mint(self) -> InstallationAuthorization:
        integration = self._integration
        if integration is None:
            raise RuntimeError("InstallationTokenAuth is used by no requester (withRequester first)")
        try:
            if self._installation_id is None:
                owner, name = self.repo.split("/", 1)
                self._installation_id = integration.get_repo_installation(owner, name).id
                log.info(
                    "found the GitHub App's installation",
                    app_id=self.app_id,
                    installation_id=self._installation_id,
                    repo=self.repo,
                )
            minted = integration.get_access_token(self._installation_id)
        except GithubException as exc:
            raise self._refused(exc) from exc
        register_secrets([minted.token])  # before anyone can log a request that carries it
        log.info(
            "minted a GitHub App installation token",
            app_id=self.app_id,
            installation_id=self._installation_id,
            expires_at=minted.expires_at.isoformat(),
        )
        return minted

    def _refused(self, exc: GithubException) -> AppAuthFailed:
        said = exc.data.get("message") if isinstance(exc.data, dict) else None
        if self._installation_id is None:
            what = f"GitHub App {self.app_id} could not look up its installation on {self.repo}"
            hint = " (is the app installed on the repository?)" if exc.status == 404 else ""
        else:
            what = f"GitHub App {self.app_id} could not get a token for installation {self._installation_id}"
            hint = {
                401: " (check github.app.app_id, and that github.app.private_key is this app's key)",
                404: " (check github.app.installation_id: is the app installed there?)",
            }.get(exc.status, "")
        message = f"{what}: {said or 'error'}{hint}"
        return AppAuthFailed(exc.status, {"message": message}, exc.headers, message)
