"""Fixtures shared by every test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def quickstart() -> dict[str, Any]:
    """A fresh, mutable copy of the quickstart manifest."""
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    return data
