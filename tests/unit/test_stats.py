"""What a study has learned: counts, agreement of early and final scores, compute saved, the sweet spot."""

from __future__ import annotations

import pytest

from sweetspot.api import FineTuneStudySpec
from sweetspot.planner import Outcome, SweepView, TrialView
from sweetspot.stats import agreement, progress, summarize, sweet_spot


def spec(**early: object) -> FineTuneStudySpec:
    return FineTuneStudySpec.model_validate(
        {
            "model": {"builtin": "tiny"},
            "dataset": {"train": {"builtin": "product-pages"}},
            "search": {"maxTrials": 4, "earlyEvaluation": {"promoteTopK": 2, **early}},
            "dataEfficiency": {"sampleSizes": [100, 200, 400], "minGain": 0.02},
        }
    )


def outcome(accuracy: float, loss: float = 0.5, seconds: float = 10.0, step: int = 20, planned: int = 100) -> Outcome:
    return Outcome(accuracy, loss, accuracy, {}, seconds, 0.0, step, planned, 300)


def done(number: int, early: float, final: float | None) -> TrialView:
    return TrialView(number, "complete", {}, outcome(early), outcome(final, step=100) if final is not None else None)


def test_agreement_of_early_and_final_ranks() -> None:
    trials = [done(0, 0.3, 0.6), done(1, 0.5, 0.8), done(2, 0.4, 0.7), done(3, 0.6, 0.75)]
    result = agreement(spec(), trials)
    assert result.trials == 4
    assert result.spearman == pytest.approx(0.8)
    assert result.kendall == pytest.approx(0.6667, abs=1e-4)
    assert (result.top_k, result.top_k_overlap) == (4, 4)


def test_loss_as_the_signal_ranks_lower_as_better() -> None:
    trials = [
        TrialView(n, "complete", {}, outcome(0.2, loss=loss), outcome(final, step=100))
        for n, (loss, final) in enumerate([(0.9, 0.5), (0.5, 0.7), (0.2, 0.9)])
    ]
    assert agreement(spec(signal="loss"), trials).spearman == pytest.approx(1.0)


def test_too_few_trials_give_no_correlation() -> None:
    assert agreement(spec(), [done(0, 0.3, 0.6)]).spearman is None


def test_counts_and_compute_saved_by_judging_early() -> None:
    trials = [done(0, 0.5, 0.8), done(1, 0.6, 0.9), done(2, 0.1, None), done(3, 0.2, None)]
    summary = summarize(spec(), trials, [])
    assert summary.counts == {"total": 4, "running": 0, "waiting": 0, "complete": 2, "pruned": 2, "failed": 0}
    assert summary.best is not None and summary.best.number == 1
    # Two trials stopped at step 20 of 100 after 10 s: each saved the 80 steps they did not run (40 s).
    assert summary.compute_saved == pytest.approx(80.0)
    assert summary.compute_used == pytest.approx(60.0)


def test_sweet_spot_is_where_the_next_size_stops_paying() -> None:
    curve = [(100, 0.70, {}), (200, 0.85, {}), (400, 0.86, {}), (800, 0.95, {})]
    assert sweet_spot(curve, min_gain=0.02) == (200, 0.85)
    assert sweet_spot(curve[:2], min_gain=0.02) == (200, 0.85)
    assert sweet_spot([], min_gain=0.02) is None
    points = [SweepView(n, outcome(a)) for n, a in ((100, 0.7), (200, 0.85), (400, 0.86))]
    assert summarize(spec(), [done(0, 0.5, 0.8)], points).sweet_spot == (200, 0.85)


def test_progress_line_tells_the_best_so_far_and_time_to_go() -> None:
    trials = [done(0, 0.5, None), done(1, 0.6, None)]
    line = progress(spec(), trials, [])
    assert line.startswith("2/4 trials judged early, 0 trained to the end, best early accuracy 0.6000 (trial 1)")
    # Two early stages left at 10 s, two finals at 10 s * 0.8 / 0.2 = 40 s, two sweep sizes beyond the first.
    assert line.endswith("ETA ~3.0 min")
