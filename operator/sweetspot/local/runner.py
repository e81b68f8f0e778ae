"""Local mode: `sweetspot run study.yaml` runs a whole study on this machine, no cluster needed.

The same planner as the operator decides; each trial stage runs as a subprocess of the trainer entrypoint
with the same config and result contract as a pod. State lives in the Optuna storage (SQLite under
`.sweetspot/` by default) and in one directory per run, so Ctrl-C stops cleanly and running the same command
again resumes the study with nothing lost or repeated: finished results are read back from their files, and
stages that were interrupted run again without counting as failures.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from sweetspot import contract
from sweetspot.api.resource import FineTuneStudy
from sweetspot.contract import ADAPTER_DIR, StageResult
from sweetspot.core.loop import Note, settle
from sweetspot.core.records import AskTrials, Decision, RunKey, RunView, StartRun, StopRun
from sweetspot.core.runtime import Runtime
from sweetspot.core.stages import Paths, trial_config
from sweetspot.core.stats import progress
from sweetspot.observe.metrics import StudyState
from sweetspot.storage.store import SearchStore

POLL_SECONDS = 0.5
CPU_THREADS_ENV = contract.CPU_THREADS_ENV
TRAINER_MODULE_ENV = "SWEETSPOT_TRAINER_MODULE"
"""The Python module each stage runs (`python -m MODULE --config trial.json`), `sweetspot_trainer` unless set: any
program that keeps the trainer contract (sweetspot.contract) can stand in, as a trainer image does on a cluster."""

Say = Callable[[str], None]


@dataclass
class LocalRuntime(Runtime):
    """Runs trial stages as subprocesses of this process; observes them through the processes and their result
    files. Serves one study (its `root`)."""

    root: Path
    """The study's directory: `runs/<key>/` per stage run, `trials/t<n>/checkpoint` per trial."""
    manifest_dir: Path
    python: str = sys.executable
    trainer_module: str = field(default_factory=lambda: os.environ.get(TRAINER_MODULE_ENV, "sweetspot_trainer"))
    parallelism: int = 1
    """Stages that may run at once: each gets an equal share of this machine's cores (more torch threads than
    cores slow every stage down several times)."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    graces: dict[str, int] = field(default_factory=dict)
    """Per running stage, how long its stop may take (SIGTERM, then SIGKILL): `StartRun.grace_seconds`."""

    def __post_init__(self) -> None:
        self.root = self.root.resolve()  # the trainer runs in the run directory: every path must be absolute

    def run_dir(self, key: RunKey) -> Path:
        return self.root / "runs" / str(key)

    def paths(self, key: RunKey) -> Paths:
        owner = f"{key.kind[0]}{key.number}" + (f"-rep{key.repeat}" if key.repeat else "")
        checkpoint = self.root / ("trials" if key.kind == "trial" else "sweep") / owner / "checkpoint"

        def resolve(pvc: str | None, path: str) -> str:
            # Local mode has no volumes: a path is relative to the manifest (a PVC name is ignored).
            return str((self.manifest_dir / path).resolve())

        return Paths(checkpoint_dir=str(checkpoint), output_dir=str(self.run_dir(key)), resolve=resolve)

    def observe(self, study: FineTuneStudy | None = None) -> list[RunView]:
        runs: list[RunView] = []
        base = self.root / "runs"
        for directory in sorted(base.iterdir()) if base.is_dir() else []:
            try:
                key = RunKey.parse(directory.name)
            except ValueError:
                continue
            runs.append(self._observe(key, directory))
        return runs

    def _observe(self, key: RunKey, directory: Path) -> RunView:
        result_file = directory / contract.result_file_name(key.stage)
        process = self.processes.get(str(key))
        if process is not None and process.poll() is None:
            return RunView(key, "running")
        if result_file.exists():
            self.processes.pop(str(key), None)
            try:
                result = StageResult.model_validate_json(result_file.read_text())
            except (ValidationError, OSError) as exc:
                return RunView(key, "failed", reason=f"unreadable result: {exc}")
            return RunView(key, "succeeded" if result.status == "ok" else "failed", result)
        if process is not None:  # exited without a result: a crash the trainer could not report
            self.processes.pop(str(key), None)
            return RunView(
                key,
                "failed",
                reason=f"the trainer exited with code {process.returncode} (log: {directory / 'log.txt'})",
            )
        if (directory / "interrupted").exists():
            return RunView(key, "disrupted", reason="interrupted")
        # A run from an earlier `sweetspot run` that died with it: like a preempted pod, try again.
        return RunView(key, "disrupted", reason="the runner stopped while this stage ran")

    def start(self, study: FineTuneStudy, action: StartRun) -> str:
        directory = self.run_dir(action.key)
        process = self.processes.get(str(action.key))
        if process is not None and process.poll() is None:
            return f"process {process.pid}"  # running already (the runtime contract: a start is idempotent)
        if (directory / contract.result_file_name(action.key.stage)).exists():
            return f"finished in {directory}"  # its result stays observable until the study is cleaned up
        if directory.exists():  # a leftover of an interrupted attempt with the same key: start clean
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        config = trial_config(study, action, self.paths(action.key))
        (directory / "trial.json").write_text(config.model_dump_json(exclude_none=True, indent=2))
        with open(directory / "log.txt", "wb") as log:
            popen = subprocess.Popen(
                [self.python, "-m", self.trainer_module, "--config", str(directory / "trial.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
                env={
                    # Converted built-in models are cached under the work directory (shared by its studies).
                    contract.CACHE_ENV: str(self.root.parent / "cache"),
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    CPU_THREADS_ENV: str(self.threads_per_stage()),
                },
                start_new_session=True,  # Ctrl-C reaches the runner, which stops its children itself
            )
        self.processes[str(action.key)] = popen
        self.graces[str(action.key)] = action.grace_seconds
        return f"process {popen.pid}"

    def threads_per_stage(self) -> int:
        if CPU_THREADS_ENV in os.environ:  # the user's choice wins
            return max(1, int(os.environ[CPU_THREADS_ENV]))
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        return max(1, cores // max(1, self.parallelism))

    def stop(self, study: FineTuneStudy | None, key: RunKey, mark_interrupted: bool = False) -> None:
        process = self.processes.pop(str(key), None)
        grace = self.graces.pop(str(key), contract.DEFAULT_GRACE_SECONDS)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the trainer finishes its step and checkpoints (exit 75)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if mark_interrupted:
            (self.run_dir(key) / "interrupted").touch()

    def stop_all(self) -> None:
        """Ask every stage to stop at once (each checkpoints after its step), then wait for each."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for key in list(self.processes):
            self.stop(None, RunKey.parse(key), mark_interrupted=True)

    def clean_up(self, namespace: str, name: str) -> int:
        """Stop the study's stages and remove their run folders (configs, logs, results, adapters); checkpoints under
        `trials/` and `sweep/` stay, as a cluster's output volume keeps them. `sweetspot run` never deletes a study:
        this is the runtime contract's, for a caller that does."""
        for key in list(self.processes):
            self.stop(None, RunKey.parse(key))
        base = self.root / "runs"
        removed = 0
        for directory in sorted(base.iterdir()) if base.is_dir() else []:
            try:
                RunKey.parse(directory.name)
            except ValueError:
                continue
            shutil.rmtree(directory)
            removed += 1
        return removed

    def adapters(self, trial: int) -> list[Path]:
        """The LoRA adapters the final stages of `trial` saved, oldest attempt first."""
        return sorted(self.run_dir(RunKey("trial", trial, "final")).parent.glob(f"t{trial}-final*/{ADAPTER_DIR}"))


def run_study(
    study: FineTuneStudy,
    store: SearchStore,
    runtime: LocalRuntime,
    say: Say,
    publish: Callable[[StudyState], None] | None = None,
) -> Decision:
    """Drive the study until it succeeds or fails; Ctrl-C stops every child and re-raises.

    `publish` receives the study's state after every settle (the metrics: local mode's reconcile)."""
    meta = study.metadata
    recorded = False

    def hear(note: Note) -> None:
        nonlocal recorded
        say(note.message)
        recorded = recorded or not isinstance(note.action, AskTrials | StartRun | StopRun | None)

    try:
        while True:
            recorded = False
            decision = settle(study, store, runtime, hear)
            trials, sweep = store.snapshot()
            if recorded:
                say(progress(study.spec, trials, sweep))
            if publish is not None:
                publish(StudyState.of(meta.namespace, meta.name, study.spec, trials, sweep, decision.phase))
            if decision.finished and not any(isinstance(a, StartRun) for a in decision.actions):
                return decision
            if not decision.actions:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        runtime.stop_all()
        raise
