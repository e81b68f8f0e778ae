"""Failpoints are off unless armed, and an armed one with a typo fails loudly at start-up rather than never firing."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sweetspot import failpoints


@pytest.mark.parametrize("value", ["ask", "ask:0", "ask:x", "nowhere:1", ":1", "ask:1:hold=", "ask:1:wait=/x"])
def test_a_malformed_failpoint_is_refused_with_the_points_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(failpoints.ENV, value)
    with pytest.raises(ValueError, match="ask, tell, create-job, write-status"):
        failpoints._armed()


@pytest.fixture
def reload_failpoints() -> Iterator[Callable[[], ModuleType]]:
    """Re-import the module, as a fresh process reads the environment; the module as it was afterwards, so later
    tests see the state (armed point, pass counts, lock) they would have seen without this one."""
    saved = dict(vars(failpoints))
    yield lambda: importlib.reload(failpoints)
    vars(failpoints).clear()
    vars(failpoints).update(saved)


def test_unarmed_points_do_nothing(
    monkeypatch: pytest.MonkeyPatch, reload_failpoints: Callable[[], ModuleType]
) -> None:
    monkeypatch.delenv(failpoints.ENV, raising=False)
    assert reload_failpoints().ARMED is None
    for point in failpoints.POINTS:
        failpoints.failpoint(point)  # still alive


def test_an_armed_point_names_its_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(failpoints.ENV, "tell:3")
    assert failpoints._armed() == ("tell", 3, None)
    monkeypatch.setenv(failpoints.ENV, "create-job:1:hold=/tmp/release")
    assert failpoints._armed() == ("create-job", 1, Path("/tmp/release"))


def test_a_held_point_waits_for_its_release_file_then_goes_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    release = tmp_path / "release"
    monkeypatch.setattr(failpoints, "ARMED", ("create-job", 2, release))
    monkeypatch.setattr(failpoints, "_passes", {})
    failpoints.failpoint("create-job")  # the first pass goes through
    held = threading.Thread(target=failpoints.failpoint, args=("create-job",))
    held.start()
    held.join(0.3)
    assert held.is_alive(), "the second pass did not hold"
    release.touch()
    held.join(10)
    assert not held.is_alive()
    failpoints.failpoint("create-job")  # later passes go through
