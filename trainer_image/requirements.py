"""Print what the trainer image installs: the trainer's own requirements from pyproject.toml (pydantic for the
contract, the `trainer` and `demo` extras), never the control plane's (kopf, Optuna, SQLAlchemy, ...).

    python trainer_image/requirements.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

CONTRACT = ("pydantic",)
"""What `sweetspot.contract` imports (its module docstring keeps it to pydantic)."""
EXTRAS = ("trainer", "demo")


def requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    own = [r for r in project["dependencies"] if r.split(">")[0].split("=")[0].split("<")[0].strip() in CONTRACT]
    extras = [r for extra in EXTRAS for r in project["optional-dependencies"][extra] if not r.startswith("sweetspot")]
    return list(dict.fromkeys(own + extras))


if __name__ == "__main__":
    print("\n".join(requirements(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
