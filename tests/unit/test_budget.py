"""The compute budget (`spec.search.budget`): what the planner starts under it, how a study ends on it, and what
the status, the metrics and the progress line say about it (pure: plain data in, no I/O, no clocks)."""

from __future__ import annotations

from dataclasses import astuple
from typing import Any

import pytest
from pydantic import ValidationError

from sweetspot.api.crd import crd
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.api.status import Reason
from sweetspot.core.budget import Ledger, costs, use
from sweetspot.core.loop import phase_note
from sweetspot.core.planner import plan
from sweetspot.core.records import (
    AskTrials,
    Decision,
    FailTrial,
    Observed,
    Outcome,
    RunKey,
    RunView,
    StartRun,
    SweepView,
    TrialView,
)
from sweetspot.core.stats import progress, summarize
from sweetspot.core.study_status import build_status
from sweetspot.observe.metrics import Metrics, StudyState

from support.builders import outcome as outcome_of
from support.builders import study_spec
from support.exposition import series as scraped

EARLY = 100.0
"""Compute of every early stage here (so a final is estimated at (1 - 0.2) / 0.2 x 100 = 400 before one ran)."""


def spec(gpu_hours: float | None, policy: str = "proxy", **search: Any) -> FineTuneStudySpec:
    top: dict[str, Any] = search.pop("top", {})
    budget = {"budget": {"gpuHours": gpu_hours}} if gpu_hours is not None else {}
    early = {"policy": policy, "promoteTopK": 2, "signal": "f1", "atFraction": 0.2}
    return study_spec(
        {"maxTrials": 20, "parallelism": 1, "earlyEvaluation": early, **budget, **search}, samples=300, **top
    )


def outcome(score: float, compute: float, step: int = 20, gpu: bool = False) -> Outcome:
    """F1 `score` after `compute` seconds (wall seconds, or GPU-seconds with `gpu`: then the wall time is half)."""
    seconds, gpu_seconds = (compute / 2, compute) if gpu else (compute, 0.0)
    return outcome_of(f1=score, loss=1 - score, seconds=seconds, gpu_seconds=gpu_seconds, step=step)


def judged(count: int, start: int = 0) -> list[TrialView]:
    """Trials judged early under `proxy` (COMPLETE in Optuna), the later ones better."""
    return [TrialView(n, "complete", {"n": n}, early=outcome(0.1 + n / 100, EARLY)) for n in range(start, count)]


def promoted(trial: TrialView, score: float, compute: float) -> TrialView:
    return TrialView(trial.number, trial.state, trial.params, trial.early, outcome(score, compute, step=100))


def running(key: str) -> RunView:
    return RunView(RunKey.parse(key), "running")


def of_type(decision: Decision, kind: type) -> list[Any]:
    return [a for a in decision.actions if isinstance(a, kind)]


# --- the API ----------------------------------------------------------------------------------------------


def test_the_budget_is_positive_hours_and_may_change_once_the_study_runs() -> None:
    assert spec(1.5).search.budget is not None and spec(1.5).search.budget.gpu_hours == 1.5
    with pytest.raises(ValidationError):
        spec(0)
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    budget = schema["properties"]["search"]["properties"]["budget"]
    hours = budget["properties"]["gpuHours"]
    assert (hours["minimum"], hours["exclusiveMinimum"]) == (0, True) and "GPU-seconds" in hours["description"]
    # Not among the fields fixed once a study started (no transition rule names it).
    assert not [r for r in schema.get("x-kubernetes-validations", []) if "budget" in r["rule"]]


# --- the planner ------------------------------------------------------------------------------------------


def test_without_a_finished_stage_one_stage_runs_alone_to_price_the_rest() -> None:
    assert plan(spec(1, parallelism=3), Observed()).actions == (AskTrials(1),)
    decision = plan(spec(1, parallelism=3), Observed(trials=[TrialView(0, "running", {})]))
    assert decision.actions == (StartRun(RunKey("trial", 0, "early"), {}),)  # and no second trial asked
    assert plan(spec(None, parallelism=3), Observed()).actions == (AskTrials(3),)


def test_new_trials_are_asked_only_while_the_budget_pays_for_them_and_keeps_the_promotions() -> None:
    # 1800 s: 8 earlies done (800), one running (100 as estimated), two finals kept back (2 x 400): room for 1.
    observed = Observed(trials=[*judged(8), TrialView(8, "running", {})], runs=[running("t8-early")])
    assert plan(spec(0.5, parallelism=3), observed).actions == (AskTrials(1),)
    assert plan(spec(None, parallelism=3), observed).actions == (AskTrials(2),)


def test_the_finals_kept_back_include_the_one_more_each_widening_of_the_agreement_guard_promotes() -> None:
    # Trials 7-9, the best early, trained to the end and ranked the other way round: the guard widens once and
    # promotes 4. Spent 1000 + 3 x 300, three earlies running (300): a 4th early (100) leaves 3450 - 2300 - 100 =
    # 1050 s, which pays for 3 finals of 300 but not the 4 the three unjudged trials could still displace.
    trials = judged(10)
    trials[7:] = [promoted(trials[7], 0.7, 300), promoted(trials[8], 0.6, 300), promoted(trials[9], 0.5, 300)]
    trials += [TrialView(n, "running", {}) for n in (10, 11, 12)]
    early = {"policy": "proxy", "promoteTopK": 3, "signal": "f1", "atFraction": 0.2, "minAgreement": 0.6}
    study = spec(3450 / 3600, parallelism=4, earlyEvaluation=early)
    observed = Observed(trials=trials, runs=[running(f"t{n}-early") for n in (10, 11, 12)])
    ledger = Ledger(study, observed)
    assert ledger.policy.promotions(study, trials) == 4
    assert ledger.refuses(RunKey("trial", 13, "early"))
    assert not Ledger(spec(3550 / 3600, parallelism=4, earlyEvaluation=early), observed).refuses(
        RunKey("trial", 13, "early")
    )


def test_the_search_stops_when_the_rest_pays_only_for_the_promotions() -> None:
    # 10 earlies (1000) + one more (100) + two finals (800) > 1800: promote the best two early trials instead.
    decision = plan(spec(0.5, parallelism=2), Observed(trials=judged(10)))
    assert decision.phase == "Promoting"
    assert [a.key for a in of_type(decision, StartRun)] == [RunKey("trial", 9, "final"), RunKey("trial", 8, "final")]
    assert not of_type(decision, AskTrials)


def test_a_study_the_budget_stopped_ends_budget_exhausted_with_its_best_trial() -> None:
    trials = judged(10)
    trials[9], trials[8] = promoted(trials[9], 0.7, 400), promoted(trials[8], 0.8, 400)
    decision = plan(spec(0.5), Observed(trials=trials))
    assert (decision.phase, decision.reason) == ("Succeeded", Reason.BUDGET_EXHAUSTED)
    assert "best trial 8" in decision.message and "0.5 of 0.5 gpuHours" in decision.message
    assert phase_note(decision).message.startswith("Succeeded (BudgetExhausted): ")
    # A raised budget resumes the search.
    assert plan(spec(1), Observed(trials=trials)).actions == (AskTrials(1),)
    # With every trial asked, the study is complete, budget or not.
    assert plan(spec(0.5, maxTrials=10), Observed(trials=trials)).reason == "StudyComplete"


def test_a_final_the_rest_cannot_pay_for_never_starts_and_the_study_ends_on_the_finals_it_has() -> None:
    # The first final cost 700, not 400: the second one (700 as estimated now) no longer fits in 1800.
    trials = judged(10)
    trials[9] = promoted(trials[9], 0.7, 700)
    decision = plan(spec(0.5), Observed(trials=trials))
    assert not of_type(decision, StartRun)
    assert (decision.phase, decision.reason) == ("Succeeded", Reason.BUDGET_EXHAUSTED)
    # While a stage runs, the study waits: it may cost less than estimated.
    waiting = plan(spec(0.5), Observed(trials=trials, runs=[running("s300-full")]))
    assert waiting.phase == "Promoting" and not waiting.finished


def test_a_study_whose_budget_pays_for_no_final_fails_budget_exhausted() -> None:
    # 360 s: one early (100) leaves 260, less than a final (400).
    decision = plan(spec(0.1), Observed(trials=judged(1)))
    assert (decision.phase, decision.reason) == ("Failed", Reason.BUDGET_EXHAUSTED)
    assert "before a trial was trained to the end" in decision.message


def test_an_asked_trial_the_budget_can_no_longer_pay_for_is_cancelled_not_started() -> None:
    # The budget was lowered after trial 10 was asked: its early stage and the promotions no longer fit.
    trials = [*judged(10), TrialView(10, "running", {})]
    decision = plan(spec(0.5), Observed(trials=trials))
    assert decision.actions == (FailTrial(10, "not started: the budget cannot pay for its early stage", True),)
    # Not while another stage runs: that one may cost less than estimated.
    assert plan(spec(0.5, parallelism=2), Observed(trials=trials, runs=[running("t9-final")])).actions == ()


def test_prune_asks_a_trial_only_when_its_early_and_its_final_both_fit() -> None:
    # 900 s: trial 0 spent 500 (early 100, final 400); another trial would need 500 more.
    done = TrialView(0, "complete", {}, early=outcome(0.3, EARLY), final=outcome(0.6, 400, step=100))
    decision = plan(spec(0.25, "prune"), Observed(trials=[done]))
    assert (decision.phase, decision.reason) == ("Succeeded", Reason.BUDGET_EXHAUSTED)
    assert plan(spec(0.3, "prune"), Observed(trials=[done])).actions == (AskTrials(1),)


def test_the_learning_curve_gets_what_the_search_leaves() -> None:
    # 10 earlies and two finals spent 1800 s; each curve run costs an early plus a final (500) until one ran.
    trials = judged(10)
    trials[9], trials[8] = promoted(trials[9], 0.7, 400), promoted(trials[8], 0.8, 400)
    curve: dict[str, Any] = {"top": {"dataEfficiency": {"sampleSizes": [50, 100, 150, 200], "hold": "epochs"}}}
    first = plan(spec(2, parallelism=4, maxTrials=10, **curve), Observed(trials=trials))
    assert len(of_type(first, StartRun)) == 4
    tight = spec(0.7, parallelism=4, maxTrials=10, **curve)  # 2520 s: one run of 500 fits after the 1800 spent
    assert [a.key.number for a in of_type(plan(tight, Observed(trials=trials)), StartRun)] == [50]
    swept = [SweepView(50, outcome(0.5, 450))]  # it cost 450: the next is priced at 450 and no longer fits
    ended = plan(tight, Observed(trials=trials, sweep=swept))
    assert (ended.phase, ended.reason) == ("Succeeded", Reason.BUDGET_EXHAUSTED) and "best trial 8" in ended.message


def test_stage_costs_come_from_finished_stages_of_their_kind() -> None:
    assert costs(spec(1), [], []).early is None
    trials = judged(2)
    assert astuple(costs(spec(1), trials, [])) == pytest.approx((100, 400, 500))
    trials[1] = promoted(trials[1], 0.5, 250)
    assert astuple(costs(spec(1), trials, [SweepView(200, outcome(0.5, 90))])) == pytest.approx((100, 250, 90))
    gpu = [TrialView(0, "complete", {}, early=outcome(0.3, 80, gpu=True))]
    assert costs(spec(1), gpu, []).early == 80  # GPU-seconds where the stage reported them


# --- status, metrics, progress ----------------------------------------------------------------------------


def test_the_status_says_what_is_spent_left_and_when_the_study_should_end() -> None:
    trials = judged(4)
    study = spec(1, parallelism=2)
    decision = Decision((), "Searching", "TrialsRunning", "asked")
    status = build_status(decision, summarize(study, trials, []), {}, 1, study, trials, "s", "2030-01-01T00:00:00Z")
    budget = status["budget"]
    assert budget["gpuHours"] == 1 and budget["usedGpuHours"] == pytest.approx(0.1111, abs=1e-4)
    assert budget["remainingGpuHours"] == pytest.approx(0.8889, abs=1e-4) and budget["usedRatio"] == 0.1111
    # 16 earlies (100 s) and 2 finals (400 s) to go, two at a time: 1200 s.
    assert budget["eta"] == "2030-01-01T00:20:00Z"
    assert budget["message"] == "budget 0.111/1 gpuHours used (11%), 0.889 left"
    done = Decision((), "Succeeded", Reason.BUDGET_EXHAUSTED, "")
    assert (
        "eta"
        not in build_status(done, summarize(study, trials, []), {}, 1, study, trials, "s", "2030-01-01T00:00:00Z")[
            "budget"
        ]
    )
    assert "budget" not in build_status(
        decision, summarize(spec(None), trials, []), {}, 1, spec(None), trials, "s", "2030-01-01T00:00:00Z"
    )


def test_the_eta_is_cut_to_what_the_budget_still_pays_for() -> None:
    # 0.25 h = 900 s, 400 spent: 500 s of the 2400 s of stages left, one at a time.
    assert use(spec(0.25), judged(4), []).eta_seconds == pytest.approx(500)  # type: ignore[union-attr]


def test_metrics_export_the_budget_and_the_share_spent() -> None:
    metrics = Metrics.create()
    metrics.publish(StudyState.of("ml", "capped", spec(0.5), judged(9), [], "Searching"))
    metrics.publish(StudyState.of("ml", "free", spec(None), judged(9), [], "Searching"))
    series = scraped(metrics)
    assert series["sweetspot_study_budget_seconds"] == [({"namespace": "ml", "study": "capped"}, 1800.0)]
    assert series["sweetspot_study_budget_used_ratio"] == [({"namespace": "ml", "study": "capped"}, 0.5)]


def test_the_progress_line_shows_the_budget() -> None:
    line = progress(spec(0.5), judged(9), [])
    assert "budget 0.25/0.5 gpuHours used (50%), 0.25 left, ETA ~15.0 min" in line
    assert "budget" not in progress(spec(None), judged(9), [])
