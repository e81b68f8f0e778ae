"""Model references as a pod resolves them: a Hugging Face id from a local cache, tokens, bad references."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sweetspot.contract import ModelRef, TrialConfig
from sweetspot_trainer import __main__ as entrypoint
from sweetspot_trainer.model import ModelError, load, resolve, tiny_causal_dir

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("sweetspot-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SWEETSPOT_CACHE", str(cache))
        return tiny_causal_dir()


def test_tiny_causal_is_built_once_and_reused(tiny_causal: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEETSPOT_CACHE", str(tiny_causal.parent))
    stamp = (tiny_causal / "config.json").stat().st_mtime_ns
    assert tiny_causal_dir() == tiny_causal
    assert (tiny_causal / "config.json").stat().st_mtime_ns == stamp


def test_hugging_face_id_loads_offline_from_the_hub_cache(
    tiny_causal: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lay the model out exactly as the hub client caches a download: refs/<revision> -> snapshots/<commit>.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-causal"
    shutil.copytree(tiny_causal, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    token = tmp_path / "token"
    token.write_text("hf_not_a_real_token\n")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))

    ref = ModelRef(hugging_face="acme/tiny-causal", revision="main", token_file=str(token))
    where, options = resolve(ref)
    assert where == "acme/tiny-causal"
    assert options == {
        "revision": "main",
        "token": "hf_not_a_real_token",
        "cache_dir": str(tmp_path / "hub"),
        "local_files_only": True,
    }
    loaded = load(ref, None, CPU)
    assert loaded.task == "generative"
    assert loaded.model.config.num_hidden_layers == 2


def test_unknown_hugging_face_id_offline_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match=r"cannot load the model from acme/absent"):
        load(ModelRef(hugging_face="acme/absent"), None, CPU)


def test_a_directory_without_a_model_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no config\.json"):
        resolve(ModelRef(path=str(tmp_path)))


def test_unreadable_token_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read the token file"):
        resolve(ModelRef(hugging_face="acme/x", token_file=str(tmp_path / "missing")))


def test_out_of_memory_exits_3_and_marks_the_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real OOM needs a GPU; the error mapping is what is under test here.
    def exhausted(self: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("sweetspot_trainer.train.StageRunner.run", exhausted)
    config = tmp_path / "trial.json"
    config.write_text(
        TrialConfig(
            study="s", trial=4, stage="early", model=ModelRef(builtin="tiny"), train={"builtin": "product-pages"}
        ).to_json()
    )
    result = tmp_path / "result.json"
    monkeypatch.setenv("SWEETSPOT_TERMINATION_LOG", str(tmp_path / "termination-log"))
    assert entrypoint.main(["--config", str(config), "--result", str(result)]) == entrypoint.EXIT_OOM
    assert json.loads(result.read_text())["status"] == "oom"
    assert json.loads((tmp_path / "termination-log").read_text())["trial"] == 4
