"""Suite-wide fixtures: real local services, no mocks inside our own code."""

import logging
from collections.abc import Iterator

import pytest
import structlog

from tests.fixtures.github import (
    gh,
    github_emulator,
    github_spec_validator,
    make_github_emulator,
    spec_recorder,
)
from tests.fixtures.grafana import grafana_emulator
from tests.fixtures.opsgenie import make_opsgenie_emulator, opsgenie_emulator, opsgenie_spec_recorder  # noqa: F401
from tests.fixtures.pagerduty import (
    make_pagerduty_emulator,
    pagerduty_emulator,
    pagerduty_spec_recorder,
    pagerduty_spec_validator,
)
from tests.fixtures.slack import make_slack_emulator, slack_emulator
from tests.fixtures.statuspage import statuspage_emulator
from tests.fixtures.unleash import unleash_emulator

__all__ = [
    "gh",
    "github_emulator",
    "github_spec_validator",
    "grafana_emulator",
    "make_github_emulator",
    "make_pagerduty_emulator",
    "make_slack_emulator",
    "pagerduty_emulator",
    "pagerduty_spec_recorder",
    "pagerduty_spec_validator",
    "slack_emulator",
    "spec_recorder",
    "statuspage_emulator",
    "unleash_emulator",
]


@pytest.fixture(autouse=True)
def _logging_is_restored() -> Iterator[None]:
    """A test that points logging at its own stream must not leave the next test writing into it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


@pytest.fixture(autouse=True)
def _secrets_are_forgotten() -> Iterator[None]:
    """The secrets a test's App registers for redaction are its own: the next test's messages are
    not masked by them (a test of a client's own scrubbing would pass or fail by the order)."""
    from watchdog import observability

    registered = set(observability._SECRETS)
    yield
    observability._SECRETS.clear()
    observability._SECRETS.update(registered)


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the image's tests are selected, its build starts now and overlaps the other tests."""
    if any(
        item.nodeid.startswith("tests/test_packaging.py") and "image" in getattr(item, "fixturenames", ())
        for item in session.items
    ):
        import tempfile
        from pathlib import Path

        from tests.fixtures.wheels import begin_early_build

        begin_early_build(Path(tempfile.mkdtemp(prefix="rollback-watchdog-image-")))
