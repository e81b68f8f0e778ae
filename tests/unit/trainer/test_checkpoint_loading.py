"""A checkpoint is loaded as tensors and plain data only: a file planted in the shared output volume that would run
code when unpickled is refused as bad input, and its code never runs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from sweetspot_trainer.checkpoints import load_checkpoint
from sweetspot_trainer.data import DataError


class Payload:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_planted_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    planted = tmp_path / "checkpoint.pt"
    torch.save({"step": 3, "trainable": {}, "payload": Payload(marker)}, planted)
    with pytest.raises(DataError) as refused:
        load_checkpoint(planted, "cpu")
    assert str(planted) in str(refused.value) and "not a Sweetspot checkpoint" in str(refused.value)
    assert not marker.exists()
    # The same payload through pickle itself runs: the refusal above is what stops it.
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def test_a_real_checkpoint_loads_with_its_tensors_and_states(tmp_path: Path) -> None:
    layer = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    layer(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = tmp_path / "checkpoint.pt"
    state = {
        "step": 1,
        "fingerprint": "abc",
        "trainable": dict(layer.named_parameters()),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, path)
    loaded = load_checkpoint(path, "cpu")
    assert loaded["step"] == 1 and torch.equal(loaded["trainable"]["weight"], layer.weight)
    assert loaded["optimizer"]["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    torch.save([1, 2], path)
    with pytest.raises(DataError, match="not a mapping"):
        load_checkpoint(path, "cpu")
