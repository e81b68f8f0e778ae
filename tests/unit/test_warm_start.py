"""Warm start's pure parts: how the planner treats reused trials, which earlier results may be reused, which
configurations are queued, and what the API accepts."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from pydantic import ValidationError

from sweetspot.api.crd import crd
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.planner import past_budget, plan
from sweetspot.core.records import AskTrials, Observed, Outcome, RunKey, StartRun, TrialView
from sweetspot.core.stats import progress, summarize
from sweetspot.storage.warm_start import best_configs, reuse_differences

from support.builders import outcome as outcome_of
from support.builders import study_spec


def spec(**search: Any) -> FineTuneStudySpec:
    return study_spec({"maxTrials": 2, "earlyEvaluation": {"promoteTopK": 2, "signal": "loss"}, **search})


def outcome(f1: float, loss: float) -> Outcome:
    return outcome_of(f1=f1, loss=loss)


def reused(number: int, loss: float, final: float | None = None, lr: float = 1e-3) -> TrialView:
    return TrialView(
        number, "complete", {"learningRate": lr}, early=outcome(0.5, loss),
        final=outcome(final, loss) if final is not None else None, source=f"team/first trial {number}", reused=True,
        copied=frozenset({"early", "final"} if final is not None else {"early"}),
    )  # fmt: skip


def test_reused_trials_do_not_count_toward_max_trials() -> None:
    decision = plan(spec(), Observed([reused(0, 0.3, 0.8), reused(1, 0.4), reused(2, 0.5)]))
    assert decision.actions == (AskTrials(1),)
    assert decision.message == "0/2 trials asked"
    assert past_budget(spec(), [reused(0, 0.3), reused(1, 0.4), TrialView(2, "complete", {})]) == []
    lowered = [reused(0, 0.3), *(TrialView(n, "complete", {}) for n in (1, 2, 3))]
    assert past_budget(spec(), lowered) == [3]


def test_promotion_ranks_reused_trials_and_runs_no_stage_for_one_with_a_final() -> None:
    new = [
        TrialView(3, "complete", {"learningRate": 2e-3}, early=outcome(0.5, 0.2)),
        TrialView(4, "complete", {}, early=outcome(0.5, 0.9)),
    ]
    # Best early: trial 3 (new), then trial 0 (reused, final known): only trial 3 trains to the end.
    decision = plan(spec(), Observed([reused(0, 0.3, 0.8), reused(1, 0.4), *new]))
    assert [a for a in decision.actions if isinstance(a, StartRun)] == [
        StartRun(RunKey("trial", 3, "final"), {"learningRate": 2e-3})
    ]
    worse = [new[1], TrialView(5, "complete", {}, early=outcome(0.5, 0.8))]
    # A reused trial judged only early and promoted trains to the end like any other.
    decision = plan(spec(), Observed([reused(0, 0.3), reused(1, 0.4, 0.7), *worse]))
    assert [a.key for a in decision.actions if isinstance(a, StartRun)] == [RunKey("trial", 0, "final")]
    # Promoted trials all have finals (one of them reused): the study ends with the best final.
    decision = plan(spec(), Observed([reused(0, 0.3, 0.9), reused(1, 0.2, 0.7), *worse]))
    assert (decision.phase, decision.message) == ("Succeeded", "best trial 0")


def test_compute_used_and_progress_count_only_what_this_study_trained() -> None:
    trials = [reused(0, 0.3, 0.8), TrialView(1, "complete", {}, early=outcome(0.5, 0.4))]
    assert summarize(spec(), trials, []).compute_used == 10.0
    # A trial copied judged early only, then promoted here: its final is this study's compute, its early is not.
    trained_here = dataclasses.replace(reused(2, 0.2), final=outcome(0.9, 0.1))
    assert summarize(spec(), [*trials, trained_here], []).compute_used == 20.0
    assert progress(spec(), trials, []).startswith("1/2 trials judged early, 1 trained to the end")


def manifest(**changes: Any) -> dict[str, Any]:
    spec = {
        "model": {"builtin": "tiny"},
        "dataset": {"train": {"builtin": "product-pages"}},
        "objective": {"metric": "f1", "direction": "maximize"},
        "search": {"seed": 1, "maxTrials": 8, "space": {"loraRank": {"values": [8]}}, "earlyEvaluation": {}},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = spec
        for part in parents:
            node = node[part]
        node[last] = value
    return {"metadata": {"name": "x"}, "spec": spec}


def test_results_are_reused_only_where_they_mean_the_same() -> None:
    assert reuse_differences(manifest(), manifest(search__seed=2, search__maxTrials=40)) == []
    assert reuse_differences(manifest(), manifest(search__space={"loraRank": {"values": [8, 16]}})) == ["search.space"]
    assert reuse_differences(
        manifest(), manifest(model={"builtin": "smollm2-135m"}, search__earlyEvaluation={"atFraction": 0.3})
    ) == ["model", "search.earlyEvaluation.atFraction"]
    assert reuse_differences({}, manifest())[:2] == ["model", "dataset"]  # an unreadable earlier spec differs


def test_best_configurations_by_final_then_early_inside_this_space() -> None:
    space = {"learningRate": FloatDistribution(1e-5, 1e-3, log=True), "loraRank": CategoricalDistribution([8, 16])}
    lr, rank = "learningRate", "loraRank"
    views = [
        TrialView(0, "complete", {lr: 1e-4, rank: 8}, early=outcome(0.5, 0.3), final=outcome(0.7, 0.3)),
        TrialView(1, "complete", {lr: 2e-4, rank: 64}, early=outcome(0.5, 0.3), final=outcome(0.9, 0.3)),
        TrialView(2, "complete", {lr: 1e-4, rank: 8}, early=outcome(0.5, 0.3), final=outcome(0.6, 0.3)),
        TrialView(3, "complete", {lr: 5e-4, rank: 16}, early=outcome(0.5, 0.1)),
        TrialView(4, "complete", {lr: 5e-2, rank: 16}, early=outcome(0.5, 0.2), infeasible=True),
        TrialView(5, "failed", {lr: 5e-4, rank: 8}, early=outcome(0.5, 0.05)),
    ]
    picked = best_configs(spec(), views, 3, space)
    # Trial 1's rank is outside this space (the sampler draws it); trial 2 repeats trial 0; 4 ran out of memory.
    assert [(v.number, p) for v, p in picked] == [
        (1, {"learningRate": 2e-4}),
        (0, {"learningRate": 1e-4, "loraRank": 8}),
        (3, {"learningRate": 5e-4, "loraRank": 16}),
    ]
    assert len(best_configs(spec(), views, 1, space)) == 1


def test_the_api_takes_a_set_of_study_names_and_documents_them() -> None:
    warm = spec(warmStart={"studies": ["first", "second"]}).search.warm_start
    assert warm is not None and warm.reuse == "results"
    for bad in (
        {"studies": []},
        {"studies": ["a", "a"]},
        {"studies": ["Not_A_Name"]},
        {"studies": ["a"], "reuse": "x"},
    ):
        with pytest.raises(ValidationError):
            spec(warmStart=bad)
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    warm_schema = schema["properties"]["spec"]["properties"]["search"]["properties"]["warmStart"]
    assert warm_schema["properties"]["studies"]["x-kubernetes-list-type"] == "set"
    assert "maxTrials" in warm_schema["properties"]["reuse"]["description"]
    assert "warmStart" in schema["properties"]["status"]["properties"]
