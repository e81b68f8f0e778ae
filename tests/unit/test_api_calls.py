"""The RBAC the chart must grant is read from the operator's code: a new call shows up, an unknown one fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.api_calls import operator_verbs


def test_client_calls_and_kopf_handlers_become_verbs(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(
        "import kopf\n"
        "@kopf.on.event('batch', 'v1', 'jobs')\n"
        "def seen(**_): core.patch_namespaced_pod('p', 'ns', {})\n"
        "@kopf.timer(GROUP, VERSION, PLURAL, interval=1)\n"
        "def tick(**_): api.read_namespaced_secret('s', 'ns')\n"
    )
    assert operator_verbs(tmp_path) == {
        ("batch", "jobs"): {"list", "watch"},
        ("", "pods"): {"patch"},
        ("", "secrets"): {"get"},
        ("sweetspot.dev", "finetunestudies"): {"list", "watch", "patch"},
        ("sweetspot.dev", "finetunestudies/status"): {"patch"},
        ("", "events"): {"create"},
    }


def test_a_call_on_an_unknown_resource_fails(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text("core.delete_namespaced_service('s', 'ns')\n")
    with pytest.raises(AssertionError, match="unknown API resource"):
        operator_verbs(tmp_path)


def test_the_operator_needs_no_wildcards_and_reads_secrets_only() -> None:
    verbs = operator_verbs()
    assert verbs[("", "secrets")] == {"get"}
    assert all("*" not in v for v in verbs.values())
