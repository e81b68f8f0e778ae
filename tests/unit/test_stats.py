"""What a study has learned: counts, agreement of early and final scores, compute saved, the sweet spot."""

from __future__ import annotations

import pytest

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.records import Outcome, SweepView, TrialView
from sweetspot.core.stats import agreement, curve_data, progress, summarize

from support.builders import outcome as outcome_of
from support.builders import study_spec


def spec(**early: object) -> FineTuneStudySpec:
    return study_spec(
        {"maxTrials": 4, "earlyEvaluation": {"promoteTopK": 2, **early}},
        dataEfficiency={"sampleSizes": [100, 200, 400], "tolerance": 0.02},
    )


def outcome(score: float, loss: float = 0.5, seconds: float = 10.0, step: int = 20, planned: int = 100) -> Outcome:
    """F1 (the default objective) and accuracy both `score`."""
    return outcome_of(f1=score, loss=loss, seconds=seconds, step=step, planned_steps=planned)


def done(number: int, early: float, final: float | None) -> TrialView:
    return TrialView(number, "complete", {}, outcome(early), outcome(final, step=100) if final is not None else None)


def test_agreement_of_early_and_final_ranks() -> None:
    trials = [done(0, 0.3, 0.6), done(1, 0.5, 0.8), done(2, 0.4, 0.7), done(3, 0.6, 0.75)]
    result = agreement(spec(signal="accuracy"), trials)
    assert result.trials == 4
    assert result.spearman == pytest.approx(0.8)
    assert result.kendall == pytest.approx(0.6667, abs=1e-4)
    # The top 3 of 4, not the top 4 of 4 (which always overlap fully).
    assert (result.top_k, result.top_k_overlap) == (3, 3)


def test_loss_as_the_signal_ranks_lower_as_better() -> None:
    trials = [
        TrialView(n, "complete", {}, outcome(0.2, loss=loss), outcome(final, step=100))
        for n, (loss, final) in enumerate([(0.9, 0.5), (0.5, 0.7), (0.2, 0.9)])
    ]
    assert agreement(spec(signal="loss"), trials).spearman == pytest.approx(1.0)


def test_too_few_trials_give_no_correlation() -> None:
    assert agreement(spec(), [done(0, 0.3, 0.6)]).spearman is None


def test_two_trials_are_no_evidence_and_the_report_says_so() -> None:
    """Over 2 trials a rank correlation can only be -1 or 1: the quickstart used to print "Spearman -1.000"."""
    from sweetspot.api.resource import FineTuneStudy
    from sweetspot.report.data import _as_data
    from sweetspot.report.text import render_text

    trials = [done(0, 0.3, 0.6), done(1, 0.5, 0.4), done(2, 0.2, None)]
    two = agreement(spec(signal="accuracy"), trials)
    assert (two.trials, two.spearman, two.kendall, two.top_k_overlap) == (2, None, None, None)
    resource = FineTuneStudy.model_validate(
        {"apiVersion": "sweetspot.dev/v1alpha1", "kind": "FineTuneStudy", "metadata": {"name": "s"}, "spec": spec()}
    )
    text = render_text(_as_data(resource, {"phase": "Succeeded"}, trials, summarize(spec(), trials, [])))
    assert "early vs final: n/a (2 trials" in text and "Spearman" not in text
    assert "judged at" not in text  # no widening: one early fraction, no column for it


def test_counts_and_compute_saved_by_judging_early() -> None:
    trials = [done(0, 0.5, 0.8), done(1, 0.6, 0.9), done(2, 0.1, None), done(3, 0.2, None)]
    summary = summarize(spec(), trials, [])
    assert summary.counts == {"total": 4, "running": 0, "waiting": 0, "complete": 2, "pruned": 2, "failed": 0}
    assert summary.best is not None and summary.best.number == 1
    # Two trials stopped at step 20 of 100 after 10 s: each saved the 80 steps they did not run (40 s).
    assert summary.compute_saved == pytest.approx(80.0)
    assert summary.compute_used == pytest.approx(60.0)


def test_the_curve_averages_repeats_and_fits_a_sweet_spot() -> None:
    def point(samples: int, f1: float, repeat: int, rating: float) -> SweepView:
        per_attribute = {"brand": 0.9, "rating": rating}
        measured = outcome_of(
            f1=f1, accuracy=f1 + 0.1, token_f1=f1, step=100, samples=samples, attribute_f1=per_attribute
        )
        return SweepView(samples, measured, repeat=repeat)

    sweep = [
        point(100, 0.70, 0, 0.2),
        point(100, 0.72, 1, 0.3),
        point(200, 0.85, 0, 0.5),
        point(200, 0.85, 1, 0.5),
        point(400, 0.87, 0, 0.6),
        point(400, 0.87, 1, 0.6),
        point(800, 0.875, 0, 0.7),
        point(800, 0.875, 1, 0.7),
    ]
    summary = summarize(spec(), [done(0, 0.5, 0.8)], sweep)
    first = summary.curve[0]
    # The curve is in micro-F1; accuracy rides along.
    assert (first.samples, first.score, first.repeats, first.accuracy) == (100, 0.71, 2, 0.81)
    assert first.spread == pytest.approx(0.0141, abs=1e-4)
    assert first.attribute_scores == {"brand": 0.9, "rating": 0.25}
    assert summary.sweet_spot == (400, 0.87)
    points, sweet = curve_data(summary)
    assert sweet is not None and sweet["saturated"] and sweet["samples"] == 400 and sweet["f1"] == 0.87
    assert points[0]["f1"] == 0.71 and points[0]["accuracy"] == 0.81
    assert curve_data(summary, max_attributes=1)[0][0]["attributeF1"] == {"brand": 0.9}
    assert sweet["recommendation"].endswith("label more pages that have rating")
    assert points[0]["leadingAttribute"] == "rating" and points[0]["gainPerThousand"] > points[-1]["gainPerThousand"]


def test_progress_line_tells_the_best_so_far_and_time_to_go() -> None:
    trials = [done(0, 0.5, None), done(1, 0.6, None)]
    line = progress(spec(signal="accuracy"), trials, [])
    assert line.startswith("2/4 trials judged early, 0 trained to the end, best early accuracy 0.6000 (trial 1)")
    # Two early stages left at 10 s, two finals at 10 s * 0.8 / 0.2 = 40 s, two sweep sizes beyond the first.
    assert line.endswith("ETA ~3.0 min")


def test_progress_of_a_sweep_alone_counts_runs_and_estimates_time() -> None:
    fixed = study_spec(
        dataEfficiency={"sampleSizes": [100, 200, 400], "hyperparameters": "fixed", "params": {"epochs": 1}}
    )
    sweep = [
        SweepView(n, outcome_of(f1=a, seconds=10.0 + n / 10, step=10, planned_steps=10, samples=n))
        for n, a in ((100, 0.5), (200, 0.6))
    ]
    # 10 s + 0.1 s per row, fitted from the two runs: the 400-row run takes about 50 s.
    assert progress(fixed, [], sweep) == "2/3 learning-curve runs done, F1 100: 0.500, 200: 0.600, ETA ~0.8 min"


def test_the_report_shows_each_widening_and_where_each_trial_was_judged() -> None:
    from sweetspot.api.resource import FineTuneStudy
    from sweetspot.report.data import _as_data
    from sweetspot.report.text import render_text

    guarded = spec(minAgreement=0.6, promoteTopK=3)
    # Early loss and final F1 rise together: the best early trials were the worst finals.
    trials = [
        TrialView(n, "complete", {}, outcome(0.5, loss=loss), outcome(final, step=100))
        for n, (loss, final) in enumerate([(0.2, 0.5), (0.3, 0.6), (0.4, 0.7)])
    ] + [TrialView(3, "complete", {}, outcome(0.5, loss=0.1, step=35))]
    resource = FineTuneStudy.model_validate(
        {"apiVersion": "sweetspot.dev/v1alpha1", "kind": "FineTuneStudy", "metadata": {"name": "s"}, "spec": guarded}
    )
    data = _as_data(resource, {"phase": "Promoting"}, trials, summarize(guarded, trials, []))
    assert [row["judgedAt"] for row in data["trials"]] == [0.2, 0.2, 0.2, 0.35]
    assert data["judging"]["widenings"] == [{"from": 0.2, "to": 0.35, "agreement": -1.0, "trials": 3}]
    text = render_text(data)
    assert (
        "agreement guard: Spearman -1.000 over 3 finals judged at 20% (below 0.6): later trials judged at 35%" in text
    )
    header = next(line for line in text.splitlines() if "state" in line and "params" in line)
    assert "judged at" in header  # trials were judged at two fractions: the table says which


def test_the_forecast_reaches_the_status_and_the_recommendation() -> None:
    from sweetspot.api.status import LearningCurveForecast
    from sweetspot.core.stats import forecast_data
    from sweetspot.core.study_status import without_nulls

    forecasting = spec().model_copy(
        update={
            "data_efficiency": spec().data_efficiency.model_validate(  # type: ignore[union-attr]
                {"sampleSizes": [50, 100, 200, 400], "forecast": {"to": [800, 1600]}, "target": {"f1": 0.99}}
            )
        }
    )
    sweep = [
        SweepView(n, outcome_of(f1=a, step=100, samples=n), repeat=r)
        for n, a in ((50, 0.50), (100, 0.60), (200, 0.68), (400, 0.72))
        for r in range(2)
    ]
    summary = summarize(forecasting, [], sweep)
    data = forecast_data(summary)
    assert data is not None
    typed = LearningCurveForecast.model_validate(without_nulls(data))
    assert [p.samples for p in typed.points] == [800, 1600]
    assert all(p.low <= p.f1 <= p.high for p in typed.points)
    assert typed.target is not None and typed.target.above_plateau and typed.target.rows is None
    assert "0.99 lies above the plateau's band" in typed.message
    _, sweet = curve_data(summary)
    assert sweet is not None and "forecast: at 1,600 rows F1" in sweet["recommendation"]
    # Without forecast or target, nothing is forecast.
    assert forecast_data(summarize(spec(), [], sweep)) is None
