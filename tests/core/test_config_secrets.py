"""Every field that carries a credential is a secret: given by reference, never a literal default
outside a sandbox config, and registered so that every output masks it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.pipeline import CONFIG
from watchdog.config import parse_config, secret_values
from watchdog.errors import ConfigError
from watchdog.store import Store

ENV = {"SVC": "http://127.0.0.1:9", "GH": "http://127.0.0.1:9", "TOKEN": "ghp_tok3n", "DB": "sqlite://"}

DAMPENING = """    dampening:
      prod:
        - name: drain
          url: http://127.0.0.1:9/drain
          headers: {Content-Type: application/json, X-Api-Key: "KEY"}
          undo: {name: undrain, url: "http://127.0.0.1:9/undrain", headers: {Authorization: "AUTH"}}
"""


def text(*, smoke_auth: str = "Bearer ${SMOKE}", key: str = "${DAMPEN_KEY}", auth: str = "${UNDO}") -> str:
    out = CONFIG.replace(
        'headers: {X-Dry-Run: "1"}', f'headers: {{X-Dry-Run: "1", Authorization: "{smoke_auth}"}}'
    )
    return out + DAMPENING.replace("KEY", key).replace("AUTH", auth)


SECRET_ENV = {**ENV, "SMOKE": "smk-secret-1", "DAMPEN_KEY": "dmp-secret-2", "UNDO": "undo-secret-3"}


def problems(yaml: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(yaml, "w.yaml", env=env or SECRET_ENV)
    return err.value.problems


def test_credential_headers_are_secrets_registered_with_their_bare_credential() -> None:
    cfg = parse_config(text(), "w.yaml", env=SECRET_ENV)
    found = set(secret_values(cfg))
    assert {"ghp_tok3n", "Bearer smk-secret-1", "smk-secret-1", "dmp-secret-2", "undo-secret-3"} <= found
    assert "application/json" not in found and "1" not in found  # plain headers are not secrets
    smoke = cfg.services[0].smoke_checks[1]
    assert smoke.request_headers()["Authorization"] == "Bearer smk-secret-1"
    assert "smk-secret-1" not in repr(cfg)


@pytest.mark.parametrize(
    ("where", "kwargs"),
    [
        ("services[0].smoke_checks[1].headers.Authorization", {"smoke_auth": "Bearer smk-literal"}),
        ("services[0].dampening.prod[0].headers.X-Api-Key", {"key": "dmp-literal"}),
        ("services[0].dampening.prod[0].undo.headers.Authorization", {"auth": "Basic ${UNDO} plus-literal"}),
    ],
)
def test_a_credential_header_written_in_the_file_is_refused(where: str, kwargs: dict[str, str]) -> None:
    (problem,) = problems(text(**kwargs))
    assert problem.startswith("w.yaml:") and f"{where}: secrets must be given by reference" in problem
    assert "literal" not in problem.split(": ", 2)[-1].replace("literal default", "")


def test_a_literal_default_is_refused_for_secrets_except_in_a_sandbox() -> None:
    yaml = text(key="${DAMPEN_KEY:-dmp-fallback}").replace("token: ${TOKEN}", "token: ${TOKEN:-ghp_fallback}")
    found = problems(yaml)
    assert any(
        p.endswith(
            "github.token: a secret's reference must not carry a literal default "
            "(${NAME:-value}) outside a sandbox config"
        )
        for p in found
    ), found
    assert any("dampening.prod[0].headers.X-Api-Key: a secret's reference must not carry" in p for p in found)
    assert not any("fallback" in p for p in found)
    unset = {k: v for k, v in SECRET_ENV.items() if k not in ("TOKEN", "DAMPEN_KEY")}
    sandboxed = parse_config("sandbox: true\n" + yaml, "w.yaml", env=unset)
    assert sandboxed.github.token.get_secret_value() == "ghp_fallback"
    assert "dmp-fallback" in set(secret_values(sandboxed))
    # an empty default ("off") is no secret in the file
    parse_config(yaml.replace(":-ghp_fallback", ":-").replace(":-dmp-fallback", ""), "w.yaml", env=SECRET_ENV)


def test_a_password_in_a_url_is_by_reference_and_a_secret() -> None:
    literal = CONFIG.replace('store: {url: "${DB}"}', 'store: {url: "postgresql://wd:hunter22@db:5432/wd"}')
    (problem,) = problems(literal)
    assert "store.url: a password in a URL must be given by reference" in problem
    assert "hunter22" not in problem
    in_default = CONFIG.replace(
        'store: {url: "${DB}"}', 'store: {url: "${DB:-postgresql://wd:hunter22@db/wd}"}'
    )
    (problem,) = problems(in_default)
    assert "store.url: a URL with a password must not be a reference's literal default" in problem
    by_ref = CONFIG.replace('store: {url: "${DB}"}', 'store: {url: "postgresql://wd:${PGPASSWORD}@db/wd"}')
    cfg = parse_config(by_ref, "w.yaml", env={**ENV, "PGPASSWORD": "p%40ss-w0rd"})
    assert {"p%40ss-w0rd", "p@ss-w0rd"} <= set(secret_values(cfg))  # as written, and as the driver sees it
    whole = parse_config(CONFIG, "w.yaml", env={**ENV, "DB": "postgresql://wd:whole-pw@db/wd"})
    assert "whole-pw" in set(secret_values(whole))


def test_log_masks_secrets_even_in_entries_written_before_they_were_registered(tmp_path: Path) -> None:
    """``log`` registers the config's secrets itself: an entry an older version wrote unmasked (or
    one written while a secret was not yet configured) is printed masked."""
    db = tmp_path / "wd.db"
    store = Store.open(f"sqlite:///{db}")
    entry = store.log_decision(
        at=1.0, env="prod", service="stamps-api", kind="pin", reason="seed", actor="a", result="pinned"
    )
    store.close()
    raw = sqlite3.connect(db)
    with raw:
        raw.execute("DROP TRIGGER IF EXISTS decision_log_no_update")
        raw.execute("UPDATE decision_log SET reason = ? WHERE id = ?", ("token ghp_tok3n leaked", entry.id))
    raw.close()
    config = tmp_path / "w.yaml"
    config.write_text(CONFIG)
    env = {**ENV, "DB": f"sqlite:///{db}", "PATH": "/usr/bin:/bin"}
    for args in (["--json"], []):
        done = subprocess.run(
            [sys.executable, "-m", "watchdog", "log", "-c", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "token *** leaked" in done.stdout and "ghp_tok3n" not in done.stdout
