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


def test_a_stage_stopped_by_sigterm_is_a_disruption_and_its_rerun_a_resumed_note() -> None:
    """A Job's failed pod that exited 75 (SIGTERM, checkpoint written) without a result is disrupted, not failed,
    whether or not the pod carries DisruptionTarget; once the stage ran again, its record says where it resumed."""
    from sweetspot.cluster import kube
    from sweetspot.contract import EXIT_INTERRUPTED
    from sweetspot.core.loop import resumed_note
    from sweetspot.core.records import RecordEarly, RecordFinal

    from support.builders import outcome

    def pod(code: int) -> dict[str, object]:
        return {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": code}}}]}}

    assert kube.exit_codes([pod(EXIT_INTERRUPTED), pod(0), {"status": {}}]) == {EXIT_INTERRUPTED, 0}
    assert not kube.disrupted([pod(EXIT_INTERRUPTED)])  # no condition: the exit code alone says it
    assert resumed_note(RecordEarly(3, outcome(f1=0.5), 0.5, False)) is None  # a stage that ran once
    note = resumed_note(RecordFinal(3, outcome(f1=0.5, resumed_from_step=40, lost_seconds=7.25), 0.5))
    assert note is not None and note.reason == "StageResumed" and not note.warning
    assert note.message == "trial 3 final: resumed from step 40 after a disruption, 7.2 compute-seconds lost"
