"""Configuration: every error names file, line and field; secrets only by reference."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from watchdog.config import load_config, parse_config
from watchdog.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEMO = (ROOT / "config" / "demo.yaml").read_text()
STAMPS = (ROOT / "config" / "stamps.yaml").read_text()
STAMPS_ENV = {
    "GITHUB_TOKEN": "t0ken-value",
    "PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef",
    "UNLEASH_ADMIN_TOKEN": "*:*.unleash-t0ken",
    "WATCHDOG_VIEWER_TOKEN": "viewer-t0ken",
    "WATCHDOG_DEPLOY_TOKEN": "deploy-t0ken",
    "WATCHDOG_OPERATOR_TOKEN": "operator-t0ken",
}


def test_shipped_configs_are_valid() -> None:
    demo = load_config(ROOT / "config" / "demo.yaml")
    assert demo.source.kind == "scrape"
    stamps = load_config(ROOT / "config" / "stamps.yaml", env=STAMPS_ENV)
    names = {s.name for s in stamps.services[0].signals}
    # every runbook trigger and step-5 signal is configured for the real service
    assert {
        "http_5xx",
        "latency_p95",
        "latency_p99",
        "healthcheck",
        "token_reuse",
        "device_proof_failures",
        "cost_per_tenant",
    } <= names
    checks = {(c.kind, c.path) for c in stamps.services[0].smoke_checks}
    assert {
        ("http", "/health"),
        ("http", "/v1/stamps/claim"),
        ("http", "/v1/rewards/redeem"),
        ("pwa", "/"),  # index → manifest → service worker → the API calls the page makes
        ("browser", "/"),
    } <= checks
    assert stamps.environments["prod"].post_rollback_watch_s >= 1800
    assert stamps.github.token.get_secret_value() == "t0ken-value"
    assert "t0ken-value" not in repr(stamps)


def test_every_problem_is_reported_with_file_line_and_path() -> None:
    bad = DEMO.replace("slo: 0.01", "slo: 1.5", 1).replace("k: 3", "k: 9").replace("tick_s: 2", "tick_s: -1")
    with pytest.raises(ConfigError) as err:
        parse_config(bad, "demo.yaml")
    problems = err.value.problems
    lines = DEMO.splitlines()
    slo_line = next(i for i, line in enumerate(lines, 1) if "slo: 0.01" in line)
    assert f"demo.yaml:{slo_line}: services[0].signals[0].slo: Input should be less than 1" in problems
    assert any("services[0].signals[4]" in p and "k (9) must not exceed n (5)" in p for p in problems)
    tick_line = next(i for i, line in enumerate(lines, 1) if line.startswith("tick_s:"))
    assert any(p.startswith(f"demo.yaml:{tick_line}: tick_s:") for p in problems)
    assert len(problems) == 3


def test_secrets_must_be_references_and_missing_ones_are_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(STAMPS.replace("${GITHUB_TOKEN}", "ghp_literal"), "stamps.yaml", env={})
    msg = str(err.value)
    assert "github.token: secrets must be given by reference" in msg
    assert "ghp_literal" not in msg
    with pytest.raises(
        ConfigError, match=r"stamps.yaml:\d+: github.token: environment variable GITHUB_TOKEN"
    ):
        parse_config(STAMPS, "stamps.yaml", env={})


def test_nested_secrets_must_be_references_too() -> None:
    text = STAMPS.replace("${UNLEASH_ADMIN_TOKEN}", "unleash-literal").replace(
        "${PAGERDUTY_ROUTING_KEY}", "pd-literal-key"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "stamps.yaml", env=STAMPS_ENV)
    msg = str(err.value)
    assert "services[0].dampening.prod[0].unleash.token: secrets must be given by reference" in msg
    assert "incidents.pagerduty.routing_key: secrets must be given by reference" in msg
    assert "unleash-literal" not in msg and "pd-literal-key" not in msg


def test_dampening_and_smoke_check_kinds_take_only_their_own_fields() -> None:
    unleash_with_undo = STAMPS.replace(
        "            enable: [read-only]\n",
        "            enable: [read-only]\n          undo: {name: x, url: http://x}\n",
    )
    with pytest.raises(ConfigError, match=r"dampening.prod\[0\]: Value error, an unleash action restores"):
        parse_config(unleash_with_undo, "s.yaml", env=STAMPS_ENV)
    selector_on_http = STAMPS.replace(
        "        expect_json: {status: ok}\n",
        "        expect_json: {status: ok}\n        expect_text: hi\n",
        1,
    )
    with pytest.raises(
        ConfigError, match=r"smoke_checks\[0\]: Value error, 'expect_selector', 'expect_text'"
    ):
        parse_config(selector_on_http, "s.yaml", env=STAMPS_ENV)


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-file-token\n")
    cfg = parse_config(
        STAMPS.replace("${GITHUB_TOKEN}", "${file:" + str(tmp_path / "tok") + "}"),
        "s.yaml",
        env={k: v for k, v in STAMPS_ENV.items() if k != "GITHUB_TOKEN"},
    )
    assert cfg.github.token.get_secret_value() == "from-file-token"


def test_prod_post_rollback_watch_is_at_least_30_minutes() -> None:
    shortened = STAMPS.replace(
        "post_rollback_watch_s: 1800   # runbook", "post_rollback_watch_s: 60   # runbook"
    )
    with pytest.raises(ConfigError, match="at least 1800"):
        parse_config(shortened, "s.yaml", env=STAMPS_ENV)


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml:3: invalid YAML: mapping values are not allowed"):
        parse_config("version: 1\ntick_s: 2\nsource: kind: scrape\n", "x.yaml")


def test_validate_and_schema_commands(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.replace("quantile: 0.95", "quantile: 95"))
    run = subprocess.run(
        [sys.executable, "-m", "watchdog", "validate", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert f"{bad}:" in run.stderr and "services[0].signals[1].quantile" in run.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "watchdog", "validate", str(ROOT / "config" / "demo.yaml")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    schema = subprocess.run([sys.executable, "-m", "watchdog", "schema"], capture_output=True, text=True)
    doc = json.loads(schema.stdout)
    assert "services" in doc["properties"] and "WatchdogConfig" in doc.get("title", "WatchdogConfig")


def test_text_yaml_cannot_hold_is_named_with_line_and_column() -> None:
    with pytest.raises(ConfigError, match=r"^x.yaml:2:7: control character U\+001B is not allowed"):
        parse_config("version: 1\nnote: \x1b[31mred\n", "x.yaml")


def test_a_service_is_found_by_name_in_the_services_the_config_has_now() -> None:
    from watchdog.errors import UnknownName

    cfg = parse_config(STAMPS, "stamps.yaml", env=STAMPS_ENV)
    first = cfg.services[0]
    assert cfg.service(first.name) is first
    other = first.model_copy(update={"name": "other-api"})
    copied = cfg.model_copy(update={"services": [other]})  # a copy with services of its own
    assert copied.service("other-api") is other
    with pytest.raises(UnknownName, match=f"no service named '{first.name}'"):
        copied.service(first.name)
    cfg.services[0] = other  # changed in place, the same length: found all the same
    assert cfg.service("other-api") is other
