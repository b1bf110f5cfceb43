"""The ``deploy`` workflow on GitHub Actions, through PyGithub.

A rollback is a ``workflow_dispatch`` of the deploy workflow at the stable tag. The dispatch
carries a correlation id as an input, which the workflow shows in its run name, so the run can be
found again when the dispatch's answer is lost, and never dispatched twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException
from github.Workflow import Workflow
from github.WorkflowRun import WorkflowRun

from actions.github_app import InstallationTokenAuth
from actions.workflow_check import workflow_problems
from watchdog.clock import Clock
from watchdog.config import GitHubConfig
from watchdog.errors import ActionFailed, ActionRetryable, retryable_status

GITHUB = "GitHub"


@dataclass(frozen=True)
class RunInfo:
    id: int
    status: str
    conclusion: str | None
    html_url: str
    head_sha: str | None = None
    display_title: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def github_error(exc: Exception, what: str, now: float) -> ActionFailed:
    """The one place GitHub's failures become the watchdog's errors: retryable by the shared rule
    (5xx, 429, no answer) or by GitHub's own rate-limit signal (403 with ``retry-after`` or an
    exhausted ``x-ratelimit-remaining``, whose ``x-ratelimit-reset`` gives the wait), else final,
    with GitHub's message."""
    if isinstance(exc, GithubException):
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        status = exc.status
        retry_after: float | None = None
        with suppress(ValueError):
            if "retry-after" in headers:
                retry_after = max(0.0, float(headers["retry-after"]))
            elif headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
                retry_after = max(0.0, float(headers["x-ratelimit-reset"]) - now)
        if status == 403 and retry_after is not None:  # GitHub's rate limits answer 403 as well
            return ActionRetryable(
                f"{what}: GitHub answered {status} (rate limited)", retry_after, service=GITHUB, status=status
            )
        if retryable_status(status):
            return ActionRetryable(
                f"{what}: GitHub answered {status}", retry_after, service=GITHUB, status=status
            )
        message = exc.data.get("message") if isinstance(exc.data, dict) else None
        return ActionFailed(
            f"{what}: GitHub answered {status}: {message or 'error'}", service=GITHUB, status=status
        )
    if isinstance(exc, requests.RequestException):
        return ActionRetryable(f"{what}: {type(exc).__name__}", service=GITHUB)
    return ActionFailed(f"{what}: {type(exc).__name__}: {exc}", service=GITHUB)


def github_auth(cfg: GitHubConfig, clock: Clock) -> Auth.Auth:
    """The one place the configured identity becomes PyGithub's ``Auth``: the personal access
    token, or the GitHub App installation (``InstallationTokenAuth``, on ``clock``). Build it once
    and share it: every client built with it uses, and refreshes, the same installation token."""
    if cfg.app is not None:
        app = cfg.app
        return InstallationTokenAuth(
            app.app_id,
            app.private_key.get_secret_value(),
            clock,
            repo=cfg.repo,
            installation_id=app.installation_id,
            refresh_before_s=app.refresh_before_s,
        )
    if cfg.token is None:  # GitHubConfig validates exactly one of them; model_construct does not
        raise ValueError("github: neither token nor app is configured")
    return Auth.Token(cfg.token.get_secret_value())


def _info(run: WorkflowRun) -> RunInfo:
    return RunInfo(
        id=run.id,
        status=run.status,
        conclusion=run.conclusion,
        html_url=run.html_url,
        head_sha=run.head_sha,
        display_title=getattr(run, "display_title", None),
    )


def _not_found(exc: Exception) -> bool:
    return isinstance(exc, GithubException) and exc.status == 404


def _reviewer_name(entry: dict[str, Any], owner: str) -> str:
    who = entry.get("reviewer") or {}
    if entry.get("type") == "Team":
        return f"{owner}/{who.get('slug') or who.get('name')}"
    return str(who.get("login"))


class DeployWorkflow:
    """Dispatch and follow runs of one workflow in one repository.

    ``token`` is a personal access token or any PyGithub ``Auth`` (``github_auth``'s)."""

    #: How many of the newest dispatched runs to search for a correlation id.
    search_depth = 100

    def __init__(
        self,
        api_url: str,
        repo: str,
        workflow: str,
        token: str | Auth.Auth,
        clock: Clock,
        *,
        timeout_s: float = 15.0,
        request_interval_s: float = 0.25,
        write_interval_s: float = 1.0,
        github: Github | None = None,
    ) -> None:
        self.clock = clock
        self.repo_name = repo
        self.workflow_id = workflow
        self._gh = github or Github(
            base_url=api_url.rstrip("/"),
            auth=Auth.Token(token) if isinstance(token, str) else token,
            timeout=int(max(1, timeout_s)),
            retry=None,
            seconds_between_requests=request_interval_s or None,
            seconds_between_writes=write_interval_s or None,
        )
        self._workflow: Workflow | None = None

    @property
    def github(self) -> Github:
        """The PyGithub client, shared with the incident tickets (one connection pool, one token)."""
        return self._gh

    def _wf(self) -> Workflow:
        if self._workflow is None:
            try:
                self._workflow = self._gh.get_repo(self.repo_name).get_workflow(self.workflow_id)
            except Exception as exc:
                raise github_error(exc, f"get workflow {self.workflow_id}", self.clock.now()) from exc
        return self._workflow

    def dispatch(self, ref: str, inputs: dict[str, str], *, details: bool = True) -> RunInfo | None:
        """Dispatch; returns the run when GitHub says which one (``return_run_details``), else None."""
        wf = self._wf()
        try:
            result: bool | WorkflowRun = (
                wf.create_dispatch(ref, inputs, throw=True, return_run_details=True)
                if details
                else wf.create_dispatch(ref, inputs, throw=True)
            )
        except Exception as exc:
            raise github_error(exc, f"dispatch {self.workflow_id} at {ref}", self.clock.now()) from exc
        if isinstance(result, WorkflowRun):
            return RunInfo(id=result.id, status="queued", conclusion=None, html_url=result.html_url)
        return None

    def find_run(self, correlation_id: str) -> RunInfo | None:
        """The newest dispatched run whose title carries the correlation id (the workflow's run-name)."""
        wf = self._wf()
        try:
            for run in itertools.islice(wf.get_runs(event="workflow_dispatch"), self.search_depth):
                if correlation_id in (getattr(run, "display_title", None) or run.name or ""):
                    return _info(run)
        except Exception as exc:
            raise github_error(exc, f"list runs of {self.workflow_id}", self.clock.now()) from exc
        return None

    def last_successful_deployment(self, environment: str) -> dict[str, Any] | None:
        """The newest deployment to ``environment`` whose latest status is ``success``.

        Returns its ref (the tag), SHA and the URL of its log, to seed the stable pin on first start.
        """
        try:
            repo = self._gh.get_repo(self.repo_name)
            for deployment in itertools.islice(
                repo.get_deployments(environment=environment), self.search_depth
            ):
                statuses = deployment.get_statuses()
                latest = next(iter(statuses), None)
                if latest is not None and latest.state == "success":
                    return {
                        "tag": deployment.ref,
                        "sha": deployment.sha,
                        "build_url": latest.log_url or latest.target_url or None,
                    }
        except Exception as exc:
            raise github_error(exc, f"list deployments to {environment}", self.clock.now()) from exc
        return None

    def workflow_problems(self, correlation_input: str, inputs: Iterable[str]) -> list[str]:
        """What the workflow file on the default branch lacks for dispatches to be found again
        (see ``actions.workflow_check``); read through the contents API."""
        wf = self._wf()
        try:
            branch = self._gh.get_repo(self.repo_name).default_branch
        except Exception as exc:
            raise github_error(exc, f"get repository {self.repo_name}", self.clock.now()) from exc
        text = self.read_file(wf.path, branch)
        where = f"{self.repo_name}/{wf.path}@{branch}"
        if text is None:
            return [f"{where}: the workflow file does not exist"]
        return workflow_problems(text, where, correlation_input, inputs)

    def read_file(self, path: str, ref: str) -> str | None:
        """A file's text at a ref through the contents API; None when it does not exist there."""
        try:
            content = self._gh.get_repo(self.repo_name).get_contents(path, ref=ref)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise github_error(exc, f"read {path} at {ref}", self.clock.now()) from exc
        if isinstance(content, list):
            raise ActionFailed(f"{path} at {ref} is a directory, not a file", service=GITHUB)
        return content.decoded_content.decode()

    def pending_deployments(self, run_id: int) -> list[dict[str, Any]]:
        """Environments the run waits on for approval (PyGithub has no call for it: its requester)."""
        url = f"/repos/{self.repo_name}/actions/runs/{run_id}/pending_deployments"
        try:
            _, data = self._gh.requester.requestJsonAndCheck("GET", url)
        except Exception as exc:
            raise github_error(exc, f"list pending deployments of run {run_id}", self.clock.now()) from exc
        return list(data or [])

    def required_reviewers(self, environment: str) -> list[str] | None:
        """Who must approve deployments to ``environment`` (users as ``login``, teams as
        ``org/slug``), or None when GitHub requires no reviewers there (or has no such environment)."""
        url = f"/repos/{self.repo_name}/environments/{quote(environment, safe='')}"
        try:
            _, data = self._gh.requester.requestJsonAndCheck("GET", url)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise github_error(exc, f"get environment {environment}", self.clock.now()) from exc
        owner = self.repo_name.split("/")[0]
        for rule in (data or {}).get("protection_rules") or []:
            if rule.get("type") == "required_reviewers":
                return [_reviewer_name(r, owner) for r in rule.get("reviewers") or []]
        return None

    def approve(self, run_id: int, environment_ids: list[int], comment: str) -> None:
        """Approve the run's pending deployments to these environments with the watchdog's own token."""
        url = f"/repos/{self.repo_name}/actions/runs/{run_id}/pending_deployments"
        body = {"environment_ids": environment_ids, "state": "approved", "comment": comment}
        try:
            self._gh.requester.requestJsonAndCheck("POST", url, input=body)
        except Exception as exc:
            raise github_error(exc, f"approve run {run_id}", self.clock.now()) from exc

    def run(self, run_id: int) -> RunInfo:
        try:
            return _info(self._gh.get_repo(self.repo_name).get_workflow_run(run_id))
        except Exception as exc:
            raise github_error(exc, f"get run {run_id}", self.clock.now()) from exc

    def cancel(self, run_id: int) -> None:
        """Cancel a run (one that waits for approvals nobody gave must not deploy later, unwatched)."""
        url = f"/repos/{self.repo_name}/actions/runs/{run_id}/cancel"
        try:
            self._gh.requester.requestJsonAndCheck("POST", url)
        except Exception as exc:
            raise github_error(exc, f"cancel run {run_id}", self.clock.now()) from exc
