"""The built images under a real container runtime (`make images && make test-images`).

Every test here runs `sweetspot-operator` or `sweetspot-trainer` at the chart's appVersion under podman with runc;
a machine without them, or without the images, fails at once with what to run: nothing here is skipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from support import containers


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """The two image references, once both are known to be present."""
    if (why := containers.podman_missing()) is not None:
        pytest.fail(f"the image tests need podman with runc: {why}")
    version = containers.app_version()
    refs = {"operator": f"{containers.OPERATOR_IMAGE}:{version}", "trainer": f"{containers.TRAINER_IMAGE}:{version}"}
    absent = [ref for ref in refs.values() if not containers.image_exists(ref)]
    if absent:
        pytest.fail(f"images not built: {', '.join(absent)}; run `make images` first")
    return refs


@pytest.fixture
def default_client(tmp_path: Path) -> Iterator[None]:
    """Restores the kubernetes client's default configuration, which a test points at its emulator."""
    saved = kubernetes.client.Configuration.get_default_copy()
    try:
        yield
    finally:
        kubernetes.client.Configuration.set_default(saved)
