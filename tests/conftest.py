"""Suite-wide fixtures: real local services, no mocks inside our own code."""

from tests.fixtures.github import (
    gh,
    github_emulator,
    github_spec_validator,
    make_github_emulator,
    spec_recorder,
)

__all__ = ["gh", "github_emulator", "github_spec_validator", "make_github_emulator", "spec_recorder"]
