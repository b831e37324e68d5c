"""Fixtures shared by the so_arm_driver tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fast_gil_switch() -> Iterator[None]:
    """An in-process emulator thread competes for the GIL with the SDK's reads (ENVIRONMENT.md §9 quirk 3):
    a short switch interval keeps its replies timely."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(old)
