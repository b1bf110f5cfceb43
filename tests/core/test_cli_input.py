"""Bad input changes nothing (issue 8): every command checks its arguments before it opens a store,
names the argument, the file:line:col or the store that is wrong, exits 2 (input) or 3 (store
unavailable) with one line and no traceback, and writes nothing. ``validate`` works in CI."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from watchdog.cli import main
from watchdog.clock import SimClock
from watchdog.config import check_config, parse_config
from watchdog.engine import Engine
from watchdog.errors import InputError
from watchdog.phases import ReleaseStatus
from watchdog.store import Release, ReleaseRef, Store

CONFIG = """\
version: 1
demo_note: a test configuration (no production timings)
sandbox: true  # the token below has an inline default
source:
  kind: scrape
  scrape:
    targets: [{url: "http://127.0.0.1:9/metrics", labels: {job: api}}]
github:
  repo: acme/api
  token: ${WD_TEST_GITHUB_TOKEN:-test-token}
store: {url: "STORE_URL"}
environments:
  prod: {approval: none}
services:
  - name: api
    match: {job: api}
    signals:
      - name: http_5xx
        kind: ratio
        bad: {metric: http_requests_total, match: {code: "=~5.."}}
        total: {metric: http_requests_total}
"""
RELEASE = ["--env", "prod", "--service", "api"]
HEAD = ScriptDirectory.from_config(Store._alembic()).get_current_head()  # the schema this version writes


def write_config(tmp_path: Path, store_url: str | None = None, text: str = CONFIG) -> Path:
    path = tmp_path / "watchdog.yaml"
    path.write_text(text.replace("STORE_URL", store_url or f"sqlite:///{tmp_path / 'wd.db'}"))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``rollback-watchdog ARGV`` in this process: its exit code and its standard error."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse refuses a value before any command runs
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def store_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("wd.db"))


def state(url: str) -> dict[str, Any]:
    """Everything a command could have written: the decision log, the deploy queue, the releases."""
    store = Store.open(url, create=False)
    try:
        with store.session() as s:
            releases = [(r.tag, r.sha, r.status) for r in s.scalars(sa.select(Release).order_by(Release.id))]
        return {
            "decisions": [(e.id, e.kind, e.to_tag, e.reason) for e in store.decisions()],
            "queue": [(ev.id, ev.tag, ev.deployed_at) for ev in store.pending_deploy_events()],
            "releases": releases,
            "pin": getattr(store.current_pin("prod", "api"), "tag", None),
        }
    finally:
        store.close()


# Each bad command, the exit code and what its message must say. Options refused by their form
# alone are refused by argparse ("argument --at: ..."); the rest are checked against the config.
BAD_COMMANDS = [
    (
        ["pin", "--env", "prod", "--service", "nope", "--tag", "v9", "--reason", "r"],
        2,
        "error: --service nope: no service named 'nope' (have: api)",
    ),
    (
        ["pin", "--env", "dev", "--service", "api", "--tag", "v9", "--reason", "r"],
        2,
        "error: --env dev: no environment 'dev' in",
    ),
    (["pin", *RELEASE, "--tag", "v9", "--reason", "  "], 2, "argument --reason: '  ': must not be empty"),
    (
        ["announce", "--env", "prod", "--service", "nope", "--tag", "v9"],
        2,
        "error: --service nope: no service named 'nope' (have: api)",
    ),
    (["announce", "--env", "stage", "--service", "api", "--tag", "v9"], 2, "--env stage: no environment"),
    (["announce", *RELEASE, "--tag", ""], 2, "argument --tag: '': must not be empty"),
    (["announce", *RELEASE, "--tag", "   "], 2, "argument --tag: '   ': must not contain whitespace"),
    (["announce", *RELEASE, "--tag", "v9\x07"], 2, "must not contain whitespace or control characters"),
    (
        ["announce", *RELEASE, "--tag", "v9", "--at", "nan"],
        2,
        "argument --at: 'nan': a time is a finite, positive number of Unix seconds",
    ),
    (["announce", *RELEASE, "--tag", "v9", "--at", "inf"], 2, "argument --at: 'inf': a time is a finite"),
    (["announce", *RELEASE, "--tag", "v9", "--at", "-5"], 2, "argument --at: '-5': a time is a finite"),
    (["announce", *RELEASE, "--tag", "v9", "--at", "soon"], 2, "argument --at: 'soon': not a number"),
    (["announce", *RELEASE, "--tag", "v9", "--run-id", "0"], 2, "argument --run-id: '0': must be at least"),
    (["announce", *RELEASE, "--tag", "v9", "--sha", "not-a-sha"], 2, "argument --sha: 'not-a-sha': not a"),
    (["announce", *RELEASE, "--tag", "v9", "--build-url", "ci/42"], 2, "argument --build-url: 'ci/42': not"),
    (
        ["announce", *RELEASE, "--tag", "v9", "--migrations", "/nonexistent/m.json"],
        2,
        "error: --migrations /nonexistent/m.json: cannot read: No such file or directory",
    ),
    (["rollback", "--env", "prod", "--service", "nope", "--reason", "r"], 2, "--service nope: no service"),
    (["rollback", "--env", "prod", "--to", "", "--reason", "r"], 2, "argument --to: '': must not be empty"),
    (["log", "--env", "nope"], 2, "error: --env nope: no environment 'nope' in"),
    (["log", "--limit", "0"], 2, "argument --limit: '0': must be at least 1"),
    (["log", "--incident", "x"], 2, "argument --incident: 'x': not a whole number"),
]


def _ids(cases: list[tuple[list[str], int, str]]) -> list[str]:
    return [" ".join(argv).replace("--env prod --service api ", "")[:50] for argv, _, _ in cases]


def _with_config(argv: list[str], config: Path) -> list[str]:
    return [argv[0], "-c", str(config), *argv[1:]]


@pytest.mark.parametrize(("argv", "code", "message"), BAD_COMMANDS, ids=_ids(BAD_COMMANDS))
def test_bad_input_exits_2_naming_the_argument_and_creates_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    config = write_config(tmp_path)
    exit_code, err = run(capsys, *_with_config(argv, config))
    assert exit_code == code and message in err, err
    assert "Traceback" not in err
    assert store_files(tmp_path) == []  # not created, not migrated


@pytest.fixture
def seeded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    """A store with a pin (v1), a release that failed its watch (v2) and a queued deploy (v3)."""
    url = f"sqlite:///{tmp_path / 'wd.db'}"
    config = write_config(tmp_path, url)
    assert run(capsys, "pin", "-c", str(config), *RELEASE, "--tag", "v1", "--reason", "seed")[0] == 0
    store = Store.open(url)
    store.upsert_release("prod", "api", ReleaseRef("v2", "2" * 40), 10.0, status=ReleaseStatus.FAILED)
    store.close()
    assert run(capsys, "announce", "-c", str(config), *RELEASE, "--tag", "v3", "--at", "20")[0] == 0
    return config, url


PIN_FAILED = (
    ["pin", *RELEASE, "--tag", "v2", "--sha", "abcdef1", "--reason", "it was fine really"],
    2,
    "error: --tag v2: release v2 failed its watch in prod: it is never pinned",
)


@pytest.mark.parametrize(
    ("argv", "code", "message"), [*BAD_COMMANDS, PIN_FAILED], ids=_ids([*BAD_COMMANDS, PIN_FAILED])
)
def test_bad_input_leaves_an_existing_store_as_it_was(
    seeded: tuple[Path, str], capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    config, url = seeded
    before = state(url)
    assert before["pin"] == "v1" and [q[1] for q in before["queue"]] == ["v3"]
    exit_code, err = run(capsys, *_with_config(argv, config))
    assert exit_code == code and message in err, err
    assert state(url) == before  # no decision, no queued deploy, no release touched (v2 keeps its SHA)


def test_the_good_commands_still_work_on_the_seeded_store(
    seeded: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = seeded
    assert run(capsys, "log", "-c", str(config), "--env", "prod", "--limit", "5")[0] == 0
    code, err = run(capsys, "pin", "-c", str(config), *RELEASE, "--tag", "v1.0.1", "--reason", "hotfix")
    assert code == 0, err
    assert state(url)["pin"] == "v1.0.1"


def test_log_never_creates_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "wd.db-typo"
    config = write_config(tmp_path, f"sqlite:///{typo}")
    code, err = run(capsys, "log", "-c", str(config))
    assert code == 3
    assert err == f"error: store sqlite:///{typo}: does not exist; reading never creates one\n"
    assert not typo.exists()


def test_log_never_migrates_an_old_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'wd.db'}"
    old = Store(url)
    old.migrate("0001")
    old.close()
    code, err = run(capsys, "log", "-c", str(write_config(tmp_path, url)))
    assert code == 3 and f"its schema is at revision 0001, this version reads {HEAD}" in err, err
    engine = sa.create_engine(url)
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0001"
    engine.dispose()


def test_log_refuses_a_file_that_is_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'watchdog.yaml'}")  # the config itself
    code, err = run(capsys, "log", "-c", str(config))
    assert code == 3 and err.count("\n") == 1 and "file is not a database" in err, err


# --------------------------------------------------------------------------- configuration files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"version: 1\n\x00\x01\x02ELF", "watchdog.yaml:2:1: binary file (a NUL byte)"),
        (b"version: 1\ndemo_note: caf\xe9\n", "watchdog.yaml:2:15: not UTF-8 text (byte 0xe9)"),
        (b'version: 1\ntick_s: 2\ndemo_note: "a\x07b"\n', "watchdog.yaml:3:14: control character U+0007"),
        ("version: 1\ndemo_note: caf\u00e9 \x9b\n".encode(), "watchdog.yaml:2:17: control character U+009B"),
    ],
    ids=["binary", "latin-1", "bell", "c1-control"],
)
@pytest.mark.parametrize("command", ["validate", "announce"])
def test_a_config_that_is_not_text_exits_2_with_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str, command: str
) -> None:
    config = tmp_path / "watchdog.yaml"
    config.write_bytes(content)
    argv = [str(config)] if command == "validate" else ["-c", str(config), *RELEASE, "--tag", "v1"]
    code, err = run(capsys, command, *argv)
    assert code == 2 and err.startswith(f"error: {tmp_path}/{message}"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert store_files(tmp_path) == []


# --------------------------------------------------------------------------- stores that cannot be opened


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Root writes where the permissions say no: the commands that must meet a read-only store run
#: without the capabilities that let it (as any other user they are not needed).
AS_A_USER = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
    if os.geteuid() == 0
    else []
)


def cli(
    *args: str, env: dict[str, str] | None = None, as_a_user: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(AS_A_USER if as_a_user else []), sys.executable, "-m", "watchdog", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("command", [["log"], ["announce", *RELEASE, "--tag", "v1"]])
def test_an_unreachable_postgres_exits_3_with_one_line_and_no_password(
    tmp_path: Path, command: list[str]
) -> None:
    port = closed_port()
    config = write_config(tmp_path, f"postgresql+psycopg://u:${{WD_TEST_PG_PASSWORD}}@127.0.0.1:{port}/x")
    out = cli(command[0], "-c", str(config), *command[1:], env={"WD_TEST_PG_PASSWORD": "secretpw"})
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith(f"error: store postgresql+psycopg://u:***@127.0.0.1:{port}/x: ")
    assert "Connection refused" in out.stderr or "connection failed" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "secretpw" not in out.stdout + out.stderr


def test_sqlite_in_a_missing_directory_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = tmp_path / "no" / "such" / "dir" / "wd.db"
    config = write_config(tmp_path, f"sqlite:///{where}")
    code, err = run(capsys, "pin", "-c", str(config), *RELEASE, "--tag", "v1", "--reason", "r")
    assert code == 3 and err == f"error: store sqlite:///{where}: unable to open database file\n"
    assert not (tmp_path / "no").exists()


def test_sqlite_in_a_read_only_directory_exits_3(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        config = write_config(tmp_path, f"sqlite:///{locked / 'wd.db'}")
        out = cli("announce", "-c", str(config), *RELEASE, "--tag", "v1", as_a_user=True)
        assert out.returncode == 3 and out.stderr.startswith(f"error: store sqlite:///{locked / 'wd.db'}: ")
        assert out.stderr.count("\n") == 1
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_a_read_only_store_file_exits_3_when_written(seeded: tuple[Path, str]) -> None:
    """Opened fine, refused at the first write: still one line naming the store, exit 3."""
    config, url = seeded
    db = Path(url.removeprefix("sqlite:///"))
    store = Store.open(url)  # fold the WAL into the file, then make it read-only
    with store.engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        c.exec_driver_sql("PRAGMA journal_mode=DELETE")
    store.close()
    before = state(url)
    db.chmod(0o444)
    try:
        out = cli("pin", "-c", str(config), *RELEASE, "--tag", "v7", "--reason", "r", as_a_user=True)
        assert out.returncode == 3 and out.stderr.startswith(f"error: store {url}: "), out.stderr
        assert "readonly" in out.stderr and out.stderr.count("\n") == 1
    finally:
        db.chmod(0o644)
    assert state(url) == before


# --------------------------------------------------------------------------- the engine refuses too


def test_the_engine_refuses_bad_input_before_writing(seeded: tuple[Path, str]) -> None:
    config, url = seeded
    cfg = parse_config(config.read_text(), str(config))
    before = state(url)
    store = Store.open(url)
    engine = Engine(cfg, store, None, SimClock(100.0))
    with pytest.raises(InputError) as err:
        engine.announce("prod", "api", ReleaseRef(""))
    assert err.value.argument == "tag" and str(err.value) == "tag '': must not be empty"
    for when in (math.nan, math.inf, -1.0, 0.0):
        with pytest.raises(InputError, match=r"deployed_at .*: a deploy time is a finite, positive"):
            engine.announce("prod", "api", ReleaseRef("v9"), deployed_at=when)
    with pytest.raises(InputError, match="release v2 failed its watch in prod: it is never pinned"):
        engine.pin("prod", "api", ReleaseRef("v2", "f" * 40), actor="bob", reason="r")
    with pytest.raises(KeyError, match="no service named 'nope'"):
        engine.pin("prod", "nope", ReleaseRef("v9"), actor="bob", reason="r")
    store.close()
    assert state(url) == before


# --------------------------------------------------------------------------- validate in CI

CI_CONFIG = """\
version: 1
demo_note: the secrets and addresses come from the deploy environment
source:
  kind: prometheus
  prometheus:
    url: ${WD_CI_PROMETHEUS_URL}
    bearer_token: ${WD_CI_PROMETHEUS_TOKEN}
github:
  repo: acme/api
  token: ${WD_CI_GITHUB_TOKEN}
store: {url: "STORE_URL"}
services:
  - name: api
    base_urls: {prod: "https://${WD_CI_HOST}/"}
    signals:
      - name: http_5xx
        kind: ratio
        bad: {metric: http_requests_total, match: {code: "=~5.."}}
        total: {metric: http_requests_total}
    dampening:
      prod:
        - name: pause-workers
          url: ${WD_CI_PAUSE_URL}
          headers: {Authorization: "${WD_CI_PAUSE_TOKEN}"}
"""
UNSET = [
    ("6", "source.prometheus.url", "WD_CI_PROMETHEUS_URL"),
    ("7", "source.prometheus.bearer_token", "WD_CI_PROMETHEUS_TOKEN"),
    ("10", "github.token", "WD_CI_GITHUB_TOKEN"),
    ("14", "services[0].base_urls.prod", "WD_CI_HOST"),
    ("23", "services[0].dampening.prod[0].url", "WD_CI_PAUSE_URL"),
    ("24", "services[0].dampening.prod[0].headers.Authorization", "WD_CI_PAUSE_TOKEN"),
]


@pytest.fixture
def ci_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for _, _, name in UNSET:
        monkeypatch.delenv(name, raising=False)
    return write_config(tmp_path, text=CI_CONFIG)


def test_validate_without_the_secrets_warns_and_exits_0(
    ci_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(ci_config)]) == 0
    out = capsys.readouterr()
    assert out.err.splitlines() == [
        f"warning: {ci_config}:{line}: {path}: environment variable {name} is not set"
        for line, path, name in UNSET
    ]
    assert out.out.startswith(f"ok: {ci_config}: 1 service(s), 1 signal(s)")
    check = check_config(ci_config, env={})
    assert check.config is not None and len(check.warnings) == len(UNSET)
    # The placeholders passed validation where a URL and a secret are expected, and are no value:
    assert check.config.github.token.get_secret_value() == "${WD_CI_GITHUB_TOKEN}"
    assert check.config.services[0].dampening["prod"][0].url == "${WD_CI_PAUSE_URL}"


@pytest.mark.parametrize("command", [["validate", "--strict"], ["run", "-c"]])
def test_strict_validate_and_run_refuse_an_unresolved_reference(
    ci_config: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main([*command, str(ci_config)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {ci_config}:{line}: {path}: environment variable {name} is not set"
        for line, path, name in UNSET
    ]  # the unresolved references only: none of the validation errors their absence would cause
    assert store_files(ci_config.parent) == []


def test_validate_with_the_secrets_set_is_clean(ci_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _, _, name in UNSET:
        monkeypatch.setenv(name, "https://example.test/x" if "URL" in name else "value-1234")
    monkeypatch.setenv("WD_CI_HOST", "api.example.test")
    check = check_config(ci_config, strict=True)
    assert check.warnings == [] and check.config is not None
    assert check.config.services[0].base_urls["prod"] == "https://api.example.test/"


def test_validate_still_fails_on_everything_else(
    ci_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ci_config.read_text()
    broken = text.replace("kind: ratio", "kind: ratio\n        slo: 1.5").replace(
        "token: ${WD_CI_GITHUB_TOKEN}", "token: ${file:/nonexistent/token}"
    )
    ci_config.write_text(broken)
    assert main(["validate", str(ci_config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        f"warning: {ci_config}:6: source.prometheus.url: environment variable WD_CI_PROMETHEUS_URL is not set"
        in err
    )
    assert any(
        line.startswith(f"error: {ci_config}:10: github.token: secret file /nonexistent/token cannot be read")
        for line in err
    ), err
    assert any(line.startswith(f"error: {ci_config}:18: services[0].signals[0].slo:") for line in err), err
    ci_config.write_text(text.replace("demo_note:", "demo_note: [", 1))
    assert main(["validate", str(ci_config)]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_a_reference_where_text_is_not_allowed_is_a_warning_and_is_left_unchecked(
    ci_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WD_CI_TICK_S", raising=False)
    monkeypatch.delenv("WD_CI_KIND", raising=False)
    text = ci_config.read_text().replace("version: 1\n", "version: 1\ntick_s: ${WD_CI_TICK_S}\n")
    ci_config.write_text(text.replace("kind: ratio", "kind: ${WD_CI_KIND}"))
    assert main(["validate", str(ci_config)]) == 0
    out = capsys.readouterr()
    assert f"warning: {ci_config}:2: tick_s: environment variable WD_CI_TICK_S is not set" in out.err
    assert "signals[0].kind: environment variable WD_CI_KIND is not set" in out.err
    assert "error" not in out.err and "could not be checked" in out.out
    assert check_config(ci_config, env={}).config is None


def test_validate_from_a_shell_in_ci(ci_config: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WD_CI_")}
    lenient = subprocess.run(
        [sys.executable, "-m", "watchdog", "validate", str(ci_config)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert lenient.returncode == 0 and lenient.stderr.count("warning: ") == len(UNSET), lenient.stderr
    strict = subprocess.run(
        [sys.executable, "-m", "watchdog", "validate", "--strict", str(ci_config)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert strict.returncode == 2 and strict.stderr.count("error: ") == len(UNSET), strict.stderr
