"""Final-score prediction (`promote: predicted`): early curves extrapolated, a line calibrated on the study's own
pairs, intervals that cover, and promotion by interval (pure)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.contract import Evaluation, StageResult
from sweetspot.core.policies.predict import calibration, extrapolate, model, predicted_promotions, predictions
from sweetspot.core.policies.proxy import Proxy
from sweetspot.core.records import Outcome, TrialView

from support.builders import outcome as outcome_of
from support.exposition import series as scraped


def spec(**early: Any) -> FineTuneStudySpec:
    early = {"promote": "predicted", "curvePoints": 3, "promoteTopK": 2} | early
    return FineTuneStudySpec.model_validate(
        {
            "model": {"builtin": "tiny"},
            "dataset": {"train": {"builtin": "product-pages"}},
            "search": {"maxTrials": 8, "earlyEvaluation": {"atFraction": 0.3, **early}},
        }
    )


def curve_of(end_loss: float) -> list[dict[str, float]]:
    """A saturating loss curve towards `end_loss` at 10%, 20% and 30% of the steps."""
    return [
        {"fraction": t, "loss": end_loss + 0.5 * t**-0.5 - 0.5, "f1": 0.0, "accuracy": 0.0, "tokenF1": 0.0}
        for t in (0.1, 0.2, 0.3)
    ]


def trial(number: int, end_loss: float, final: float | None = None) -> TrialView:
    curve = curve_of(end_loss)
    early = outcome_of(loss=curve[-1]["loss"], seconds=3.0, step=30, curve=curve)
    done = outcome_of(f1=final, loss=0.1, seconds=7.0, step=100) if final is not None else None
    return TrialView(number, "complete", {"learningRate": 1e-3}, early=early, final=done)


def test_a_saturating_curve_is_extrapolated_to_its_end_and_nothing_below_three_points() -> None:
    points = [(t, 0.4 + 0.5 * t**-0.5) for t in (0.1, 0.2, 0.3)]
    value, spread = extrapolate(points)  # type: ignore[misc]
    # The truth (a power law: 0.4 + 0.5 at t = 1) lies within the families' spread of their mean.
    assert 0 < spread < 0.15 and abs(value - 0.9) <= 1.5 * spread
    # Never past the last point's slope, never back above where the curve stands.
    assert points[-1][1] + (points[-1][1] - points[-2][1]) / 0.1 * 0.7 <= value <= points[-1][1]
    assert extrapolate(points[:2]) is None


def test_no_prediction_before_three_finals_and_promotion_falls_back_to_top_k() -> None:
    trials = [trial(0, 0.2, 0.8), trial(1, 0.3, 0.7), trial(2, 0.25), trial(3, 0.9)]
    assert predictions(spec(), trials) == {} and model(spec(), trials) is None
    assert [t.number for t in Proxy().promoted(spec(), trials)] == [0, 2]  # promoteTopK by early loss


def test_a_calibrated_line_predicts_with_intervals_and_promotes_only_what_may_win() -> None:
    # Final F1 falls with the end of the loss curve: 1 - loss, give or take 0.01.
    done = [
        trial(n, loss, round(1 - loss + (0.01 if n % 2 else -0.01), 3)) for n, loss in enumerate([0.2, 0.3, 0.4, 0.5])
    ]
    waiting = [trial(4, 0.15), trial(5, 0.6), trial(6, 0.25)]
    trials = done + waiting
    found = predictions(spec(), trials)
    assert found[4].value == pytest.approx(0.85, abs=0.03) and found[4].low < found[4].value < found[4].high
    assert found[5].high < 0.79  # clearly below the best final so far (0.79)
    # Trial 4 may beat the best final (0.79), trial 5 cannot; trial 6 (predicted ~0.75) might, within its interval.
    promoted = [t.number for t in predicted_promotions(spec(), trials, fallback=2)]
    assert promoted[:4] == [0, 1, 2, 3] and promoted[4] == 4 and 5 not in promoted
    assert Proxy().finals_left(spec(), trials, 0) == len(promoted) - 4
    check = calibration(spec(), trials)
    assert (check.pairs, check.checked) == (4, 4) and check.coverage is not None and check.coverage >= 0.75


def test_a_trial_the_predictor_cannot_predict_is_promoted_by_its_early_rank() -> None:
    # Trial 7 has the best early loss but no curve (too few steps for 3 points): the calibrated curve line cannot
    # predict it, so it is judged as before the predictor had a line, by early rank within `promoteTopK`.
    # Finals follow the ends of the curves, while the early losses themselves are scrambled: the curve is chosen.
    done = []
    for n, (loss, scrambled) in enumerate([(0.2, 0.5), (0.3, 0.2), (0.4, 0.6), (0.5, 0.3)]):
        base = trial(n, loss, round(1 - loss + (0.01 if n % 2 else -0.01), 3))
        assert base.early is not None
        early = outcome_of(loss=scrambled, seconds=3.0, step=30, curve=base.early.curve)
        done.append(TrialView(n, "complete", base.params, early=early, final=base.final))
    assert (chosen := model(spec(), done)) is not None and chosen.feature == "curve"
    short = TrialView(
        7, "complete", {"learningRate": 1e-3}, early=outcome_of(loss=0.1, seconds=3.0, step=3, planned_steps=9)
    )
    trials = [*done, trial(4, 0.15), trial(5, 0.6), short]
    assert 7 not in predictions(spec(), trials) and 4 in predictions(spec(), trials)
    promoted = [t.number for t in predicted_promotions(spec(), trials, fallback=2)]
    assert 7 in promoted and 4 in promoted and 5 not in promoted
    assert 7 not in Proxy().stopped_early(spec(), trials)


def test_the_predictor_uses_the_early_score_when_the_curve_predicts_worse() -> None:
    # Finals follow the last early point exactly, while their curves' ends say otherwise.
    trials = []
    for n, (loss, final) in enumerate([(0.2, 0.8), (0.3, 0.6), (0.4, 0.7), (0.5, 0.5)]):
        base = trial(n, loss, final)
        early = base.early
        assert early is not None
        last = 1.0 - final  # the early score itself tracks the final
        curve = [*early.curve[:2], {**early.curve[2], "loss": last}]
        trials.append(
            TrialView(
                n,
                "complete",
                {},
                early=outcome_of(loss=last, seconds=3.0, step=30, curve=curve),
                final=base.final,
            )
        )
    chosen = model(spec(), trials)
    assert chosen is not None and chosen.feature == "last"


def test_an_early_result_keeps_its_own_curve() -> None:
    def evaluation(step: int, loss: float) -> Evaluation:
        return Evaluation(step=step, fraction=step / 100, f1=0.5, precision=0.5, recall=0.5, macro_f1=0.5,
                          accuracy=0.5, token_f1=0.5, loss=loss)  # fmt: skip

    result = StageResult(
        study="s", trial=0, stage="early", status="ok", step=30, planned_steps=100, samples=300, seconds=3.0,
        evaluations=[evaluation(0, 2.0), evaluation(10, 0.9), evaluation(20, 0.7), evaluation(30, 0.6)],
    )  # fmt: skip
    outcome = Outcome.from_evaluation(result, result.evaluations[-1])
    assert [(p["fraction"], p["loss"]) for p in outcome.curve] == [(0.1, 0.9), (0.2, 0.7), (0.3, 0.6)]
    single = result.model_copy(update={"evaluations": result.evaluations[-1:]})
    assert Outcome.from_evaluation(single, single.evaluations[0]).curve == []
    assert math.isclose(outcome.loss, 0.6)


def test_status_metrics_and_report_show_predictions_and_their_calibration() -> None:
    from prometheus_client import CollectorRegistry

    from sweetspot.api.resource import FineTuneStudy
    from sweetspot.core.records import Decision
    from sweetspot.core.stats import summarize
    from sweetspot.core.study_status import build_status
    from sweetspot.observe.metrics import Metrics, StudyState
    from sweetspot.report.data import _as_data
    from sweetspot.report.text import render_text

    noisy = [(0.2, 0.81), (0.3, 0.69), (0.4, 0.61), (0.5, 0.49)]
    trials = [trial(n, loss, final) for n, (loss, final) in enumerate(noisy)] + [trial(4, 0.15)]
    summary = summarize(spec(), trials, [])
    decision = Decision((), "Promoting", "PromotedTrialsRunning", "")
    built = build_status(decision, summary, {}, 1, spec(), trials, "default/s", "2030-01-01T00:00:00Z")
    assert built["prediction"]["pairs"] == 4 and built["prediction"]["checked"] == 4
    assert built["prediction"]["feature"] in ("last", "curve") and built["prediction"]["coverage"] == 1.0

    metrics = Metrics.create(CollectorRegistry())
    metrics.publish(StudyState.of("ns", "s", spec(), trials=trials, sweep=[], phase="Promoting"))
    series = scraped(metrics)
    bounds = {s["bound"]: v for s, v in series["sweetspot_trial_predicted_final"] if s["trial"] == "4"}
    assert bounds["low"] < bounds["value"] < bounds["high"]
    assert series["sweetspot_study_prediction_coverage"][0][1] == 1.0

    resource = FineTuneStudy.model_validate(
        {"apiVersion": "sweetspot.dev/v1alpha1", "kind": "FineTuneStudy", "metadata": {"name": "s"}, "spec": spec()}
    )
    text = render_text(_as_data(resource, {"phase": "Promoting"}, trials, summary))
    assert "predicted final (80%)" in text and "100% of 4 finals inside their 80% interval" in text
