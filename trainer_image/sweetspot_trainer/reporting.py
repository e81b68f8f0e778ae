"""Hand a stage's result back: the result file and the pod's termination message.

The operator reads the termination message (Kubernetes keeps 4 KiB of it); the local executor reads the
result file. Both carry the same JSON (`sweetspot.contract.StageResult`); the message drops detail first
when the full result does not fit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sweetspot.contract import TERMINATION_LOG, TERMINATION_LOG_ENV, StageResult

DEFAULT_TERMINATION_LOG = TERMINATION_LOG


def termination_log() -> Path | None:
    """Kubernetes creates the file in the container; elsewhere (local runs, tests) an env var may name one."""
    if named := os.environ.get(TERMINATION_LOG_ENV):
        return Path(named)
    default = Path(DEFAULT_TERMINATION_LOG)
    return default if default.exists() else None


def write_result(result: StageResult, path: Path | None) -> None:
    """Write the full result to `path` (atomically) and the compact one to the termination log, if present."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(result.model_dump_json(exclude_none=True, indent=2) + "\n")
        partial.replace(path)
    log = termination_log()
    if log is not None:
        try:
            log.write_text(result.termination_message())
        except OSError as exc:  # a read-only or absent log must not turn a good stage into a failure
            print(f"warning: cannot write the termination message to {log}: {exc.strerror}", file=sys.stderr)
