"""``rollback-watchdog``: the command line.

Exit codes: 0 success, 1 the job ran but its outcome is bad (e.g. the demo did not end as
expected), 2 bad input (configuration, arguments), 3 an outside system was unavailable (the
store cannot be opened, reached or written).

Bad input changes nothing: every command checks all its arguments, against the configuration
too, before it opens a store, and says which argument is wrong. Read commands (``log``) never
create a store or migrate one. ``validate`` without ``--strict`` reports unset ``${NAME}``
references as warnings (CI has no secrets); ``run`` and ``validate --strict`` refuse them.

Start-up stays fast (``--version``, ``--help``): building the parser imports nothing heavy
(pydantic, SQLAlchemy, scipy, httpx, structlog …); each command imports what it needs when it
runs. ``tests/core/test_startup.py`` checks which modules a fresh interpreter has loaded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from watchdog import __version__
from watchdog.clock import RealClock
from watchdog.errors import (
    ConfigError,
    InputError,
    StoreUnavailable,
    UnknownName,
    WatchdogError,
    action_error,
    retryable_status,
)
from watchdog.manifest import Migration, manifest_to_json, parse_manifest, tag_problem
from watchdog.phases import DecisionKind

if TYPE_CHECKING:
    import httpx

    from watchdog.config import WatchdogConfig
    from watchdog.engine import Engine
    from watchdog.overrides import Overrides
    from watchdog.store import DecisionEntry, Store

EXIT_OK, EXIT_BAD_OUTCOME, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3

#: The parser's choices, written out so that building it imports no model; ``test_startup.py``
#: checks them against their sources (``watchdog.config.EnvName``, ``watchdog.bench.DETECTORS``).
ENVIRONMENTS = ("dev", "stage", "prod")
DETECTORS = ("watchdog", "argo", "kayenta", "burnrate", "naive", "oracle")


def _fmt_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ref(tag: str | None, sha: str | None, run_id: int | None) -> str:
    if not tag:
        return "-"
    extra = ",".join(x for x in ((sha or "")[:7], f"run {run_id}" if run_id else "") if x)
    return f"{tag} ({extra})" if extra else tag


def decision_dict(e: DecisionEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at,
        "time": _fmt_time(e.at),
        "env": e.env,
        "service": e.service,
        "kind": e.kind,
        "from": {
            "tag": e.from_tag,
            "sha": e.from_sha,
            "run_id": e.from_run_id,
            "build_url": e.from_build_url,
        },
        "to": {"tag": e.to_tag, "sha": e.to_sha, "run_id": e.to_run_id, "build_url": e.to_build_url},
        "reason": e.reason,
        "evidence": e.evidence,
        "actor": e.actor,
        "result": e.result,
        "watch_id": e.watch_id,
        "incident_id": e.incident_id,
    }


def format_log_table(entries: Sequence[DecisionEntry], width: int = 60) -> str:
    """The decision log as a fixed-width table for terminals."""
    header = ("time (UTC)", "env", "kind", "from", "to", "actor", "result", "reason")
    rows = [header]
    for e in entries:
        reason = e.reason if len(e.reason) <= width else e.reason[: width - 1] + "…"
        rows.append(
            (
                _fmt_time(e.at),
                e.env,
                e.kind,
                _ref(e.from_tag, e.from_sha, e.from_run_id),
                _ref(e.to_tag, e.to_sha, e.to_run_id),
                e.actor,
                e.result,
                reason,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- arguments on their own
# argparse types: each refuses a value that cannot be right whatever the configuration says.


def _tag(text: str) -> str:
    problem = tag_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return text


def _sha(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{4,64}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: not a commit SHA (4 to 64 hex digits)")
    return text


def _http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"{text!r}: not an http(s) URL")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _unix_time(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a number of Unix seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: a time is a finite, positive number of Unix seconds")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1.5h``, ``2d`` → seconds."""
    m = _DURATION.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive duration such as 90s, 10m, 1h or 2d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def _text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: must not be empty")
    return text


# --------------------------------------------------------------------------- arguments against the config


def _load(path: str) -> WatchdogConfig:
    from watchdog.config import load_config, secret_values
    from watchdog.observability import register_secrets

    cfg = load_config(path)
    register_secrets(secret_values(cfg))  # whatever this command prints is scrubbed of them
    return cfg


def _config_for(args: argparse.Namespace) -> WatchdogConfig:
    """The configuration, and the arguments that must name something in it (``--env``, ``--service``)."""
    cfg = _load(args.config)
    env = getattr(args, "env", None)
    if env is not None and env not in cfg.environments:
        have = ", ".join(cfg.environments)
        raise UnknownName(
            f"no environment {env!r} in {args.config} (have: {have})", argument="env", value=env
        )
    if getattr(args, "service", None) is not None:
        cfg.service(args.service)  # UnknownName, naming the argument and the services there are
    return cfg


@contextmanager
def _store(cfg: WatchdogConfig, *, create: bool) -> Iterator[Store]:
    """The store for one command; a failure to reach or write it is ``StoreUnavailable`` (exit 3)."""
    from watchdog.store import Store

    store = Store.open(cfg.store.url, create=create)
    try:
        with store.map_errors():
            yield store
    finally:
        store.close()


# --------------------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace) -> int:
    from watchdog.config import check_config

    check = check_config(args.file, strict=args.strict)
    for warning in check.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    cfg = check.config
    if args.workflow is not None:
        problems = _workflow_problems(args.workflow, cfg)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            return EXIT_BAD_INPUT
    if cfg is None:
        print(
            f"ok: {args.file}: no problems found, but the fields its unresolved references fill "
            "(and the checks across fields that need them) could not be checked"
        )
        return EXIT_OK
    n_signals = sum(len(s.signals) for s in cfg.services)
    print(
        f"ok: {args.file}: {len(cfg.services)} service(s), {n_signals} signal(s), "
        f"environments {', '.join(cfg.environments)}, source {cfg.source.kind}"
    )
    return EXIT_OK


def _workflow_problems(path: str, cfg: WatchdogConfig | None) -> list[str]:
    from actions.workflow_check import workflow_problems

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read: {exc}", argument="workflow", value=path) from exc
    if cfg is None:
        print(f"warning: {path}: not checked, the configuration could not be read whole", file=sys.stderr)
        return []
    gh = cfg.github
    return workflow_problems(text, path, gh.correlation_input, gh.dispatch_inputs())


def cmd_schema(_args: argparse.Namespace) -> int:
    from watchdog.config import json_schema

    print(json_schema())
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    from watchdog.observability import redact

    cfg = _config_for(args)
    with _store(cfg, create=False) as store:
        entries = list(
            store.decisions(env=args.env, limit=args.limit, incident_id=args.incident, kind=args.kind)
        )
    if args.json:
        print(json.dumps([redact(decision_dict(e)) for e in entries], indent=2))
    else:
        print(redact(format_log_table(entries)) if entries else "(the decision log is empty)")
    return EXIT_OK


def cmd_shadow_report(args: argparse.Namespace) -> int:
    from watchdog.observability import redact
    from watchdog.shadow import format_report, shadow_report

    cfg = _config_for(args)
    now = RealClock().now()
    with _store(cfg, create=False) as store:
        report = shadow_report(
            store, env=args.env, since=now - args.since, now=now, hotfix_window_s=args.hotfix_window
        )
    if args.json:
        print(json.dumps(redact(report.as_dict()), indent=2))
    else:
        print(redact(format_report(report)))
    return EXIT_OK


def _engine(cfg: WatchdogConfig, store: Store) -> Engine:
    """An engine for one command: what it decides is logged, and its notices are queued for the
    daemon to deliver (the same outbox, without the notifiers)."""
    from watchdog.engine import Engine
    from watchdog.notify import Outbox

    engine = Engine(cfg, store, None, RealClock())
    engine.decisions.outbox = Outbox(cfg, store, engine.clock, {}, engine.decisions)
    return engine


def _migrations(path: str | None) -> tuple[Migration, ...] | None:
    if path is None:
        return None
    try:
        return parse_manifest(Path(path).read_text(), path)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", argument="migrations", value=path) from exc
    except ValueError as exc:  # the manifest's own message names its file, line and field
        raise InputError(str(exc), argument="migrations", value=path) from exc


def cmd_announce(args: argparse.Namespace) -> int:
    if args.api is not None:
        return _announce_via_api(args)
    if args.config is None:
        raise InputError(
            "announce needs -c/--config (to write the deploy event into the store) or --api URL "
            "(to post it to the daemon's API)"
        )
    from watchdog.store import ReleaseRef  # only here: --api needs no store

    cfg = _config_for(args)
    ref = ReleaseRef(args.tag, args.sha, args.run_id, args.build_url, _migrations(args.migrations))
    with _store(cfg, create=True) as store:
        event_id = _engine(cfg, store).announce(
            args.env, args.service, ref, deployed_at=args.at, source="cli", actor=args.actor
        )
    print(
        f"announced deploy of {args.tag} to {args.env} (event {event_id}); "
        "the daemon picks it up at its next tick"
    )
    return EXIT_OK


# ``announce --api``: a CI runner holds a deployer token, not the store's credentials.

_API_SERVICE = "rollback-watchdog API"
#: The body's fields, each named by the option that fills it (``deployed_at`` is ``--at``).
_DEPLOY_FIELDS = ("env", "service", "tag", "sha", "run_id", "build_url", "deployed_at", "migrations")


def _api_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:  # refused without showing it
        raise argparse.ArgumentTypeError(
            "the URL holds credentials: put none in it, the token comes from --token-env"
        )
    url = _http_url(text)
    if parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"{text!r}: the API's base URL has no query or fragment")
    return url.rstrip("/")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds above 0")
    return value


def _api_token(variable: str) -> str:
    """The bearer token, from the environment only (argv is visible to every user of the host)."""
    from watchdog.observability import register_secrets

    token = os.environ.get(variable, "").strip()
    if not token:
        raise InputError(
            "the environment variable is not set or empty; it must hold a token with the deployer role",
            argument="token_env",
            value=variable,
        )
    if not all(33 <= ord(c) < 127 for c in token):
        raise InputError(
            "the environment variable holds characters a bearer token cannot have (not shown)",
            argument="token_env",
            value=variable,
        )
    register_secrets([token])  # whatever this command prints is scrubbed of it
    return token


def _deploy_body(args: argparse.Namespace) -> dict[str, Any]:
    """``POST /v1/deploys``'s body: the arguments given, the migration manifest parsed here."""
    optional = {
        "sha": args.sha,
        "run_id": args.run_id,
        "build_url": args.build_url,
        "deployed_at": args.at,
        "migrations": manifest_to_json(_migrations(args.migrations)),
    }
    body = {"env": args.env, "service": args.service, "tag": args.tag}
    return body | {k: v for k, v in optional.items() if v is not None}


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        doc = answer.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _refused(args: argparse.Namespace, answer: httpx.Response) -> InputError:
    """A refusal (4xx) as the argument at fault: a body field is its option, a refused token the
    variable it came from, an answer not in the API's own shape the URL."""
    doc = _json(answer)
    error, field = doc.get("error"), doc.get("field")
    if not isinstance(error, str):
        return InputError(
            f"HTTP {answer.status_code} {answer.reason_phrase}: is it the daemon's API?",
            argument="api",
            value=args.api,
        )
    field = field if isinstance(field, str) else None
    where = f"HTTP {answer.status_code}" + (f", field {field}" if field else "")
    problem = f"the API refused the deploy ({where}): {' '.join(error.split())[:500]}"
    name = field.split(".")[1] if field and field.startswith("body.") else None
    if name in _DEPLOY_FIELDS:
        value = args.at if name == "deployed_at" else getattr(args, name)
        return InputError(problem, argument=name, value=value)
    if answer.status_code in (401, 403):
        return InputError(problem, argument="token_env", value=args.token_env)
    return InputError(problem)


def _post_deploy(args: argparse.Namespace, token: str, body: dict[str, Any]) -> int:
    """The deploy event's id. Every way the API can fail is mapped here: a refusal is bad input
    (exit 2); no answer, a 5xx or a 429 is an unavailable API (exit 3)."""
    import httpx

    url = f"{args.api}/v1/deploys"
    try:
        answer = httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=args.timeout_s
        )
    except httpx.TimeoutException:
        raise action_error(
            f"the API at {url} did not answer within {args.timeout_s:g}s", service=_API_SERVICE
        ) from None
    except httpx.RequestError as exc:
        raise action_error(f"cannot reach the API at {url}: {exc}", service=_API_SERVICE) from None
    status = answer.status_code
    if answer.is_success:
        event = _json(answer).get("deploy_event")
        if isinstance(event, int) and not isinstance(event, bool):
            return event
        raise action_error(
            f"{url} answered HTTP {status} without a deploy event: is --api the daemon's API?",
            service=_API_SERVICE,
            status=status,
        )
    if retryable_status(status):
        error = _json(answer).get("error")
        why = " ".join(error.split())[:500] if isinstance(error, str) else answer.reason_phrase
        raise action_error(
            f"the API at {url} could not take the deploy (HTTP {status}): {why}",
            service=_API_SERVICE,
            status=status,
        )
    raise _refused(args, answer)


def _announce_via_api(args: argparse.Namespace) -> int:
    if args.config is not None:
        print(
            f"warning: -c {args.config} is not read with --api: the daemon checks the deploy "
            "against its own configuration",
            file=sys.stderr,
        )
    token = _api_token(args.token_env)
    event_id = _post_deploy(args, token, _deploy_body(args))
    print(
        f"announced deploy of {args.tag} to {args.env} (event {event_id}); "
        "the daemon's leader picks it up at its next tick"
    )
    return EXIT_OK


def cmd_pin(args: argparse.Namespace) -> int:
    from watchdog.store import ReleaseRef

    cfg = _config_for(args)
    ref = ReleaseRef(args.tag, args.sha, args.run_id, args.build_url)
    with _store(cfg, create=True) as store:
        rel = _engine(cfg, store).pin(args.env, args.service, ref, actor=args.actor, reason=args.reason)
    print(f"pinned {rel.tag} as the stable release of {args.service} in {args.env}")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    cfg = _config_for(args)
    if args.service is None:
        if len(cfg.services) != 1:
            raise InputError("--service is required when the configuration has several services")
        args.service = cfg.services[0].name
    with _store(cfg, create=True) as store:
        if args.trigger != "manual" and not args.reference:
            raise InputError(f"a {args.trigger} rollback needs --reference", argument="reference")
        incident_id = _engine(cfg, store).request_rollback(
            args.env,
            args.service,
            reason=args.reason,
            actor=args.actor,
            to_tag=args.to,
            trigger=args.trigger,
            reference=args.reference,
        )
    print(f"rollback requested (incident {incident_id}); the daemon runs the pipeline at its next tick")
    return EXIT_OK


def _overrides(cfg: WatchdogConfig, store: Store) -> Overrides:
    """The levers on the store, with the pager when one is configured (acknowledge needs it)."""
    import httpx

    from actions.pagerduty import PagerDuty
    from watchdog.overrides import Overrides

    pd = cfg.incidents.pagerduty
    engine = _engine(cfg, store)
    if pd is not None:
        http = httpx.Client(timeout=pd.timeout_s)
        engine.pager = PagerDuty(
            pd.events_url, pd.routing_key.get_secret_value(), http, timeout_s=pd.timeout_s
        )
    return Overrides(engine)


def _only_service(cfg: WatchdogConfig, args: argparse.Namespace) -> str:
    if args.service is None:
        if len(cfg.services) != 1:
            raise InputError("--service is required when the configuration has several services")
        return cfg.services[0].name
    return str(args.service)


def cmd_override(args: argparse.Namespace) -> int:
    """veto, approve, acknowledge, pause, resume, promote, extend: ``watchdog.overrides``, logged
    with ``--actor`` and ``--reason``."""
    cfg = _config_for(args)
    lever = args.lever
    with _store(cfg, create=False) as store:
        levers = _overrides(cfg, store)
        if lever in ("veto", "approve", "acknowledge"):
            incident = getattr(levers, lever)(args.incident, actor=args.actor, reason=args.reason)
            done = {"veto": "vetoed", "approve": "approved", "acknowledge": "acknowledged"}[lever]
            print(f"incident {incident.id} {done} by {args.actor}")
        elif lever == "pause":
            pause = levers.pause(
                args.env, args.service, for_s=args.for_s, actor=args.actor, reason=args.reason
            )
            scope = args.env if args.service is None else f"{args.service} in {args.env}"
            print(f"automation for {scope} paused until {pause.until:.0f} (pause {pause.id})")
        elif lever == "resume":
            ended = levers.resume(args.env, args.service, actor=args.actor, reason=args.reason)
            print(f"resumed: pause {', '.join(str(p.id) for p in ended)} ended")
        elif lever == "promote":
            watch = levers.promote(args.env, _only_service(cfg, args), actor=args.actor, reason=args.reason)
            print(f"watch {watch.id} ended: its release is pinned as stable")
        else:
            watch = levers.extend(
                args.env, _only_service(cfg, args), by_s=args.by_s, actor=args.actor, reason=args.reason
            )
            print(f"watch {watch.id} now ends at {watch.ends_at:.0f}")
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    cfg = _config_for(args)
    with _store(cfg, create=False) as store:
        if args.quarantine_cmd == "lift":
            service = _only_service(cfg, args)
            row = _overrides(cfg, store).lift_quarantine(
                args.env, service, args.tag, actor=args.actor, reason=args.reason
            )
            print(f"quarantine of {row.tag} in {row.env} lifted by {args.actor}")
            return EXIT_OK
        for row in store.quarantines(args.env):
            state = f"lifted by {row.lifted_by}: {row.lift_reason}" if row.lifted_at else "in force"
            print(f"{row.env}\t{row.service}\t{row.tag}\tincident {row.incident_id}\t{state}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from watchdog.app import run_daemon
    from watchdog.observability import configure_logging

    cfg = _load(args.config)
    configure_logging(args.log_format, args.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():  # the second: leave now; the store has every step that finished
            print(f"rollback-watchdog: {signal.Signals(signum).name} again, exiting at once", file=sys.stderr)
            os._exit(128 + signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    run_daemon(cfg, RealClock(), stop)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from watchdog.bench import run_bench
    from watchdog.observability import configure_logging

    configure_logging("console", "warning")  # thousands of decisions: only problems
    options: dict[str, Any] = {}
    if args.detector == "argo":
        options["failure_limit"] = args.failure_limit
    if args.detector == "naive" and args.alpha is not None:
        options["alpha"] = args.alpha
    doc = run_bench(args.scenarios, args.detector, jobs=args.jobs, options=options)
    Path(args.output).write_text(json.dumps(doc, indent=1))
    decisions: dict[str, int] = {}
    for r in doc["results"]:
        decisions[r["decision"]] = decisions.get(r["decision"], 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(decisions.items()))
    print(f"{doc['detector']}: {len(doc['results'])} scenarios ({summary}); cpu {doc['cpu_s']:.1f}s")
    print(f"results: {args.output}")
    return EXIT_OK


def cmd_scenario_export(args: argparse.Namespace) -> int:
    from watchdog.openmetrics import export_scenario

    done = export_scenario(args.scenario, start=args.start, labels=dict(args.label or ()))
    try:
        Path(args.out).write_text(done.text)
    except OSError as exc:
        raise ConfigError([f"{args.out}: cannot write: {exc.strerror}"]) from exc
    sc = done.scenario
    print(
        f"{sc.name}: {done.series} series, {done.samples} samples → {args.out} "
        f"(deploy at {done.scenario.deploy_at + done.shift_s:.0f}; "
        f"load with: promtool tsdb create-blocks-from openmetrics {args.out} DATA_DIR)"
    )
    return EXIT_OK


def cmd_backtest(args: argparse.Namespace) -> int:
    from watchdog.app import build_source
    from watchdog.backtest import format_table, github_deploys, load_deploys, report_json, run_backtest
    from watchdog.observability import configure_logging

    cfg = _config_for(args)  # an unknown --env is refused here, naming the environments there are
    if cfg.source.kind == "scrape":
        raise ConfigError(
            [f"{args.config}: source.kind: a backtest reads history; 'scrape' keeps none (use prometheus)"]
        )
    clock = RealClock()
    until = clock.now() if args.until is None else args.until
    since = until - args.since
    deploys = load_deploys(args.deploys, cfg) if args.deploys else github_deploys(cfg, args.env, since, clock)
    watch_s = cfg.env(args.env).watch_s
    chosen = [d for d in deploys if d.deployed_at >= since and d.deployed_at + watch_s <= until]
    if len(chosen) < len(deploys):
        print(
            f"{len(deploys) - len(chosen)} deploys skipped: before --since, or their watch has not ended yet",
            file=sys.stderr,
        )
    configure_logging("console", "error")  # every watch logs as the daemon's would: only problems
    results = run_backtest(cfg, args.env, build_source(cfg, clock), chosen)
    if args.json:
        print(json.dumps(report_json(args.env, since, until, results), indent=1))
    else:
        print(format_table(results))
    return EXIT_OK


def _label(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) or name == "__name__":
        raise argparse.ArgumentTypeError(f"{text!r}: a label as NAME=VALUE (NAME a Prometheus label name)")
    return name, value


def cmd_demo(args: argparse.Namespace) -> int:
    from watchdog.demo.runner import run_demo

    return run_demo(
        healthy=args.healthy,
        veto=args.veto,
        config_path=args.config,
        workdir=args.workdir,
        serve_s=args.serve or 0.0,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rollback-watchdog",
        description="Watch every deploy; roll a bad release back by running the runbook.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("validate", help="check a configuration file; every problem with file, line and field")
    s.add_argument("file")
    s.add_argument(
        "--strict",
        action="store_true",
        help="an unset ${NAME} reference is an error, as for run (default: a warning; CI has no secrets)",
    )
    s.add_argument(
        "--workflow",
        metavar="FILE",
        help="also check the deploy workflow file (e.g. .github/workflows/deploy.yml): it declares every "
        "input a rollback sends and shows the correlation id in its run-name",
    )
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("schema", help="print the configuration's JSON Schema")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("log", help="print the decision log")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--env")
    s.add_argument("--limit", type=_positive_int, help="only the newest N entries")
    s.add_argument(
        "--kind",
        action="append",
        choices=[k.value for k in DecisionKind],
        help="only entries of this kind (repeatable), e.g. notice for the deliveries to notifiers",
    )
    s.add_argument(
        "--incident", type=_positive_int, help="only one rollback incident's entries (its ticket names it)"
    )
    s.add_argument("--json", action="store_true", help="JSON instead of a table")
    s.set_defaults(func=cmd_log)

    s = sub.add_parser(
        "shadow-report",
        help="shadow mode: each 'would have rolled back' and shadow promotion against what the team did",
    )
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--env", help="one environment (default: all)")
    s.add_argument(
        "--since", type=_duration, default=30 * 86400.0, help="how far back, e.g. 7d (default 30d)"
    )
    s.add_argument(
        "--hotfix-window",
        type=_duration,
        default=86400.0,
        help="a newer deploy this soon after a release counts as its hotfix (default 24h)",
    )
    s.add_argument("--json", action="store_true", help="JSON instead of a table")
    s.set_defaults(func=cmd_shadow_report)

    def release_args(s: argparse.ArgumentParser, *, config_required: bool = True) -> None:
        s.add_argument("-c", "--config", required=config_required)
        s.add_argument("--env", required=True, choices=ENVIRONMENTS)
        s.add_argument("--service", required=True)
        s.add_argument("--tag", required=True, type=_tag)
        s.add_argument("--sha", type=_sha)
        s.add_argument("--run-id", type=_positive_int)
        s.add_argument("--build-url", type=_http_url)
        s.add_argument(
            "--actor", type=_text, default=getpass.getuser(), help="who does this (default: the current user)"
        )

    s = sub.add_parser("announce", help="tell the daemon a release was deployed (it starts a watch)")
    release_args(s, config_required=False)
    s.add_argument("--at", type=_unix_time, help="deploy time, Unix seconds (default: now)")
    s.add_argument(
        "--migrations",
        metavar="FILE",
        help='the release\'s migration manifest (JSON: {"migrations": [{"id": ..., "reversible": ...}]}); '
        "the migration gate uses it instead of reading the manifest at the tag",
    )
    s.add_argument(
        "--api",
        metavar="URL",
        type=_api_url,
        help="post the deploy to the daemon's HTTP API at URL (POST URL/v1/deploys) instead of writing "
        "it into the store: no -c/--config and no database access needed; --actor is not sent (the "
        "API logs the token's holder)",
    )
    s.add_argument(
        "--token-env",
        metavar="NAME",
        default="ROLLBACK_WATCHDOG_TOKEN",
        help="with --api: the environment variable holding a deployer token (default: %(default)s); "
        "a token is never taken from the command line",
    )
    s.add_argument(
        "--timeout-s",
        type=_seconds,
        default=10.0,
        help="with --api: seconds to wait for the API (default: %(default)s)",
    )
    s.set_defaults(func=cmd_announce)

    s = sub.add_parser("pin", help="pin a release as the stable one of an environment (logged)")
    release_args(s)
    s.add_argument("--reason", required=True, type=_text)
    s.set_defaults(func=cmd_pin)

    s = sub.add_parser(
        "rollback", help="roll back by hand (P1/P2 incident, security finding); logged with the actor"
    )
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--env", required=True, choices=ENVIRONMENTS)
    s.add_argument("--service", help="default: the configuration's only service")
    s.add_argument("--to", type=_tag, help="target release tag (default: the pinned stable release)")
    s.add_argument("--reason", required=True, type=_text)
    s.add_argument(
        "--trigger",
        choices=["manual", "incident", "security"],
        default="manual",
        help="why: by hand, an incident, a security finding (the last two need --reference)",
    )
    s.add_argument("--reference", type=_text, help="an incident link or an advisory id, logged")
    s.add_argument(
        "--actor", type=_text, default=getpass.getuser(), help="who does this (default: the current user)"
    )
    s.set_defaults(func=cmd_rollback)

    s = sub.add_parser("quarantine", help="releases quarantined after a rollback: list them, or lift one")
    qsub = s.add_subparsers(dest="quarantine_cmd", required=True)
    q = qsub.add_parser("list", help="the quarantines, newest first")
    q.add_argument("-c", "--config", required=True)
    q.add_argument("--env", choices=ENVIRONMENTS)
    q.set_defaults(func=cmd_quarantine)
    q = qsub.add_parser("lift", help="let a quarantined release be deployed and watched again; logged")
    q.add_argument("-c", "--config", required=True)
    q.add_argument("--env", required=True, choices=ENVIRONMENTS)
    q.add_argument("--service", help="default: the configuration's only service")
    q.add_argument("--tag", required=True, type=_tag)
    q.add_argument("--reason", required=True, type=_text)
    q.add_argument(
        "--actor", type=_text, default=getpass.getuser(), help="who does this (default: the current user)"
    )
    q.set_defaults(func=cmd_quarantine)

    def lever(name: str, help_text: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_text)
        s.add_argument("-c", "--config", required=True)
        s.add_argument("--reason", required=True, type=_text)
        s.add_argument(
            "--actor", type=_text, default=getpass.getuser(), help="who does this (default: the current user)"
        )
        s.set_defaults(func=cmd_override, lever=name)
        return s

    for name, help_text in (
        ("veto", "cancel an automatic rollback inside its veto window (or a proposed one); logged"),
        ("approve", "start a proposed rollback (rollback_policy: propose); logged"),
        ("acknowledge", "take an escalated rollback: its page is acknowledged; logged"),
    ):
        lever(name, help_text).add_argument("--incident", required=True, type=int)
    for name, help_text in (
        ("pause", "hold automatic rollbacks of an environment or a service for a while; logged"),
        ("resume", "end a pause before it expires; logged"),
    ):
        s = lever(name, help_text)
        s.add_argument("--env", required=True, choices=ENVIRONMENTS)
        s.add_argument("--service", help="one service (default: the whole environment)")
        if name == "pause":
            s.add_argument(
                "--for", dest="for_s", required=True, type=_duration, help="e.g. 30m, 2h (at most 7d)"
            )
    for name, help_text in (
        ("promote", "end the running watch now and pin its release as stable; logged"),
        ("extend", "watch the running release longer; logged"),
    ):
        s = lever(name, help_text)
        s.add_argument("--env", required=True, choices=ENVIRONMENTS)
        s.add_argument("--service", help="default: the configuration's only service")
        if name == "extend":
            s.add_argument("--by", dest="by_s", required=True, type=_duration, help="e.g. 10m")

    s = sub.add_parser("run", help="run the daemon")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    s.add_argument("--log-level", default="info")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("bench", help="replay scenario directories in simulated time; write results JSON")
    s.add_argument("--scenarios", required=True, help="a directory of scenario directories")
    s.add_argument("--output", required=True)
    s.add_argument(
        "--detector",
        default="watchdog",
        choices=DETECTORS,
    )
    s.add_argument("--failure-limit", type=int, default=3, help="argo only: failureLimit (0 or 3)")
    s.add_argument("--alpha", type=float, help="naive only: the z-test's level (default 0.01)")
    s.add_argument("--jobs", type=_positive_int, help="worker processes (default: one per core)")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("scenario", help="scenario directories (shared/scenario-format.md)")
    ssub = s.add_subparsers(dest="scenario_cmd", required=True)
    e = ssub.add_parser("export", help="a scenario's series as OpenMetrics, for promtool's backfill")
    e.add_argument("--scenario", required=True, metavar="DIR")
    e.add_argument("--out", required=True, metavar="FILE.om")
    e.add_argument(
        "--start",
        type=_unix_time,
        help="move the scenario's times so that it starts at this Unix time (default: as recorded)",
    )
    e.add_argument(
        "--label",
        action="append",
        type=_label,
        metavar="NAME=VALUE",
        help="add a label to every series (repeatable), e.g. service=stamps-api for a service's match",
    )
    e.set_defaults(func=cmd_scenario_export)

    s = sub.add_parser("backtest", help="what today's configuration would have decided for each past deploy")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--env", required=True)
    s.add_argument(
        "--since", type=_duration, default=_duration("30d"), help="how far back, e.g. 7d (default: 30d)"
    )
    s.add_argument(
        "--deploys",
        metavar="FILE.json",
        help='the deploys, instead of GitHub\'s deployments: [{"service", "tag", "deployed_at", '
        '"outcome": "rolled_back|kept|hotfixed"}]',
    )
    s.add_argument(
        "--until",
        type=_unix_time,
        help="the window's end, Unix seconds (default: now): backtest a past month",
    )
    s.add_argument("--json", action="store_true", help="JSON instead of a table")
    s.set_defaults(func=cmd_backtest)

    s = sub.add_parser("demo", help="the whole loop on loopback: a bad deploy, detected and rolled back")
    s.add_argument("--healthy", action="store_true", help="deploy a good release and see it promoted")
    s.add_argument("--config", help="demo configuration (default: the packaged config/demo.yaml)")
    s.add_argument("--workdir", help="where to keep the demo's store (default: a temporary directory)")
    s.add_argument(
        "--veto",
        action="store_true",
        help="deploy the bad release, then veto its rollback through the API inside the veto window",
    )
    s.add_argument(
        "--serve",
        nargs="?",
        const=600.0,
        type=_duration,
        help="keep serving the dashboard after the summary (default 10m; e.g. --serve 1h)",
    )
    s.set_defaults(func=cmd_demo)
    return p


#: Each failure's exit code, most specific first. Anything else is a bug: it keeps its traceback.
EXIT_CODES: tuple[tuple[type[WatchdogError], int], ...] = (
    (ConfigError, EXIT_BAD_INPUT),
    (InputError, EXIT_BAD_INPUT),
    (StoreUnavailable, EXIT_UNAVAILABLE),
    (WatchdogError, EXIT_UNAVAILABLE),
)
#: Engine arguments whose option is not simply ``--`` and the name.
_OPTIONS = {"deployed_at": "--at", "to_tag": "--to"}


def _shown(value: object) -> str:
    text = str(value)
    return text if text and text.isprintable() and not any(c.isspace() for c in text) else repr(value)


def _error_lines(exc: WatchdogError) -> list[str]:
    if isinstance(exc, ConfigError):
        return [*(f"warning: {w}" for w in exc.warnings), *(f"error: {p}" for p in exc.problems)]
    if isinstance(exc, InputError) and exc.argument is not None:
        option = _OPTIONS.get(exc.argument, "--" + exc.argument.replace("_", "-"))
        return [f"error: {option} {_shown(exc.value)}: {exc.problem}"]
    return [f"error: {exc}"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except WatchdogError as exc:
        from watchdog.observability import redact

        for line in _error_lines(exc):
            print(redact(line), file=sys.stderr)
        return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))
