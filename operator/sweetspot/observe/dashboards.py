"""The Grafana dashboards, generated (`sweetspot dashboards`) into the Helm chart, which ships them as ConfigMaps.

Written as code so that every panel gets the same datasource variable, units and query filters; the JSON under
`charts/sweetspot/dashboards/` is checked against this module by a test, and every panel's query is run
against a real Prometheus after a study by another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sweetspot.api.search import COST_METRICS

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
STUDY = 'namespace="$namespace", study="$study"'
SCHEMA_VERSION = 39
LINKS = [
    {
        "title": "Sweetspot",
        "type": "dashboards",
        "tags": ["sweetspot"],
        "asDropdown": True,
        "includeVars": True,
        "keepTime": True,
    }
]
"""Every dashboard links the others, carrying the namespace and study over."""


@dataclass
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass
class Panel:
    title: str
    kind: str
    queries: list[Query]
    width: int = 12
    height: int = 8
    unit: str = "none"
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    field_config: dict[str, Any] = field(default_factory=dict)
    transformations: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[dict[str, Any]] = field(default_factory=list)


def _layout(panels: list[Panel]) -> Iterator[tuple[Panel, dict[str, int]]]:
    x = y = row_height = 0
    for panel in panels:
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        yield panel, {"x": x, "y": y, "w": panel.width, "h": panel.height}
        x += panel.width
        row_height = max(row_height, panel.height)


def _panel(number: int, panel: Panel, grid: dict[str, int]) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    defaults.update(panel.field_config)
    targets = []
    for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
        target: dict[str, Any] = {
            "refId": ref,
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "instant": query.instant,
            "range": not query.instant,
        }
        if query.table:
            target["format"] = "table"
        targets.append(target)
    return {
        "id": number,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": panel.overrides},
        "options": panel.options,
        "transformations": panel.transformations,
    }


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,  # on time range change: new studies appear without reloading
        "sort": 1,
        "includeAll": False,
        "multi": False,
    }


def dashboard(
    uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["sweetspot", "fine-tuning"],
        "editable": True,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "graphTooltip": 1,
        "links": LINKS,
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                *variables,
            ]
        },
        "panels": [_panel(n, panel, grid) for n, (panel, grid) in enumerate(_layout(panels), start=1)],
    }


def _stat(
    title: str,
    expr: str,
    unit: str = "none",
    description: str = "",
    legend: str = "",
    decimals: int = 2,
    text_mode: str = "auto",
) -> Panel:
    return Panel(
        title,
        "stat",
        [Query(expr, legend, instant=True)],
        width=4,
        height=4,
        unit=unit,
        description=description,
        options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "textMode": text_mode},
        field_config={"decimals": decimals},
    )


def _percent_axis() -> dict[str, Any]:
    return {"min": 0, "max": 1}


def study_overview() -> dict[str, Any]:
    score = {"unit": "percentunit", **_percent_axis()}
    panels = [
        _stat(
            "Phase",
            f"sweetspot_study_phase{{{STUDY}}} == 1",
            legend="{{phase}}",
            description="Pending, Searching (early stages), Promoting (final stages), Sweeping (learning curve), "
            "Succeeded or Failed.",
            text_mode="name",
        ),
        _stat(
            "Best final F1",
            f'sweetspot_study_best_f1{{{STUDY}, stage="final"}}',
            "percentunit",
            "Best validation micro-F1 of the trials trained to the end (always answering null scores 0).",
        ),
        _stat(
            "Best early F1",
            f'sweetspot_study_best_f1{{{STUDY}, stage="early"}}',
            "percentunit",
            "Best validation micro-F1 at the early checkpoint (spec.search.earlyEvaluation.atFraction).",
        ),
        _stat(
            "Early ↔ final Spearman",
            f"sweetspot_study_early_final_spearman{{{STUDY}}}",
            description="Rank correlation of early and final scores over trials that have both: near 1, judging "
            "trials early picks the same winners as training them all to the end.",
        ),
        _stat(
            "GPU-seconds saved",
            f'sweetspot_study_gpu_seconds{{{STUDY}, kind="saved"}}',
            "s",
            "Compute not spent because trials were judged early (GPU-seconds; wall seconds on CPUs).",
            decimals=0,
        ),
        _stat(
            "Compute lost to disruptions",
            f"sweetspot_compute_lost_seconds_total{{{STUDY}}}",
            "s",
            "What preemptions, evictions and lost nodes cost: training after a stage's newest checkpoint done again, "
            "and the restarts (GPU-seconds; wall seconds on CPUs). spec.trial.checkpoint bounds it.",
            decimals=0,
        ),
        _stat(
            "Sweet spot (samples)",
            f"sweetspot_study_sweet_spot_samples{{{STUDY}}}",
            "none",
            "The training-set size past which more data stops paying (spec.dataEfficiency).",
            decimals=0,
        ),
        _stat(
            "Trials reused (warm start)",
            f"sweetspot_study_reused_trials{{{STUDY}}}",
            "none",
            "Finished trials of earlier studies copied in with their results by spec.search.warmStart (reuse: "
            "results): the sampler learned from them and none was trained again.",
            decimals=0,
        ),
        Panel(
            "Trials by state",
            "timeseries",
            [Query(f"sweetspot_study_trials{{{STUDY}}}", "{{state}}")],
            unit="none",
            description="Running, waiting (judged early under the proxy policy), complete, pruned and failed trials.",
            field_config={"custom": {"stacking": {"mode": "normal"}, "fillOpacity": 40}, "decimals": 0},
        ),
        Panel(
            "Best F1 and accuracy over time",
            "timeseries",
            [
                Query(f"sweetspot_study_best_f1{{{STUDY}}}", "best {{stage}} F1"),
                Query(f"sweetspot_study_best_accuracy{{{STUDY}}}", "best {{stage}} accuracy"),
            ],
            unit="percentunit",
            field_config=_percent_axis(),
        ),
        Panel(
            "Best final F1 against GPU-seconds used",
            "xychart",
            [
                Query(f'sweetspot_study_gpu_seconds{{{STUDY}, kind="used"}}', "GPU-seconds used"),
                Query(f'sweetspot_study_best_f1{{{STUDY}, stage="final"}}', "best final F1"),
            ],
            description="What each GPU-second bought: the best final F1 as compute was spent.",
            options={"seriesMapping": "auto", "dims": {"x": "GPU-seconds used"}},
            transformations=[{"id": "joinByField", "options": {"byField": "Time", "mode": "outer"}}],
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "best final F1"},
                    "properties": [{"id": "unit", "value": "percentunit"}],
                },
                {
                    "matcher": {"id": "byName", "options": "GPU-seconds used"},
                    "properties": [{"id": "unit", "value": "s"}],
                },
            ],
        ),
        Panel(
            "GPU-seconds used and saved",
            "timeseries",
            [Query(f"sweetspot_study_gpu_seconds{{{STUDY}}}", "{{kind}}")],
            width=8,
            unit="s",
            description="Compute the study's stages used, and the compute judging trials early saved.",
        ),
        Panel(
            "Compute budget used",
            "gauge",
            [Query(f"sweetspot_study_budget_used_ratio{{{STUDY}}}", instant=True)],
            width=4,
            unit="percentunit",
            description="Share of spec.search.budget the finished stages spent (empty without a budget); the "
            "SweetspotStudyBudgetMostlySpent alert fires at 80% while the study runs.",
            options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
            field_config={
                "min": 0,
                "max": 1,
                "decimals": 0,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [
                        {"color": "green", "value": None},
                        {"color": "orange", "value": 0.8},
                        {"color": "red", "value": 1},
                    ],
                },
            },
        ),
        Panel(
            "Early vs final F1 per trial",
            "barchart",
            [Query(f"sweetspot_trial_f1{{{STUDY}}}", instant=True, table=True)],
            width=24,
            unit="percentunit",
            description="Each trial's micro-F1 at the early checkpoint and, if it was trained to the end, at the end. "
            "The early ranking should match the final one (see the Spearman panel).",
            options={"xField": "trial", "orientation": "vertical", "groupWidth": 0.7, "barWidth": 0.9},
            field_config=_percent_axis(),
            transformations=[
                {
                    "id": "groupingToMatrix",
                    "options": {"columnField": "stage", "rowField": "trial", "valueField": "Value"},
                },
                {
                    "id": "convertFieldType",
                    "options": {"conversions": [{"targetField": "trial\\stage", "destinationType": "string"}]},
                },
                {"id": "organize", "options": {"renameByName": {"trial\\stage": "trial"}}},
            ],
        ),
        Panel(
            "Early ↔ final agreement",
            "timeseries",
            [
                Query(f"sweetspot_study_early_final_spearman{{{STUDY}}}", "Spearman"),
                Query(f"sweetspot_study_early_final_kendall{{{STUDY}}}", "Kendall"),
                Query(f"sweetspot_study_early_fraction{{{STUDY}}}", "judged at (fraction of steps)"),
            ],
            width=8,
            field_config={"min": -1, "max": 1, "decimals": 2},
            description="Rank correlations between early and final scores, as trials finish, and the fraction of "
            "their steps new trials are judged at: it steps up when the agreement guard finds early and final ranks "
            "disagreeing (earlyEvaluation.minAgreement).",
        ),
        Panel(
            "Top-k overlap (early vs final)",
            "stat",
            [Query(f"sweetspot_study_early_final_top_k_overlap{{{STUDY}}}", "of top {{k}}", instant=True)],
            width=4,
            unit="none",
            description="How many of the top k trials by early score are also in the top k by final score.",
        ),
        Panel(
            "Per-attribute F1 of the best trial",
            "bargauge",
            [
                Query(
                    f'sweetspot_trial_attribute_f1{{{STUDY}, stage="final"}} and on (trial) '
                    f'topk(1, sweetspot_trial_f1{{{STUDY}, stage="final"}})',
                    "{{attribute}}",
                    instant=True,
                )
            ],
            unit="percentunit",
            description="Rare attributes (e.g. a rating on a quarter of pages) are where late gains come from. "
            "The most supported attributes are shown; sweetspot report lists them all.",
            options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True},
            field_config=score,
        ),
        Panel(
            "Learning curve",
            "barchart",
            [
                Query(f"sweetspot_learning_curve_f1{{{STUDY}}}", instant=True, table=True),
                *(
                    Query(f'sweetspot_learning_curve_forecast_f1{{{STUDY},bound="{bound}"}}', instant=True, table=True)
                    for bound in ("low", "value", "high")
                ),
            ],
            unit="percentunit",
            description="Final micro-F1 of the best configuration trained on nested samples of growing size, and "
            "past them the forecast (spec.dataEfficiency.forecast) with its 80% band: a sweep measuring that size "
            "lands between the band's ends eight times in ten.",
            options={"xField": "samples", "orientation": "vertical", "stacking": "none"},
            field_config=_percent_axis(),
            # The band's ends as faint outlined bars beside the forecast: a barchart has no error bars.
            overrides=[
                {
                    "matcher": {"id": "byRegexp", "options": "80% band.*"},
                    "properties": [
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": "gray"}},
                        {"id": "custom.fillOpacity", "value": 15},
                        {"id": "custom.lineWidth", "value": 1},
                    ],
                },
            ],
            transformations=[
                {"id": "joinByField", "options": {"byField": "samples", "mode": "outer"}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {
                            name: True
                            for column in ("Time", "namespace", "study", "__name__", "job", "instance", "bound")
                            for name in (column, *(f"{column} {n}" for n in range(1, 5)))
                        },
                        "renameByName": {
                            "Value #A": "F1 measured",
                            "Value #B": "80% band low",
                            "Value #C": "F1 forecast",
                            "Value #D": "80% band high",
                        },
                    },
                },
                {"id": "sortBy", "options": {"sort": [{"field": "samples"}]}},
            ],
        ),
        Panel(
            "Learning curve per attribute",
            "table",
            [Query(f"sweetspot_learning_curve_attribute_f1{{{STUDY}}}", instant=True, table=True)],
            unit="percentunit",
            description="Which attribute gains past each training-set size.",
            transformations=[
                {
                    "id": "groupingToMatrix",
                    "options": {"columnField": "attribute", "rowField": "samples", "valueField": "Value"},
                },
            ],
        ),
        Panel(
            "Stage duration (median)",
            "timeseries",
            [
                Query(
                    f"histogram_quantile(0.5, sum by (le, stage) (sweetspot_trial_duration_seconds_bucket{{{STUDY}}}))",
                    "{{stage}} p50",
                )
            ],
            unit="s",
            description="Median wall-clock duration of finished stages, by stage.",
        ),
        Panel(
            "Failed and disrupted stage runs",
            "timeseries",
            [Query(f"sweetspot_study_stage_failures_total{{{STUDY}}}", "{{kind}}")],
            unit="none",
            field_config={"decimals": 0},
            description="failed: the trainer failed (counts toward maxFailedTrials after retries); disrupted: the "
            "pod was evicted or preempted and the stage ran again.",
        ),
    ]
    variables = [
        _variable("namespace", "Namespace", "label_values(sweetspot_study_phase, namespace)"),
        _variable("study", "Study", 'label_values(sweetspot_study_phase{namespace="$namespace"}, study)'),
    ]
    return dashboard(
        "sweetspot-study",
        "Sweetspot / Study",
        "One FineTuneStudy: trials, early and final F1, their agreement, compute used and saved, and the "
        "learning curve.",
        variables,
        panels,
    )


COSTS = "|".join(COST_METRICS)
ON_FRONT = f"and on (namespace, study, trial) sweetspot_trial_pareto_optimal{{{STUDY}}}"
AT_KNEE = f"and on (namespace, study, trial) sweetspot_trial_pareto_knee{{{STUDY}}}"


def _objective(variable: str) -> str:
    """The final value of the objective a dashboard variable names, per trial."""
    return f'sweetspot_trial_objective{{{STUDY}, stage="final", objective="${variable}"}}'


def _label_columns() -> dict[str, bool]:
    """The label columns of instant table queries, as joining several names them, left out of a table or chart."""
    columns = ("Time", "namespace", "study", "__name__", "job", "instance", "stage", "objective")
    return {name: True for column in columns for name in (column, *(f"{column} {n}" for n in range(1, 5)))}


def pareto_front() -> dict[str, Any]:
    """A multi-objective study (`spec.objectives`): the Pareto front of the trials trained to the end, its knee, and
    quality against a cost for every such trial. Its own dashboard: single-objective studies have no front, and
    every panel of the study dashboard shows data for every study."""
    panels = [
        replace(
            _stat(
                "Trials on the front",
                f"sweetspot_study_pareto_front_trials{{{STUDY}}}",
                description="Trials trained to the end that no other such trial beats in every objective.",
                decimals=0,
            ),
            width=6,
        ),
        replace(
            _stat(
                "Knee",
                f"sweetspot_trial_pareto_knee{{{STUDY}}}",
                description="The front's knee: the trial where more cost stops buying as much quality (with each "
                "objective scaled to its range over the front, the least sum). The usual pick when the last bit of "
                "quality is not worth its cost.",
                legend="trial {{trial}}",
                text_mode="name",
            ),
            width=6,
        ),
        replace(
            _stat(
                "Knee's quality",
                f"{_objective('quality')} {AT_KNEE}",
                description="The knee's value of the quality objective (trained to the end).",
                legend="{{objective}}",
                decimals=4,
            ),
            width=6,
        ),
        replace(
            _stat(
                "Knee's cost",
                f"{_objective('cost')} {AT_KNEE}",
                description="The knee's value of the cost chosen above (computeSeconds: GPU-seconds, wall seconds on "
                "CPUs; peakMemoryBytes: bytes; latencyMsPerRow: milliseconds).",
                legend="{{objective}}",
            ),
            width=6,
        ),
        Panel(
            "Pareto front",
            "table",
            [
                Query(
                    f'sweetspot_trial_objective{{{STUDY}, stage="final"}} {ON_FRONT} or '
                    f'label_replace(sweetspot_trial_pareto_knee{{{STUDY}}}, "objective", "knee", "", "")',
                    instant=True,
                    table=True,
                )
            ],
            height=10,
            description="One row per trial on the front: its final value of every objective (computeSeconds: "
            "what its stages spent), the knee marked. sweetspot report prints the same front with the best trial "
            "and the recommendation.",
            transformations=[
                {
                    "id": "groupingToMatrix",
                    "options": {"columnField": "objective", "rowField": "trial", "valueField": "Value"},
                },
                {"id": "organize", "options": {"renameByName": {"trial\\objective": "trial"}}},
            ],
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "knee"},
                    "properties": [
                        {
                            "id": "mappings",
                            "value": [{"type": "value", "options": {"1": {"text": "knee", "color": "green"}}}],
                        },
                        {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                    ],
                },
                *(
                    {"matcher": {"id": "byName", "options": name}, "properties": [{"id": "unit", "value": unit}]}
                    for name, unit in (
                        ("computeSeconds", "s"),
                        ("peakMemoryBytes", "bytes"),
                        ("latencyMsPerRow", "ms"),
                        ("trainableParameters", "short"),
                    )
                ),
            ],
        ),
        Panel(
            "Quality against cost",
            "xychart",
            [
                Query(_objective("cost"), instant=True, table=True),
                Query(_objective("quality"), instant=True, table=True),
                Query(f"{_objective('quality')} {ON_FRONT}", instant=True, table=True),
                Query(f"{_objective('quality')} {AT_KNEE}", instant=True, table=True),
            ],
            height=10,
            description="Every trial trained to the end: its quality objective against the cost chosen above; the "
            "trials on the front and the knee stand out. Up and to the left is better (for loss, down and left).",
            options={"seriesMapping": "auto", "dims": {"x": "cost"}},
            field_config={"custom": {"show": "points", "pointSize": {"fixed": 7}}},
            transformations=[
                {"id": "joinByField", "options": {"byField": "trial", "mode": "outer"}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": _label_columns(),
                        "renameByName": {
                            "Value #A": "cost",
                            "Value #B": "trained to the end",
                            "Value #C": "on the front",
                            "Value #D": "knee",
                        },
                    },
                },
            ],
        ),
    ]
    variables = [
        _variable("namespace", "Namespace", "label_values(sweetspot_study_pareto_front_trials, namespace)"),
        _variable("study", "Study", 'label_values(sweetspot_study_pareto_front_trials{namespace="$namespace"}, study)'),
        _variable(
            "cost",
            "Cost",
            f'label_values(sweetspot_trial_objective{{{STUDY}, objective=~"{COSTS}"}}, objective)',
        ),
        _variable(
            "quality",
            "Quality",
            f'label_values(sweetspot_trial_objective{{{STUDY}, objective!~"{COSTS}"}}, objective)',
        )
        | {"hide": 2},  # the study's one quality objective: nothing to choose
    ]
    return dashboard(
        "sweetspot-pareto",
        "Sweetspot / Pareto front",
        "One multi-objective FineTuneStudy (spec.objectives): the trials no other beats in every objective, the "
        "knee, and quality against cost.",
        variables,
        panels,
    )


JOB = 'job=~"$job"'


def operator_health() -> dict[str, Any]:
    panels = [
        _stat("Version", f"sweetspot_build_info{{{JOB}}}", legend="{{version}}", decimals=0),
        _stat(
            "Since the last successful reconcile",
            f"time() - sweetspot_last_successful_reconcile_timestamp_seconds{{{JOB}}}",
            "s",
            "Seconds since a study reconcile last completed (alert: SweetspotOperatorNotReconciling).",
            decimals=0,
        ),
        _stat(
            "Studies",
            f"sum(sweetspot_study_phase{{{JOB}}} == 1)",
            "none",
            "FineTuneStudies the operator reconciles.",
            decimals=0,
        ),
        _stat(
            "Running trials",
            f'sum(sweetspot_study_trials{{{JOB}, state="running"}})',
            "none",
            "Trials with a stage under way, over all studies.",
            decimals=0,
        ),
        _stat(
            "Storage unreachable",
            f"count(sweetspot_storage_reachable{{{JOB}}} == 0) or vector(0)",
            "none",
            "Studies whose Optuna storage did not answer the last reconcile.",
            decimals=0,
        ),
        _stat("Memory", f"process_resident_memory_bytes{{{JOB}}}", "bytes", "Resident memory of the operator."),
        Panel(
            "Reconciles per second",
            "timeseries",
            [Query(f"sum(rate(sweetspot_reconcile_duration_seconds_count{{{JOB}}}[$__rate_interval]))", "reconciles")],
            unit="reqps",
        ),
        Panel(
            "Reconcile duration",
            "timeseries",
            [
                Query(
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(sweetspot_reconcile_duration_seconds_bucket{{{JOB}}}[$__rate_interval])))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.9, 0.99)
            ],
            unit="s",
            description="Time for one study reconcile: storage reads, planning, Job and status writes.",
        ),
        Panel(
            "Reconcile errors",
            "timeseries",
            [
                Query(
                    f"sum by (reason) (rate(sweetspot_reconcile_errors_total{{{JOB}}}[$__rate_interval]))", "{{reason}}"
                )
            ],
            unit="reqps",
            description="storage: the Optuna storage did not answer; cluster: the API server refused or failed; "
            "invalid: a study's spec is invalid.",
        ),
        Panel(
            "Storage reachable per study",
            "state-timeline",
            [Query(f"sweetspot_storage_reachable{{{JOB}}}", "{{namespace}}/{{study}}")],
            field_config={
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "unreachable", "color": "red"},
                            "1": {"text": "reachable", "color": "green"},
                        },
                    }
                ],
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
                },
            },
        ),
        Panel(
            "Studies by phase",
            "timeseries",
            [Query(f"sum by (phase) (sweetspot_study_phase{{{JOB}}})", "{{phase}}")],
            unit="none",
            field_config={"custom": {"stacking": {"mode": "normal"}, "fillOpacity": 40}, "decimals": 0},
        ),
        Panel(
            "Operator CPU",
            "timeseries",
            [Query(f"rate(process_cpu_seconds_total{{{JOB}}}[$__rate_interval])", "CPU cores")],
            unit="none",
        ),
    ]
    return dashboard(
        "sweetspot-operator",
        "Sweetspot / Operator",
        "The Sweetspot operator: reconcile rate, duration and errors, storage reachability, resources.",
        [_variable("job", "Job", "label_values(sweetspot_build_info, job)") | {"includeAll": True, "multi": True}],
        panels,
    )


DASHBOARDS = {
    "sweetspot-study.json": study_overview,
    "sweetspot-pareto.json": pareto_front,
    "sweetspot-operator.json": operator_health,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"
