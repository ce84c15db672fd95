"""Fixtures shared by every test file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakegithub import FakeGitHub, fake_github_server


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """The one fake GitHub (api.github.com), started; no other host is reachable."""
    with fake_github_server() as fake:
        yield fake
