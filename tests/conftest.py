"""Suite-wide fixtures: real local services, no mocks inside our own code."""

from tests.fixtures.github import (
    gh,
    github_emulator,
    github_spec_validator,
    make_github_emulator,
    spec_recorder,
)
from tests.fixtures.pagerduty import (
    make_pagerduty_emulator,
    pagerduty_emulator,
    pagerduty_spec_recorder,
    pagerduty_spec_validator,
)
from tests.fixtures.unleash import unleash_emulator

__all__ = [
    "gh",
    "github_emulator",
    "github_spec_validator",
    "make_github_emulator",
    "make_pagerduty_emulator",
    "pagerduty_emulator",
    "pagerduty_spec_recorder",
    "pagerduty_spec_validator",
    "spec_recorder",
    "unleash_emulator",
]
