"""The planner's rules, one table row each: plain data in, actions out, no I/O and no clocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.contract import StageResult
from sweetspot.core.planner import MAX_DISRUPTIONS, past_budget, plan, wind_down
from sweetspot.core.records import (
    AskTrials,
    FailTrial,
    Observed,
    Outcome,
    RecordEarly,
    RecordFailure,
    RecordFinal,
    RecordInfeasible,
    RecordSweepPoint,
    RunKey,
    RunView,
    StartRun,
    StopRun,
    SweepView,
    TrialView,
)

from support.builders import evaluation, stage_result, study_spec
from support.builders import outcome as outcome_of

PARAMS = {"learningRate": 0.001, "loraRank": 8}


def spec(**search: Any) -> FineTuneStudySpec:
    early = search.pop("early", {})
    top: dict[str, Any] = search.pop("top", {})
    early = {"promoteTopK": 2, **early}
    return study_spec({"maxTrials": 4, "parallelism": 1, "earlyEvaluation": early, **search}, samples=300, **top)


def outcome(score: float, loss: float = 0.5, samples: int = 300, step: int = 20, planned: int = 100) -> Outcome:
    """An outcome whose F1 (the default objective) and accuracy are both `score`, and the brand's too."""
    return outcome_of(f1=score, loss=loss, step=step, planned_steps=planned, samples=samples, attributes=["brand"])


def trial(number: int, state: str = "running", params: Mapping[str, Any] = PARAMS, **fields: Any) -> TrialView:
    return TrialView(number=number, state=state, params=params, **fields)  # type: ignore[arg-type]


def result(stage: str, score: float, loss: float = 0.5, status: str = "ok", number: int = 0) -> StageResult:
    fraction = 0.2 if stage == "early" else 1.0
    step = int(100 * fraction)
    scored = evaluation(score=score, loss=loss, step=step, fraction=fraction, attribute_f1={"brand": score})
    return stage_result(
        stage=stage, trial=number, status=status, step=step, evaluations=[scored] if status == "ok" else []
    )


def run(key: str, phase: str = "running", res: StageResult | None = None, reason: str = "") -> RunView:
    return RunView(RunKey.parse(key), phase, res, reason)  # type: ignore[arg-type]


def of_type(decision: Any, kind: type) -> list[Any]:
    return [a for a in decision.actions if isinstance(a, kind)]


def test_run_keys_round_trip() -> None:
    for text in ("t0-early", "t12-final-r2", "s200-full", "s200-rep2-full-r1"):
        assert str(RunKey.parse(text)) == text
    assert RunKey.parse("s200-rep2-full") == RunKey("sweep", 200, "full", 0, 2)
    for bad in ("t1-warmup", "t1-rep1-early"):
        with pytest.raises(ValueError, match="not a run key"):
            RunKey.parse(bad)


def test_a_new_study_asks_for_as_many_trials_as_it_may_run() -> None:
    decision = plan(spec(parallelism=3), Observed())
    assert decision.actions == (AskTrials(3),)
    assert decision.phase == "Searching"


def test_an_asked_trial_starts_its_early_stage() -> None:
    decision = plan(spec(), Observed(trials=[trial(0)]))
    assert decision.actions == (StartRun(RunKey("trial", 0, "early"), PARAMS),)


def test_parallelism_bounds_what_starts() -> None:
    observed = Observed(trials=[trial(0), trial(1)], runs=[run("t0-early")])
    decision = plan(spec(parallelism=2), observed)
    assert decision.actions == (StartRun(RunKey("trial", 1, "early"), PARAMS),)
    assert plan(spec(parallelism=1), observed).actions == ()


def test_proxy_records_the_early_signal_for_the_sampler() -> None:
    observed = Observed(trials=[trial(0)], runs=[run("t0-early", "succeeded", result("early", 0.61, loss=0.42))])
    (record,) = plan(spec(early={"signal": "accuracy"}), observed).actions
    assert isinstance(record, RecordEarly)
    assert (record.value, record.report_to_pruner) == (0.61, False)
    loss_signal = plan(spec(early={"signal": "loss"}), observed).actions[0]
    assert loss_signal.value == 0.42  # type: ignore[union-attr]


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_auto_signal_is_validation_loss(fraction: float) -> None:
    observed = Observed(trials=[trial(0)], runs=[run("t0-early", "succeeded", result("early", 0.61, loss=0.42))])
    (record,) = plan(spec(early={"atFraction": fraction}), observed).actions
    assert record.value == 0.42  # type: ignore[union-attr]


def test_a_recorded_result_is_not_recorded_again() -> None:
    observed = Observed(
        trials=[trial(0, "complete", early=outcome(0.6))],
        runs=[run("t0-early", "succeeded", result("early", 0.6))],
    )
    assert not of_type(plan(spec(), observed), RecordEarly)


def test_prune_reports_early_then_survivors_run_final_at_once() -> None:
    prune = spec(early={"policy": "prune"})
    observed = Observed(trials=[trial(0)], runs=[run("t0-early", "succeeded", result("early", 0.61))])
    (record,) = plan(prune, observed).actions
    assert isinstance(record, RecordEarly) and record.report_to_pruner and record.value == 0.61
    survivor = Observed(
        trials=[trial(0, early=outcome(0.61))], runs=[run("t0-early", "succeeded", result("early", 0.61))]
    )
    assert StartRun(RunKey("trial", 0, "final"), PARAMS) in plan(prune, survivor).actions
    pruned = Observed(trials=[trial(0, "pruned", early=outcome(0.1)), trial(1)])
    assert not [a for a in plan(prune, pruned).actions if isinstance(a, StartRun) and a.key.number == 0]


def test_prune_final_result_is_told_proxy_final_is_only_stored() -> None:
    observed = Observed(
        trials=[trial(0, early=outcome(0.6))], runs=[run("t0-final", "succeeded", result("final", 0.9))]
    )
    (prune_final,) = plan(spec(early={"policy": "prune"}), observed).actions
    assert isinstance(prune_final, RecordFinal) and prune_final.value == 0.9
    proxy = Observed(
        trials=[trial(0, "complete", early=outcome(0.6))], runs=[run("t0-final", "succeeded", result("final", 0.9))]
    )
    (proxy_final,) = plan(spec(), proxy).actions
    assert isinstance(proxy_final, RecordFinal) and proxy_final.value is None


def test_a_failed_stage_is_recorded_retried_then_fails_its_trial() -> None:
    failing = Observed(trials=[trial(0)], runs=[run("t0-early", "failed", reason="exit 1")])
    assert plan(spec(), failing).actions == (RecordFailure(RunKey("trial", 0, "early"), "exit 1", disruption=False),)
    once = Observed(trials=[trial(0, failed_attempts={"early": frozenset({0})})], runs=[run("t0-early", "failed")])
    assert plan(spec(), once).actions == (StartRun(RunKey("trial", 0, "early", 1), PARAMS),)
    twice = Observed(trials=[trial(0, failed_attempts={"early": frozenset({0, 1})}, reason="exit 1")])
    (fail,) = plan(spec(), twice).actions
    assert isinstance(fail, FailTrial) and "failed 2 times" in fail.reason


def test_a_disruption_is_retried_without_counting_as_a_failure() -> None:
    observed = Observed(trials=[trial(0)], runs=[run("t0-early", "disrupted", reason="preempted")])
    assert plan(spec(), observed).actions == (RecordFailure(RunKey("trial", 0, "early"), "preempted", disruption=True),)
    many = frozenset(range(3))
    retried = Observed(trials=[trial(0, disrupted_attempts={"early": many})])
    assert plan(spec(), retried).actions == (StartRun(RunKey("trial", 0, "early", 3), PARAMS),)
    endless = Observed(trials=[trial(0, disrupted_attempts={"early": frozenset(range(MAX_DISRUPTIONS))})])
    assert isinstance(plan(spec(), endless).actions[0], FailTrial)


def test_out_of_memory_is_infeasible_not_a_failure() -> None:
    observed = Observed(trials=[trial(0)], runs=[run("t0-early", "failed", result("early", 0, status="oom"))])
    (record,) = plan(spec(), observed).actions
    assert isinstance(record, RecordInfeasible)
    # Infeasible trials do not count toward maxFailedTrials and are never promoted.
    infeasible = [trial(n, "complete", infeasible=True) for n in range(3)]
    done = Observed(trials=[*infeasible, trial(3, "complete", early=outcome(0.5))])
    decision = plan(spec(maxFailedTrials=0), done)
    assert decision.phase == "Promoting"
    assert [a.key.number for a in of_type(decision, StartRun)] == [3]


def test_bad_input_fails_the_study_records_the_stage_and_fails_every_unfinished_trial() -> None:
    rejected = result("early", 0, status="bad_input").model_copy(update={"message": "train.jsonl:7: not JSON"})
    observed = Observed(
        trials=[trial(0), trial(1), trial(2, "complete", early=outcome(0.5))],
        runs=[run("t0-early", "failed", rejected), run("t1-early")],
    )
    decision = plan(spec(), observed)
    assert (decision.phase, decision.reason) == ("Failed", "BadInput")
    assert "t0-early: train.jsonl:7: not JSON" in decision.message
    assert of_type(decision, RecordFailure) == [
        RecordFailure(RunKey("trial", 0, "early"), "bad input: train.jsonl:7: not JSON", disruption=False)
    ]
    # The rejecting trial fails for its own reason; the one still running fails with the study (cancelled); the
    # proxy trial judged early is finished in Optuna and stays as it is.
    failed = of_type(decision, FailTrial)
    assert [(f.trial, f.cancelled) for f in failed] == [(0, False), (1, True)]
    assert "train.jsonl:7" in failed[0].reason and "BadInput" in failed[1].reason
    assert of_type(decision, StopRun) == [StopRun(RunKey("trial", 1, "early"), "BadInput")]
    # Once recorded, a failed study owes nothing more.
    done = [trial(0, "failed"), trial(1, "failed", cancelled=True), trial(2, "complete", early=outcome(0.5))]
    assert wind_down(Observed(trials=done, runs=[run("t0-early", "failed", rejected)]), "BadInput") == ()


def test_too_many_failed_trials_fail_the_study_and_stop_running_jobs() -> None:
    failed = [trial(n, "failed", reason="boom") for n in range(2)]
    observed = Observed(trials=[*failed, trial(2)], runs=[run("t2-early")])
    decision = plan(spec(maxFailedTrials=1), observed)
    assert (decision.phase, decision.reason) == ("Failed", "TooManyFailedTrials")
    assert of_type(decision, StopRun) == [StopRun(RunKey("trial", 2, "early"), "TooManyFailedTrials")]
    (cancel,) = of_type(decision, FailTrial)
    assert (cancel.trial, cancel.cancelled) == (2, True)
    assert plan(spec(maxFailedTrials=2), observed).phase == "Searching"


def test_trials_failed_with_their_study_do_not_count_when_it_resumes() -> None:
    cancelled = [trial(n, "failed", cancelled=True) for n in range(3)]
    observed = Observed(trials=[trial(0, "failed", reason="boom"), *cancelled[1:]])
    assert plan(spec(maxFailedTrials=1), observed).phase == "Searching"
    assert plan(spec(maxFailedTrials=0), observed).reason == "TooManyFailedTrials"


def test_a_promoted_trial_whose_final_runs_when_the_study_fails_fails_with_it() -> None:
    observed = Observed(trials=[trial(0, "complete", early=outcome(0.5))], runs=[run("t0-final"), run("s200-full")])
    actions = wind_down(observed, "SweepFailed")
    assert [a for a in actions if isinstance(a, FailTrial)] == [
        FailTrial(0, "stopped: the study failed (SweepFailed)", cancelled=True)
    ]
    assert {a.key for a in actions if isinstance(a, StopRun)} == {RunKey.parse("t0-final"), RunKey.parse("s200-full")}


def test_a_lowered_budget_names_the_trials_past_it_and_asks_no_more() -> None:
    trials = [trial(0, "complete", early=outcome(0.5)), trial(1), trial(2)]
    decision = plan(spec(maxTrials=2, parallelism=2), Observed(trials=trials, runs=[run("t1-early")]))
    assert past_budget(spec(maxTrials=2), trials) == [2]
    assert not of_type(decision, AskTrials)
    assert of_type(decision, StartRun) == [StartRun(RunKey("trial", 2, "early"), PARAMS)]  # it runs past the budget
    assert past_budget(spec(maxTrials=3), trials) == []


def test_proxy_promotes_the_best_early_trials() -> None:
    trials = [trial(n, "complete", early=outcome(a, loss=1 - a)) for n, a in enumerate((0.5, 0.9, 0.7, 0.8))]
    decision = plan(spec(parallelism=4), Observed(trials=trials))
    assert decision.phase == "Promoting"
    assert [a.key for a in of_type(decision, StartRun)] == [RunKey("trial", 1, "final"), RunKey("trial", 3, "final")]


def test_promotion_ranks_by_loss_when_loss_is_the_signal() -> None:
    losses = (0.2, 0.9, 0.1, 0.5)
    trials = [trial(n, "complete", early=outcome(0.5, loss=loss)) for n, loss in enumerate(losses)]
    decision = plan(spec(parallelism=4, early={"signal": "loss"}), Observed(trials=trials))
    assert [a.key.number for a in of_type(decision, StartRun)] == [2, 0]


def test_the_search_waits_for_every_early_result_before_promoting() -> None:
    trials = [trial(n, "complete", early=outcome(0.5)) for n in range(3)] + [trial(3)]
    decision = plan(spec(), Observed(trials=trials, runs=[run("t3-early")]))
    assert decision.phase == "Searching" and decision.actions == ()


def test_raising_max_trials_continues_the_search() -> None:
    trials = [trial(n, "complete", early=outcome(0.5), final=outcome(0.6)) for n in range(4)]
    assert plan(spec(parallelism=2), Observed(trials=trials)).phase == "Succeeded"
    decision = plan(spec(parallelism=2, maxTrials=6), Observed(trials=trials))
    assert decision.actions == (AskTrials(2),)


def test_reaching_the_target_stops_asking() -> None:
    prune = spec(early={"policy": "prune"}, top={"objective": {"target": 0.85}})
    trials = [trial(0, "complete", early=outcome(0.5), final=outcome(0.9))]
    decision = plan(prune, Observed(trials=trials))
    assert not of_type(decision, AskTrials)
    assert (decision.phase, decision.reason) == ("Succeeded", "TargetReached")


def test_suspend_starts_nothing_but_still_records() -> None:
    suspended = spec(top={"suspend": True})
    assert plan(suspended, Observed()).actions == ()
    assert plan(suspended, Observed(trials=[trial(0)])).reason == "Suspended"
    finished = Observed(trials=[trial(0)], runs=[run("t0-early", "succeeded", result("early", 0.6))])
    assert of_type(plan(suspended, finished), RecordEarly)


def _finished_search(planned: int = 100) -> list[TrialView]:
    best = trial(1, "complete", params={"learningRate": 0.003}, early=outcome(0.7), final=outcome(0.9, planned=planned))
    return [
        trial(0, "complete", early=outcome(0.5), final=outcome(0.6)),
        best,
        *(trial(n, "complete", early=outcome(0.1)) for n in (2, 3)),
    ]


@pytest.mark.parametrize(("hold", "max_steps"), [("steps", 100), ("epochs", None)])
def test_the_sweep_retrains_the_best_configuration_per_size(hold: str, max_steps: int | None) -> None:
    sweep_spec = spec(parallelism=2, top={"dataEfficiency": {"sampleSizes": [50, 150, 300], "hold": hold}})
    decision = plan(sweep_spec, Observed(trials=_finished_search()))
    # 300 rows is the search's own sample: the best trial's final run is that point already.
    assert of_type(decision, RecordSweepPoint) == [RecordSweepPoint(300, outcome(0.9))]
    assert of_type(decision, StartRun) == [
        StartRun(RunKey("sweep", 50, "full"), {"learningRate": 0.003}, samples=50, max_steps=max_steps),
        StartRun(RunKey("sweep", 150, "full"), {"learningRate": 0.003}, samples=150, max_steps=max_steps),
    ]
    assert decision.phase == "Sweeping"


def test_the_study_succeeds_when_the_curve_is_complete() -> None:
    sweep_spec = spec(top={"dataEfficiency": {"sampleSizes": [50, 300]}})
    points = [SweepView(50, outcome(0.6, samples=50)), SweepView(300, outcome(0.9))]
    decision = plan(sweep_spec, Observed(trials=_finished_search(), sweep=points))
    assert (decision.phase, decision.reason, decision.actions) == ("Succeeded", "StudyComplete", ())


def test_a_sweep_result_is_recorded() -> None:
    sweep_spec = spec(top={"dataEfficiency": {"sampleSizes": [50, 300]}})
    observed = Observed(
        trials=_finished_search(),
        sweep=[SweepView(300, outcome(0.9))],
        runs=[run("s50-full", "succeeded", result("full", 0.55))],
    )
    (record,) = plan(sweep_spec, observed).actions
    assert isinstance(record, RecordSweepPoint) and (record.samples, record.outcome.accuracy) == (50, 0.55)


def test_repeats_run_each_size_with_another_seed_and_reuse_only_the_first() -> None:
    sweep_spec = spec(parallelism=4, top={"dataEfficiency": {"sampleSizes": [50, 300], "repeats": 2}})
    decision = plan(sweep_spec, Observed(trials=_finished_search()))
    assert of_type(decision, RecordSweepPoint) == [RecordSweepPoint(300, outcome(0.9))]
    starts = [(str(a.key), a.seed_offset) for a in of_type(decision, StartRun)]
    assert starts == [("s50-full", 0), ("s50-rep1-full", 1), ("s300-rep1-full", 1)]


def test_a_repeat_result_is_recorded_against_its_repeat() -> None:
    sweep_spec = spec(top={"dataEfficiency": {"sampleSizes": [50, 300], "repeats": 2}})
    observed = Observed(
        trials=_finished_search(),
        sweep=[SweepView(300, outcome(0.9)), SweepView(50, outcome(0.5, samples=50))],
        runs=[run("s50-rep1-full", "succeeded", result("full", 0.55))],
    )
    (record,) = plan(sweep_spec, observed).actions
    assert isinstance(record, RecordSweepPoint) and (record.samples, record.repeat) == (50, 1)


def test_fixed_hyperparameters_sweep_alone_without_a_search() -> None:
    fixed = {"sampleSizes": [100, 400], "hyperparameters": "fixed", "params": {"learningRate": 0.002, "batchSize": 8}}
    sweep_spec = spec(parallelism=2, top={"dataEfficiency": {**fixed, "hold": "steps"}})
    decision = plan(sweep_spec, Observed())
    assert not of_type(decision, AskTrials)
    # hold steps: every size trains the steps the largest takes, 400 rows / batch 8 x 2 epochs (the default).
    assert of_type(decision, StartRun) == [
        StartRun(RunKey("sweep", n, "full"), fixed["params"], samples=n, max_steps=100) for n in (100, 400)
    ]
    points = [SweepView(100, outcome(0.6, samples=100)), SweepView(400, outcome(0.8, samples=400))]
    done = plan(sweep_spec, Observed(sweep=points))
    assert (done.phase, done.reason) == ("Succeeded", "StudyComplete")


def test_no_finished_trial_fails_the_study() -> None:
    trials = [trial(n, "failed", reason="boom") for n in range(4)]
    decision = plan(spec(maxFailedTrials=4), Observed(trials=trials))
    assert (decision.phase, decision.reason) == ("Failed", "NoTrialFinished")
