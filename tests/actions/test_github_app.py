"""GitHub App authentication: the watchdog as an app installation instead of a personal token.

Against the GitHub emulator on a simulated clock (every exchange checked against GitHub's spec):
the JWT it signs, the installation token it mints, looks up and refreshes before it expires, what
GitHub refusing the app's key says, the configuration, and that neither the key nor a token ever
reaches a log line or an error message. The key is a throwaway one, made for the session.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from actions.github import DeployWorkflow, github_auth
from actions.github_app import InstallationTokenAuth
from tests.fixtures.pipeline import START
from watchdog.app import App
from watchdog.clock import SimClock
from watchdog.config import GitHubAppConfig, GitHubConfig, parse_config, secret_values
from watchdog.deploys import DeploymentPoller
from watchdog.emulator.github import GitHubEmulator
from watchdog.emulator.github_apps import TOKEN_LIFETIME_S, bot_login
from watchdog.errors import ActionFailed, ActionRetryable, ConfigError
from watchdog.observability import configure_logging, report_exception

APP_ID = 4242
INSTALLATION_ID = 77_001
REPO = "acme/stamps"
INPUTS = {"environment": "dev", "tag": "v1.0.0", "correlation_id": "wd-app-0001"}
MINT = "apps/create-installation-access-token"
LOOKUP = "apps/get-repo-installation"


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str

    @property
    def body_lines(self) -> list[str]:
        return [line for line in self.private_pem.splitlines() if not line.startswith("-----")]


def _key_pair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private.decode(), public.decode())


@pytest.fixture(scope="session")
def app_key() -> KeyPair:
    """The app's key pair: the emulator knows the public half, the watchdog holds the private."""
    return _key_pair()


@pytest.fixture(scope="session")
def other_key() -> KeyPair:
    """A key GitHub does not know for the app."""
    return _key_pair()


@pytest.fixture
def emulator(make_github_emulator: Callable[..., GitHubEmulator], app_key: KeyPair) -> GitHubEmulator:
    """GitHub with the app installed on acme/stamps, on a simulated clock."""
    return make_github_emulator(
        clock=SimClock(START),
        apps={APP_ID: app_key.public_pem},
        installations={INSTALLATION_ID: (APP_ID, REPO)},
    )


def app_config(
    emulator: GitHubEmulator,
    key: KeyPair,
    *,
    app_id: int = APP_ID,
    installation_id: int | None = INSTALLATION_ID,
    refresh_before_s: float = 300.0,
) -> GitHubConfig:
    app = GitHubAppConfig(
        app_id=app_id,
        installation_id=installation_id,
        private_key=SecretStr(key.private_pem),
        refresh_before_s=refresh_before_s,
    )
    return GitHubConfig(api_url=emulator.url, repo=REPO, app=app)


def deployer(emulator: GitHubEmulator, cfg: GitHubConfig) -> DeployWorkflow:
    """As ``App.build`` makes it, without the pauses between requests."""
    assert emulator.clock is not None
    return DeployWorkflow(
        cfg.api_url,
        cfg.repo,
        cfg.workflow,
        github_auth(cfg, emulator.clock),
        emulator.clock,
        timeout_s=5,
        request_interval_s=0,
        write_interval_s=0,
    )


def sim(emulator: GitHubEmulator) -> SimClock:
    assert isinstance(emulator.clock, SimClock)
    return emulator.clock


# --------------------------------------------------------------------------- dispatch


def test_a_dispatch_goes_out_as_the_apps_bot_with_an_installation_token(
    emulator: GitHubEmulator, app_key: KeyPair
) -> None:
    deploy = deployer(emulator, app_config(emulator, app_key))

    run = deploy.dispatch("v1.0.0", INPUTS)

    assert run is not None
    assert emulator.get_run(run.id)["triggering_actor"]["login"] == bot_login(APP_ID)
    (mint,) = emulator.requests(operation=MINT)
    assert mint.path == f"/app/installations/{INSTALLATION_ID}/access_tokens"
    assert mint.status == 201
    assert not emulator.requests(operation=LOOKUP)  # the installation was configured


def test_the_token_is_refreshed_refresh_before_s_before_it_expires(
    emulator: GitHubEmulator, app_key: KeyPair
) -> None:
    deploy = deployer(emulator, app_config(emulator, app_key, refresh_before_s=300))
    clock = sim(emulator)
    run = deploy.dispatch("v1.0.0", INPUTS)
    assert run is not None
    refresh_at = START + TOKEN_LIFETIME_S - 300

    clock.set(refresh_at - 1)
    deploy.run(run.id)
    assert len(emulator.requests(operation=MINT)) == 1  # still the first token

    clock.set(refresh_at)
    deploy.run(run.id)
    assert len(emulator.requests(operation=MINT)) == 2
    first, second = emulator.installation_tokens()[-2:]
    assert first != second

    clock.set(START + TOKEN_LIFETIME_S + 60)  # the first token has expired: never used again
    assert deploy.run(run.id).id == run.id
    assert len(emulator.requests(operation=MINT)) == 2
    assert all(ex.status != 401 for ex in emulator.exchanges)


def test_an_expired_installation_token_is_bad_credentials(emulator: GitHubEmulator, app_key: KeyPair) -> None:
    """What a client that refreshed too late would meet: GitHub's 401, final."""
    auth = github_auth(app_config(emulator, app_key), sim(emulator))
    deploy = DeployWorkflow(emulator.url, REPO, "deploy.yml", auth, sim(emulator), request_interval_s=0)
    deploy.read_file("migrations/manifest.json", "v1.0.0")
    (token,) = emulator.installation_tokens()
    sim(emulator).advance(TOKEN_LIFETIME_S)

    stale = DeployWorkflow(emulator.url, REPO, "deploy.yml", token, sim(emulator), request_interval_s=0)
    with pytest.raises(ActionFailed, match="GitHub answered 401: Bad credentials") as err:
        stale.read_file("migrations/manifest.json", "v1.0.0")
    assert not isinstance(err.value, ActionRetryable)


def test_the_installation_is_looked_up_once_when_not_configured(
    emulator: GitHubEmulator, app_key: KeyPair
) -> None:
    cfg = app_config(emulator, app_key, installation_id=None)
    deploy = deployer(emulator, cfg)

    assert deploy.dispatch("v1.0.0", INPUTS) is not None
    sim(emulator).advance(TOKEN_LIFETIME_S)  # past the refresh: a second token
    deploy.find_run("wd-app-0001")

    (lookup,) = emulator.requests(operation=LOOKUP)
    assert lookup.path == f"/repos/{REPO}/installation"
    mints = emulator.requests(operation=MINT)
    assert [m.path for m in mints] == [f"/app/installations/{INSTALLATION_ID}/access_tokens"] * 2


def test_the_deployments_poller_shares_the_installation_token(
    emulator: GitHubEmulator, app_key: KeyPair, tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(app_key.private_pem)
    text = config_text(app=f"app: {{app_id: {APP_ID}, private_key: '${{file:{key_file}}}'}}")
    cfg = parse_config(text, "app.yaml", env={"GH": emulator.url, "DB": f"sqlite:///{tmp_path / 'wd.db'}"})
    app = App.build(cfg, sim(emulator))
    try:
        assert app.pipeline.deployer is not None
        poller = DeploymentPoller(cfg, app.pipeline.deployer, app.store, sim(emulator), app.engine.announce)
        assert app.pipeline.deployer.dispatch("v1.0.0", INPUTS) is not None
        poller.poll_once()
    finally:
        app.close()

    polled = emulator.requests("GET", r"/deployments$")
    assert polled and all(ex.status == 200 for ex in polled)
    assert len(emulator.requests(operation=LOOKUP)) == 1
    assert len(emulator.requests(operation=MINT)) == 1  # one token for the workflow client and the poller


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("key", "app_id"), [("other", APP_ID), ("app", 9999)], ids=["wrong-key", "wrong-app-id"]
)
def test_github_refusing_the_app_is_final_and_names_the_app_not_the_key(
    emulator: GitHubEmulator, app_key: KeyPair, other_key: KeyPair, key: str, app_id: int
) -> None:
    held = other_key if key == "other" else app_key
    deploy = deployer(emulator, app_config(emulator, held, app_id=app_id))

    with pytest.raises(ActionFailed) as err:
        deploy.dispatch("v1.0.0", INPUTS)

    message = str(err.value)
    assert not isinstance(err.value, ActionRetryable)
    assert err.value.status == 401
    assert f"GitHub App {app_id} could not get a token for installation {INSTALLATION_ID}" in message
    assert "A JSON web token could not be decoded" in message
    assert not any(line in message for line in held.body_lines)
    assert not emulator.requests(operation="actions/create-workflow-dispatch")  # nothing went out


def test_an_app_not_installed_on_the_repository_is_named(
    make_github_emulator: Callable[..., GitHubEmulator], app_key: KeyPair
) -> None:
    emulator = make_github_emulator(clock=SimClock(START), apps={APP_ID: app_key.public_pem})
    deploy = deployer(emulator, app_config(emulator, app_key, installation_id=None))

    with pytest.raises(ActionFailed, match=f"GitHub App {APP_ID} could not look up its installation on "):
        deploy.dispatch("v1.0.0", INPUTS)


def test_a_key_that_is_no_pem_is_a_config_error_that_does_not_quote_it(
    emulator: GitHubEmulator,
) -> None:
    cfg = app_config(emulator, KeyPair("not-a-key-but-a-secret-all-the-same", ""))

    with pytest.raises(ConfigError, match=r"github\.app\.private_key: not an unencrypted private key") as err:
        github_auth(cfg, sim(emulator))
    assert "not-a-key-but-a-secret" not in str(err.value)


# --------------------------------------------------------------------------- the JWT


def test_the_jwt_is_rs256_stamped_on_the_injected_clock_and_at_most_ten_minutes(
    emulator: GitHubEmulator, app_key: KeyPair
) -> None:
    auth = github_auth(app_config(emulator, app_key), sim(emulator))
    assert isinstance(auth, InstallationTokenAuth)
    token = auth._sign({"iss": str(APP_ID)})

    # the times are checked here, not by PyJWT: it would check them on wall time
    claims = jwt.decode(
        token, app_key.public_pem, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert claims["iss"] == str(APP_ID)
    assert claims["iat"] == int(START) - 60
    assert claims["exp"] - claims["iat"] <= 600


# --------------------------------------------------------------------------- config


def config_text(identity: str = "", app: str = "") -> str:
    lines = "\n".join(f"  {line}" for line in (identity, app) if line)
    return f"""
version: 1
source:
  kind: scrape
  scrape: {{targets: [{{url: "http://127.0.0.1:9/metrics"}}]}}
github:
  api_url: "${{GH}}"
  repo: acme/stamps
{lines}
  request_interval_s: 0
  write_interval_s: 0
store: {{url: "${{DB}}"}}
environments:
  prod: {{approval: none, watch_s: 600}}
services:
  - name: stamps-api
    signals: [{{name: healthcheck, kind: probe, probe: {{metric: probe_success}}}}]
"""


ENV = {"GH": "http://127.0.0.1:9", "DB": "sqlite:///:memory:", "GITHUB_TOKEN": "ghp_x" * 8}


@pytest.mark.parametrize(
    ("identity", "app", "says"),
    [
        ("token: ${GITHUB_TOKEN}", "app: {app_id: 1, private_key: '${APP_KEY}'}", "not both"),
        ("", "", "got neither"),
    ],
    ids=["both", "neither"],
)
def test_exactly_one_of_token_and_app(identity: str, app: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"app.yaml:\d+: github: .*github.token .* github.app") as err:
        parse_config(config_text(identity, app), "app.yaml", env={**ENV, "APP_KEY": "k" * 40})
    assert says in str(err.value)


def test_the_private_key_is_a_secret_given_by_reference(app_key: KeyPair, tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(app_key.private_pem)

    with pytest.raises(ConfigError, match=r"github.app.private_key: secrets must be given by reference"):
        parse_config(config_text(app="app: {app_id: 1, private_key: written-in-the-file}"), "app.yaml", ENV)
    cfg = parse_config(
        config_text(app=f"app: {{app_id: 1, private_key: '${{file:{key_file}}}'}}"), "app.yaml", ENV
    )

    assert cfg.github.app is not None and cfg.github.token is None
    assert cfg.github.app.installation_id is None and cfg.github.app.refresh_before_s == 300
    found = set(secret_values(cfg))
    assert app_key.private_pem.strip() in found
    assert set(app_key.body_lines) <= found  # a line of it, printed alone, is scrubbed too


# --------------------------------------------------------------------------- never shown


def test_neither_the_key_nor_a_token_reaches_the_logs_or_an_error(
    emulator: GitHubEmulator, app_key: KeyPair, other_key: KeyPair, tmp_path: Path
) -> None:
    """With every line logged, PyGithub's debug lines (the response bodies that bring the tokens)
    among them, and a refused key's error reported as the daemon reports errors."""
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    logging.getLogger("github").setLevel(logging.DEBUG)
    key_file = tmp_path / "app.pem"
    key_file.write_text(app_key.private_pem)
    cfg = parse_config(
        config_text(app=f"app: {{app_id: {APP_ID}, private_key: '${{file:{key_file}}}'}}"),
        "app.yaml",
        {"GH": emulator.url, "DB": f"sqlite:///{tmp_path / 'wd.db'}"},
    )
    app = App.build(cfg, sim(emulator))  # registers the config's secrets, as the daemon does
    log = logging.getLogger("watchdog.test")
    try:
        assert app.pipeline.deployer is not None
        run = app.pipeline.deployer.dispatch("v1.0.0", INPUTS)
        assert run is not None
        sim(emulator).advance(TOKEN_LIFETIME_S)
        app.pipeline.deployer.run(run.id)  # a second token
        wrong = deployer(emulator, app_config(emulator, other_key))
        with pytest.raises(ActionFailed) as err:
            wrong.dispatch("v1.0.0", INPUTS)
        report_exception(structlog.get_logger("watchdog.test"), "dispatch failed", err.value)
        tokens = emulator.installation_tokens()
        log.error("a careless line: %s, %s", tokens, app_key.private_pem)
    finally:
        app.close()
        logging.getLogger("github").setLevel(logging.NOTSET)

    text = out.getvalue()
    assert len(tokens) == 2 and "minted a GitHub App installation token" in text
    assert "/access_tokens" in text  # PyGithub's debug lines of the mints are there ...
    for secret in [*tokens, *app_key.body_lines, *other_key.body_lines]:
        assert secret not in text  # ... without the tokens; no line of either key anywhere
        assert secret not in str(err.value)


# --------------------------------------------------------------------------- the emulator's checks


@pytest.mark.parametrize(
    ("iat", "exp", "says"),
    [
        (-60, 540, None),
        (-60, 600, "is too far in the future"),  # exp - iat = 660 s
        (-700, -100, "'Expiration time' claim ('exp') must be a numeric value"),
        (120, 500, "'Issued at' claim ('iat') must be an Integer"),
    ],
    ids=["valid", "too-long", "expired", "issued-in-the-future"],
)
def test_the_emulator_checks_the_jwt_on_its_clock_as_github_does(
    emulator: GitHubEmulator, app_key: KeyPair, iat: int, exp: int, says: str | None
) -> None:
    now = int(START)
    token = jwt.encode({"iss": str(APP_ID), "iat": now + iat, "exp": now + exp}, app_key.private_pem, "RS256")

    answer = httpx.get(f"{emulator.url}/app", headers={"Authorization": f"Bearer {token}"})

    if says is None:
        assert answer.status_code == 200
        assert answer.json()["id"] == APP_ID
    else:
        assert answer.status_code == 401
        assert says in answer.json()["message"]


def test_an_installation_token_is_no_jwt(emulator: GitHubEmulator, app_key: KeyPair) -> None:
    deployer(emulator, app_config(emulator, app_key)).read_file("migrations/manifest.json", "v1.0.0")
    (token,) = emulator.installation_tokens()

    answer = httpx.get(f"{emulator.url}/app", headers={"Authorization": f"token {token}"})

    assert answer.status_code == 401
    assert answer.json()["message"] == "A JSON web token could not be decoded"
