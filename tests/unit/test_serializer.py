"""One reconcile per study at a time; requests during one fold into a single extra pass."""

from __future__ import annotations

import threading

import pytest

from sweetspot.cluster.memory import Serializer


def test_requests_during_a_reconcile_fold_into_one_more_pass() -> None:
    serializer = Serializer()
    inside, release = threading.Event(), threading.Event()
    passes: list[str] = []

    def slow() -> None:
        passes.append("a")
        if len(passes) == 1:
            inside.set()
            assert release.wait(10)

    runner = threading.Thread(target=serializer.run, args=("ns/a", slow))
    runner.start()
    assert inside.wait(10)
    # Three Job events while the first pass runs: none runs in parallel, one pass follows.
    assert [serializer.run("ns/a", slow) for _ in range(3)] == [False, False, False]
    # Another study is not held up.
    assert serializer.run("ns/b", lambda: passes.append("b")) is True
    release.set()
    runner.join(10)
    assert passes == ["a", "b", "a"]
    # Idle again: the next request runs at once, once.
    assert serializer.run("ns/a", slow) is True
    assert passes == ["a", "b", "a", "a"]


def test_a_failing_reconcile_releases_the_study() -> None:
    serializer = Serializer()

    def broken() -> None:
        raise RuntimeError("storage down")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            serializer.run("ns/a", broken)
    assert serializer.run("ns/a", lambda: None) is True


def test_idle_for_tells_the_timer_whether_a_reconcile_just_ran() -> None:
    serializer = Serializer()
    assert serializer.idle_for("ns/a") == float("inf")  # never reconciled: the timer must run it
    seen: list[float] = []
    serializer.run("ns/a", lambda: seen.append(serializer.idle_for("ns/a")))
    assert seen == [0.0]  # while one runs
    assert 0.0 <= serializer.idle_for("ns/a") < 5.0
    serializer.forget("ns/a")
    assert serializer.idle_for("ns/a") == float("inf")


def test_wait_idle_returns_once_the_running_pass_of_that_study_ends() -> None:
    """A deleted study's clean-up waits for a pass that began before the deletion (it could start a stage after the
    sweep); other studies' passes do not hold it up."""
    serializer = Serializer()
    entered, release = threading.Event(), threading.Event()
    worker = threading.Thread(target=serializer.run, args=("ns/a", lambda: (entered.set(), release.wait(10))))
    worker.start()
    assert entered.wait(10)
    assert serializer.wait_idle("ns/b", timeout=0.01)
    assert not serializer.wait_idle("ns/a", timeout=0.05)
    release.set()
    assert serializer.wait_idle("ns/a", timeout=10)
    worker.join(10)
    assert not worker.is_alive()
