"""The agreement guard of `proxy`: early ranks checked against final ranks, and the early fraction widened when
they disagree (pure decisions: trials in, judging and actions out)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.planner import plan
from sweetspot.core.policies.guard import judged_fraction, promotion_order, spearman
from sweetspot.core.policies.proxy import Proxy
from sweetspot.core.policies.registry import judging
from sweetspot.core.records import Observed, Outcome, RunKey, StartRun, TrialView

from support.builders import outcome as outcome_of
from support.builders import study_spec

PARAMS = {"learningRate": 0.001}


def spec(max_trials: int = 6, **early: Any) -> FineTuneStudySpec:
    early = {"promoteTopK": 3, "minAgreement": 0.6} | early
    return study_spec({"maxTrials": max_trials, "earlyEvaluation": early})


def outcome(loss: float, f1: float = 0.5, fraction: float = 0.2) -> Outcome:
    return outcome_of(f1=f1, loss=loss, step=round(100 * fraction))


def judged(number: int, loss: float, final: float | None = None, fraction: float = 0.2) -> TrialView:
    """A trial judged at `fraction` with early loss `loss`, and a final F1 if it was promoted."""
    promoted = outcome(0.1, final, 1.0) if final else None
    return TrialView(number, "complete", PARAMS, early=outcome(loss, fraction=fraction), final=promoted)


# Three promoted trials whose final F1 runs against their early loss (best early = worst final), three not promoted.
DISAGREEING = [judged(0, 0.30, 0.60), judged(1, 0.35, 0.70), judged(2, 0.40, 0.80), judged(3, 0.5), judged(4, 0.6)]
AGREEING = [judged(0, 0.30, 0.80), judged(1, 0.35, 0.70), judged(2, 0.40, 0.60), judged(3, 0.5), judged(4, 0.6)]


def test_spearman_needs_three_untied_pairs() -> None:
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 3], [3, 2, 1]) == -1.0


def test_no_evidence_before_three_finals_and_agreement_keeps_the_fraction() -> None:
    assert judging(spec(), DISAGREEING[:2] + DISAGREEING[3:]).level == 0
    agreed = judging(spec(), AGREEING)
    assert (agreed.fraction, agreed.level, agreed.agreement, agreed.trials) == (0.2, 0, 1.0, 3)


def test_disagreement_widens_to_the_next_fraction_and_promotes_one_more() -> None:
    widened = judging(spec(), DISAGREEING)
    assert (widened.fraction, widened.level, widened.agreement, widened.trials) == (0.35, 1, None, 0)
    step = widened.widenings[0]
    assert (step.from_fraction, step.to_fraction, step.agreement, step.trials) == (0.2, 0.35, -1.0, 3)
    assert "Spearman -1.000 < 0.60 over 3 finals" in step.describe(0.6)
    # One more than promoteTopK: the best early trial not yet trained to the end.
    assert [t.number for t in Proxy().promoted(spec(), DISAGREEING)] == [0, 1, 2, 3]
    assert Proxy().finals_left(spec(), DISAGREEING, 0) == 1


def test_the_guard_is_off_without_min_agreement_and_under_prune() -> None:
    assert judging(spec(minAgreement=None), DISAGREEING).level == 0
    assert judging(spec(policy="prune"), DISAGREEING).level == 0
    assert [t.number for t in Proxy().promoted(spec(minAgreement=None), DISAGREEING)] == [0, 1, 2]


def test_a_widening_holds_once_trials_were_judged_wider_and_stops_at_the_last_fraction() -> None:
    # Later finals at 20% that agree again do not narrow the fraction back: trials were judged at 35% since.
    later = [*AGREEING, judged(5, 0.2, fraction=0.35)]
    assert judging(spec(), later).fraction == 0.35
    # Disagreement at 35% too: 50%; there, with nowhere wider to go, it stays.
    wide = [judged(n, 0.2 + n / 100, 0.5 + n / 20, fraction=0.35) for n in range(5, 8)]
    assert judging(spec(), DISAGREEING + wide).fraction == 0.5
    widest = [judged(n, 0.1 + n / 100, 0.1 + n / 20, fraction=0.5) for n in range(8, 11)]
    assert judging(spec(), DISAGREEING + wide + widest).level == 2
    assert judging(spec(widenTo=[0.3]), DISAGREEING).fraction == 0.3


def test_trials_judged_at_different_fractions_are_ranked_within_their_fraction() -> None:
    # At 35% every loss is lower than at 20%; compared raw, the widened trials would crowd out the rest.
    trials = [judged(0, 0.30), judged(1, 0.40), judged(2, 0.10, fraction=0.35), judged(3, 0.05, fraction=0.35)]
    assert [t.number for t in promotion_order(spec(), trials)] == [0, 3, 1, 2]
    # A lone trial at 35% ranks mid-field among its peers, not first.
    lone = [judged(n, 0.3 + n / 100) for n in range(5)] + [judged(5, 0.9, fraction=0.35)]
    assert [t.number for t in promotion_order(spec(), lone)] == [0, 1, 2, 5, 3, 4]
    assert judged_fraction(spec(), trials[2].early) == 0.35  # type: ignore[arg-type]


def test_new_trials_start_at_the_widened_fraction_and_finals_resume_where_they_were_judged() -> None:
    study = spec(max_trials=8)
    trials = [*DISAGREEING, judged(5, 0.5, fraction=0.35), TrialView(6, "running", PARAMS)]
    decision = plan(study, Observed(trials=trials))
    assert decision.actions == (StartRun(RunKey("trial", 6, "early"), PARAMS, early_fraction=0.35),)
    # Searched out: the extra promotion's final resumes trial 3 where it was judged (20%: the default, None).
    decision = plan(spec(max_trials=5), Observed(trials=DISAGREEING))
    assert decision.actions == (StartRun(RunKey("trial", 3, "final"), PARAMS),)
    widened_best = [*DISAGREEING[:3], judged(3, 0.9), judged(4, 0.9), judged(5, 0.2, fraction=0.35)]
    decision = plan(spec(max_trials=6), Observed(trials=widened_best))
    assert decision.actions == (StartRun(RunKey("trial", 5, "final"), PARAMS, early_fraction=0.35),)


def test_a_final_resumes_at_the_fraction_its_early_stage_echoed_not_one_guessed_from_its_step() -> None:
    """9 planned steps at `atFraction: 0.3` stop at step 3, which is nearer 0.35 (a `widenTo` default) than 0.3: a
    guess from the step sent the final the wrong fraction, so its checkpoint's fingerprint did not match and it
    trained from scratch."""
    at_03 = {"atFraction": 0.3, "promoteTopK": 1}
    early = outcome_of(accuracy=0.5, loss=0.3, seconds=1.0, step=3, planned_steps=9, samples=30, judged_at=0.3)
    trials = [TrialView(0, "complete", PARAMS, early=early)]
    for study in (spec(max_trials=1, minAgreement=None, **at_03), spec(max_trials=1, **at_03)):
        assert judged_fraction(study, early) == 0.3
        assert plan(study, Observed(trials=trials)).actions == (StartRun(RunKey("trial", 0, "final"), PARAMS),)
    # A record kept before stages echoed their fraction: the guard off never widened, so it was `atFraction`.
    unechoed = dataclasses.replace(early, judged_at=None)
    assert judged_fraction(spec(minAgreement=None, **at_03), unechoed) == 0.3
