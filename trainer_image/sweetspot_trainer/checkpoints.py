"""A stage's checkpoints: where a rerun of a disrupted stage continues, and where `final` continues `early`.

A checkpoint holds what a continuation needs to be the same run: the trainable weights (LoRA and head), the
optimizer, the scheduler, torch's RNG states, and the stage's evaluations, losses and training seconds so far. The
position in the epoch's sample order needs no saving: the order of epoch e depends only on (seed, e) (`steps`), so
the step number is the position. A fingerprint of what must match (configuration and sampled rows) names the files,
so trials or repeats that share a folder never read or prune each other's.

Files are `<fingerprint>-step-<step>.pt`, written to a temporary name, flushed and renamed: a pod killed mid-write
leaves a `.partial` that is never read, and the newest complete checkpoint wins. After each write the older ones are
pruned, except the early one (where `early` stopped: what `final` resumes from). `<fingerprint>-progress.json` is a
heartbeat (step and training seconds) that tells the rerun how much training the disruption threw away. Rank 0 alone
writes; every rank reads the same newest checkpoint, so every rank resumes the same step.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sweetspot.contract import Evaluation, TrialConfig
from sweetspot_trainer.data import DataError
from sweetspot_trainer.steps import StepPlan

HEARTBEAT_SECONDS = 2.0
"""The heartbeat is written at most this often (and at every checkpoint): its staleness bounds how much lost
training a rerun cannot see."""
_STEP_FILE = re.compile(r"^(?P<fingerprint>[0-9a-f]{16})-step-(?P<step>\d{8})\.pt$")


def fingerprint(config: TrialConfig, sample_hash: str) -> str:
    """What must match for one stage to continue another's checkpoint."""
    parts = config.model_dump(
        mode="json",
        include={"hyperparameters", "model", "train", "samples", "seed", "early_fraction", "attributes", "schema_"},
    )
    return hashlib.sha256(f"{parts}|{sample_hash}".encode()).hexdigest()[:16]


def load_checkpoint(path: Path, device: Any) -> dict[str, Any]:
    """A checkpoint's tensors and plain data, never code: the output volume is written by many trials and studies,
    so a file there that would run code when unpickled is bad input, refused before anything of it runs."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            [f"{path}: not a Sweetspot checkpoint (it holds more than tensors and plain data): {reason}"]
        ) from None
    if not isinstance(state, dict):
        raise DataError([f"{path}: not a Sweetspot checkpoint (a {type(state).__name__}, not a mapping)"])
    return state


@dataclass(frozen=True)
class Start:
    """Where a stage starts training."""

    step: int
    resumed: bool
    note: str
    """For the result's message ("" when there is nothing to say)."""
    resumed_from_step: int | None = None
    """A rerun of a disrupted stage: the step it continues from."""
    evaluations: list[Evaluation] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    trained_seconds: float = 0.0
    """The stage's evaluations, step losses and training seconds before `step` (a rerun's; empty otherwise)."""
    redone_seconds: float = 0.0
    """Training the disrupted run did after the checkpoint, to be done again (from its heartbeat)."""


@dataclass(frozen=True)
class Saved:
    step: int
    seconds: float
    size: int


@dataclass
class Checkpoints:
    """The checkpoint folder of one stage run (`config.checkpoint_dir`; nothing is kept when it is unset)."""

    config: TrialConfig
    plan: StepPlan
    sample_hash: str
    device: torch.device
    folder: Path | None = field(init=False)
    name: str = field(init=False)
    _last_heartbeat: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.folder = Path(self.config.checkpoint_dir) if self.config.checkpoint_dir else None
        self.name = fingerprint(self.config, self.sample_hash)

    def path(self, step: int) -> Path:
        assert self.folder is not None
        return self.folder / f"{self.name}-step-{step:08d}.pt"

    @property
    def heartbeat_path(self) -> Path | None:
        return self.folder / f"{self.name}-progress.json" if self.folder else None

    def steps(self) -> list[int]:
        """The steps of this run's complete checkpoints, oldest first."""
        if self.folder is None or not self.folder.is_dir():
            return []
        found = (_STEP_FILE.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m["step"]) for m in found if m and m["fingerprint"] == self.name)

    def resume(self, model: Any, optimizer: Any, scheduler: Any) -> Start:
        """Continue the newest checkpoint this stage may continue: its own (a rerun after a disruption) or, for
        `final`, the early one; else start at step 0. A heartbeat of this stage says the run is a rerun: the
        training the disrupted run did after the checkpoint is to be done again, and is counted."""
        stage, stop = self.config.stage, self.plan.stop_step(self.config.stage)
        reached = self._heartbeat_seconds()
        rerun = reached is not None
        for step in reversed(self.steps()):
            if step > stop:
                continue
            state = load_checkpoint(self.path(step), self.device)
            own = state.get("stage") == stage
            if not own and not (stage == "final" and state.get("stage") == "early" and step == self.plan.early):
                continue
            self._restore(state, model, optimizer, scheduler)
            if not own:
                note = f"resumed from the early checkpoint at step {step}"
                return Start(
                    step,
                    True,
                    note + (" after a disruption (no checkpoint of its own)" if rerun else ""),
                    resumed_from_step=step if rerun else None,
                    redone_seconds=reached or 0.0,
                )
            trained = float(state["trained_seconds"])
            return Start(
                step,
                True,
                f"resumed from its own checkpoint at step {step} after a disruption",
                resumed_from_step=step,
                evaluations=[Evaluation.model_validate_json(e) for e in json.loads(state["evaluations"])],
                losses=[float(x) for x in state["losses"].tolist()],
                trained_seconds=trained,
                redone_seconds=max(0.0, (reached or 0.0) - trained),
            )
        if rerun:
            note = "trained from scratch after a disruption (no checkpoint)"
            return Start(0, False, note, resumed_from_step=0, redone_seconds=reached or 0.0)
        return Start(0, False, "no early checkpoint: trained from scratch" if stage == "final" else "")

    def _restore(self, state: dict[str, Any], model: Any, optimizer: Any, scheduler: Any) -> None:
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])

    def _heartbeat_seconds(self) -> float | None:
        """The training seconds an earlier run of this stage had reached at its last heartbeat; None when no run of
        this stage has trained a step yet (not a rerun)."""
        path = self.heartbeat_path
        try:
            beat = json.loads(path.read_text()) if path else {}
            return float(beat["trainedSeconds"]) if beat.get("stage") == self.config.stage else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(
        self,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        step: int,
        evaluations: list[Evaluation],
        losses: list[float],
        trained_seconds: float,
    ) -> Saved | None:
        """Write the checkpoint of `step` atomically, then prune the older ones; None when nothing is kept."""
        if self.folder is None:
            return None
        began = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "step": step,
            "stage": self.config.stage,
            "planned_steps": self.plan.total,
            "fingerprint": self.name,
            "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "evaluations": json.dumps([e.model_dump_json() for e in evaluations]),
            "losses": torch.tensor(losses, dtype=torch.float64),
            "trained_seconds": trained_seconds,
        }
        path = self.path(step)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())  # on the volume before the rename makes it the newest
        partial.replace(path)
        self.heartbeat(step, trained_seconds, force=True)
        self._prune(keep=step)
        return Saved(step, time.monotonic() - began, path.stat().st_size)

    def _prune(self, keep: int) -> None:
        for step in self.steps():
            if step not in (keep, self.plan.early):
                self.path(step).unlink(missing_ok=True)

    def heartbeat(self, step: int, trained_seconds: float, force: bool = False) -> None:
        """Say how far training got (atomically, at most every `HEARTBEAT_SECONDS` unless `force`)."""
        path, now = self.heartbeat_path, time.monotonic()
        if path is None or (not force and now - self._last_heartbeat < HEARTBEAT_SECONDS):
            return
        self._last_heartbeat = now
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        beat = {"stage": self.config.stage, "step": step, "trainedSeconds": round(trained_seconds, 3)}
        partial.write_text(json.dumps(beat))
        partial.replace(path)


@dataclass
class Schedule:
    """When a stage writes its periodic checkpoints: every N steps, or at the first step that ends T seconds after
    the previous checkpoint."""

    every_steps: int | None
    every_seconds: float | None
    last: float = field(default_factory=time.monotonic)

    def due(self, done: int) -> bool:
        if self.every_steps is not None:
            return done % self.every_steps == 0
        return self.every_seconds is not None and time.monotonic() - self.last >= self.every_seconds

    def saved(self) -> None:
        self.last = time.monotonic()
