"""Prometheus metrics derived from study state: every series with its labels, bounded, and gone with the study."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.records import Outcome, SweepView, TrialView
from sweetspot.observe.metrics import Metrics, StudyState

from support.builders import outcome as outcome_of
from support.builders import study_spec

Series = dict[str, list[tuple[dict[str, str], float]]]


def spec(max_trials: int = 4, **early: object) -> FineTuneStudySpec:
    return study_spec(
        {"maxTrials": max_trials, "earlyEvaluation": {"promoteTopK": 2, **early}},
        dataEfficiency={"sampleSizes": [50, 100, 200, 400], "repeats": 2, "tolerance": 0.02},
    )


def outcome(score: float, seconds: float = 10.0, step: int = 20, attributes: dict[str, float] | None = None) -> Outcome:
    """F1 `score` (precision a little higher, recall a little lower), accuracy `score + 0.05`."""
    per_attribute = attributes if attributes is not None else {"brand": score, "rating": score / 2}
    return outcome_of(
        f1=score,
        accuracy=round(score + 0.05, 4),
        token_f1=score,
        loss=1 - score,
        seconds=seconds,
        step=step,
        precision=round(score + 0.01, 4),
        recall=round(score - 0.01, 4),
        attribute_f1=per_attribute,
    )


def trial(number: int, early: float, final: float | None, **extra: object) -> TrialView:
    final_outcome = outcome(final, seconds=50.0, step=100) if final is not None else None
    return TrialView(number, "complete", {"learning_rate": 1e-3}, outcome(early), final_outcome, **extra)  # type: ignore[arg-type]


def scrape(metrics: Metrics) -> Series:
    series: Series = defaultdict(list)
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            series[sample.name].append((dict(sample.labels), sample.value))
    return series


def value(series: Series, name: str, **labels: str) -> float:
    matches = [v for found, v in series[name] if labels.items() <= found.items()]
    assert len(matches) == 1, (name, labels, series[name])
    return matches[0]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create(CollectorRegistry())


def study_state(**overrides: object) -> StudyState:
    trials = [
        trial(0, 0.5, 0.8),
        trial(1, 0.6, 0.9, failed_attempts={"early": frozenset({0})}),
        trial(2, 0.1, None),
        TrialView(3, "failed", {}, reason="boom", failed_attempts={"early": frozenset({0, 1})}),
    ]
    sweep = [
        SweepView(50, outcome(0.2, seconds=30.0, step=100)),
        SweepView(100, outcome(0.7, seconds=30.0, step=100)),
        SweepView(100, outcome(0.6, seconds=30.0, step=100), repeat=1),
        SweepView(200, outcome(0.8, seconds=30.0)),
        SweepView(400, outcome(0.81, seconds=30.0)),
    ]
    fields: dict[str, object] = {"trials": trials, "sweep": sweep, "phase": "Sweeping"} | overrides
    return StudyState.of("team-a", "attrs", spec(), **fields)  # type: ignore[arg-type]


def test_each_metric_with_its_labels(metrics: Metrics) -> None:
    metrics.publish(study_state())
    series = scrape(metrics)
    study = {"namespace": "team-a", "study": "attrs"}

    assert value(series, "sweetspot_trial_f1", **study, trial="1", stage="early") == 0.6
    assert value(series, "sweetspot_trial_f1", **study, trial="1", stage="final") == 0.9
    assert value(series, "sweetspot_trial_precision", **study, trial="1", stage="final") == 0.91
    assert value(series, "sweetspot_trial_recall", **study, trial="1", stage="final") == 0.89
    assert value(series, "sweetspot_trial_accuracy", **study, trial="1", stage="final") == 0.95
    assert value(series, "sweetspot_trial_loss", **study, trial="1", stage="final") == pytest.approx(0.1)
    assert not [s for s, _ in series["sweetspot_trial_f1"] if s["trial"] == "2" and s["stage"] == "final"]
    assert value(series, "sweetspot_trial_attribute_f1", **study, trial="1", stage="final", attribute="rating") == 0.45
    assert value(series, "sweetspot_study_best_f1", **study, stage="early") == 0.6
    assert value(series, "sweetspot_study_best_f1", **study, stage="final") == 0.9
    assert value(series, "sweetspot_study_best_accuracy", **study, stage="final") == 0.95
    assert value(series, "sweetspot_study_attributes_left_out", **study) == 0
    states = {s["state"]: v for s, v in series["sweetspot_study_trials"]}
    assert states == {"running": 0, "waiting": 0, "complete": 2, "pruned": 1, "failed": 1}
    assert value(series, "sweetspot_study_max_trials", **study) == 4
    phases = {s["phase"]: v for s, v in series["sweetspot_study_phase"]}
    assert phases.pop("Sweeping") == 1 and set(phases.values()) == {0}
    assert value(series, "sweetspot_study_stage_failures_total", **study, kind="failed") == 3
    assert value(series, "sweetspot_study_stage_failures_total", **study, kind="disrupted") == 0
    # Two trials with both scores: no rank statistic yet (over 2 trials it could only be -1 or 1).
    assert not series["sweetspot_study_early_final_spearman"] and not series["sweetspot_study_early_final_kendall"]
    assert value(series, "sweetspot_study_early_final_trials", **study) == 2
    assert not series["sweetspot_study_early_final_top_k_overlap"]
    assert value(series, "sweetspot_study_early_fraction", **study) == 0.2
    assert value(series, "sweetspot_study_early_widenings", **study) == 0
    # used: 3 early stages x 10 s + 2 finals x 50 s + 5 sweep runs x 30 s; saved: trial 2's 80 remaining steps.
    assert value(series, "sweetspot_study_gpu_seconds", **study, kind="used") == pytest.approx(280.0)
    assert value(series, "sweetspot_study_gpu_seconds", **study, kind="saved") == pytest.approx(40.0)
    assert value(series, "sweetspot_learning_curve_f1", **study, samples="200") == 0.8
    assert value(series, "sweetspot_learning_curve_f1", **study, samples="100") == pytest.approx(0.65)
    assert value(series, "sweetspot_learning_curve_accuracy", **study, samples="100") == pytest.approx(0.7)
    assert value(series, "sweetspot_learning_curve_f1_spread", **study, samples="100") == pytest.approx(0.0707)
    assert 0.8 < value(series, "sweetspot_learning_curve_plateau", **study) < 0.83
    assert value(series, "sweetspot_learning_curve_attribute_f1", **study, samples="100", attribute="rating") == 0.325
    assert value(series, "sweetspot_study_sweet_spot_samples", **study) == 200
    assert value(series, "sweetspot_storage_reachable", **study) == 1
    # The stage-duration histogram: three early stages of 10 s, two finals of 50 s.
    assert value(series, "sweetspot_trial_duration_seconds_count", **study, stage="early") == 3
    assert value(series, "sweetspot_trial_duration_seconds_bucket", **study, stage="final", le="30.0") == 0
    assert value(series, "sweetspot_trial_duration_seconds_bucket", **study, stage="final", le="60.0") == 2
    assert value(series, "sweetspot_trial_duration_seconds_sum", **study, stage="final") == 100
    # Operator health.
    assert value(series, "sweetspot_build_info")
    assert value(series, "sweetspot_last_successful_reconcile_timestamp_seconds") > 1.7e9
    assert {s["reason"] for s, _ in series["sweetspot_reconcile_errors_total"]} == {
        "storage",
        "cluster",
        "invalid",
        "other",
    }
    assert "sweetspot_reconcile_duration_seconds_bucket" in series


def test_a_new_state_replaces_the_old_one_instead_of_adding_to_it(metrics: Metrics) -> None:
    metrics.publish(study_state())
    metrics.publish(study_state())
    assert value(scrape(metrics), "sweetspot_study_stage_failures_total", kind="failed") == 3
    metrics.publish(study_state(phase="Succeeded"))
    assert value(scrape(metrics), "sweetspot_study_phase", phase="Succeeded") == 1


def test_a_forgotten_study_leaves_no_series(metrics: Metrics) -> None:
    metrics.publish(study_state())
    metrics.publish(StudyState.of("team-b", "other", spec(), [trial(0, 0.4, 0.5)], [], "Succeeded"))
    metrics.studies.forget("team-a", "attrs")
    series = scrape(metrics)
    labelled = [labels for samples in series.values() for labels, _ in samples if "study" in labels]
    assert labelled and all(labels["study"] == "other" for labels in labelled)


def test_storage_down_keeps_the_last_state_and_says_so(metrics: Metrics) -> None:
    metrics.publish(study_state())
    metrics.studies.storage_down("team-a", "attrs")
    metrics.studies.storage_down("team-a", "never-reached")
    series = scrape(metrics)
    assert value(series, "sweetspot_storage_reachable", study="attrs") == 0
    assert value(series, "sweetspot_storage_reachable", study="never-reached") == 0
    assert value(series, "sweetspot_study_best_f1", study="attrs", stage="final") == 0.9


def test_per_trial_series_are_bounded_to_the_recent_trials_and_the_best() -> None:
    metrics = Metrics.create(CollectorRegistry())
    metrics.studies.trials_per_study = 3
    trials = [trial(n, 0.1 + n / 100, 0.2 + (0.5 if n == 1 else n / 100)) for n in range(20)]
    metrics.publish(StudyState.of("ns", "big", spec(max_trials=20), trials, [], "Succeeded"))
    series = scrape(metrics)
    assert {s["trial"] for s, _ in series["sweetspot_trial_f1"]} == {"1", "17", "18", "19"}
    # Study-level series still cover every trial.
    assert value(series, "sweetspot_trial_duration_seconds_count", stage="early") == 20


def test_only_short_printable_attribute_names_of_the_most_supported_attributes_become_labels(
    metrics: Metrics,
) -> None:
    # Ordered as the trainer orders them, most gold values first.
    odd = {
        "Back / Side Material": 0.8,
        "brand": 0.9,
        "price in €": 0.5,
        'say "hi"\n': 0.3,
        "x" * 80: 0.4,
        **{f"a{i:02}": 0.1 for i in range(40)},
    }
    final = outcome(0.5, attributes=odd)
    state = StudyState.of("ns", "odd", spec(), [TrialView(0, "complete", {}, outcome(0.4), final)], [], "Succeeded")
    metrics.publish(state)
    series = scrape(metrics)
    attributes = {s["attribute"] for s, _ in series["sweetspot_trial_attribute_f1"] if s["stage"] == "final"}
    assert {"Back / Side Material", "brand"} <= attributes
    assert not {"price in €", 'say "hi"\n', "x" * 80} & attributes
    assert len(attributes) == 32 and "a29" in attributes and "a30" not in attributes  # the rarest are left out
    assert value(series, "sweetspot_study_attributes_left_out", study="odd") == len(odd) - 32


def test_an_empty_study_exports_its_counts_but_no_scores(metrics: Metrics) -> None:
    metrics.publish(StudyState.of("ns", "new", spec(), [], [], "Pending"))
    series = scrape(metrics)
    assert value(series, "sweetspot_study_trials", state="running") == 0
    assert value(series, "sweetspot_study_phase", phase="Pending") == 1
    assert not series["sweetspot_study_best_f1"] and not series["sweetspot_study_early_final_spearman"]


def test_three_finals_give_rank_statistics_and_a_disagreement_widens_the_early_fraction(metrics: Metrics) -> None:
    # Better early (lower loss) went with worse finals: ranks reversed.
    trials = [trial(0, 0.5, 0.9), trial(1, 0.6, 0.8), trial(2, 0.7, 0.7), trial(3, 0.2, None)]
    guarded = spec(minAgreement=0.6)
    metrics.publish(StudyState.of("team-a", "attrs", guarded, trials=trials, sweep=[], phase="Promoting"))
    series = scrape(metrics)
    study = {"namespace": "team-a", "study": "attrs"}
    assert value(series, "sweetspot_study_early_final_spearman", **study) == pytest.approx(-1.0)
    # The top 2 of 3 by early score (trials 1, 2) against the top 2 by final (0, 1): one in common. The top 3 of 3
    # would always say 3.
    assert value(series, "sweetspot_study_early_final_top_k_overlap", **study, k="2") == 1
    assert value(series, "sweetspot_study_early_widenings", **study) == 1
    assert value(series, "sweetspot_study_early_fraction", **study) == 0.35


def test_trials_reused_by_warm_start_are_counted(metrics: Metrics) -> None:
    warm = FineTuneStudySpec.model_validate(
        spec().model_dump(by_alias=True) | {"search": {"warmStart": {"studies": ["earlier"]}}}
    )
    trials = [TrialView(0, "complete", {}, outcome(0.5), outcome(0.8), reused=True), trial(1, 0.6, None)]
    metrics.publish(StudyState.of("team-a", "attrs", warm, trials=trials, sweep=[], phase="Searching"))
    assert value(scrape(metrics), "sweetspot_study_reused_trials", namespace="team-a", study="attrs") == 1


def test_the_compute_disruptions_cost_is_a_counter_summed_over_the_resumed_stages(metrics: Metrics) -> None:
    study = {"namespace": "team-a", "study": "attrs"}
    metrics.publish(study_state())
    assert value(scrape(metrics), "sweetspot_compute_lost_seconds_total", **study) == 0  # no disruption yet
    resumed = replace(outcome(0.7, seconds=50.0, step=100), resumed_from_step=60, lost_seconds=12.5)
    evicted_sweep = replace(outcome(0.4, seconds=30.0, step=100), resumed_from_step=0, lost_seconds=3.0)
    trials = [trial(0, 0.5, 0.8), TrialView(1, "complete", {}, outcome(0.6), resumed)]
    metrics.publish(study_state(trials=trials, sweep=[SweepView(50, evicted_sweep)]))
    assert value(scrape(metrics), "sweetspot_compute_lost_seconds_total", **study) == pytest.approx(15.5)
    # A stage warm start copied from an earlier study lost its compute there, not here.
    copied = TrialView(2, "complete", {}, outcome(0.6), resumed, reused=True, copied=frozenset({"early", "final"}))
    metrics.publish(study_state(trials=[*trials, copied], sweep=[SweepView(50, evicted_sweep)]))
    assert value(scrape(metrics), "sweetspot_compute_lost_seconds_total", **study) == pytest.approx(15.5)


# --- multi-objective studies (spec.objectives) -------------------------------------------------------------

F1_COMPUTE = [{"metric": "f1", "direction": "maximize"}, {"metric": "computeSeconds", "direction": "minimize"}]


def finished(number: int, f1: float, seconds: float, early_f1: float = 0.5) -> TrialView:
    """A trial judged at 20% of its steps (its early stage cost a fifth of the final's seconds), then trained on."""
    early = outcome_of(f1=early_f1, loss=0.5, seconds=seconds / 5, step=20, planned_steps=100, judged_at=0.2)
    return TrialView(number, "complete", {}, early=early, final=outcome_of(f1=f1, seconds=seconds))


def front_state(trials: list[TrialView], name: str = "mo") -> StudyState:
    multi = study_spec({"maxTrials": 6, "earlyEvaluation": {"promoteTopK": 3}}, objectives=F1_COMPUTE)
    return StudyState.of("team-a", name, multi, trials, [], "Succeeded")


def test_each_objective_of_a_trial_early_and_final_the_front_and_its_knee(metrics: Metrics) -> None:
    # (F1, final seconds): 2 is dominated by 1 (lower F1, more compute); 4 was judged early only.
    trials = [finished(0, 0.60, 10), finished(1, 0.82, 80), finished(2, 0.80, 120), finished(3, 0.84, 400)]
    trials.append(TrialView(4, "complete", {}, early=finished(4, 0, 50, early_f1=0.3).early))
    metrics.publish(front_state(trials))
    series = scrape(metrics)
    study = {"namespace": "team-a", "study": "mo"}

    def objective(trial: int, stage: str, metric: str) -> float:
        return value(series, "sweetspot_trial_objective", **study, trial=str(trial), stage=stage, objective=metric)

    # Final: the F1 trained to the end, and the compute of both stages (16 s early + 80 s final).
    assert objective(1, "final", "f1") == 0.82
    assert objective(1, "final", "computeSeconds") == pytest.approx(96.0)
    # Early: the objective's own metric at the early checkpoint, and its compute projected to the end (10 s / 20%).
    assert objective(4, "early", "f1") == 0.3
    assert objective(4, "early", "computeSeconds") == pytest.approx(50.0)
    assert not [s for s, _ in series["sweetspot_trial_objective"] if s["trial"] == "4" and s["stage"] == "final"]
    assert {s["objective"] for s, _ in series["sweetspot_trial_objective"]} == {"f1", "computeSeconds"}
    on_front = {s["trial"]: v for s, v in series["sweetspot_trial_pareto_optimal"]}
    assert on_front == {"0": 1.0, "1": 1.0, "3": 1.0}
    assert [(s["trial"], v) for s, v in series["sweetspot_trial_pareto_knee"]] == [("1", 1.0)]
    assert value(series, "sweetspot_study_pareto_front_trials", **study) == 3


def test_a_trial_that_drops_off_the_front_loses_its_series(metrics: Metrics) -> None:
    trials = [finished(0, 0.60, 10), finished(1, 0.82, 80), finished(3, 0.84, 400)]
    metrics.publish(front_state(trials))
    assert {s["trial"] for s, _ in scrape(metrics)["sweetspot_trial_pareto_optimal"]} == {"0", "1", "3"}
    # Trial 5 beats 1 in both objectives (and 0 in F1, 3 in compute): 1 leaves the front, and the knee moves.
    metrics.publish(front_state([*trials, finished(5, 0.83, 40)]))
    series = scrape(metrics)
    assert {s["trial"] for s, _ in series["sweetspot_trial_pareto_optimal"]} == {"0", "3", "5"}
    assert [s["trial"] for s, _ in series["sweetspot_trial_pareto_knee"]] == ["5"]
    # Its objective values stay: it was still trained to the end.
    assert value(series, "sweetspot_trial_objective", trial="1", stage="final", objective="f1") == 0.82
    metrics.studies.forget("team-a", "mo")
    series = scrape(metrics)
    assert not series["sweetspot_trial_pareto_optimal"] and not series["sweetspot_study_pareto_front_trials"]


def test_a_multi_objective_study_with_no_final_yet_has_an_empty_front(metrics: Metrics) -> None:
    metrics.publish(front_state([TrialView(0, "running", {}, early=finished(0, 0, 50).early)]))
    series = scrape(metrics)
    assert value(series, "sweetspot_study_pareto_front_trials", study="mo") == 0
    assert not series["sweetspot_trial_pareto_optimal"] and not series["sweetspot_trial_pareto_knee"]
    assert value(series, "sweetspot_trial_objective", trial="0", stage="early", objective="computeSeconds") == 50


def test_front_trials_keep_their_series_past_the_recent_trials_bound() -> None:
    metrics = Metrics.create(CollectorRegistry())
    metrics.studies.trials_per_study = 2
    # Trial 0 is cheapest, trial 1 the best F1: both on the front, far from the 2 most recent (dominated) trials.
    trials = [finished(0, 0.60, 5), finished(1, 0.90, 100)] + [finished(n, 0.5, 200) for n in range(2, 12)]
    metrics.publish(front_state(trials))
    series = scrape(metrics)
    assert {s["trial"] for s, _ in series["sweetspot_trial_f1"]} == {"0", "1", "10", "11"}
    assert {s["trial"] for s, _ in series["sweetspot_trial_pareto_optimal"]} == {"0", "1"}
    assert {s["trial"] for s, _ in series["sweetspot_trial_objective"]} == {"0", "1", "10", "11"}


def test_a_single_objective_study_exports_no_objective_or_front_series(metrics: Metrics) -> None:
    metrics.publish(study_state())
    series = scrape(metrics)
    for name in (
        "sweetspot_trial_objective",
        "sweetspot_trial_pareto_optimal",
        "sweetspot_trial_pareto_knee",
        "sweetspot_study_pareto_front_trials",
    ):
        assert not series[name], name


def test_each_stage_exports_its_training_throughput_and_its_mfu_where_measured(metrics: Metrics) -> None:
    gpu = TrialView(
        0,
        "complete",
        {},
        early=replace(outcome(0.5), tokens_per_second=1800.0, mfu=0.31),
        final=replace(outcome(0.8), tokens_per_second=2100.5, mfu=0.36),
    )
    cpu = TrialView(1, "pruned", {}, early=replace(outcome(0.4), tokens_per_second=95.0))
    old = TrialView(2, "pruned", {}, early=outcome(0.3))  # a record from before stages reported it
    metrics.publish(study_state(trials=[gpu, cpu, old]))
    series = scrape(metrics)
    study = {"namespace": "team-a", "study": "attrs"}
    assert value(series, "sweetspot_trial_tokens_per_second", **study, trial="0", stage="final") == 2100.5
    assert value(series, "sweetspot_trial_tokens_per_second", **study, trial="1", stage="early") == 95.0
    assert value(series, "sweetspot_trial_mfu", **study, trial="0", stage="early") == 0.31
    assert {s["trial"] for s, _ in series["sweetspot_trial_mfu"]} == {"0"}  # no MFU on CPUs
    assert {s["trial"] for s, _ in series["sweetspot_trial_tokens_per_second"]} == {"0", "1"}
