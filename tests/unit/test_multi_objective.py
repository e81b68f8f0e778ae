"""Multi-objective studies (`spec.objectives`): the spec's rules, the Pareto arithmetic, early judging by
non-dominated sorting under `proxy`, pruning by domination under `prune`, and the front the status shows."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
from pydantic import ValidationError

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core import pareto
from sweetspot.core.objectives import early_values, final_values, front, knee, minimised
from sweetspot.core.policies.proxy import Proxy
from sweetspot.core.policies.prune import Prune
from sweetspot.core.policies.registry import study_directions
from sweetspot.core.records import TrialView
from sweetspot.core.stats import front_data, progress, summarize

from support.builders import outcome

BASE: dict[str, Any] = {"model": {"builtin": "tiny"}, "dataset": {"train": {"builtin": "product-pages"}}}
F1_COMPUTE = [{"metric": "f1", "direction": "maximize"}, {"metric": "computeSeconds", "direction": "minimize"}]


def spec(objectives: Any = F1_COMPUTE, policy: str = "proxy", **search: Any) -> FineTuneStudySpec:
    early = {"policy": policy, "promoteTopK": 2, **search.pop("early", {})}
    return FineTuneStudySpec.model_validate(
        BASE | {"objectives": objectives, "search": {"maxTrials": 6, "earlyEvaluation": early, **search}}
    )


# --- the spec ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objectives", "extra", "field", "words"),
    [
        ([{"metric": "computeSeconds", "direction": "minimize"}] * 2, {}, "objectives", "exactly one quality"),
        ([*F1_COMPUTE[:1], {"metric": "loss", "direction": "minimize"}], {}, "objectives", "exactly one quality"),
        ([{"metric": "accuracy", "direction": "maximize"}, F1_COMPUTE[1]], {}, "objectives", "objective.metric"),
        ([*F1_COMPUTE, F1_COMPUTE[1]], {}, "objectives", "each metric once"),
        ([F1_COMPUTE[0], {"metric": "computeSeconds", "direction": "maximize"}], {}, "direction", "minimize"),
        (F1_COMPUTE, {"sampler": "cmaes"}, "search.sampler", "one objective only"),
        (F1_COMPUTE, {"earlyEvaluation": {"promote": "predicted"}}, "search.earlyEvaluation.promote", "predicts one"),
    ],
)
def test_bad_objectives_are_refused_with_the_field_named(
    objectives: Any, extra: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as error:
        FineTuneStudySpec.model_validate(BASE | {"objectives": objectives, "search": extra})
    assert field in str(error.value) and words in str(error.value)


def test_the_quality_objective_may_be_loss_when_objective_says_so() -> None:
    loss = FineTuneStudySpec.model_validate(
        BASE
        | {
            "objective": {"metric": "loss", "direction": "minimize"},
            "objectives": [
                {"metric": "trainableParameters", "direction": "minimize"},
                {"metric": "loss", "direction": "minimize"},
            ],
            "search": {"sampler": "nsga2", "earlyEvaluation": {"policy": "prune"}},
        }
    )
    assert study_directions(loss) == ["minimize", "minimize"]


def test_the_optuna_study_gets_one_direction_per_objective_in_the_spec_order() -> None:
    assert study_directions(spec()) == ["minimize", "minimize"]  # proxy tells the early loss (auto signal)
    assert study_directions(spec(early={"signal": "f1"})) == ["maximize", "minimize"]
    assert study_directions(spec(F1_COMPUTE[::-1], policy="prune")) == ["minimize", "maximize"]
    single = FineTuneStudySpec.model_validate(BASE)
    assert study_directions(single) == ["minimize"]


# --- Pareto arithmetic -----------------------------------------------------------------------------------


def test_fronts_sort_every_point_and_no_point_is_dominated_by_its_own_front_or_a_later_one() -> None:
    rng = random.Random(3)
    points = [(rng.random(), rng.random(), rng.random()) for _ in range(40)] + [(0.5, 0.5, 0.5)] * 2
    fronts = pareto.fronts(points)
    assert sorted(i for f in fronts for i in f) == list(range(len(points)))
    level = {i: k for k, f in enumerate(fronts) for i in f}
    for i, j in itertools.permutations(range(len(points)), 2):
        if pareto.dominates(points[i], points[j]):
            assert level[i] < level[j]
    assert level[40] == level[41]  # equal points share a front
    for k, f in enumerate(fronts[1:], start=1):  # every later point is dominated by one of the front before
        assert all(any(pareto.dominates(points[i], points[j]) for i in fronts[k - 1]) for j in f)


def test_crowding_keeps_the_extremes_first_and_prefers_isolated_points() -> None:
    points = [(0.0, 1.0), (0.1, 0.9), (0.12, 0.88), (0.5, 0.5), (1.0, 0.0)]
    distance = pareto.crowding(points, [0, 1, 2, 3, 4])
    assert distance[0] == distance[4] == math.inf
    assert distance[3] > distance[1] > 0 and distance[3] > distance[2]
    assert pareto.ranked(points)[:3] == [0, 4, 3]


def test_an_objective_every_point_shares_does_not_make_its_extremes_infinitely_crowded() -> None:
    # The second objective is the same everywhere (a cost nobody varies): only the first tells the points apart.
    points = [(0.0, 5.0), (0.5, 5.0), (0.6, 5.0), (1.0, 5.0)]
    distance = pareto.crowding(points, [0, 1, 2, 3])
    assert distance[0] == distance[3] == math.inf and distance[1] == pytest.approx(0.6) and distance[2] == 0.5


def test_a_tie_on_quality_goes_to_the_cheaper_trial_which_stays_on_the_front() -> None:
    from sweetspot.core.planner import best_trial

    study = spec()
    trials = [finished(0, 0.8, 100.0), finished(1, 0.8, 40.0), finished(2, 0.7, 10.0)]
    assert best_trial(study, trials).number == 1  # type: ignore[union-attr]
    assert front_data(study, summarize(study, trials, []))["best"] == 1  # type: ignore[index]
    single = FineTuneStudySpec.model_validate(BASE)
    assert best_trial(single, trials).number == 0  # type: ignore[union-attr]  # one objective: the first, as before


def test_the_knee_is_where_more_cost_stops_buying_quality() -> None:
    # (-F1, compute): F1 climbs fast up to 100 s, then barely.
    front_points = [(-0.60, 10.0), (-0.80, 50.0), (-0.86, 100.0), (-0.87, 400.0), (-0.875, 1000.0)]
    assert pareto.knee(front_points) == 2
    assert pareto.knee([]) is None
    # Two points always tie: the knee is the better one in the preferred objective (the quality), not the cheaper.
    assert pareto.knee([(0.0, 10.0), (-0.84, 60.0)]) == 1
    assert pareto.knee([(10.0, 0.0), (60.0, -0.84)], prefer=1) == 1


def test_hypervolume_is_exact_in_two_and_three_dimensions() -> None:
    assert pareto.hypervolume([(1.0, 2.0), (2.0, 1.0)], (3.0, 3.0)) == pytest.approx(3.0)
    assert pareto.hypervolume([(1.0, 1.0, 1.0)], (2.0, 3.0, 4.0)) == pytest.approx(6.0)
    assert pareto.hypervolume([(4.0, 0.0)], (3.0, 3.0)) == 0.0  # outside the reference adds nothing
    # A point inside what others dominate adds nothing either.
    assert pareto.hypervolume([(1.0, 2.0), (2.0, 1.0), (2.5, 2.5)], (3.0, 3.0)) == pytest.approx(3.0)


# --- judging early ---------------------------------------------------------------------------------------


def early(loss: float, seconds: float, f1: float = 0.5, **more: Any) -> Any:
    return outcome(f1=f1, loss=loss, seconds=seconds, step=20, planned_steps=100, judged_at=0.2, **more)


def test_proxy_tells_the_early_signal_and_the_costs_projected_from_the_early_stage() -> None:
    study = spec(
        [F1_COMPUTE[0], {"metric": "trainableParameters", "direction": "minimize"}, F1_COMPUTE[1]],
    )
    record = Proxy().record_early(study, 3, early(0.4, 12.0, trainable_parameters=9000), [])
    assert record.value == [0.4, 9000.0, pytest.approx(60.0)]  # loss, parameters, 12 s / 20% of the steps
    assert Proxy().final_value(study, early(0.3, 50.0)) is None


def test_proxy_promotes_along_the_early_front_not_only_the_lowest_loss() -> None:
    # Loss and projected compute: 0 and 1 are cheap but poor, 2 is the best loss at a high cost, 3 is dominated.
    trials = [
        TrialView(n, "complete", {}, early=early(loss, seconds))
        for n, (loss, seconds) in enumerate([(0.9, 1.0), (0.5, 4.0), (0.2, 20.0), (0.6, 30.0), (0.4, 8.0)])
    ]
    study = spec(early={"promoteTopK": 3}, maxTrials=5)
    promoted = [t.number for t in Proxy().promoted(study, trials)]
    assert 3 not in promoted and {0, 2} <= set(promoted)  # the front's extremes come first
    single = FineTuneStudySpec.model_validate(BASE | {"search": {"maxTrials": 5}})
    assert [t.number for t in Proxy().promoted(single, trials)] == [2, 4, 1]  # by loss alone


def test_prune_stops_a_trial_only_once_enough_judged_trials_dominate_it() -> None:
    study = spec(policy="prune")  # successiveHalving: one dominating trial is enough, after 2 were judged
    # Judged on the early signal (validation loss, `auto`) and the projected compute, not on the early F1.
    good = [
        TrialView(0, "running", {}, early=early(0.4, 10.0, f1=0.0)),
        TrialView(1, "running", {}, early=early(0.6, 5.0, f1=0.0)),
    ]
    assert Prune().record_early(study, 2, early(0.5, 20.0, f1=0.9), good[:1]).pruned is False  # too few judged
    dominated = Prune().record_early(study, 2, early(0.5, 20.0, f1=0.9), good)
    assert dominated.pruned is True and dominated.report_to_pruner is False
    assert dominated.value == 0.9  # the early objective is still recorded as the trial's early score
    assert Prune().record_early(study, 2, early(0.3, 20.0), good).pruned is False  # best loss: on the front
    median = spec(policy="prune", early={"pruner": "median"})
    assert Prune().record_early(median, 2, early(0.5, 20.0), good).pruned is False  # one of two needed
    assert Prune().record_early(median, 2, early(0.7, 20.0), good).pruned is True
    on_f1 = spec(policy="prune", early={"signal": "f1"})
    assert Prune().record_early(on_f1, 2, early(0.9, 20.0, f1=0.9), good).pruned is False


def test_prune_tells_every_objective_of_a_final() -> None:
    study = spec(policy="prune")
    trial = TrialView(4, "running", {}, early=early(0.5, 10.0))
    assert Prune().final_value(study, outcome(f1=0.8, seconds=40.0), trial) == [0.8, 50.0]  # early + final compute


# --- the front ---------------------------------------------------------------------------------------------


def finished(number: int, f1: float, seconds: float) -> TrialView:
    return TrialView(number, "complete", {}, early=early(0.5, seconds / 5), final=outcome(f1=f1, seconds=seconds))


def test_the_front_its_knee_and_the_recommendation() -> None:
    study = spec()
    trials = [finished(0, 0.60, 10), finished(1, 0.82, 80), finished(2, 0.80, 120), finished(3, 0.84, 400)]
    trials.append(TrialView(5, "complete", {}, early=early(0.1, 1.0)))  # judged early only: not on the front
    assert [t.number for t in front(study, trials)] == [0, 1, 3]
    assert final_values(study, trials[1]) == [0.82, pytest.approx(96.0)]  # early 16 s + final 80 s
    assert knee(study, front(study, trials)).number == 1  # type: ignore[union-attr]
    data = front_data(study, summarize(study, trials, []))
    assert data is not None
    assert [t["trial"] for t in data["trials"]] == [3, 0, 1]  # the best first
    assert (data["best"], data["knee"], data["size"], data["objectives"]) == (3, 1, 3, ["f1", "computeSeconds"])
    assert "Best f1: trial 3" in data["message"] and "Knee: trial 1" in data["message"]
    assert "5.0x the compute of the knee" in data["message"]  # (80 + 400) / (16 + 80)
    assert "best final f1 0.8400 (trial 3), Pareto front: trials 0, 1, 3 (knee 1)" in progress(study, trials, [])
    assert (
        front_data(
            FineTuneStudySpec.model_validate(BASE), summarize(FineTuneStudySpec.model_validate(BASE), trials, [])
        )
        is None
    )


def test_minimised_turns_each_objective_lower_is_better() -> None:
    study = spec()
    assert minimised(study, [0.8, 10.0]) == [-0.8, 10.0]
    assert minimised(study, [0.3, 10.0], quality_lower_is_better=True) == [0.3, 10.0]
    assert early_values(study, early(0.3, 10.0), 0.3, 0.5) == [0.3, 20.0]


def test_the_status_carries_the_front_as_the_api_server_accepts_it() -> None:
    from sweetspot.api.crd import crd
    from sweetspot.core.records import Decision
    from sweetspot.core.study_status import build_status

    from support.kube_schema import CrdValidator

    study = spec()
    trials = [finished(n, 0.5 + 0.005 * n, 10.0 + 10 * n) for n in range(70)]  # every one on the front
    decision = Decision((), "Succeeded", "StudyComplete", "best trial 69")
    built = build_status(
        decision, summarize(study, trials, []), {}, 1, study, trials, "default/s", "2026-12-07T00:00:00Z"
    )
    front_status = built["paretoFront"]
    assert front_status["size"] == 70 and len(front_status["trials"]) == 64  # bounded; the report lists them all
    assert front_status["trials"][0] == {"trial": 69, "values": {"f1": 0.845, "computeSeconds": pytest.approx(840.0)}}
    assert front_status["best"] == 69 and front_status["knee"] in range(70)
    resource = {"apiVersion": "sweetspot.dev/v1alpha1", "kind": "FineTuneStudy", "metadata": {"name": "s"}}
    manifest = resource | {"spec": study.model_dump(by_alias=True, exclude_none=True), "status": built}
    assert CrdValidator(crd()).errors(manifest) == []
    single = FineTuneStudySpec.model_validate(BASE)
    assert "paretoFront" not in build_status(
        decision, summarize(single, trials, []), {}, 1, single, trials, "d/s", "2026-12-07T00:00:00Z"
    )
