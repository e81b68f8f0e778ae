"""Warm start (`spec.search.warmStart`) against real storages: a first study runs to its end through the real
planner, store and plan-and-apply loop, with stages answered at once by an in-process runtime; a second study then
starts from it. Every body runs on SQLite and on a throwaway PostgreSQL."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes
import optuna
import pytest
import yaml

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.status import Reason
from sweetspot.core.loop import settle
from sweetspot.core.records import AskTrials, Decision
from sweetspot.core.stats import summarize
from sweetspot.core.study_status import build_status
from sweetspot.storage.layout import REUSED_ATTR, SOURCE_ATTR
from sweetspot.storage.store import SearchStore
from sweetspot.storage.warm_start import WarmStart, take_warm_start

from support.emulator import RunningCluster
from support.instant_node import InstantNode, InstantRuntime
from support.node import TESTS
from support.operator import NAMESPACE, Operator, apply, cluster_study, eventually, get, jobs_of, phase
from support.postgres import operator_database
from support.studies import small_study

pytestmark = pytest.mark.integration

SPACE = {
    "learningRate": {"min": 1e-4, "max": 1e-2, "log": True},
    "loraRank": {"values": [8, 16]},
    "batchSize": {"values": [8]},
    "epochs": {"values": [1]},
}


def study(
    name: str,
    seed: int = 1,
    max_trials: int = 5,
    space: Mapping[str, Any] = SPACE,
    objectives: list[dict[str, str]] | None = None,
    **search: Any,
) -> FineTuneStudy:
    return FineTuneStudy.model_validate(
        {
            "apiVersion": "sweetspot.dev/v1alpha1",
            "kind": "FineTuneStudy",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {
                "model": {"builtin": "tiny"},
                "dataset": {"train": {"builtin": "product-pages"}},
                "search": {
                    "maxTrials": max_trials,
                    "seed": seed,
                    "earlyEvaluation": {"promoteTopK": 2, "signal": "loss"},
                    "space": dict(space),
                    **search,
                },
                **({"objectives": objectives} if objectives else {}),
            },
        }
    )


def score(params: Mapping[str, Any]) -> float:
    """Best near a learning rate of 3e-3, a little better at rank 16."""
    return 0.9 - 0.1 * abs(math.log10(params["learningRate"] / 3e-3)) + (0.02 if params["loraRank"] == 16 else 0.0)


def opened(url: str, resource: FineTuneStudy) -> SearchStore:
    """The study's store, opened and warm-started as a shell does."""
    store = SearchStore.open(url, resource)
    take_warm_start(store, resource)
    return store


def run(url: str, resource: FineTuneStudy) -> tuple[SearchStore, InstantRuntime, Decision]:
    """The study from its store's first opening to its end, as a shell drives it."""
    store = opened(url, resource)
    runtime = InstantRuntime(score)
    decision = Decision((), "Pending", "")
    for _ in range(100):
        decision = settle(resource, store, runtime, lambda _: None)
        if decision.finished:
            return store, runtime, decision
    raise AssertionError(f"{resource.key} did not finish: {decision}")


def test_reused_results_feed_the_sampler_and_no_stage_runs_again(storage_url: str) -> None:
    first, _, done = run(storage_url, study("first"))
    assert done.phase == "Succeeded"
    earlier = {t.number: t for t in first.snapshot()[0]}
    assert len(earlier) == 5 and sum(t.final is not None for t in earlier.values()) == 2

    second_spec = study("second", seed=2, max_trials=3, warmStart={"studies": ["first"]})
    second, runtime, done = run(storage_url, second_spec)
    assert done.phase == "Succeeded"
    trials = {t.number: t for t in second.snapshot()[0]}
    reused = [t for t in trials.values() if t.reused]
    # Every trial of the first study arrives with its records, numbered first; maxTrials counts only new trials.
    assert sorted(t.number for t in reused) == [0, 1, 2, 3, 4]
    assert len(trials) == 5 + 3
    for trial in reused:
        source = earlier[int(trial.source.rsplit(" ", 1)[1])]
        assert trial.source == f"team/first trial {source.number}"
        assert (trial.params, trial.early, trial.final) == (source.params, source.early, source.final)
    # What the sampler reads: the copied trials are COMPLETE Optuna trials with the values the first study told.
    frozen = {t.number: t for t in second.study.get_trials(deepcopy=False)}
    told = {t.number: t.value for t in first.study.get_trials(deepcopy=False)}
    for trial in reused:
        copy = frozen[trial.number]
        assert copy.state == optuna.trial.TrialState.COMPLETE and copy.user_attrs[REUSED_ATTR] is True
        assert trial.copied == {stage for stage in ("early", "final") if getattr(trial, stage) is not None}
        assert copy.value == told[int(trial.source.rsplit(" ", 1)[1])]
        # A new trial takes each stage's scores, the final its source could keep only on its study included.
        assert copy.user_attrs["early:loss"] == trial.early.loss  # type: ignore[union-attr]
        assert copy.user_attrs.get("final:f1") == (trial.final.f1 if trial.final else None)
    # No stage ran for a reused trial: not its early stage, nor a final (promotion ranks it, with its final known).
    assert {a.key.number for a in runtime.started} <= {5, 6, 7}
    assert sum(a.key.stage == "early" for a in runtime.started) == 3
    best_two = sorted(trials.values(), key=lambda t: t.early.loss)[:2]  # type: ignore[union-attr]
    assert all(t.final is not None for t in best_two)
    # The status says what came from where, and the compute used is this study's own.
    summary = summarize(second_spec.spec, list(trials.values()), [])
    assert summary.compute_used == 10.0 * len(runtime.started)
    status = build_status(
        done, summary, {}, 1, second_spec.spec, list(trials.values()), second.name, "2026-01-01T00:00:00Z",
        warm_start=second.warm_summary(),
    )  # fmt: skip
    assert status["warmStart"] == {
        "studies": ["team/first"],
        "reused": 5,
        "enqueued": 0,
        "message": "reused 5 trials of team/first",
    }

    # Opened again (a restart): nothing is copied twice.
    again = SearchStore.open(storage_url, second_spec)
    assert take_warm_start(again, second_spec) == WarmStart() and len(again.snapshot()[0]) == 8


def test_a_multi_objective_study_reuses_every_objective_and_only_from_the_same_objectives(storage_url: str) -> None:
    objectives = [{"metric": "f1", "direction": "maximize"}, {"metric": "computeSeconds", "direction": "minimize"}]

    first, _, done = run(storage_url, study("mo-first", objectives=objectives))
    assert done.phase == "Succeeded"
    told = {t.number: t.values for t in first.study.get_trials(deepcopy=False)}
    assert all(len(values) == 2 for values in told.values())

    second, _, done = run(
        storage_url, study("mo-second", 2, 2, objectives=objectives, warmStart={"studies": ["mo-first"]})
    )
    assert done.phase == "Succeeded"
    reused = [t for t in second.snapshot()[0] if t.reused]
    assert len(reused) == 5
    frozen = {t.number: t for t in second.study.get_trials(deepcopy=False)}
    for trial in reused:
        assert frozen[trial.number].values == told[int(trial.source.rsplit(" ", 1)[1])]
    # One objective where the first had two: the values mean something else, so the best configurations are queued.
    single = opened(storage_url, study("mo-single", seed=3, warmStart={"studies": ["mo-first"]}))
    summary = single.warm_summary()
    assert summary is not None and summary["reused"] == 0 and summary["enqueued"] == 2
    assert "objectives" in summary["message"]


def test_a_crash_halfway_through_copying_copies_the_rest_once(storage_url: str) -> None:
    run(storage_url, study("first"))
    second_spec = study("second", seed=2, warmStart={"studies": ["first"]})
    script = (
        "import sys\nfrom sweetspot.api.resource import FineTuneStudy\n"
        "from sweetspot.storage.store import SearchStore\n"
        "from sweetspot.storage.warm_start import take_warm_start\n"
        "resource = FineTuneStudy.model_validate_json(sys.argv[2])\n"
        "take_warm_start(SearchStore.open(sys.argv[1], resource), resource)\n"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", script, storage_url, second_spec.model_dump_json(by_alias=True)],
        env={**os.environ, "SWEETSPOT_FAILPOINT": "warm-copy:3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    half = optuna.load_study(study_name="team/second", storage=storage_url)
    assert len(half.trials) == 3 and "sweetspot:warmStart" not in half.user_attrs

    store = SearchStore.open(storage_url, second_spec)
    # What the shells act on (the `WarmStarted` Event, `sweetspot run`'s line): the whole warm start, not its rest.
    assert take_warm_start(store, second_spec) == WarmStart(("team/first",), 5, 0, "reused 5 trials of team/first")
    trials, _ = store.snapshot()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert len({t.source for t in trials}) == 5 and all(t.early is not None for t in trials)
    assert store.warm_summary() == {
        "studies": ["team/first"],
        "reused": 5,
        "enqueued": 0,
        "message": "reused 5 trials of team/first",
    }


def test_configs_queue_the_best_configurations_to_train_afresh(storage_url: str) -> None:
    first, _, _ = run(storage_url, study("first"))
    earlier = first.snapshot()[0]
    best = sorted((t for t in earlier if t.final is not None), key=lambda t: -t.final.f1)  # type: ignore[union-attr]

    second_spec = study("second", seed=2, max_trials=3, warmStart={"studies": ["first"], "reuse": "configs"})
    store = opened(storage_url, second_spec)
    assert store.snapshot()[0] == []  # queued, not yet asked: the planner sees nothing to run
    assert store.apply(AskTrials(3)) == [0, 1, 2]
    trials, _ = store.snapshot()
    assert [dict(t.params) for t in trials[:2]] == [dict(t.params) for t in best]
    assert [t.source for t in trials] == [f"team/first trial {t.number}" for t in best] + [""]
    assert not any(t.reused for t in trials)
    assert store.warm_summary() == {
        "studies": ["team/first"],
        "reused": 0,
        "enqueued": 2,
        "message": "queued 2 configurations as the first trials",
    }
    _, runtime, done = run(storage_url, second_spec)
    assert done.phase == "Succeeded"
    assert sorted({a.key.number for a in runtime.started if a.key.stage == "early"}) == [0, 1, 2]


def test_results_of_a_study_with_another_space_fall_back_to_configs(storage_url: str) -> None:
    run(storage_url, study("first", space={**SPACE, "loraRank": {"values": [8, 16, 32]}}))
    second = opened(storage_url, study("second", seed=2, warmStart={"studies": ["first"]}))
    summary = second.warm_summary()
    assert summary is not None and (summary["reused"], summary["enqueued"]) == (0, 2)
    assert "team/first: search.space differ, so its configurations are reused" in summary["message"]
    assert second.study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0].user_attrs[SOURCE_ATTR]


def test_a_missing_study_fails_the_study_naming_the_field(storage_url: str) -> None:
    resource = study("second", warmStart={"studies": ["nowhere"]})
    store = SearchStore.open(storage_url, resource)
    warm = take_warm_start(store, resource)
    assert warm.failed and warm.message == ""
    ended = store.ended(resource)
    assert ended is not None and (ended["phase"], ended["reason"]) == ("Failed", Reason.WARM_START_FAILED)
    assert "spec.search.warmStart.studies" in ended["message"] and "'nowhere'" in ended["message"]
    assert store.snapshot()[0] == [] and store.warm_summary() is None

    # Once the study named exists and the spec changes, the warm start is retried.
    run(storage_url, study("nowhere"))
    fixed = study("second", max_trials=4, warmStart={"studies": ["nowhere"]})
    store = opened(storage_url, fixed)
    assert store.ended(fixed) is None and store.warm_summary() is not None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sweetspot_run_warm_starts_from_an_earlier_local_study(tmp_path: Path) -> None:
    """`sweetspot run` end to end (stages through `support.fake_trainer`, SQLite): the second study reuses the
    first's trials, runs stages only for its own, and `sweetspot report` says where each trial came from."""

    def sweetspot(*args: str) -> tuple[int, str]:
        env = {
            **os.environ,
            "SWEETSPOT_TRAINER_MODULE": "support.fake_trainer",
            "SWEETSPOT_FAKE_STAGE_SECONDS": "0.2",
            "PYTHONPATH": str(TESTS),
        }
        done = subprocess.run(
            [sys.executable, "-m", "sweetspot.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        return done.returncode, done.stdout + done.stderr

    def manifest(name: str, **search: Any) -> str:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(small_study(name, **search)))
        return str(path)

    code, output = sweetspot("run", manifest("first", seed=3))
    assert code == 0, output[-3000:]
    code, output = sweetspot("run", manifest("second", seed=4, maxTrials=1, warmStart={"studies": ["first"]}))
    assert code == 0, output[-3000:]
    assert "warm start: reused 3 trials of default/first" in output
    runs = sorted(p.name for p in (tmp_path / ".sweetspot" / "default-second" / "runs").iterdir())
    assert all(name.startswith("t3-") for name in runs), runs  # no stage for a reused trial

    code, output = sweetspot("report", "second", "--format", "json")
    assert code == 0, output
    report = json.loads(output[output.index("{") :])
    assert report["warmStart"]["reused"] == 3
    assert [(t["trial"], t["source"], t["reused"]) for t in report["trials"]] == [
        (0, "default/first trial 0", True),
        (1, "default/first trial 1", True),
        (2, "default/first trial 2", True),
        (3, None, False),
    ]
    code, output = sweetspot("report", "second")
    assert "default/first trial 0" in output and "(reused)" in output

    code, output = sweetspot("run", manifest("third", warmStart={"studies": ["ghost"]}))
    assert code == 1
    assert "spec.search.warmStart.studies: no earlier study 'ghost'" in output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_operator_says_what_a_warm_start_took_or_why_it_failed(tmp_path: Path, postgres_server_url: str) -> None:
    """The real operator against the API emulator and a real PostgreSQL, stages finished at once by the node: the
    second study's status and a `WarmStarted` Event say what it reused, and only its own trial gets Jobs; a study
    that names a missing one fails with `WarmStartFailed`, naming the field."""
    database = operator_database(postgres_server_url, f"warm_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**6}")
    with RunningCluster(tmp_path) as running:
        api = running.client()
        operator = Operator(running, database, tmp_path)
        with InstantNode(api) as node:
            operator.start()
            try:

                def finished(name: str) -> dict[str, Any]:
                    eventually(lambda: phase(api, name) in ("Succeeded", "Failed"), 120, f"{name} to finish")
                    return get(api, name)

                apply(api, cluster_study("first", maxTrials=3))
                assert finished("first")["status"]["phase"] == "Succeeded"
                apply(api, cluster_study("second", maxTrials=1, parallelism=1, warmStart={"studies": ["first"]}))
                status = finished("second")["status"]
                assert status["phase"] == "Succeeded", status
                assert status["warmStart"] == {
                    "studies": [f"{NAMESPACE}/first"],
                    "reused": 3,
                    "enqueued": 0,
                    "message": f"reused 3 trials of {NAMESPACE}/first",
                }
                assert all(job.startswith("second-t3-") for job in jobs_of(api, "second")), jobs_of(api, "second")
                items = kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
                started = [e for e in items if e.involved_object.name == "second" and e.reason == "WarmStarted"]
                assert [e.message for e in started] == [f"reused 3 trials of {NAMESPACE}/first"]

                apply(api, cluster_study("third", warmStart={"studies": ["ghost"]}))
                status = finished("third")["status"]
                ready = next(c for c in status["conditions"] if c["type"] == "Ready")
                assert (status["phase"], ready["status"], ready["reason"]) == (
                    "Failed",
                    "False",
                    Reason.WARM_START_FAILED,
                )
                assert "spec.search.warmStart.studies: no earlier study 'ghost'" in ready["message"]
                items = kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
                (failed,) = [
                    e for e in items if e.involved_object.name == "third" and e.reason == Reason.WARM_START_FAILED
                ]
                assert failed.type == "Warning" and failed.message == ready["message"]
                assert jobs_of(api, "third") == [] and not node.errors
            finally:
                operator.stop()
