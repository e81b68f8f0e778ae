"""Prometheus metrics, the one module that talks to prometheus-client.

Study metrics are not counters bumped as things happen (they would drift after a restart and double count
a retried reconcile): each reconcile hands the study's state to `StudyCollector.update`, and every scrape
derives the series from the latest state, through the same `stats.summarize` as the status and the report.
A deleted study is `forget`-ten and its series vanish with it.

F1 (micro, over applicable (row, attribute) pairs) is the headline series; accuracy, precision and recall sit
beside it. Cardinality is bounded per study: per-trial series exist for the `trials_per_study` most recent
trials and, wherever they are, the best one and the Pareto front's (its knee and at most `MAX_FRONT` trials);
per-attribute series for at most `MAX_ATTRIBUTES` attributes each, the most supported ones (the trainer orders
attributes by gold values), and only for attribute names that are short printable text (a label never carries
arbitrary data); `sweetspot_study_attributes_left_out` counts the rest, which `sweetspot report` lists. With the
defaults a study has at most 101 trials (166 with a front) x 2 stages x (5 + 32 attributes) per-trial series plus
about 40 study series, `len(sampleSizes) x (3 + 32)` learning-curve series and `3 x len(forecast.to) + 4` forecast
series; with `spec.objectives`, 2 stages x `len(objectives)` objective series per trial, one per trial on the front
and two for the knee and the front's size.

Multi-objective studies (`spec.objectives`) get each trial's value of every objective, early (as judged: costs
projected to the end) and final, and the Pareto front of the trials trained to the end with its knee: the same
front the status and `sweetspot report` show. Front membership is derived per scrape like every study series, so
a trial that drops off the front loses its series at the next scrape.

Operator health (reconcile duration and errors, the last successful reconcile, build info) uses ordinary
prometheus-client instruments: those describe the process, not a study, and start from zero with it.
"""

from __future__ import annotations

import math
import os
import platform
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from sweetspot import __version__
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.api.status import MAX_FRONT, Phase
from sweetspot.core.objectives import early_values, final_values, is_multi, names
from sweetspot.core.policies.guard import judged_fraction
from sweetspot.core.policies.registry import policy_of
from sweetspot.core.records import SweepView, TrialView
from sweetspot.core.stats import Summary, summarize

TRIALS_PER_STUDY = int(os.environ.get("SWEETSPOT_METRICS_TRIALS_PER_STUDY", "100"))
"""Per-trial series are kept for this many of a study's most recent trials (and its best trial)."""
MAX_ATTRIBUTES = 32
ATTRIBUTE_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .,:;/()&+'#%\-]{0,62}")
"""Attribute names exported as label values: short and printable (real catalogues say `Back / Side Material`)."""
PHASES: tuple[Phase, ...] = get_args(Phase)
TRIAL_STATES = ("running", "waiting", "complete", "pruned", "failed")
STAGE_SECONDS_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400)
RECONCILE_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True)
class StudyState:
    """What one reconcile (or one local-mode loop) knows about a study."""

    namespace: str
    name: str
    spec: FineTuneStudySpec
    trials: Sequence[TrialView]
    sweep: Sequence[SweepView]
    phase: Phase
    summary: Summary

    @classmethod
    def of(
        cls,
        namespace: str,
        name: str,
        spec: FineTuneStudySpec,
        trials: Sequence[TrialView],
        sweep: Sequence[SweepView],
        phase: Phase,
    ) -> StudyState:
        return cls(namespace, name, spec, tuple(trials), tuple(sweep), phase, summarize(spec, trials, sweep))


def exported(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """The per-attribute scores that get series: the first `MAX_ATTRIBUTES` (most supported) with plain names."""
    return [(name, value) for name, value in scores.items() if ATTRIBUTE_LABEL.fullmatch(name)][:MAX_ATTRIBUTES]


def _shown_trials(state: StudyState, limit: int) -> list[TrialView]:
    """The `limit` most recent trials, then the best, the knee and the front's first `MAX_FRONT` (by number) where
    the recent ones leave them out: a dashboard's front and best stay whole however long the study runs."""
    recent = sorted(state.trials, key=lambda t: t.number)[-limit:] if limit > 0 else []
    summary = state.summary
    shown = {t.number for t in recent}
    for kept in (summary.best, summary.knee, *summary.front[:MAX_FRONT]):
        if kept is not None and kept.number not in shown:
            recent.append(kept)
            shown.add(kept.number)
    return recent


class _Families:
    """The metric families of one scrape, filled study by study."""

    def __init__(self) -> None:
        study = ["namespace", "study"]
        trial = [*study, "trial", "stage"]
        self.trial_f1 = GaugeMetricFamily(
            "sweetspot_trial_f1",
            "Validation micro-F1 of a trial at the end of a stage (early or final), over applicable pairs.",
            labels=trial,
        )
        self.trial_precision = GaugeMetricFamily(
            "sweetspot_trial_precision", "Validation precision of a trial at the end of a stage.", labels=trial
        )
        self.trial_recall = GaugeMetricFamily(
            "sweetspot_trial_recall", "Validation recall of a trial at the end of a stage.", labels=trial
        )
        self.trial_accuracy = GaugeMetricFamily(
            "sweetspot_trial_accuracy",
            "Validation exact match of a trial at the end of a stage (early or final), over applicable pairs.",
            labels=trial,
        )
        self.trial_loss = GaugeMetricFamily(
            "sweetspot_trial_loss", "Validation loss of a trial at the end of a stage (early or final).", labels=trial
        )
        self.trial_attribute = GaugeMetricFamily(
            "sweetspot_trial_attribute_f1",
            "Validation F1 of one attribute for a trial at the end of a stage (the most supported attributes).",
            labels=[*trial, "attribute"],
        )
        self.trial_compute = GaugeMetricFamily(
            "sweetspot_trial_compute_seconds",
            "Compute a trial stage used: GPU-seconds on GPUs, wall seconds on CPUs.",
            labels=trial,
        )
        self.trial_tokens = GaugeMetricFamily(
            "sweetspot_trial_tokens_per_second",
            "Training tokens per second of a trial stage (real tokens, padding excluded; the steps alone).",
            labels=trial,
        )
        self.trial_mfu = GaugeMetricFamily(
            "sweetspot_trial_mfu",
            "Model FLOPs utilisation of a trial stage on CUDA: 6 x parameters x tokens/s over the GPUs' bf16 peak.",
            labels=trial,
        )
        self.best = GaugeMetricFamily(
            "sweetspot_study_best_f1",
            "Best validation micro-F1 over a study's trials at each stage (final: of trials trained to the end).",
            labels=[*study, "stage"],
        )
        self.best_accuracy = GaugeMetricFamily(
            "sweetspot_study_best_accuracy",
            "Best validation exact match over a study's trials at each stage.",
            labels=[*study, "stage"],
        )
        self.left_out = GaugeMetricFamily(
            "sweetspot_study_attributes_left_out",
            "Attributes of the best trial with no per-attribute series (past the cardinality bound, or names that "
            "are not plain text); sweetspot report lists them.",
            labels=study,
        )
        self.trials = GaugeMetricFamily(
            "sweetspot_study_trials", "A study's trials by state.", labels=[*study, "state"]
        )
        self.max_trials = GaugeMetricFamily(
            "sweetspot_study_max_trials", "The study's trial budget (spec.search.maxTrials).", labels=study
        )
        self.phase = GaugeMetricFamily(
            "sweetspot_study_phase", "1 for the study's current phase, 0 for the others.", labels=[*study, "phase"]
        )
        self.failures = CounterMetricFamily(
            "sweetspot_study_stage_failures",
            "Stage runs that failed (kind=failed: the trainer failed; kind=disrupted: the pod was evicted or "
            "preempted and the stage retried).",
            labels=[*study, "kind"],
        )
        self.compute_lost = CounterMetricFamily(
            "sweetspot_compute_lost_seconds",
            "Compute disruptions (preemption, eviction, a lost node, Ctrl-C) cost a study: training after a stage's "
            "newest checkpoint done again, and the restarts; GPU-seconds on GPUs, wall seconds on CPUs.",
            labels=study,
        )
        self.spearman = GaugeMetricFamily(
            "sweetspot_study_early_final_spearman",
            "Spearman rank correlation between early and final scores over trials that have both.",
            labels=study,
        )
        self.kendall = GaugeMetricFamily(
            "sweetspot_study_early_final_kendall",
            "Kendall rank correlation between early and final scores over trials that have both.",
            labels=study,
        )
        self.agreement_trials = GaugeMetricFamily(
            "sweetspot_study_early_final_trials", "Trials that have both an early and a final score.", labels=study
        )
        self.top_k = GaugeMetricFamily(
            "sweetspot_study_early_final_top_k_overlap",
            "How many of the top k trials by early score are also in the top k by final score (k in label).",
            labels=[*study, "k"],
        )
        self.reused = GaugeMetricFamily(
            "sweetspot_study_reused_trials",
            "Trials copied with their results from earlier studies (spec.search.warmStart, reuse: results).",
            labels=study,
        )
        self.judged_at = GaugeMetricFamily(
            "sweetspot_study_early_fraction",
            "Fraction of their planned steps at which new trials are judged (proxy; the agreement guard widens it).",
            labels=study,
        )
        self.widenings = GaugeMetricFamily(
            "sweetspot_study_early_widenings",
            "Times the agreement guard widened the early fraction because early and final ranks disagreed.",
            labels=study,
        )
        self.gpu_seconds = GaugeMetricFamily(
            "sweetspot_study_gpu_seconds",
            "Compute used by a study's stages, and saved by judging trials early (kind=used|saved).",
            labels=[*study, "kind"],
        )
        self.budget = GaugeMetricFamily(
            "sweetspot_study_budget_seconds",
            "The study's compute budget (spec.search.budget.gpuHours x 3600): GPU-seconds on GPUs, wall seconds on "
            "CPUs, as sweetspot_study_gpu_seconds counts them (absent without a budget).",
            labels=study,
        )
        self.budget_used = GaugeMetricFamily(
            "sweetspot_study_budget_used_ratio",
            "Share of the study's compute budget its finished stages spent (1: spent; absent without a budget).",
            labels=study,
        )
        self.curve = GaugeMetricFamily(
            "sweetspot_learning_curve_f1",
            "Final micro-F1 of the data-efficiency sweep at each training-set size (mean over repeats).",
            labels=[*study, "samples"],
        )
        self.curve_accuracy = GaugeMetricFamily(
            "sweetspot_learning_curve_accuracy",
            "Final exact match of the data-efficiency sweep at each training-set size (mean over repeats).",
            labels=[*study, "samples"],
        )
        self.curve_attribute = GaugeMetricFamily(
            "sweetspot_learning_curve_attribute_f1",
            "Per-attribute F1 of the data-efficiency sweep at each training-set size (the most supported).",
            labels=[*study, "samples", "attribute"],
        )
        self.curve_spread = GaugeMetricFamily(
            "sweetspot_learning_curve_f1_spread",
            "Standard deviation of the sweep's micro-F1 over repeats at each training-set size.",
            labels=[*study, "samples"],
        )
        self.plateau = GaugeMetricFamily(
            "sweetspot_learning_curve_plateau",
            "Micro-F1 the fitted learning curve approaches (its plateau).",
            labels=study,
        )
        self.sweet_spot = GaugeMetricFamily(
            "sweetspot_study_sweet_spot_samples",
            "The training-set size past which more data stops paying: the smallest measured size within the "
            "tolerance of the fitted plateau (absent while the curve has not saturated).",
            labels=study,
        )
        self.curve_forecast = GaugeMetricFamily(
            "sweetspot_learning_curve_forecast_f1",
            "Micro-F1 forecast at each size of spec.dataEfficiency.forecast.to (bound: value, the median; low, high: "
            "the 80% band's ends).",
            labels=[*study, "samples", "bound"],
        )
        self.target_rows = GaugeMetricFamily(
            "sweetspot_learning_curve_target_rows",
            "Training rows forecast to reach spec.dataEfficiency.target.f1 (bound: value, low, high of the 80% band; "
            "a bound is absent when the forecasts do not reach the target, and all are while it lies above the "
            "plateau's band).",
            labels=[*study, "bound"],
        )
        self.target_reach = GaugeMetricFamily(
            "sweetspot_learning_curve_target_reach",
            "Share of the forecasts that reach spec.dataEfficiency.target.f1 (within 100 times the largest measured "
            "size).",
            labels=study,
        )
        self.predicted = GaugeMetricFamily(
            "sweetspot_trial_predicted_final",
            "promote: predicted: a trial's final objective as predicted from its early stage (bound: value, low, "
            "high of the 80% interval).",
            labels=[*study, "trial", "bound"],
        )
        self.coverage = GaugeMetricFamily(
            "sweetspot_study_prediction_coverage",
            "promote: predicted: share of finals inside the 80% interval predicted for them from the other trials.",
            labels=study,
        )
        self.trial_objective = GaugeMetricFamily(
            "sweetspot_trial_objective",
            "spec.objectives: a trial's value of each objective at the end of a stage (final: trained to the end, "
            "computeSeconds what its stages spent; early: the quality metric at the early checkpoint and the costs "
            "known from the early stage, computeSeconds projected to the end).",
            labels=[*trial, "objective"],
        )
        self.pareto_optimal = GaugeMetricFamily(
            "sweetspot_trial_pareto_optimal",
            "spec.objectives: 1 for each trial on the study's Pareto front (trained to the end, and no other such "
            "trial is as good in every objective and better in one); absent for the others.",
            labels=[*study, "trial"],
        )
        self.pareto_knee = GaugeMetricFamily(
            "sweetspot_trial_pareto_knee",
            "spec.objectives: 1 for the trial at the Pareto front's knee (where more cost stops buying as much "
            "quality); absent for the others.",
            labels=[*study, "trial"],
        )
        self.front_size = GaugeMetricFamily(
            "sweetspot_study_pareto_front_trials",
            "spec.objectives: trials on the study's Pareto front (0 before a trial was trained to the end).",
            labels=study,
        )
        self.durations = HistogramMetricFamily(
            "sweetspot_trial_duration_seconds",
            "Wall-clock duration of finished trial stages.",
            labels=[*study, "stage"],
        )

    def add(self, state: StudyState, trials_per_study: int) -> None:
        study = [state.namespace, state.name]
        self._add_trials(study, state, trials_per_study)
        self._add_study(study, state)
        self._add_judging(study, state)
        self._add_curve(study, state.summary)

    def _add_trials(self, study: list[str], state: StudyState, trials_per_study: int) -> None:
        """Per trial and stage: scores, compute, attributes, and the predicted final."""
        forecast = state.summary.forecast
        shown = _shown_trials(state, trials_per_study)
        if is_multi(state.spec):
            self._add_front(study, state, shown)
        for trial in shown:
            predicted = forecast.predictions.get(trial.number) if forecast is not None else None
            if predicted is not None:
                for bound, value in (("value", predicted.value), ("low", predicted.low), ("high", predicted.high)):
                    self.predicted.add_metric([*study, str(trial.number), bound], value)
            for stage, outcome in (("early", trial.early), ("final", trial.final)):
                if outcome is None:
                    continue
                labels = [*study, str(trial.number), stage]
                self.trial_f1.add_metric(labels, outcome.f1)
                self.trial_precision.add_metric(labels, outcome.precision)
                self.trial_recall.add_metric(labels, outcome.recall)
                self.trial_accuracy.add_metric(labels, outcome.accuracy)
                self.trial_loss.add_metric(labels, outcome.loss)
                self.trial_compute.add_metric(labels, outcome.compute_seconds)
                if outcome.tokens_per_second is not None:
                    self.trial_tokens.add_metric(labels, outcome.tokens_per_second)
                if outcome.mfu is not None:
                    self.trial_mfu.add_metric(labels, outcome.mfu)
                for attribute, value in exported(outcome.attribute_f1):
                    self.trial_attribute.add_metric([*labels, attribute], value)

    def _add_front(self, study: list[str], state: StudyState, shown: Sequence[TrialView]) -> None:
        """`spec.objectives`: each shown trial's objectives, early and final, and the front and its knee."""
        spec, summary = state.spec, state.summary
        metrics = names(spec)
        on_front = {t.number for t in summary.front}
        knee = summary.knee.number if summary.knee is not None else None
        for trial in shown:
            labels = [*study, str(trial.number)]
            staged: list[tuple[str, list[float] | None]] = [("final", final_values(spec, trial))]
            if trial.early is not None:
                quality = trial.early.metric(spec.objective.metric)  # the objective's own metric, not the signal
                staged.append(("early", early_values(spec, trial.early, quality, judged_fraction(spec, trial.early))))
            for stage, values in staged:
                for metric, value in zip(metrics, values or [], strict=values is not None):
                    self.trial_objective.add_metric([*labels, stage, metric], value)
            if trial.number in on_front:
                self.pareto_optimal.add_metric(labels, 1.0)
            if trial.number == knee:
                self.pareto_knee.add_metric(labels, 1.0)
        self.front_size.add_metric(study, len(summary.front))

    def _add_study(self, study: list[str], state: StudyState) -> None:
        """The study as a whole: bests, counts, phase, failures, reuse, compute and budget."""
        summary = state.summary
        for stage in ("early", "final"):
            outcomes = [o for t in state.trials if (o := getattr(t, stage)) is not None]
            if outcomes:
                self.best.add_metric([*study, stage], max(o.f1 for o in outcomes))
                self.best_accuracy.add_metric([*study, stage], max(o.accuracy for o in outcomes))
            self._histogram(study, stage, [o.seconds for o in outcomes])
        best = summary.best.final if summary.best is not None else None
        if best is not None:
            self.left_out.add_metric(study, len(best.attribute_f1) - len(exported(best.attribute_f1)))
        for trial_state in TRIAL_STATES:
            self.trials.add_metric([*study, trial_state], summary.counts.get(trial_state, 0))
        self.max_trials.add_metric(study, state.spec.search.max_trials)
        for phase in PHASES:
            self.phase.add_metric([*study, phase], 1.0 if phase == state.phase else 0.0)
        failed = sum(len(a) for t in state.trials for a in t.failed_attempts.values())
        failed += sum(len(p.failed_attempts) for p in state.sweep)
        disrupted = sum(len(a) for t in state.trials for a in t.disrupted_attempts.values())
        disrupted += sum(len(p.disrupted_attempts) for p in state.sweep)
        self.failures.add_metric([*study, "failed"], failed)
        self.failures.add_metric([*study, "disrupted"], disrupted)
        self.reused.add_metric(study, sum(1 for t in state.trials if t.reused))  # 0 without spec.search.warmStart
        self.gpu_seconds.add_metric([*study, "used"], summary.compute_used)
        self.gpu_seconds.add_metric([*study, "saved"], summary.compute_saved)
        self.compute_lost.add_metric(study, summary.compute_lost)
        if summary.budget is not None:
            self.budget.add_metric(study, summary.budget.limit)
            self.budget_used.add_metric(study, summary.budget.ratio)

    def _add_judging(self, study: list[str], state: StudyState) -> None:
        """How well early judged final: rank agreement, the guard, and the prediction's coverage."""
        summary = state.summary
        agreement = summary.agreement
        self.agreement_trials.add_metric(study, agreement.trials)
        if agreement.spearman is not None:
            self.spearman.add_metric(study, agreement.spearman)
        if agreement.kendall is not None:
            self.kendall.add_metric(study, agreement.kendall)
        if agreement.top_k_overlap is not None:
            self.top_k.add_metric([*study, str(agreement.top_k)], agreement.top_k_overlap)
        if summary.forecast is not None and summary.forecast.calibration.coverage is not None:
            self.coverage.add_metric(study, summary.forecast.calibration.coverage)
        if policy_of(state.spec).guardable:  # the fraction and 0 widenings even while the guard is off
            self.judged_at.add_metric(study, summary.judging.fraction)
            self.widenings.add_metric(study, summary.judging.level)

    def _add_curve(self, study: list[str], summary: Summary) -> None:
        """The learning curve, its sweet spot and plateau, and its forecast."""
        for point in summary.curve:
            size = [*study, str(point.samples)]
            self.curve.add_metric(size, point.score)
            self.curve_spread.add_metric(size, point.spread)
            if point.accuracy is not None:
                self.curve_accuracy.add_metric(size, point.accuracy)
            for attribute, value in exported(point.attribute_scores):
                self.curve_attribute.add_metric([*size, attribute], value)
        if summary.sweet_spot is not None:
            self.sweet_spot.add_metric(study, summary.sweet_spot[0])
        if summary.verdict is not None and summary.verdict.fit is not None:
            self.plateau.add_metric(study, summary.verdict.fit.plateau)
        overall = summary.outlook.overall if summary.outlook is not None else None
        if overall is None:
            return
        for ahead in overall.sizes:
            for bound, value in (("value", ahead.f1.middle), ("low", ahead.f1.low), ("high", ahead.f1.high)):
                self.curve_forecast.add_metric([*study, str(ahead.samples), bound], value)
        if overall.target is not None:
            self.target_reach.add_metric(study, overall.target.reach)
            rows = overall.target.rows
            if rows is not None:
                for bound, count in (("value", rows.middle), ("low", rows.low), ("high", rows.high)):
                    if count is not None:
                        self.target_rows.add_metric([*study, bound], count)

    def _histogram(self, study: list[str], stage: str, seconds: Sequence[float]) -> None:
        buckets = [(str(float(b)), sum(1 for s in seconds if s <= b)) for b in STAGE_SECONDS_BUCKETS]
        buckets.append(("+Inf", len(seconds)))
        self.durations.add_metric([*study, stage], buckets, sum_value=math.fsum(seconds))

    def __iter__(self) -> Iterator[Metric]:
        return iter(vars(self).values())


class StudyCollector(Collector):
    """Series derived, at scrape time, from the latest known state of each study."""

    def __init__(self, trials_per_study: int = TRIALS_PER_STUDY) -> None:
        self.trials_per_study = trials_per_study
        self._studies: dict[tuple[str, str], StudyState] = {}
        self._storage: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()

    def update(self, state: StudyState) -> None:
        with self._lock:
            self._studies[(state.namespace, state.name)] = state
            self._storage[(state.namespace, state.name)] = True

    def storage_down(self, namespace: str, name: str) -> None:
        """The study's storage did not answer: its last known state stays, flagged as stale by this gauge."""
        with self._lock:
            self._storage[(namespace, name)] = False

    def knows(self, namespace: str, name: str) -> bool:
        with self._lock:
            return (namespace, name) in self._studies

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._studies.pop((namespace, name), None)
            self._storage.pop((namespace, name), None)

    def describe(self) -> Iterable[Metric]:
        return []  # families vary with the studies: collected on every scrape, never cached

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            studies = list(self._studies.values())
            storage = dict(self._storage)
        families = _Families()
        for state in sorted(studies, key=lambda s: (s.namespace, s.name)):
            families.add(state, self.trials_per_study)
        reachable = GaugeMetricFamily(
            "sweetspot_storage_reachable",
            "1 when the study's Optuna storage answered the last reconcile, 0 when it did not.",
            labels=["namespace", "study"],
        )
        for (namespace, name), up in sorted(storage.items()):
            reachable.add_metric([namespace, name], 1.0 if up else 0.0)
        yield from families
        yield reachable


@dataclass
class OperatorMetrics:
    """How the reconcile loop itself is doing."""

    reconcile_seconds: Histogram
    reconcile_errors: Counter
    last_success: Gauge
    build: Info

    @classmethod
    def create(cls, registry: CollectorRegistry) -> OperatorMetrics:
        metrics = cls(
            Histogram(
                "sweetspot_reconcile_duration_seconds",
                "Duration of one study reconcile (storage reads, planning, Job and status writes).",
                buckets=RECONCILE_SECONDS_BUCKETS,
                registry=registry,
            ),
            Counter(
                "sweetspot_reconcile_errors",
                "Reconciles that did not complete, by reason (storage: the Optuna storage did not answer; "
                "cluster: the API server refused or failed; invalid: the spec is invalid; other).",
                ["reason"],
                registry=registry,
            ),
            Gauge(
                "sweetspot_last_successful_reconcile_timestamp_seconds",
                "Unix time of the last reconcile of any study that completed.",
                registry=registry,
            ),
            Info("sweetspot_build", "The running Sweetspot version.", registry=registry),
        )
        metrics.build.info({"version": __version__, "python": platform.python_version()})
        for reason in ("storage", "cluster", "invalid", "other"):
            metrics.reconcile_errors.labels(reason)  # exported at 0 from the start, so rate() sees the first
        return metrics

    def succeeded(self) -> None:
        self.last_success.set(time.time())


@dataclass
class Metrics:
    studies: StudyCollector
    operator: OperatorMetrics
    registry: CollectorRegistry

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        registry = registry if registry is not None else CollectorRegistry()
        studies = StudyCollector()
        registry.register(studies)
        return cls(studies, OperatorMetrics.create(registry), registry)

    def publish(self, state: StudyState) -> None:
        """A reconcile of this study completed with this state."""
        self.studies.update(state)
        self.operator.succeeded()


METRICS = Metrics.create(REGISTRY)
"""The process's metrics, on prometheus-client's default registry (which adds process_* and python_*)."""


def serve(port: int, address: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> Any:
    """Serve `/metrics` on a background thread; returns the server (its `server_port` is the bound port)."""
    server, _ = start_http_server(port, addr=address, registry=registry)
    return server
