"""The early stage's checkpoint, which the final stage resumes from.

It holds the trainable weights, the optimizer, the scheduler and torch's RNG state at the early stage's last step,
and a fingerprint of what must match for `final` to continue that run: with the plan of steps and the seeded data
order (`steps`), early + final then trains the same steps as one `full` run. Only rank 0 writes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sweetspot.contract import TrialConfig
from sweetspot_trainer.data import DataError
from sweetspot_trainer.steps import StepPlan

CHECKPOINT_FILE = "state.pt"


def checkpoint_path(config: TrialConfig) -> Path | None:
    return Path(config.checkpoint_dir) / CHECKPOINT_FILE if config.checkpoint_dir else None


def fingerprint(config: TrialConfig, sample_hash: str) -> str:
    """What must match for `final` to resume `early`'s checkpoint."""
    parts = config.model_dump(
        mode="json",
        include={"hyperparameters", "model", "train", "samples", "seed", "early_fraction", "attributes", "schema_"},
    )
    return hashlib.sha256(f"{parts}|{sample_hash}".encode()).hexdigest()[:16]


def load_checkpoint(path: Path, device: Any) -> dict[str, Any]:
    """A checkpoint's tensors and plain data, never code: the output volume is written by many trials and studies,
    so a file there that would run code when unpickled is bad input, refused before anything of it runs."""
    import pickle

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


def resume(
    config: TrialConfig, model: Any, optimizer: Any, scheduler: Any, sample_hash: str, device: torch.device
) -> Start:
    """A final stage continues from the early checkpoint when there is one of this configuration, loading its state
    into `model`, `optimizer`, `scheduler` and torch's RNG; any other stage starts at step 0."""
    if config.stage != "final":
        return Start(0, False, "")
    path = checkpoint_path(config)
    if path is None or not path.exists():
        return Start(0, False, "no early checkpoint: trained from scratch")
    state = load_checkpoint(path, device)
    if state.get("fingerprint") != fingerprint(config, sample_hash):
        return Start(0, False, "the early checkpoint belongs to a different configuration: trained from scratch")
    model.load_state_dict(state["trainable"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    return Start(int(state["step"]), True, f"resumed from the early checkpoint at step {state['step']}")


def save_checkpoint(
    config: TrialConfig, model: Any, optimizer: Any, scheduler: Any, step: int, plan: StepPlan, sample_hash: str
) -> None:
    """Write the state `resume` reads, when the config names a checkpoint folder."""
    path = checkpoint_path(config)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "planned_steps": plan.total,
        "fingerprint": fingerprint(config, sample_hash),
        "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)  # a pod killed mid-write leaves no half checkpoint behind
