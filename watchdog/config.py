"""Configuration: pydantic models loaded from YAML, the one source of truth for the JSON Schema.

``${NAME}`` in a value is read from the environment (``${NAME:-default}`` with a fallback), and a
whole value ``${file:/path}`` from a file. Secrets must be given that way, never written in the file, and are
held as ``SecretStr`` so they cannot leak into logs or errors.
Every validation problem is reported with file, line and field path.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from watchdog.errors import ConfigError, UnknownName
from watchdog.series import Selector

EnvName = Literal["dev", "stage", "prod"]
PROD_MIN_POST_ROLLBACK_WATCH_S = 1800.0
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_FILE_REF = re.compile(r"^\$\{file:([^}]+)\}$")
#: Fields that hold secrets: they must be given by reference, never written in the file.
#: ``*`` matches any key or list index.
SECRET_PATHS = (
    ("github", "token"),
    ("github", "app", "private_key"),
    ("source", "prometheus", "bearer_token"),
    ("source", "prometheus", "basic_auth_password"),
    ("sentry", "dsn"),
    ("api", "tokens", "*", "token"),
    ("incidents", "pagerduty", "routing_key"),
    ("notifications", "notifiers", "*", "token"),
    ("notifications", "notifiers", "*", "webhook_url"),
    ("notifications", "notifiers", "*", "api_key"),
    ("notifications", "notifiers", "*", "secret"),
    ("notifications", "slack_interactivity", "signing_secret"),
    ("incidents", "pagerduty_webhook", "secrets", "*"),
    ("services", "*", "dampening", "*", "*", "unleash", "token"),
    ("services", "*", "dampening", "*", "*", "undo", "unleash", "token"),
)
#: Request headers that carry credentials, wherever headers are configured (dampening actions,
#: smoke checks): their values are secrets, given by reference ("Bearer ${TOKEN}" is fine).
CREDENTIAL_HEADER = re.compile(
    r"^(authorization|proxy-authorization|cookie|.*(token|secret|api-?key|auth|password|passwd|session).*)$",
    re.IGNORECASE,
)
#: The password of a URL's userinfo (``postgresql://user:PASSWORD@host/db``).
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:([^/@\s]+)@")
#: What may stand beside a reference in a credential header: an auth scheme word.
_AUTH_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]*\s+)?$")


def _is_secret_path(path: tuple[Any, ...]) -> bool:
    return any(
        len(pattern) == len(path) and all(p == "*" or p == q for p, q in zip(pattern, path, strict=True))
        for pattern in SECRET_PATHS
    )


def _is_credential_header(path: tuple[Any, ...]) -> bool:
    return len(path) >= 2 and path[-2] == "headers" and bool(CREDENTIAL_HEADER.match(str(path[-1])))


def _literal_secret(raw: str, path: tuple[Any, ...], sandbox: bool) -> str | None:
    """Why ``raw`` (a value as written in the file) holds a credential in clear, or None.

    A secret field must be one whole reference; a credential header a reference, optionally after
    an auth scheme; a URL's password a reference. A reference's literal default (``${X:-value}``)
    is a secret written in the file too, allowed only in a sandbox config (the demo's)."""
    refs = list(_ENV_REF.finditer(raw))
    outside = _ENV_REF.sub("", raw)
    by_reference = "secrets must be given by reference (${ENV_VAR} or ${file:/path}), not written in the file"
    field, header = _is_secret_path(path), _is_credential_header(path)
    if field or header:
        if (raw and not refs) or (field and outside.strip()) or (header and not _AUTH_SCHEME.match(outside)):
            return by_reference
        if not sandbox and any(m.group(2) for m in refs):
            return (
                "a secret's reference must not carry a literal default (${NAME:-value}) "
                "outside a sandbox config"
            )
        return None
    written = _ENV_REF.sub("\x00", raw)
    for m in _URL_PASSWORD.finditer(written):
        if m.group(1) != "\x00":
            return "a password in a URL must be given by reference (user:${PASSWORD}@host)"
    if not sandbox and any(m.group(2) and _URL_PASSWORD.search(m.group(2)) for m in refs):
        return "a URL with a password must not be a reference's literal default outside a sandbox config"
    return None


def secret_values(node: object, key: str | None = None) -> Iterator[str]:
    """Every secret in a loaded configuration: ``SecretStr`` values (tokens, keys, credential
    headers, with their bare credential after an auth scheme) and the passwords in URLs."""
    if isinstance(node, SecretStr):
        if key is None or CREDENTIAL_HEADER.match(key):
            value = node.get_secret_value()
            yield value
            if value.lstrip().startswith("-----BEGIN"):  # a PEM key: each line of its body too
                yield from (line.strip() for line in value.splitlines() if not line.startswith("-----"))
            if key is not None and " " in value.strip():
                yield value.strip().split()[-1]  # "Bearer abc": abc may be printed on its own
    elif isinstance(node, str):
        for m in _URL_PASSWORD.finditer(node):
            yield m.group(1)
            yield unquote(m.group(1))
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from secret_values(getattr(node, name))
    elif isinstance(node, dict):
        for k, value in node.items():
            yield from secret_values(value, str(k) if isinstance(value, SecretStr) else None)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from secret_values(value)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Severity(enum.StrEnum):
    ROLLBACK = "rollback"  # a failure rolls the release back
    PAGE = "page"  # a failure pages oncall, no automatic rollback
    OBSERVE = "observe"  # recorded and shown only


class ApprovalMode(enum.StrEnum):
    NONE = "none"
    REVIEWERS = "reviewers"  # wait for the environment's GitHub reviewers
    AUTO = "auto"  # the watchdog approves with its own token (explicit opt-in)


# --------------------------------------------------------------------------- signals


class SeriesRef(Strict):
    """A metric and label matchers. Values may carry an operator: ``"=~5.."``, ``"!=GET"``."""

    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    match: dict[str, str] = Field(default_factory=dict)

    def selector(self, extra: Mapping[str, str] | None = None) -> Selector:
        return Selector.of(self.metric, {**self.match, **(extra or {})})


class _SignalBase(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Unique name, used in logs and the API.")
    severity: Severity = Severity.ROLLBACK
    description: str = ""
    alpha_weight: float = Field(
        default=1.0,
        gt=0,
        description="This signal's share of the deploy's false-alarm budget, relative to the others.",
    )


class RatioSignal(_SignalBase):
    """Bad events over all events (5xx over requests, reused tokens over claims).

    With a canary the canary is compared with the baseline; without one, after the deploy with
    before. ``slo`` adds an absolute check (paged when breached) and is the fallback when there is
    nothing to compare with.
    """

    kind: Literal["ratio"]
    bad: SeriesRef
    total: SeriesRef
    slo: float | None = Field(default=None, gt=0, lt=1, description="Largest acceptable bad fraction.")


class LatencySignal(_SignalBase):
    """Latency from histogram bucket counts: a quantile against its SLO threshold (the requests
    above the threshold's bucket bound), or with ``omnibus`` the whole distribution (every bound)."""

    kind: Literal["latency"]
    histogram: SeriesRef = Field(description="The histogram's base name (without _bucket).")
    quantile: float | None = Field(default=None, gt=0, lt=1)
    threshold_s: float | None = Field(
        default=None, gt=0, description="SLO on the quantile; best a bucket bound."
    )
    omnibus: bool = Field(default=False, description="Judge every bucket bound instead of one quantile.")

    @model_validator(mode="after")
    def _what(self) -> LatencySignal:
        if not self.omnibus and (self.quantile is None or self.threshold_s is None):
            raise ValueError("set quantile and threshold_s, or omnibus: true")
        return self


class ProbeSignal(_SignalBase):
    """Healthchecks (``probe_success``, 1/0): k failures among the last n fail the signal."""

    kind: Literal["probe"]
    probe: SeriesRef = Field(default_factory=lambda: SeriesRef(metric="probe_success"))
    k: int = Field(default=3, ge=1)
    n: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _k_le_n(self) -> ProbeSignal:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must not exceed n ({self.n})")
        return self


class RateSignal(_SignalBase):
    """Events per second of a counter with no natural total (failed jobs, panics)."""

    kind: Literal["rate"]
    events: SeriesRef
    limit_per_s: float = Field(gt=0)


class GaugeSignal(_SignalBase):
    """A gauge that must stay under a limit per group (cost per tenant), for ``for_samples`` samples.

    ``promql`` is the raw-PromQL escape hatch (Prometheus source only): an expression returning
    one value per cohort (and per ``by`` group), evaluated at each tick instead of ``gauge``.
    """

    kind: Literal["gauge"]
    gauge: SeriesRef | None = None
    promql: str | None = None
    by: list[str] = Field(default_factory=list)
    limit: float | None = Field(default=None, description="Absolute limit on the canary's value.")
    max_ratio: float | None = Field(
        default=None, gt=1, description="Limit relative to the baseline (canary)."
    )
    for_samples: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> GaugeSignal:
        if (self.gauge is None) == (self.promql is None):
            raise ValueError("set exactly one of 'gauge' and 'promql'")
        if self.limit is None and self.max_ratio is None:
            raise ValueError("set 'limit', 'max_ratio' or both")
        return self


Signal = Annotated[
    RatioSignal | LatencySignal | ProbeSignal | RateSignal | GaugeSignal, Field(discriminator="kind")
]


def compile_promql(
    signal: RatioSignal | LatencySignal | ProbeSignal | RateSignal | GaugeSignal,
    window: str = "5m",
    by: tuple[str, ...] = ("cohort",),
    extra: Mapping[str, str] | None = None,
) -> str:
    """The PromQL a human would write for the signal: for dashboards, docs and the evidence.

    Decisions use the raw samples (``watchdog.series``), whose counts are exact; this is the same
    quantity as Prometheus would show it.
    """
    grp = ", ".join(by)
    if isinstance(signal, RatioSignal):
        bad = signal.bad.selector(extra).promql()
        total = signal.total.selector(extra).promql()
        return f"sum by ({grp}) (increase({bad}[{window}])) / sum by ({grp}) (increase({total}[{window}]))"
    if isinstance(signal, LatencySignal):
        h = signal.histogram
        bucket = SeriesRef(metric=h.metric + "_bucket", match=h.match).selector(extra).promql()
        buckets = f"sum by ({', '.join((*by, 'le'))}) (rate({bucket}[{window}]))"
        return buckets if signal.quantile is None else f"histogram_quantile({signal.quantile}, {buckets})"
    if isinstance(signal, ProbeSignal):
        return f"min by ({grp}) ({signal.probe.selector(extra).promql()})"
    if isinstance(signal, RateSignal):
        return f"sum by ({grp}) (rate({signal.events.selector(extra).promql()}[{window}]))"
    if signal.promql is not None:
        return signal.promql
    assert signal.gauge is not None
    return f"max by ({', '.join((*by, *signal.by))}) ({signal.gauge.selector(extra).promql()})"


# --------------------------------------------------------------------------- checks and actions


class SmokeCheck(Strict):
    """One smoke check run after every rollback (runbook step 4).

    ``kind: http`` (the default) is one request with its expectations. ``kind: pwa`` walks the
    PWA's core flow over HTTP: the page at ``path``, the web app manifest it links, the service
    worker it registers, then ``api_calls`` (the API requests the page makes). ``kind: browser``
    loads the page in a real Chromium through Playwright, waits for the service worker and the
    page's own API calls, and fails on any failed call or page error.
    """

    name: str
    kind: Literal["http", "pwa", "browser"] = "http"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    path: str = Field(pattern=r"^/")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Request headers; credential headers by reference."
    )
    json_body: Any = None
    expect_status: list[int] = Field(default_factory=lambda: [200])
    expect_json: dict[str, Any] = Field(
        default_factory=dict,
        description="Expected JSON values: a top-level key, or a JSON Pointer (RFC 6901) such as "
        "/data/dry_run, mapped to the value it must equal.",
    )
    expect_body_contains: list[str] = Field(default_factory=list)
    latency_budget_s: float = Field(default=2.0, gt=0, description="Per request (per page load for browser).")
    retries: int = Field(default=2, ge=0)
    api_calls: list[SmokeCheck] = Field(
        default_factory=list, description="kind pwa: the API requests the page makes, checked in order."
    )
    expect_selector: str | None = Field(
        default=None, description="kind browser: a CSS selector that must appear once the page ran."
    )
    expect_text: str | None = Field(
        default=None, description="kind browser: text the expect_selector element must contain."
    )
    chromium: str | None = Field(
        default=None,
        description="kind browser: the Chromium executable (default: the system's chromium on PATH).",
    )

    def request_headers(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.headers.items()}

    @model_validator(mode="after")
    def _kind_fields(self) -> SmokeCheck:
        if self.api_calls and self.kind != "pwa":
            raise ValueError("'api_calls' belongs to kind pwa")
        if any(c.kind != "http" for c in self.api_calls):
            raise ValueError("api_calls are plain http checks")
        if (self.expect_selector or self.expect_text or self.chromium) and self.kind != "browser":
            raise ValueError("'expect_selector', 'expect_text' and 'chromium' belong to kind browser")
        if self.expect_text and not self.expect_selector:
            raise ValueError("'expect_text' needs 'expect_selector'")
        return self


class UnleashTarget(Strict):
    """Feature flags in one Unleash environment, switched through its admin API.

    During dampening the flags in ``disable`` are turned off and those in ``enable`` on (a
    read-only or kill-switch flag); the undo restores each flag to the state it had before.
    """

    url: str = Field(description="Unleash base URL, e.g. https://unleash.example.com")
    token: SecretStr = Field(description="An admin API token (by reference).")
    project: str = "default"
    environment: str
    disable: list[str] = Field(default_factory=list)
    enable: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_flags(self) -> UnleashTarget:
        if not self.disable and not self.enable:
            raise ValueError("name at least one flag in 'disable' or 'enable'")
        both = sorted(set(self.disable) & set(self.enable))
        if both:
            raise ValueError(f"flags both disabled and enabled: {', '.join(both)}")
        return self


class DampeningAction(Strict):
    """Something that dampens traffic or jobs during a rollback (runbook step 2), with its undo.

    ``kind: http`` calls ``url`` (header values may be secrets by reference); ``kind: command``
    runs ``argv`` directly, never through a shell; ``kind: unleash`` switches feature flags and
    restores them by itself. A read-only mode is a flag in ``unleash.enable`` or an http action.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["http", "command", "unleash"] = "http"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    json_body: Any = None
    expect_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])
    argv: list[str] | None = Field(default=None, min_length=1)
    unleash: UnleashTarget | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    undo: DampeningAction | None = None

    def request_headers(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.headers.items()}

    @model_validator(mode="after")
    def _target(self) -> DampeningAction:
        if self.kind == "http" and not self.url:
            raise ValueError("an http action needs 'url'")
        if self.kind == "command" and not self.argv:
            raise ValueError("a command action needs 'argv'")
        if self.kind == "unleash":
            if self.unleash is None:
                raise ValueError("an unleash action needs 'unleash'")
            if self.undo is not None:
                raise ValueError("an unleash action restores the flags itself; it takes no 'undo'")
        elif self.unleash is not None:
            raise ValueError("'unleash' belongs to kind unleash")
        return self


class ServiceConfig(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    match: dict[str, str] = Field(default_factory=dict, description="Label matchers selecting this service.")
    canary: bool = Field(default=True, description="Metrics carry a cohort label (canary vs baseline).")
    cohort_label: str = "cohort"
    canary_value: str = "canary"
    baseline_value: str = "baseline"
    base_urls: dict[str, str] = Field(default_factory=dict, description="Per environment, for smoke checks.")
    signals: list[Signal]
    smoke_checks: list[SmokeCheck] = Field(default_factory=list)
    dampening: dict[str, list[DampeningAction]] = Field(default_factory=dict, description="Per environment.")

    @model_validator(mode="after")
    def _omnibus_needs_canary(self) -> ServiceConfig:
        for sig in self.signals:
            if isinstance(sig, LatencySignal) and sig.omnibus and not self.canary:
                raise ValueError(
                    f"signal {sig.name}: omnibus compares canary and baseline; it needs canary: true"
                )
        return self

    @field_validator("signals")
    @classmethod
    def _unique_names(cls, signals: list[Any]) -> list[Any]:
        names = [s.name for s in signals]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"signal names must be unique; repeated: {', '.join(dupes)}")
        if not signals:
            raise ValueError("at least one signal is needed")
        return signals


# --------------------------------------------------------------------------- environments


RollbackPolicy = Literal["auto", "propose"]


class EnvironmentPolicy(Strict):
    auto_rollback: bool = True
    veto_window_s: float = Field(
        default=0.0,
        ge=0,
        le=86_400,
        description="An automatic rollback pages and opens its ticket at once, then waits this long before "
        "it changes anything: a veto inside the window cancels it.",
    )
    rollback_policy: RollbackPolicy = Field(
        default="auto",
        description="auto: a failed release is rolled back; propose: oncall is paged and an operator "
        "approves the rollback (or vetoes it).",
    )
    approval: ApprovalMode = ApprovalMode.NONE
    watch_s: float = Field(default=1800.0, gt=0, description="How long a new release is watched.")
    post_rollback_watch_s: float = Field(default=1800.0, gt=0)
    mode: Literal["act", "shadow"] = Field(
        default="act",
        description="shadow: everything is watched, decided and logged, but nothing is changed — a "
        "rollback is logged as 'would have rolled back' (no incident, page or ticket), a promotion "
        "as 'shadow' (the pin does not move). `rollback-watchdog shadow-report` compares them with "
        "what the team did.",
    )
    post_promotion_watch_s: float = Field(
        default=3600.0,
        ge=0,
        description="After a promotion the release is watched this long more, before/after against "
        "its pre-deploy window on the rollback-severity signals; a regression rolls it back to the "
        "release pinned before it. 0 turns it off.",
    )
    alpha: float = Field(default=0.01, gt=0, lt=0.5, description="False-alarm budget per deploy.")
    on_inconclusive: Literal["hold", "page", "extend"] = Field(
        default="page",
        description="A watch that did not see enough of the release ends inconclusive and the release "
        "is never promoted: 'hold' leaves it for a human (logged), 'page' also pages oncall, 'extend' "
        "watches once more for watch_s and then pages if it is still inconclusive.",
    )
    min_coverage: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="A release is promoted only when every rollback-severity signal had data in at "
        "least this fraction of the watch's scrape steps …",
    )
    fresh_s: float = Field(
        default=300.0, gt=0, description="… and in its last fresh_s seconds (data seen that recently)."
    )
    blind_page_after_s: float = Field(
        default=600.0,
        gt=0,
        description="A watch blind on a rollback-severity signal (no answer, garbage, or no fresh data) "
        "for this long pages oncall once; the page resolves when the data returns.",
    )
    warmup_s: float = Field(
        default=60.0, ge=0, description="Latency is judged only after the canary warmed up."
    )
    calibration_s: float = Field(
        default=1200.0,
        ge=0,
        description="Pre-deploy window: the A/A calibration and the before/after reference.",
    )
    approval_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="approval reviewers/auto: how long the rollback run may wait for approval before "
        "it is cancelled and the incident escalates.",
    )
    approval_reminder_s: float = Field(
        default=600.0,
        gt=0,
        description="approval reviewers: how often the reviewers are reminded on the incident ticket.",
    )
    undo_dampening_on_escalation: bool = Field(
        default=False,
        description="Undo the dampening when a rollback escalates (by default it stays for the humans).",
    )
    rollback_cooldown_s: float = Field(
        default=3600.0,
        ge=0,
        description="At most one automatic rollback per environment within this period (loop guard); "
        "a second bad release in it is escalated to a human instead.",
    )
    split_tolerance: float = Field(
        default=2.0,
        gt=1,
        description="A canary traffic share changed by more than this factor at the deploy "
        "makes comparisons inconclusive.",
    )


def _default_envs() -> dict[EnvName, EnvironmentPolicy]:
    return {
        "dev": EnvironmentPolicy(watch_s=600, post_rollback_watch_s=600),
        "stage": EnvironmentPolicy(approval=ApprovalMode.AUTO),
        "prod": EnvironmentPolicy(approval=ApprovalMode.REVIEWERS, veto_window_s=120),
    }


# --------------------------------------------------------------------------- sources


class PrometheusConfig(Strict):
    url: str
    timeout_s: float = Field(default=10.0, gt=0)
    bearer_token: SecretStr | None = None
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None
    batch: bool = Field(
        default=True,
        description="Read every watch's series with one range query per selector and tick, split "
        "by labels (false: one query per watch and selector, as a single service needs).",
    )
    settle_s: float = Field(
        default=30.0,
        ge=0,
        description="How far back each batched query reaches into the range the last one answered, "
        "for samples that reach Prometheus late (remote write, slow scrapes).",
    )


class ScrapeTargetConfig(Strict):
    url: str
    labels: dict[str, str] = Field(default_factory=dict)


class ProbeConfig(Strict):
    name: str
    url: str
    labels: dict[str, str] = Field(default_factory=dict)
    expect_status: int = 200


class ScrapeConfig(Strict):
    interval_s: float = Field(default=15.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    targets: list[ScrapeTargetConfig] = Field(min_length=1)
    probes: list[ProbeConfig] = Field(default_factory=list)


class ReplayConfig(Strict):
    path: str


class SourceConfig(Strict):
    kind: Literal["prometheus", "scrape", "replay"]
    prometheus: PrometheusConfig | None = None
    scrape: ScrapeConfig | None = None
    replay: ReplayConfig | None = None
    lookback_s: float = Field(
        default=300.0, gt=0, description="How far before a window to find its baseline."
    )

    @model_validator(mode="after")
    def _matching_section(self) -> SourceConfig:
        if getattr(self, self.kind) is None:
            raise ValueError(f"kind is {self.kind!r} but the '{self.kind}' section is missing")
        return self


# --------------------------------------------------------------------------- github, store


class MigrationConfig(Strict):
    """The migration gate: each release's manifest at its tag says which migrations it carries.

    Format (JSON, at ``manifest_path`` in the repository): ``{"migrations": [{"id": "0007",
    "reversible": true}, ...]}``. Migrations in the bad release but not in the target are
    rolled back through the workflow input ``down_input`` when all are reversible; any irreversible
    one stops the automatic rollback (the DB-restore runbook decides).
    """

    enabled: bool = True
    manifest_path: str = "migrations/manifest.json"
    down_input: str | None = Field(
        default="migrate_down", description="Workflow input that receives the migrations to roll back."
    )


class DeploymentsPollConfig(Strict):
    """Deploys detected from GitHub's deployments, for workflows that announce nothing themselves.

    Each environment's deployments and the newest status of each are read with conditional
    requests: an unchanged answer (304) costs no rate limit. A deployment whose newest status is
    ``success`` is announced once, for the service its payload names (``payload.service``) or the
    only configured one; deployments that succeeded before the daemon started are never replayed.
    """

    poll: bool = Field(default=False, description="Poll GitHub's deployments to detect deploys.")
    interval_s: float = Field(default=60.0, ge=10, description="Seconds between two polls.")
    environments: list[EnvName] | None = Field(
        default=None,
        min_length=1,
        description="The environments to poll (GitHub's environment names are the watchdog's); "
        "default: every configured environment.",
    )

    @field_validator("environments")
    @classmethod
    def _unique_environments(cls, names: list[EnvName] | None) -> list[EnvName] | None:
        if names is not None and len(names) != len(set(names)):
            raise ValueError("each environment once")
        return names


class GitHubAppConfig(Strict):
    """A GitHub App installation as the watchdog's identity: each installation token it mints
    lasts an hour, acts as the app's bot and has only the permissions the app was granted."""

    app_id: int = Field(gt=0, description="The app's numeric id (its settings page, or GET /app).")
    installation_id: int | None = Field(
        default=None,
        gt=0,
        description="The installation on github.repo's account; none: looked up with "
        "GET /repos/{owner}/{repo}/installation at the first request.",
    )
    private_key: SecretStr = Field(
        description="The app's private key, PEM (by reference: typically ${file:/run/secrets/app.pem})."
    )
    refresh_before_s: float = Field(
        default=300.0,
        ge=0,
        lt=3600,
        description="Mint a new installation token this long before the current one expires "
        "(GitHub's last an hour).",
    )


class GitHubConfig(Strict):
    api_url: str = "https://api.github.com"
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    workflow: str = Field(default="deploy.yml", description="Workflow file name or id.")
    token: SecretStr | None = Field(
        default=None,
        description="A personal access token (by reference); exactly one of token and app.",
    )
    app: GitHubAppConfig | None = Field(
        default=None, description="Authenticate as a GitHub App installation instead of with a token."
    )
    ref: str = Field(default="{tag}", description="Ref to dispatch; placeholders {tag} {sha} {env}.")
    inputs: dict[str, str] = Field(
        default_factory=lambda: {
            "environment": "{env}",
            "tag": "{tag}",
            "correlation_id": "{correlation_id}",
        },
        description="workflow_dispatch inputs; placeholders {env} {tag} {sha} {correlation_id} {reason}.",
    )
    correlation_input: str = "correlation_id"
    migrations: MigrationConfig = Field(default_factory=MigrationConfig)
    deployments: DeploymentsPollConfig = Field(default_factory=DeploymentsPollConfig)
    dispatch_lookup_grace_s: float = Field(
        default=60.0,
        gt=0,
        description="After a dispatch whose answer was lost, how long to look for its run "
        "(by correlation id) before dispatching again.",
    )
    max_dispatch_attempts: int = Field(
        default=3,
        ge=1,
        description="Dispatches whose answer was lost, at most, before the step escalates (each "
        "after dispatch_lookup_grace_s of looking for the run of the one before).",
    )
    dispatch_lookup_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="After a dispatch GitHub accepted without naming its run (204), how long to "
        "look for the run by its correlation id before the step escalates: an accepted dispatch is "
        "never repeated, and a workflow whose run-name does not carry the id is never found.",
    )
    run_timeout_s: float = Field(default=3600.0, gt=0)
    request_timeout_s: float = Field(default=15.0, gt=0)
    request_interval_s: float = Field(
        default=0.25, ge=0, description="Least time between two GitHub requests (PyGithub's throttle)."
    )
    write_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="Least time between two GitHub writes: GitHub's advice against secondary rate limits.",
    )

    @model_validator(mode="after")
    def _one_identity(self) -> GitHubConfig:
        if (self.token is None) == (self.app is None):
            raise ValueError(
                "exactly one of github.token (a personal access token) and github.app "
                f"(a GitHub App installation) is needed, {'not both' if self.token else 'got neither'}"
            )
        return self

    def dispatch_inputs(self) -> list[str]:
        """The inputs a rollback's dispatch sends: the workflow must declare each of them."""
        names = [*self.inputs, self.correlation_input]
        if self.migrations.enabled and self.migrations.down_input:
            names.append(self.migrations.down_input)
        return list(dict.fromkeys(names))


PagerDutySeverity = Literal["critical", "error", "warning", "info"]


class PagerDutyConfig(Strict):
    """PagerDuty Events API v2: oncall is paged when a rollback starts, again with high urgency
    when it escalates, and the alert is resolved when the rollback is confirmed."""

    events_url: str = "https://events.pagerduty.com/v2"
    routing_key: SecretStr = Field(description="The Events API v2 integration key (by reference).")
    rollback_severity: PagerDutySeverity = "error"
    escalation_severity: PagerDutySeverity = "critical"
    resolve_on_recovery: bool = True
    timeout_s: float = Field(default=10.0, gt=0)


class TicketConfig(Strict):
    """The incident/change ticket: a GitHub issue, opened at the first step of every rollback and
    updated at each milestone (the runbook's "Incident-/Change-Ticket offen")."""

    enabled: bool = True
    repo: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
        description="Repository for the tickets (default: github.repo).",
    )
    labels: list[str] = Field(default_factory=lambda: ["rollback", "incident"])
    close_on_resolve: bool = True


class PostmortemConfig(Strict):
    """The follow-up issue opened when a rollback resolves or escalates (the runbook's
    "Nacharbeiten"), in the tickets' repository, pre-filled from the decision log."""

    enabled: bool = True
    labels: list[str] = Field(default_factory=lambda: ["postmortem"], min_length=1)


class PagerDutyServiceRef(Strict):
    service: str
    env: EnvName


class PagerDutyWebhookConfig(Strict):
    """PagerDuty webhooks (v3) at ``POST /v1/hooks/pagerduty``: a P1/P2 incident on a mapped service
    within ``incident_window_s`` of a deploy leads to that release's rollback, as the environment's
    ``rollback_policy`` says."""

    secrets: list[SecretStr] = Field(
        min_length=1,
        description="The webhook subscription's signing secrets (by reference; two while rotating).",
    )
    services: dict[str, PagerDutyServiceRef] = Field(
        description="PagerDuty service id (P…) → the watchdog's service and environment."
    )
    priorities: list[str] = Field(default_factory=lambda: ["P1", "P2"], min_length=1)
    incident_window_s: float = Field(default=3600.0, gt=0, description="How long after a deploy.")
    max_age_s: float = Field(
        default=600.0, gt=0, le=3600, description="Older deliveries (by occurred_at) are refused as replays."
    )


class IncidentsConfig(Strict):
    pagerduty: PagerDutyConfig | None = None
    pagerduty_webhook: PagerDutyWebhookConfig | None = None
    ticket: TicketConfig = Field(default_factory=TicketConfig)
    postmortem: PostmortemConfig = Field(default_factory=PostmortemConfig)


# --------------------------------------------------------------------------- notifications

NoticeSeverityName = Literal["critical", "warning", "info"]
OpsgeniePriority = Literal["P1", "P2", "P3", "P4", "P5"]


def _default_priorities() -> dict[NoticeSeverityName, OpsgeniePriority]:
    return {"critical": "P1", "warning": "P3", "info": "P5"}


def _prod_only() -> list[EnvName]:
    return ["prod"]


class SlackNotifierConfig(Strict):
    """Slack: a Block Kit message per incident, posted with a bot token (``chat.postMessage``,
    then ``chat.update`` of the same message as the rollback advances) or by incoming webhook
    (each notice a new message: webhooks cannot update)."""

    kind: Literal["slack"]
    api_url: str = Field(default="https://slack.com/api", description="Slack's Web API base URL.")
    token: SecretStr | None = Field(default=None, description="A bot token, xoxb-… (by reference).")
    channel: str | None = Field(default=None, description="Channel id or name for chat.postMessage.")
    webhook_url: SecretStr | None = Field(
        default=None, description="An incoming webhook URL (a secret: by reference)."
    )
    buttons: bool = Field(default=True, description="Add override buttons (needs slack_interactivity).")
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> SlackNotifierConfig:
        if (self.token is None) == (self.webhook_url is None):
            raise ValueError("a slack notifier needs either token (with channel) or webhook_url, not both")
        if self.token is not None and not self.channel:
            raise ValueError("a slack notifier with a token needs a channel")
        return self


class TeamsNotifierConfig(Strict):
    """Microsoft Teams: an Adaptive Card (1.5) posted to a Workflows webhook."""

    kind: Literal["teams"]
    webhook_url: SecretStr = Field(description="The Workflows webhook URL (a secret: by reference).")
    timeout_s: float = Field(default=10.0, gt=0)


class OpsgenieNotifierConfig(Strict):
    """Opsgenie Alert API v2: an alert per incident (alias = the incident's correlation id), closed
    when the rollback resolves or is vetoed."""

    kind: Literal["opsgenie"]
    api_url: str = Field(default="https://api.opsgenie.com", description="api.eu.opsgenie.com for the EU.")
    api_key: SecretStr = Field(description="An API integration key (by reference), sent as GenieKey.")
    priorities: dict[NoticeSeverityName, OpsgeniePriority] = Field(
        default_factory=_default_priorities,
        description="Alert priority per notice severity.",
    )
    responders: list[dict[str, str]] = Field(
        default_factory=list, description='e.g. [{"type": "team", "name": "oncall"}]'
    )
    tags: list[str] = Field(default_factory=lambda: ["rollback-watchdog"])
    timeout_s: float = Field(default=10.0, gt=0)


class WebhookNotifierConfig(Strict):
    """A generic webhook: the notice as JSON, signed like GitHub's ``X-Hub-Signature-256`` over the
    timestamp and the body (``X-Watchdog-Signature-256: sha256=HMAC(secret, "{timestamp}.{body}")``)."""

    kind: Literal["webhook"]
    url: str = Field(description="Where to POST (https in production; a fixed URL, never templated).")
    secret: SecretStr = Field(description="The HMAC-SHA256 key shared with the receiver (by reference).")
    timeout_s: float = Field(default=10.0, gt=0)


class StatuspageNotifierConfig(Strict):
    """Atlassian Statuspage: an incident when a rollback starts in one of ``environments`` (prod by
    default), updated at its milestones, resolved with the component operational again."""

    kind: Literal["statuspage"]
    api_url: str = Field(default="https://api.statuspage.io/v1")
    page_id: str = Field(min_length=1)
    api_key: SecretStr = Field(description="A Statuspage API key (by reference), sent as OAuth.")
    components: dict[str, str] = Field(
        default_factory=dict, description="Service name → Statuspage component id."
    )
    environments: list[EnvName] = Field(
        default_factory=lambda: list[EnvName](["prod"]),
        description="Only these environments reach the status page.",
    )
    impact: Literal["none", "minor", "major", "critical"] = "minor"
    component_status: Literal["degraded_performance", "partial_outage", "major_outage"] = (
        "degraded_performance"
    )
    timeout_s: float = Field(default=10.0, gt=0)


class GrafanaNotifierConfig(Strict):
    """Grafana annotations for deploys, decisions and rollbacks (tags: env, service, release)."""

    kind: Literal["grafana"]
    url: str = Field(description="Grafana's base URL.")
    token: SecretStr = Field(description="A service account token (by reference).")
    dashboard_uid: str | None = Field(
        default=None, description="Annotate one dashboard; else organisation-wide."
    )
    tags: list[str] = Field(default_factory=lambda: ["rollback-watchdog"])
    timeout_s: float = Field(default=10.0, gt=0)


NotifierConfig = Annotated[
    SlackNotifierConfig
    | TeamsNotifierConfig
    | OpsgenieNotifierConfig
    | WebhookNotifierConfig
    | StatuspageNotifierConfig
    | GrafanaNotifierConfig,
    Field(discriminator="kind"),
]


class NoticeRoute(Strict):
    """One line of the routing table: notices of these environments, severities (and events) go
    to these notifiers. Every matching route adds its notifiers; each gets a notice once."""

    environments: list[EnvName] | None = Field(default=None, description="None: every environment.")
    severities: list[NoticeSeverityName] | None = Field(default=None, description="None: every severity.")
    events: list[str] | None = Field(default=None, description="None: every event (see docs/operating.md).")
    to: list[str] = Field(min_length=1, description="Notifier names.")


class SlackUser(Strict):
    """Who may press the buttons: a Slack user id, the actor it is logged as, where it may act."""

    slack_user: str = Field(pattern=r"^[UW][A-Z0-9]+$", description="Slack's user id (U…/W…), not a name.")
    actor: str = Field(min_length=1, max_length=64)
    environments: list[EnvName] = Field(min_length=1)


class SlackInteractivityConfig(Strict):
    """Slack's interactivity requests (button presses) at ``POST /v1/slack/interactions``."""

    signing_secret: SecretStr = Field(description="The Slack app's signing secret (by reference).")
    users: list[SlackUser] = Field(default_factory=list, description="The allow-list; others are refused.")
    max_age_s: float = Field(default=300.0, gt=0, le=300, description="Slack's replay window.")
    response_url_prefix: str = Field(
        default="https://hooks.slack.com/",
        description="Only a response_url under this prefix is called back (no SSRF through a payload).",
    )


class NotificationsConfig(Strict):
    notifiers: dict[str, NotifierConfig] = Field(default_factory=dict)
    routes: list[NoticeRoute] = Field(default_factory=list)
    max_attempts: int = Field(
        default=8, ge=1, le=50, description="Attempts of one delivery before it is given up."
    )
    max_backoff_s: float = Field(default=300.0, gt=0)
    public_url: str | None = Field(
        default=None,
        description="The API's address as people reach it (links in messages); none: no API links.",
    )
    slack_interactivity: SlackInteractivityConfig | None = None

    @model_validator(mode="after")
    def _routes_name_notifiers(self) -> NotificationsConfig:
        for i, route in enumerate(self.routes):
            unknown = [n for n in route.to if n not in self.notifiers]
            if unknown:
                have = ", ".join(self.notifiers) or "none"
                raise ValueError(f"routes[{i}].to names unknown notifiers {unknown} (have: {have})")
        for name in self.notifiers:
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name):
                raise ValueError(f"notifier name {name!r}: lowercase letters, digits, - and _ only")
        return self


class RetentionConfig(Strict):
    """How long the rows of ended watches are kept. The leader deletes older ones every
    ``interval_s``, a bounded batch per transaction. Never a running watch's rows, never those an
    open incident shows, and never the decision log, which is kept for ever."""

    points_days: float | None = Field(
        default=30.0,
        ge=0,
        description="Days the signal points of an ended watch (the dashboard's and the evidence "
        "picture's paths, one row per signal and tick) are kept after it ended; 0 or null: for ever.",
    )
    verdicts_days: float | None = Field(
        default=30.0,
        ge=0,
        description="Days the verdicts of an ended watch (each signal's changes of state) are kept "
        "after it ended; 0 or null: for ever.",
    )
    interval_s: float = Field(
        default=3600.0, ge=60, description="Seconds between two runs of the retention (leader only)."
    )
    batch: int = Field(
        default=5000,
        ge=100,
        le=20_000,
        description="Rows deleted per transaction at most: no run holds the store for long.",
    )

    @property
    def points_s(self) -> float | None:
        return self.points_days * 86400.0 if self.points_days else None

    @property
    def verdicts_s(self) -> float | None:
        return self.verdicts_days * 86400.0 if self.verdicts_days else None


class StoreConfig(Strict):
    url: str = Field(default="sqlite:///watchdog.db", description="SQLAlchemy URL (sqlite or postgresql).")
    lease_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="Replicas on one PostgreSQL store: the leader renews its lease every third of "
        "this; a standby takes over at most this long after the leader stopped renewing.",
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig,
        description="How long ended watches' signal points and verdicts are kept (the decision log "
        "is never pruned).",
    )


class ApiRole(enum.StrEnum):
    """What an API token may do. Every role reads; ``deployer`` also announces deploys,
    ``operator`` also overrides (veto, pause, force, promote, approve)."""

    VIEWER = "viewer"
    DEPLOYER = "deployer"
    OPERATOR = "operator"


class ApiToken(Strict):
    name: str = Field(
        min_length=1, max_length=64, description="Who holds it: the actor its writes are logged as."
    )
    token: SecretStr = Field(description="The bearer token (by reference).")
    role: ApiRole


class TrustedProxy(Strict):
    """A reverse proxy that signs people in (oauth2-proxy and the like) and names them in a header.
    The header is believed only on connections from ``sources``: anyone else could send it."""

    header: str = Field(
        default="X-Auth-Request-User",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="The header carrying the signed-in user (oauth2-proxy: X-Auth-Request-User).",
    )
    sources: list[IPvAnyNetwork] = Field(
        min_length=1,
        description="The proxy's addresses (CIDR): the header from any other peer is ignored.",
    )


class ApiConfig(Strict):
    enabled: bool = Field(default=True, description="Serve the HTTP API in the daemon process.")
    listen: str = Field(
        default="127.0.0.1:9095",
        pattern=r"^[^\s:]*:\d{1,5}$",
        description="host:port to serve on (the loopback by default; port 0 picks a free one).",
    )
    tokens: list[ApiToken] = Field(
        default_factory=list,
        description="Bearer tokens and their roles; without any, only the probes answer.",
    )
    max_body_bytes: int = Field(default=65_536, gt=0, le=16 * 1024 * 1024)
    trusted_proxy: TrustedProxy | None = Field(
        default=None,
        description="Believe this proxy's identity header for the dashboard (read-only, as a viewer).",
    )

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @model_validator(mode="after")
    def _unique(self) -> ApiConfig:
        names = [t.name for t in self.tokens]
        if len(names) != len(set(names)):
            raise ValueError("api.tokens: names must be unique")
        values = [t.token.get_secret_value() for t in self.tokens]
        if len(values) != len(set(values)):
            raise ValueError("api.tokens: each token must be different (a token names one holder)")
        return self


class SentryConfig(Strict):
    dsn: SecretStr | None = None
    environment: str = "production"


class WatchdogConfig(Strict):
    """The whole configuration file."""

    version: Literal[1] = 1
    tick_s: float = Field(default=15.0, gt=0, description="Seconds between evaluations.")
    services: list[ServiceConfig] = Field(min_length=1)
    environments: dict[EnvName, EnvironmentPolicy] = Field(default_factory=_default_envs)
    source: SourceConfig
    github: GitHubConfig
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    sentry: SentryConfig = Field(default_factory=SentryConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    _by_name: tuple[list[ServiceConfig], dict[str, ServiceConfig]] | None = PrivateAttr(default=None)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    demo_note: str | None = Field(
        default=None, description="Shown at start: how this config departs from prod."
    )
    sandbox: bool = Field(
        default=False,
        description="A config for a demo or a test bench: secret references may carry literal "
        "defaults (${NAME:-value}). Never set it in a config that reaches a real system.",
    )

    @model_validator(mode="after")
    def _checks(self) -> WatchdogConfig:
        prod = self.environments.get("prod")
        if prod and prod.post_rollback_watch_s < PROD_MIN_POST_ROLLBACK_WATCH_S and not self.demo_note:
            raise ValueError(
                "environments.prod.post_rollback_watch_s must be at least "
                f"{PROD_MIN_POST_ROLLBACK_WATCH_S:.0f} s "
                "(the runbook's 30 minutes); only a config with a demo_note may shorten it"
            )
        for svc in self.services:
            for sig in svc.signals:
                if isinstance(sig, GaugeSignal) and sig.promql and self.source.kind != "prometheus":
                    raise ValueError(f"signal {sig.name}: raw 'promql' needs source.kind prometheus")
        names = [s.name for s in self.services]
        if len(names) != len(set(names)):
            raise ValueError("service names must be unique")
        hook = self.incidents.pagerduty_webhook
        for pd_id, ref in (hook.services if hook else {}).items():
            if ref.service not in names:
                raise ValueError(
                    f"incidents.pagerduty_webhook.services.{pd_id}: no service named {ref.service!r}"
                )
        return self

    def service(self, name: str) -> ServiceConfig:
        # by name, through a dict made once per list of services (a tick asks once per watch;
        # names are unique, checked on load). A copy with other services has a list of its own.
        known = self._by_name
        if known is None or known[0] is not self.services or len(known[1]) != len(self.services):
            known = self._by_name = (self.services, {s.name: s for s in self.services})
        got = known[1].get(name)
        if got is None:  # (or the list was changed in place since: look again)
            known = self._by_name = (self.services, {s.name: s for s in self.services})
            got = known[1].get(name)
        if got is not None:
            return got
        have = ", ".join(s.name for s in self.services)
        raise UnknownName(f"no service named {name!r} (have: {have})", argument="service", value=name)

    def env(self, name: str) -> EnvironmentPolicy:
        if name not in self.environments:
            have = ", ".join(self.environments)
            raise UnknownName(f"no environment named {name!r} (have: {have})", argument="env", value=name)
        return self.environments[name]


# --------------------------------------------------------------------------- loading


def _plain(node: Any, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> Any:
    """ruamel's round-trip tree → plain Python, remembering each path's line (1-based)."""
    if isinstance(node, CommentedMap):
        out = {}
        for k, v in node.items():
            with contextlib.suppress(KeyError, TypeError):
                lines[(*path, k)] = node.lc.key(k)[0] + 1
            out[str(k)] = _plain(v, (*path, str(k)), lines)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, v in enumerate(node):
            with contextlib.suppress(KeyError, TypeError, IndexError):
                lines[(*path, i)] = node.lc.item(i)[0] + 1
            items.append(_plain(v, (*path, i), lines))
        return items
    if node is not None and not isinstance(node, str | int | float | bool):
        return str(node)
    return node


def _resolve_refs(
    node: Any,
    path: tuple[Any, ...],
    problems: list[tuple[tuple[Any, ...], str]],
    env: Mapping[str, str],
    unresolved: list[tuple[tuple[Any, ...], str]],
    sandbox: bool = False,
) -> Any:
    """Replace ``${NAME}``/``${NAME:-default}`` anywhere in a string and whole ``${file:/path}`` values.

    An unset ``${NAME}`` stays as it is written (a placeholder, never a real value) and goes to
    ``unresolved`` with its path: an error when running, a warning when checking in CI.
    """
    if isinstance(node, dict):
        return {k: _resolve_refs(v, (*path, k), problems, env, unresolved, sandbox) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_refs(v, (*path, i), problems, env, unresolved, sandbox) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    whole = _FILE_REF.match(node.strip())
    if whole:
        try:
            return Path(whole.group(1)).read_text().strip()
        except OSError as exc:
            problems.append((path, f"secret file {whole.group(1)} cannot be read: {exc.strerror}"))
            return ""
    clear = _literal_secret(node, path, sandbox)
    if clear is not None:
        problems.append((path, clear))
        return ""

    def value(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        unresolved.append((path, name))
        return m.group(0)

    return _ENV_REF.sub(value, node)


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-branch tags (e.g. ``ratio``) so the path matches the YAML."""
    known_tags = {"ratio", "latency", "probe", "rate", "gauge", "function-after[_k_le_n(), ProbeSignal]"}
    return tuple(
        p for p in loc if not (isinstance(p, str) and (p in known_tags or p.startswith("function-")))
    )


#: What a YAML file may hold (ruamel's reader refuses the rest): tab, newline, CR, printable text.
_NOT_YAML_TEXT = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class ConfigCheck:
    """What checking a configuration found.

    ``warnings`` name each unresolved ``${NAME}`` (``FILE:LINE: field.path: ...``). Where one sat,
    ``config`` holds the reference as a placeholder: fine for counting services, never for running.
    ``config`` is ``None`` when such a placeholder stands where text is not allowed (a number, a
    choice): the field and the checks across fields that need it could not run.
    """

    config: WatchdogConfig | None
    warnings: list[str]


def _position(prefix: str) -> str:
    """``LINE:COL`` (1-based) of the character just after ``prefix``."""
    return f"{prefix.count(chr(10)) + 1}:{len(prefix) - prefix.rfind(chr(10))}"


def _decode(data: bytes, filename: str) -> str:
    """The file's text; a ConfigError at the first NUL byte (a binary file) or non-UTF-8 byte."""
    nul = data.find(b"\x00")
    if nul >= 0:
        where = _position(data[:nul].decode("utf-8", "replace"))
        raise ConfigError([f"{filename}:{where}: binary file (a NUL byte), not a YAML configuration"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _position(data[: exc.start].decode("utf-8"))
        raise ConfigError(
            [f"{filename}:{where}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"]
        ) from None


def _check_characters(text: str, filename: str) -> None:
    bad = _NOT_YAML_TEXT.search(text)
    if bad is None:
        return
    char = bad.group()
    what = "control character" if unicodedata.category(char) == "Cc" else "character"
    raise ConfigError(
        [
            f"{filename}:{_position(text[: bad.start()])}: {what} U+{ord(char):04X} is not allowed "
            "(only tab, newline and carriage return)"
        ]
    )


def _yaml_tree(text: str, filename: str) -> CommentedMap:
    _check_characters(text, filename)
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{filename}{line}: invalid YAML: {exc.problem}"]) from exc
    if not isinstance(tree, CommentedMap):
        raise ConfigError([f"{filename}:1: the configuration must be a YAML mapping"])
    return tree


def _from_placeholder(loc: tuple[Any, ...], err: ErrorDetails, unresolved: set[tuple[Any, ...]]) -> bool:
    """The error is about an unresolved reference's placeholder (reported on its own): the field
    holding it, or the union whose ``kind`` it is."""
    if any(loc[: len(p)] == p for p in unresolved):
        return True
    tag = (err.get("ctx") or {}).get("discriminator")
    return isinstance(tag, str) and (*loc, tag.strip("'")) in unresolved


def _validate(
    data: Any, unresolved: set[tuple[Any, ...]]
) -> tuple[WatchdogConfig | None, list[tuple[tuple[Any, ...], str]]]:
    try:
        return WatchdogConfig.model_validate(data), []
    except ValidationError as exc:
        located = [(_clean_loc(tuple(err["loc"])), err) for err in exc.errors()]
        return None, [(loc, e["msg"]) for loc, e in located if not _from_placeholder(loc, e, unresolved)]


def check_text(
    text: str, filename: str = "<config>", env: Mapping[str, str] | None = None, *, strict: bool = False
) -> ConfigCheck:
    """Check YAML text; raises ``ConfigError`` listing every problem with file, line and field.

    ``strict`` (to run with the config) makes an unset ``${NAME}`` an error; otherwise (CI, where
    the secrets are absent) it is a warning and everything else is still checked.
    """
    environ = os.environ if env is None else env
    lines: dict[tuple[Any, ...], int] = {}
    data = _plain(_yaml_tree(text, filename), (), lines)
    ref_problems: list[tuple[tuple[Any, ...], str]] = []
    unresolved: list[tuple[tuple[Any, ...], str]] = []
    sandbox = isinstance(data, dict) and data.get("sandbox") is True
    data = _resolve_refs(data, (), ref_problems, environ, unresolved, sandbox)
    cfg, errors = _validate(data, {p for p, _ in unresolved})

    def at(loc: tuple[Any, ...], msg: str) -> str:
        return f"{filename}:{_line_for(loc, lines) or 1}: {_fmt_loc(loc)}: {msg}"

    unset = [at(p, f"environment variable {name} is not set") for p, name in unresolved]
    problems = [at(p, msg) for p, msg in (*ref_problems, *errors)]
    if strict:
        problems, warnings = [*unset, *problems], []
    else:
        warnings = unset
    if problems:
        raise ConfigError(problems, warnings)
    return ConfigCheck(cfg, warnings)


def parse_config(
    text: str, filename: str = "<config>", env: Mapping[str, str] | None = None
) -> WatchdogConfig:
    """Parse YAML text into a validated config to run with (strict: every reference resolved)."""
    cfg = check_text(text, filename, env, strict=True).config
    assert cfg is not None  # strict: a placeholder is an error, so a config came back
    return cfg


def check_config(
    path: str | Path, env: Mapping[str, str] | None = None, *, strict: bool = False
) -> ConfigCheck:
    """Read and check a configuration file (``validate``); see ``check_text``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror}"]) from exc
    return check_text(_decode(data, str(p)), str(p), env, strict=strict)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> WatchdogConfig:
    """Read a configuration file to run with (strict, as ``parse_config``)."""
    cfg = check_config(path, env, strict=True).config
    assert cfg is not None
    return cfg


def json_schema() -> str:
    return json.dumps(WatchdogConfig.model_json_schema(), indent=2, sort_keys=True)
