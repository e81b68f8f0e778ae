"""Local mode shares the machine's cores between the stages it runs at once (oversubscribed torch threads made
two parallel stages 5x slower each here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sweetspot.local.runner import CPU_THREADS_ENV, LocalRuntime

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("parallelism", [1, 2, 4, 64])
def test_each_stage_gets_an_equal_share_of_the_cores(
    parallelism: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CPU_THREADS_ENV, raising=False)
    runtime = LocalRuntime(root=tmp_path, manifest_dir=tmp_path, parallelism=parallelism)
    assert runtime.threads_per_stage() == max(1, CORES // parallelism)


def test_the_users_thread_count_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_THREADS_ENV, "3")
    assert LocalRuntime(root=tmp_path, manifest_dir=tmp_path, parallelism=2).threads_per_stage() == 3
