"""The trainer's torch threads: every core it may use, or the share its runner gives it."""

from __future__ import annotations

import os

import pytest

from sweetspot_trainer.train import THREADS_ENV, available_cores


def test_all_cores_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert available_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("share", "expected"), [("1", 1), ("9999", None), ("0", 1), ("lots", None)])
def test_a_share_caps_the_threads(share: str, expected: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, share)
    assert available_cores() == (expected or len(os.sched_getaffinity(0)))
