"""The alert rules with the real promtool: they parse, and each fires on the series that should fire it and stays
quiet on the healthy ones (promtool's rule unit tests; the observability test fires the study alerts for real)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.prometheus import RULES, binary

pytestmark = pytest.mark.integration

OPERATOR = 'job="sweetspot", instance="op:8000"'


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, check=False)


def test_the_rules_parse() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(names) == len(set(names)) == 8


def case(series: dict[str, str], eval_time: str, alert: str, fires: dict[str, str] | None) -> dict[str, Any]:
    """One promtool test: `alert` at `eval_time` fires with these labels (besides severity), or not at all."""
    expected = []
    if fires is not None:
        severity = next(
            r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if r["alert"] == alert
        )
        expected = [{"exp_labels": {**fires, "severity": severity["labels"]["severity"]}}]
    return {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [{"eval_time": eval_time, "alertname": alert, "exp_alerts": expected}],
    }


STUDY = {"namespace": "ml", "study": "attrs", "job": "sweetspot", "instance": "op:8000"}
LABELS = 'namespace="ml", study="attrs", job="sweetspot", instance="op:8000"'


def study_series(name: str, extra: str = "") -> str:
    return f"{name}{{{LABELS}{', ' + extra if extra else ''}}}"


CASES = {
    "failed study fires": case(
        {study_series("sweetspot_study_phase", 'phase="Failed"'): "0 0 1x10"}, "5m", "SweetspotStudyFailed",
        {**STUDY, "phase": "Failed"},
    ),
    "succeeded study is quiet": case(
        {study_series("sweetspot_study_phase", 'phase="Failed"'): "0x10"}, "5m", "SweetspotStudyFailed", None
    ),
    "three failed stages fire": case(
        {study_series("sweetspot_study_stage_failures_total", 'kind="failed"'): "0 1 2 3 3 3 3 3"},
        "5m", "SweetspotTrialsFailing", {**STUDY, "kind": "failed"},
    ),
    "one failed stage is quiet": case(
        {study_series("sweetspot_study_stage_failures_total", 'kind="failed"'): "0 1 1 1 1 1 1 1"},
        "5m", "SweetspotTrialsFailing", None,
    ),
    "a finished study that extracts nothing fires": case(
        {
            study_series("sweetspot_study_best_f1", 'stage="final"'): "0x20",
            study_series("sweetspot_study_phase", 'phase="Succeeded"'): "0 0 1x20",
        },
        "10m", "SweetspotNothingExtracted", {**STUDY, "stage": "final"},
    ),
    "a study still searching is quiet": case(
        {
            study_series("sweetspot_study_best_f1", 'stage="final"'): "0x20",
            study_series("sweetspot_study_phase", 'phase="Succeeded"'): "0x20",
        },
        "10m", "SweetspotNothingExtracted", None,
    ),
    "a study that extracts something is quiet": case(
        {
            study_series("sweetspot_study_best_f1", 'stage="final"'): "0.4x20",
            study_series("sweetspot_study_phase", 'phase="Succeeded"'): "1x20",
        },
        "10m", "SweetspotNothingExtracted", None,
    ),
    "poor agreement over enough trials fires": case(
        {
            study_series("sweetspot_study_early_final_spearman"): "0.2x20",
            study_series("sweetspot_study_early_final_trials"): "6x20",
        },
        "15m", "SweetspotEarlyFinalDisagreement", STUDY,
    ),
    "poor agreement over few trials is quiet": case(
        {
            study_series("sweetspot_study_early_final_spearman"): "0.2x20",
            study_series("sweetspot_study_early_final_trials"): "3x20",
        },
        "15m", "SweetspotEarlyFinalDisagreement", None,
    ),
    "a study past 80% of its budget fires": case(
        {
            study_series("sweetspot_study_budget_used_ratio"): "0.5 0.7 0.85x10",
            study_series("sweetspot_study_phase", 'phase="Searching"'): "1x12",
        },
        "5m", "SweetspotStudyBudgetMostlySpent", STUDY,
    ),
    "a study under 80% of its budget is quiet": case(
        {
            study_series("sweetspot_study_budget_used_ratio"): "0.5 0.7 0.79x10",
            study_series("sweetspot_study_phase", 'phase="Searching"'): "1x12",
        },
        "5m", "SweetspotStudyBudgetMostlySpent", None,
    ),
    "a study that ended on its budget is quiet": case(
        {
            study_series("sweetspot_study_budget_used_ratio"): "0.5 0.7 1x10",
            study_series("sweetspot_study_phase", 'phase="Searching"'): "1 1 0x10",
            study_series("sweetspot_study_phase", 'phase="Succeeded"'): "0 0 1x10",
        },
        "5m", "SweetspotStudyBudgetMostlySpent", None,
    ),
    "unreachable storage fires": case(
        {study_series("sweetspot_storage_reachable"): "1 0x10"}, "5m", "SweetspotStorageUnreachable", STUDY
    ),
    "stalled operator with studies in progress fires": case(
        {
            f"sweetspot_last_successful_reconcile_timestamp_seconds{{{OPERATOR}}}": "60x30",
            study_series("sweetspot_study_phase", 'phase="Searching"'): "1x30",
        },
        "15m", "SweetspotOperatorNotReconciling", {"job": "sweetspot", "instance": "op:8000"},
    ),
    "idle operator with only finished studies is quiet": case(
        {
            f"sweetspot_last_successful_reconcile_timestamp_seconds{{{OPERATOR}}}": "60x30",
            study_series("sweetspot_study_phase", 'phase="Searching"'): "0x30",
        },
        "15m", "SweetspotOperatorNotReconciling", None,
    ),
    "no operator scraped fires": case(
        {'up{job="other"}': "1x30"}, "15m", "SweetspotOperatorDown", {}
    ),
    "a scraped operator is quiet": case(
        {f'sweetspot_build_info{{{OPERATOR}, version="0.1.0"}}': "1x30"}, "15m", "SweetspotOperatorDown", None
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert(name: str, tmp_path: Path) -> None:
    # Without annotations: promtool would compare their rendered text (the observability test renders them).
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    tests = tmp_path / "tests.yaml"
    tests.write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [CASES[name]]})
    )
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
