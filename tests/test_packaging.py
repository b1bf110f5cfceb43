"""Packaging and deployment as a user meets them: the package builds from exactly what the image
copies; the image, built for real, runs the CLI, its default config, the demo and a browser smoke
check as its own user; the Kubernetes manifests pass Kubernetes' schemas and fit together; the
systemd unit passes ``systemd-analyze``.

The image is built by ``shared/tools/build-image-offline.sh`` (podman with chroot isolation, from a
local python:3.11-slim made by debootstrap once per machine); containers cannot be started here,
so it runs commands in the image by chroot as the image's USER, with its ENTRYPOINT, Env and
WorkingDir. A missing podman, debootstrap or systemd-analyze (``.ci/install-system-deps``) or
kubernetes-validate (the test extra) fails these tests, never skips them.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.fixtures.static import serve
from tests.fixtures.wheels import (
    BUILD_IMAGE,
    IMAGE,
    ROOT,
    build_wheel,
    early_build,
    image_context,
    offline_wheels,
)
from watchdog.config import check_config

pytestmark = pytest.mark.slow

IMAGE_CONFIG = "/etc/rollback-watchdog/config.yaml"
K8S = ROOT / "docs" / "deploy" / "kubernetes"
UNIT = ROOT / "docs" / "deploy" / "rollback-watchdog.service"
#: Stand-ins for the secrets the image's default config (config/stamps.yaml) names.
STAMPS_SECRETS = {
    name: f"test-{name.lower()}"
    for name in (
        "GITHUB_TOKEN",
        "PAGERDUTY_ROUTING_KEY",
        "UNLEASH_ADMIN_TOKEN",
        "WATCHDOG_VIEWER_TOKEN",
        "WATCHDOG_DEPLOY_TOKEN",
        "WATCHDOG_OPERATOR_TOKEN",
    )
}


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed: `make test-deps` (.ci/install-system-deps) installs it"
    return found


# --------------------------------------------------------------------------- the package


def test_the_image_runs_the_daemon_as_a_non_root_user_on_the_mounted_config() -> None:
    text = dockerfile()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["rollback-watchdog"\]', text, re.M)
    assert re.search(r'^CMD \["run", "-c", "/etc/rollback-watchdog/config.yaml"', text, re.M)


def test_the_files_the_image_copies_build_a_complete_package(tmp_path: Path) -> None:
    wheels = offline_wheels()
    context = image_context(tmp_path / "context")
    wheel = build_wheel(context, tmp_path / "dist", "--no-index", "--find-links", str(wheels))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "rollback_watchdog_launcher.py",
        "watchdog/cli.py",
        "watchdog/demo/demo.yaml",
        "watchdog/migrations/env.py",
        "watchdog/migrations/versions/0001_initial_schema.py",
        "detectors/compare.py",
        "actions/github.py",
    ):
        assert needed in names, needed
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    script = "rollback-watchdog = rollback_watchdog_launcher:main"
    assert script in zipfile.ZipFile(wheel).read(entry_points).decode()


# --------------------------------------------------------------------------- the image


def build_and_run(
    context: Path, *args: str, tag: str = IMAGE, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Build ``context`` (podman reuses the cached layers) and, with ``args``, run the image's
    ENTRYPOINT with them as its USER. Docker format, so that HEALTHCHECK is kept (OCI drops it)."""
    env_args = [a for name, value in (env or {}).items() for a in ("--env", f"{name}={value}")]
    run = ["--", *args] if args else []
    return subprocess.run(
        ["bash", str(BUILD_IMAGE), "--context", str(context), "--tag", tag, *env_args, *run],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "BUILDAH_FORMAT": "docker"},
    )


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The image, built from a context holding exactly what the Dockerfile copies; its context."""
    tool("podman")
    tool("debootstrap")
    assert BUILD_IMAGE.is_file(), f"{BUILD_IMAGE} is missing (shared/ beside the repository)"
    started = early_build()
    if started is not None:  # started at the session's start (tests/conftest.py): wait for it
        context, process = started
        out, err = process.communicate(timeout=900)
        ok(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    else:
        context = image_context(tmp_path_factory.mktemp("image") / "context")
        ok(build_and_run(context))
    yield context


@pytest.mark.timeout(900)  # the first build on a machine makes the base image (debootstrap) too
def test_the_image_declares_its_api_port_and_a_healthcheck_on_healthz(image: Path) -> None:
    inspect = subprocess.run(
        ["podman", "image", "inspect", IMAGE], capture_output=True, text=True, check=True
    )
    (found,) = json.loads(inspect.stdout)
    assert "9095/tcp" in found["Config"]["ExposedPorts"]
    assert found["Config"]["User"] == "watchdog"
    health = found["Healthcheck"]
    assert health["Test"][:2] == ["CMD", "python"] and "/healthz" in health["Test"][-1]
    assert health["Retries"] >= 2 and health["StartPeriod"] >= health["Interval"] > health["Timeout"] > 0


@pytest.mark.timeout(900)
def test_the_image_runs_the_cli_and_its_default_config_as_its_user(image: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ok(build_and_run(image, "--version")).strip() == f"rollback-watchdog {version}"
    validated = ok(build_and_run(image, "validate", IMAGE_CONFIG))
    assert validated.startswith(f"ok: {IMAGE_CONFIG}: 1 service(s)")
    # The default config's store (SQLite in the volume) is created and written by the image's user.
    announce = ("announce", "-c", IMAGE_CONFIG, "--env", "dev", "--service", "stamps-api", "--tag", "v1")
    assert "announced deploy of v1 to dev" in ok(build_and_run(image, *announce, env=STAMPS_SECRETS))


@pytest.mark.timeout(900)
def test_the_image_runs_the_demo_to_a_resolved_rollback(image: Path) -> None:
    out = ok(build_and_run(image, "demo", timeout=300))
    assert "outcome: resolved" in out


#: Run in the image: its default config's browser checks against the demo's PWA, as the daemon
#: runs them (Debian's Chromium through Playwright).
BROWSER_CHECKS = f"""
import sys
import httpx
from actions.smoke import run_checks
from watchdog.clock import RealClock
from watchdog.config import check_config
from watchdog.demo.service import ServiceProcess

cfg = check_config({IMAGE_CONFIG!r}).config
checks = [c for s in cfg.services for c in s.smoke_checks if c.kind == "browser"]
assert checks, "no browser check in the default config"
with ServiceProcess("v1.0.0", "baseline", seed=1) as service, httpx.Client() as client:
    results = run_checks(client, service.url, checks, RealClock(), retry_delay_s=0)
for r in results:
    print(r.name, "ok" if r.ok else f"failed: {{r.problems}}")
sys.exit(0 if all(r.ok for r in results) else 1)
"""


@pytest.mark.timeout(900)
def test_the_default_configs_browser_check_passes_in_the_image(image: Path, tmp_path: Path) -> None:
    """Only the ENTRYPOINT differs from the image itself: Python instead of the CLI."""
    (tmp_path / "Dockerfile").write_text(f'FROM {IMAGE}\nENTRYPOINT ["python"]\nCMD []\n')
    out = build_and_run(tmp_path, "-c", BROWSER_CHECKS, tag=f"{IMAGE}-python", timeout=300)
    assert ok(out).split() == ["pwa_in_browser", "ok"]


def healthcheck_argv(port: int) -> list[str]:
    """The image's HEALTHCHECK command, run by this Python against ``port``."""
    line = re.search(r"^HEALTHCHECK [^\n]*(?:\\\n[^\n]*)*?CMD (\[[^\n]*\])$", dockerfile(), re.M)
    assert line, "no HEALTHCHECK ... CMD [...] in the Dockerfile"
    argv: list[str] = json.loads(line.group(1))
    assert argv[0] == "python" and "127.0.0.1:9095/healthz" in argv[-1]
    return [sys.executable, *argv[1:-1], argv[-1].replace(":9095/", f":{port}/")]


def test_the_healthcheck_passes_on_a_live_daemon_only() -> None:
    for status, healthy in ((200, True), (503, False)):
        with serve({"/healthz": (status, "application/json", '{"status":"ok"}')}) as url:
            port = int(url.rsplit(":", 1)[1])
            done = subprocess.run(healthcheck_argv(port), capture_output=True, timeout=10)
        assert (done.returncode == 0) is healthy, (status, done.stderr)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    assert subprocess.run(healthcheck_argv(closed), capture_output=True, timeout=10).returncode != 0


def test_the_default_config_serves_the_api_on_the_exposed_port() -> None:
    """0.0.0.0 in the container (probes reach the pod's address); the systemd unit's loopback."""
    cfg = check_config(ROOT / "config" / "stamps.yaml", env={}).config
    assert cfg is not None and (cfg.api.host, cfg.api.port) == ("0.0.0.0", 9095)
    assert re.search(rf"^EXPOSE {cfg.api.port}$", dockerfile(), re.M)
    assert {t.role.value for t in cfg.api.tokens} == {"viewer", "deployer", "operator"}
    on_host = check_config(ROOT / "config" / "stamps.yaml", env=unit_environment()).config
    assert on_host is not None and on_host.api.host == "127.0.0.1"


# --------------------------------------------------------------------------- Kubernetes


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe").load_all(path.read_text()) if d]


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource of the kustomization, by kind; it lists every manifest of the folder."""
    (kustomization,) = load_all(K8S / "kustomization.yaml")
    files = kustomization["resources"]
    assert sorted(files) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    resources = [d for f in files for d in load_all(K8S / f)]
    by_kind = {d["kind"]: d for d in resources}
    assert len(by_kind) == len(resources), "one resource of each kind"
    return by_kind


def test_the_kubernetes_manifests_pass_the_kubernetes_schemas() -> None:
    """Strict: an unknown or misspelled field fails, not only a wrong type. The ServiceMonitor is a
    prometheus-operator CRD, for which kubernetes-validate has no schema: it is checked by hand in
    the next test."""
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, all_versions, validate

    resources = manifests()
    assert set(resources) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    versions = all_versions()
    for version in (versions[0], versions[-1]):
        for kind, resource in resources.items():
            if kind == "ServiceMonitor":
                with pytest.raises(SchemaNotFoundError):
                    validate(resource, version, strict=True)
            else:
                validate(resource, version, strict=True)
    typo = copy.deepcopy(resources["Deployment"])
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(ValidationError):
        validate(typo, versions[-1], strict=True)


def test_the_kubernetes_manifests_fit_together_and_hold_no_secret(tmp_path: Path) -> None:
    r = manifests()
    deployment, service, monitor = r["Deployment"], r["Service"], r["ServiceMonitor"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["terminationGracePeriodSeconds"] >= 60
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "api"}
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile(), re.M).group(1))  # type: ignore[union-attr]
    assert container["args"] == cmd

    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(mounts.values()) == set(volumes)
    config_map = r["ConfigMap"]
    assert volumes[mounts["/etc/rollback-watchdog"]]["configMap"]["name"] == config_map["metadata"]["name"]
    workdir = re.findall(r"^WORKDIR\s+(\S+)", dockerfile(), re.M)[-1]
    for scratch in ("/tmp", workdir):
        assert "emptyDir" in volumes[mounts[scratch]], scratch

    # Every secret comes from the Secret by reference; the config names exactly those required.
    env = container["env"]
    assert all(set(e) == {"name", "valueFrom"} for e in env), "a literal value in the env"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env}
    assert {ref["name"] for ref in refs.values()} == {"rollback-watchdog"}
    required = {name for name, ref in refs.items() if not ref.get("optional")}
    config = tmp_path / "config.yaml"
    config.write_text(config_map["data"]["config.yaml"])
    unset = check_config(config, env={})
    named = {m.group(1) for w in unset.warnings if (m := re.search(r"variable (\w+) is not set", w))}
    assert named == required
    cfg = check_config(config, env={name: f"test-{name.lower()}" for name in refs}, strict=True).config
    assert cfg is not None
    assert cfg.store.url.startswith("postgresql+psycopg://")
    assert "${WATCHDOG_DB_PASSWORD}@" in config_map["data"]["config.yaml"]  # only the password
    (port,) = container["ports"]
    assert (cfg.api.host, cfg.api.port) == ("0.0.0.0", port["containerPort"])

    # The Service, the ServiceMonitor, the budget and the policy select these pods and this port.
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == 9095 and service_port["targetPort"] == port["name"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (service_port["name"], "/metrics")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "rollback-watchdog"
    budget = r["PodDisruptionBudget"]["spec"]
    assert budget["minAvailable"] == 1 and budget["selector"]["matchLabels"].items() <= labels.items()
    policy = r["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [port["name"]]


# --------------------------------------------------------------------------- systemd


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def unit_environment() -> dict[str, str]:
    pairs = (v.split("=", 1) for v in unit_settings().get("Environment", []))
    return {name: value for name, value in pairs}


def test_the_systemd_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    """``verify`` needs the ExecStart binary: the unit is checked with this venv's instead of
    /opt/rollback-watchdog's; a warning (an unknown or misspelled key) fails the test too."""
    analyze = tool("systemd-analyze")
    installed = "/opt/rollback-watchdog/bin/rollback-watchdog"
    here = Path(sys.executable).parent / "rollback-watchdog"
    assert here.exists() and unit_settings()["ExecStart"][0].startswith(f"{installed} ")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(installed, str(here)))
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stderr) == (0, "")
    # The exposure score, 0 (locked down) to 10, as 10ths: at most 2.0 ("OK").
    security = [analyze, "security", "--offline=true", "--threshold=20", str(unit)]
    exposure = subprocess.run(security, capture_output=True, text=True, timeout=60)
    assert exposure.returncode == 0, exposure.stdout[-2000:]


def test_the_systemd_unit_stops_gracefully_and_writes_only_its_store() -> None:
    s = {key: values[-1] for key, values in unit_settings().items()}
    assert s["Type"] == "simple"  # the daemon does not speak sd_notify
    assert s["ExecStart"].endswith(" run -c /etc/rollback-watchdog/config.yaml --log-format json")
    assert (s["KillSignal"], s["Restart"]) == ("SIGTERM", "on-failure")
    assert int(s["TimeoutStopSec"]) >= 60
    assert s["User"] not in ("root", "0") and s["EnvironmentFile"].startswith("/etc/rollback-watchdog/")
    for hardening in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectHome"):
        assert s[hardening] == "yes", hardening
    assert s["ProtectSystem"] == "strict"
    cfg = check_config(ROOT / "config" / "stamps.yaml", env=unit_environment()).config
    assert cfg is not None and cfg.store.url.startswith("sqlite:////")
    store_dir = str(Path(cfg.store.url.removeprefix("sqlite:///")).parent)
    assert store_dir in s["ReadWritePaths"].split()
