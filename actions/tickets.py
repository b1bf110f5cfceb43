"""The incident/change ticket: a GitHub issue per rollback, found again by its correlation id.

The runbook wants an incident ticket open before the rollback and updated as it goes. Every call
here is idempotent, so a step that is run again after a crash never opens a second ticket or posts a
comment twice: the ticket's title carries the incident's correlation id, and every comment carries a
hidden marker (an HTML comment) naming what it is for.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from github import Github
from github.Issue import Issue
from github.Repository import Repository

from actions.github import github_error
from watchdog.clock import Clock
from watchdog.observability import redact


@dataclass(frozen=True)
class Ticket:
    number: int
    url: str
    state: str


def _marker(correlation_id: str, key: str) -> str:
    return f"<!-- rollback-watchdog {correlation_id} {key} -->"


class IncidentTickets:
    """Open, comment on and close the rollback tickets of one repository."""

    #: How many of the newest labelled issues to search for a correlation id.
    search_depth = 200

    def __init__(self, github: Github, repo: str, labels: list[str], clock: Clock) -> None:
        self._gh = github
        self.repo_name = repo
        self.labels = labels
        self.clock = clock
        self._repo: Repository | None = None

    @property
    def github(self) -> Github:
        return self._gh

    def _r(self) -> Repository:
        if self._repo is None:
            try:
                self._repo = self._gh.get_repo(self.repo_name)
            except Exception as exc:
                raise github_error(exc, f"get repository {self.repo_name}", self.clock.now()) from exc
        return self._repo

    def _find_issue(self, correlation_id: str) -> Issue | None:
        issues = self._r().get_issues(state="all", labels=self.labels[:1], sort="created", direction="desc")
        for issue in itertools.islice(issues, self.search_depth):
            if correlation_id in issue.title:
                return issue
        return None

    def find(self, correlation_id: str) -> Ticket | None:
        """The ticket whose title carries the correlation id, open or closed."""
        try:
            issue = self._find_issue(correlation_id)
        except Exception as exc:
            raise github_error(exc, "search the incident tickets", self.clock.now()) from exc
        return None if issue is None else Ticket(issue.number, issue.html_url, issue.state)

    def open(self, correlation_id: str, title: str, body: str) -> Ticket:
        """The incident's ticket: the existing one, or a new one (the title gets the correlation id)."""
        found = self.find(correlation_id)
        if found is not None:
            return found
        try:
            issue = self._r().create_issue(
                title=redact(f"{title} [{correlation_id}]"), body=redact(body), labels=self.labels
            )
        except Exception as exc:
            raise github_error(exc, "open the incident ticket", self.clock.now()) from exc
        return Ticket(issue.number, issue.html_url, issue.state)

    def comment(self, number: int, correlation_id: str, key: str, body: str) -> bool:
        """Post ``body`` once per ``key``; returns False when that comment was already there."""
        marker = _marker(correlation_id, key)
        try:
            issue = self._r().get_issue(number)
            if any(marker in (c.body or "") for c in issue.get_comments()):
                return False
            issue.create_comment(f"{redact(body)}\n\n{marker}")
        except Exception as exc:
            raise github_error(exc, f"comment on ticket #{number}", self.clock.now()) from exc
        return True

    def close(self, number: int) -> None:
        try:
            issue = self._r().get_issue(number)
            if issue.state != "closed":
                issue.edit(state="closed", state_reason="completed")
        except Exception as exc:
            raise github_error(exc, f"close ticket #{number}", self.clock.now()) from exc
