"""Failpoints are off unless armed, and an armed one with a typo fails loudly at start-up rather than never firing."""

from __future__ import annotations

import importlib

import pytest

from sweetspot import failpoints


@pytest.mark.parametrize("value", ["ask", "ask:0", "ask:x", "nowhere:1", ":1"])
def test_a_malformed_failpoint_is_refused_with_the_points_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(failpoints.ENV, value)
    with pytest.raises(ValueError, match="ask, tell, create-job, write-status"):
        failpoints._armed()


def test_unarmed_points_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(failpoints.ENV, raising=False)
    assert importlib.reload(failpoints).ARMED is None
    for point in failpoints.POINTS:
        failpoints.failpoint(point)  # still alive


def test_an_armed_point_names_its_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(failpoints.ENV, "tell:3")
    assert failpoints._armed() == ("tell", 3)
