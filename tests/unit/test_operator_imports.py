"""The operator's process imports only what reconciling needs: what only the CLI's reports and local runs use
(matplotlib, rich, the report module) and scipy (fitted curves and rank statistics, imported where they are
computed) cost every operator pod start-up time and memory."""

from __future__ import annotations

import json
import subprocess
import sys

CLI_ONLY = (
    "matplotlib",
    "rich",
    "scipy",
    "sweetspot.report",
    "sweetspot.local.runner",
    "sweetspot.observe.dashboards",
)


def _imported_by(code: str) -> set[str]:
    """The top-level modules and sweetspot modules a fresh interpreter holds after running `code`."""
    listing = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", f"{code}\n{listing}"], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_operator_path_imports_nothing_only_the_cli_needs() -> None:
    # What `sweetspot operator` imports before kopf runs: the CLI module, kopf, the handlers and the metrics.
    modules = _imported_by("import kopf, sweetspot.cli, sweetspot.cluster.handlers, sweetspot.observe.metrics")
    assert "sweetspot.cluster.handlers" in modules and "optuna" in modules  # the check sees what was imported
    loaded = sorted(m for m in modules for heavy in CLI_ONLY if m == heavy or m.startswith(heavy + "."))
    assert loaded == []


def test_a_status_with_rank_statistics_still_computes_them() -> None:
    # scipy moved inside the functions that use it: the status still gets its correlation and its fitted curve.
    code = (
        "import sys\n"
        "import sweetspot.core.stats\n"
        "from sweetspot.core.curve import SizeResult, judge\n"
        "assert 'scipy' not in sys.modules\n"
        "verdict = judge([SizeResult(n, 0.9 - 20 / n) for n in (100, 200, 400, 800, 1600)], 0.02)\n"
        "assert verdict.fit is not None, verdict\n"
    )
    assert "scipy" in _imported_by(code)
