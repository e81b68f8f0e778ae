"""What each image installs, read from pyproject.toml (the one home of every dependency and its range).

    python images/requirements.py operator pyproject.toml    # the control plane: the project's dependencies
    python images/requirements.py trainer pyproject.toml     # the data plane: the contract's pydantic, the
                                                             # `trainer` and `demo` extras, less torch
    python images/requirements.py no-deps pyproject.toml     # packages installed with --no-deps (both the venv
                                                             # and the trainer image)
    python images/requirements.py torch pyproject.toml       # the torch the project pins (the local CPU base)

The trainer image never installs torch: its base carries it (CUDA PyTorch by default, CPU torch for a local
base), and the Dockerfile pins pip to the base's torch so that nothing can replace it. Standard library only: it
runs inside a bare base image before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

CONTRACT = ("pydantic",)
"""What `sweetspot.contract` imports (its module docstring keeps it to pydantic)."""
TRAINER_EXTRAS = ("trainer", "demo")
BASE_PROVIDES = ("torch",)
"""What the trainer image's base carries and the image must keep."""


def name(requirement: str) -> str:
    """The distribution a requirement names (`psycopg[binary]>=3.2` → `psycopg`)."""
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower()


def _project(pyproject: Path) -> dict[str, Any]:
    return tomllib.loads(pyproject.read_text())


def requirements(image: str, pyproject: Path) -> list[str]:
    """The requirement lines one image installs (`operator`, `trainer`, `no-deps` or `torch`)."""
    document = _project(pyproject)
    project = document["project"]
    if image == "operator":
        return list(project["dependencies"])
    if image == "no-deps":
        return list(document["tool"]["sweetspot"]["no-deps"])
    extras = [r for extra in TRAINER_EXTRAS for r in project["optional-dependencies"][extra] if name(r) != "sweetspot"]
    if image == "torch":
        return [r for r in extras if name(r) in BASE_PROVIDES]
    if image == "trainer":
        own = [r for r in project["dependencies"] if name(r) in CONTRACT]
        return list(dict.fromkeys(r for r in own + extras if name(r) not in BASE_PROVIDES))
    raise SystemExit(f"unknown image {image!r}: operator, trainer, no-deps or torch")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: requirements.py operator|trainer|no-deps|torch [pyproject.toml]")
    print("\n".join(requirements(sys.argv[1], Path(sys.argv[2] if len(sys.argv) == 3 else "pyproject.toml"))))
