"""``rollback-watchdog``: the command line.

Exit codes: 0 success, 1 the job ran but its outcome is bad (e.g. the demo did not end as
expected), 2 bad input (configuration, arguments), 3 an outside system was unavailable.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from watchdog import __version__
from watchdog.clock import RealClock
from watchdog.config import WatchdogConfig, json_schema, load_config, secret_values
from watchdog.engine import Engine
from watchdog.errors import ConfigError, WatchdogError
from watchdog.manifest import parse_manifest
from watchdog.observability import configure_logging, redact, register_secrets
from watchdog.store import DecisionEntry, ReleaseRef, Store

EXIT_OK, EXIT_BAD_OUTCOME, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3


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


def _load(path: str) -> WatchdogConfig:
    cfg = load_config(path)
    register_secrets(secret_values(cfg))  # whatever this command prints is scrubbed of them
    return cfg


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load(args.file)
    n_signals = sum(len(s.signals) for s in cfg.services)
    print(
        f"ok: {args.file}: {len(cfg.services)} service(s), {n_signals} signal(s), "
        f"environments {', '.join(cfg.environments)}, source {cfg.source.kind}"
    )
    return EXIT_OK


def cmd_schema(_args: argparse.Namespace) -> int:
    print(json_schema())
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    store = Store.open(cfg.store.url)
    try:
        entries = store.decisions(env=args.env, limit=args.limit, incident_id=args.incident)
    finally:
        store.close()
    if args.json:
        print(json.dumps([redact(decision_dict(e)) for e in entries], indent=2))
    else:
        print(redact(format_log_table(entries)) if entries else "(the decision log is empty)")
    return EXIT_OK


def _engine_for_cli(cfg: WatchdogConfig) -> tuple[Engine, Store]:
    store = Store.open(cfg.store.url)
    return Engine(cfg, store, None, RealClock()), store


def cmd_announce(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    migrations = None
    if args.migrations is not None:
        try:
            migrations = parse_manifest(Path(args.migrations).read_text(), args.migrations)
        except OSError as exc:
            print(f"error: --migrations {args.migrations}: cannot read: {exc.strerror}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except ValueError as exc:
            print(f"error: --migrations {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    engine, store = _engine_for_cli(cfg)
    try:
        ref = ReleaseRef(args.tag, args.sha, args.run_id, args.build_url, migrations)
        event_id = engine.announce(
            args.env, args.service, ref, deployed_at=args.at, source="cli", actor=args.actor
        )
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        store.close()
    print(
        f"announced deploy of {args.tag} to {args.env} (event {event_id}); "
        "the daemon picks it up at its next tick"
    )
    return EXIT_OK


def cmd_pin(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    engine, store = _engine_for_cli(cfg)
    try:
        rel = engine.pin(
            args.env,
            args.service,
            ReleaseRef(args.tag, args.sha, args.run_id, args.build_url),
            actor=args.actor,
            reason=args.reason,
        )
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        store.close()
    print(f"pinned {rel.tag} as the stable release of {args.service} in {args.env}")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if args.service is None:
        if len(cfg.services) != 1:
            print("error: --service is required when the configuration has several services", file=sys.stderr)
            return EXIT_BAD_INPUT
        args.service = cfg.services[0].name
    engine, store = _engine_for_cli(cfg)
    try:
        incident_id = engine.request_rollback(
            args.env, args.service, reason=args.reason, actor=args.actor, to_tag=args.to
        )
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        store.close()
    print(f"rollback requested (incident {incident_id}); the daemon runs the pipeline at its next tick")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from watchdog.app import run_daemon

    cfg = _load(args.config)
    configure_logging(args.log_format, args.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_daemon(cfg, RealClock(), stop)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from watchdog.bench import run_bench

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


def cmd_demo(args: argparse.Namespace) -> int:
    from watchdog.demo.runner import run_demo

    return run_demo(healthy=args.healthy, config_path=args.config, workdir=args.workdir)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rollback-watchdog",
        description="Watch every deploy; roll a bad release back by running the runbook.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("validate", help="check a configuration file; every problem with file, line and field")
    s.add_argument("file")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("schema", help="print the configuration's JSON Schema")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("log", help="print the decision log")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--env")
    s.add_argument("--limit", type=int)
    s.add_argument("--incident", type=int, help="only one rollback incident's entries (its ticket names it)")
    s.add_argument("--json", action="store_true", help="JSON instead of a table")
    s.set_defaults(func=cmd_log)

    def release_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("-c", "--config", required=True)
        s.add_argument("--env", required=True, choices=["dev", "stage", "prod"])
        s.add_argument("--service", required=True)
        s.add_argument("--tag", required=True)
        s.add_argument("--sha")
        s.add_argument("--run-id", type=int)
        s.add_argument("--build-url")
        s.add_argument("--actor", default=getpass.getuser(), help="who does this (default: the current user)")

    s = sub.add_parser("announce", help="tell the daemon a release was deployed (it starts a watch)")
    release_args(s)
    s.add_argument("--at", type=float, help="deploy time, Unix seconds (default: now)")
    s.add_argument(
        "--migrations",
        metavar="FILE",
        help='the release\'s migration manifest (JSON: {"migrations": [{"id": ..., "reversible": ...}]}); '
        "the migration gate uses it instead of reading the manifest at the tag",
    )
    s.set_defaults(func=cmd_announce)

    s = sub.add_parser("pin", help="pin a release as the stable one of an environment (logged)")
    release_args(s)
    s.add_argument("--reason", required=True)
    s.set_defaults(func=cmd_pin)

    s = sub.add_parser(
        "rollback", help="roll back by hand (P1/P2 incident, security finding); logged with the actor"
    )
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--env", required=True, choices=["dev", "stage", "prod"])
    s.add_argument("--service", help="default: the configuration's only service")
    s.add_argument("--to", help="target release tag (default: the pinned stable release)")
    s.add_argument("--reason", required=True)
    s.add_argument("--actor", default=getpass.getuser(), help="who does this (default: the current user)")
    s.set_defaults(func=cmd_rollback)

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
        choices=["watchdog", "argo", "kayenta", "burnrate", "naive", "oracle"],
    )
    s.add_argument("--failure-limit", type=int, default=3, help="argo only: failureLimit (0 or 3)")
    s.add_argument("--alpha", type=float, help="naive only: the z-test's level (default 0.01)")
    s.add_argument("--jobs", type=int, help="worker processes (default: one per core)")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("demo", help="the whole loop on loopback: a bad deploy, detected and rolled back")
    s.add_argument("--healthy", action="store_true", help="deploy a good release and see it promoted")
    s.add_argument("--config", help="demo configuration (default: the packaged config/demo.yaml)")
    s.add_argument("--workdir", help="where to keep the demo's store (default: a temporary directory)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WatchdogError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_UNAVAILABLE
