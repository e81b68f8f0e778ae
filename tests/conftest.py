"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole test session (see tests/support/postgres.py)."""
    from support.postgres import postgres_url

    with postgres_url() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One test body, run against SQLite and PostgreSQL, like Optuna's own storage tests."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    from support.postgres import fresh_database

    server: str = request.getfixturevalue("postgres_server_url")
    return fresh_database(server, f"t_{abs(hash(request.node.nodeid)) % 10**10}")


@pytest.fixture
def figures() -> Iterator[list[Any]]:
    """Figures a test made, closed after it (matplotlib keeps every open figure alive)."""
    import matplotlib.pyplot as plt  # only for the tests that plot

    made: list[Any] = []
    yield made
    for figure in made:
        plt.close(figure)
