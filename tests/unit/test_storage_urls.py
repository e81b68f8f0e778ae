"""Storage URLs as users and providers write them."""

from __future__ import annotations

import pytest

from sweetspot.storage.connect import driver_url, safe_url


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://app:pw@db:5432/app", "postgresql+psycopg://app:pw@db:5432/app"),  # CloudNativePG's `uri`
        ("postgres://app:pw@db/app", "postgresql+psycopg://app:pw@db/app"),
        ("postgresql+psycopg://app@db/app", "postgresql+psycopg://app@db/app"),
        ("sqlite:///studies.db", "sqlite:///studies.db"),
    ],
)
def test_postgresql_urls_use_the_installed_driver(given: str, used: str) -> None:
    assert driver_url(given) == used


def test_a_password_never_shows_in_a_safe_url() -> None:
    assert "s3cret" not in safe_url("postgresql+psycopg://app:s3cret@db/app")
