"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backends import Processes


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Processes a test starts, all stopped afterwards, even when it fails."""
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
