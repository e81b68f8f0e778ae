"""The runtime registry (`sweetspot.cluster.runtimes.RUNTIMES`): one entry per kind the API accepts, and which of
them the operator watches and cleans up after."""

from __future__ import annotations

from typing import get_args

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.trial import TrialRuntime
from sweetspot.cluster.memory import Memories
from sweetspot.cluster.runtimes import RUNTIMES, JobRuntime, TrainJobRuntime, runtime_for, served

from support.studies import small_study


def test_every_runtime_the_api_accepts_has_one_class() -> None:
    kinds = get_args(TrialRuntime.model_fields["kind"].annotation)
    assert sorted(RUNTIMES) == sorted(kinds)
    for kind in kinds:
        manifest = small_study("s", "team")
        manifest["spec"]["trial"] = {"runtime": {"kind": kind}}
        study = FineTuneStudy.model_validate(manifest)
        assert type(runtime_for(study, Memories())) is RUNTIMES[kind]


def test_trainjobs_are_watched_and_cleaned_up_only_where_the_chart_enables_them() -> None:
    assert served({}) == [JobRuntime]
    assert served({"SWEETSPOT_TRAINJOBS": "false"}) == [JobRuntime]
    assert served({"SWEETSPOT_TRAINJOBS": "true"}) == [JobRuntime, TrainJobRuntime]
