"""Load a script of the repository that is not a package on the path (benchmarks/, images/) by its file path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load(relative: str, name: str) -> ModuleType:
    """The module at ROOT/`relative`, registered as `name`. By path: the repository root is never put on sys.path
    (its `operator/` must not shadow Python's module); registered because dataclasses look their module up."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
