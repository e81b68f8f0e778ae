"""The `sweetspot` command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sweetspot import __version__
from sweetspot.api.crd import crd_yaml, reference_markdown
from sweetspot.api.manifest import FieldError, LocatedStudy, Location, ManifestError, load_located
from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.spec import cluster_warnings
from sweetspot.contract import (
    CHECK_DATA_BAD_ROWS_HELP,
    CHECK_DATA_DESCRIPTION,
    CHECK_DATA_HELP,
    CHECK_DATA_SCHEMA_HELP,
    CHECK_DATA_TABLE,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
)

BEST_ADAPTER = "best-adapter"
"""The folder under a local study's results that holds the best trial's adapter."""

EPILOG = """\
examples:
  sweetspot run examples/quickstart.yaml          run a whole study on this machine
  sweetspot report quickstart --format json       its trials, best configuration and agreement figures
  sweetspot predict results/best-adapter --text "..."  extract attributes from a new page
  sweetspot validate examples/*.yaml              check manifests as the cluster would, and their local data
  sweetspot check-data examples/ae-110k.yaml      what a study's data files hold (or: check-data rows.jsonl)
  sweetspot crd > crds/finetunestudies.sweetspot.dev.yaml
"""


def _studies(path: str) -> list[FineTuneStudy] | None:
    """The studies in a manifest, or None after printing every problem (one line each)."""
    located = _located(path)
    return None if located is None else [one.study for one in located]


def _located(path: str) -> list[LocatedStudy] | None:
    """`_studies`, each with where it was written (for problems with its data files)."""
    try:
        return load_located(path)
    except ManifestError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return None


MANIFEST_SUFFIXES = (".yaml", ".yml")
"""A `check-data` argument with one of these suffixes is a FineTuneStudy manifest; any other is a data file."""


@dataclass
class StudyData:
    """A study's dataset files as this machine sees them: what `validate` and `check-data STUDY.yaml` check."""

    files: list[tuple[Location, Path]] = field(default_factory=list)
    """Local data files (or saved dataset directories) that exist, train first, with the field naming each."""
    schema: tuple[Location, Path] | None = None
    """A local schema file that exists, with its field."""
    inline_schema: dict[str, list[str]] | None = None
    missing: list[tuple[Location, str]] = field(default_factory=list)
    """A problem at a field for each local path that does not exist."""
    skipped: list[tuple[Location, str]] = field(default_factory=list)
    """Why, at its field, each path not checked here (it lives on a cluster volume)."""

    def field_of(self, line: str) -> Location:
        """The field whose file a check-data line names (`file:line: problem`); the dataset when none does."""
        named = [*self.files, *([self.schema] if self.schema else [])]
        return next((loc for loc, path in named if line.startswith(f"{path}:")), ("spec", "dataset"))


def study_data(study: FineTuneStudy, base: Path) -> StudyData:
    """Where the study's data lies, relative to `base` (the manifest's folder), as `sweetspot run` reads it.

    A path with `pvc` lives on that PersistentVolumeClaim, which only the cluster mounts: it is skipped, with a
    note. A path without one is read relative to the manifest by `sweetspot run` (and from the trainer image on a
    cluster, where `validate --no-data` skips this check)."""
    dataset, data = study.spec.dataset, StudyData()
    sources = [("train", dataset.train), ("validation", dataset.validation), ("schema", dataset.schema_)]
    for name, source in sources:
        if source is None or source.path is None:  # a built-in generator or an inline schema: nothing to open
            continue
        loc: Location = ("spec", "dataset", name, "path")
        if source.pvc is not None:
            data.skipped.append(
                (
                    loc,
                    f"{source.path!r} not checked: it lives on PersistentVolumeClaim {source.pvc!r}, which only the "
                    "cluster mounts (check it there: python -m sweetspot_trainer check-data FILE in a trial's image)",
                )
            )
            continue
        local = base / source.path
        if not local.exists():
            data.missing.append(
                (
                    loc,
                    f"{source.path!r} does not exist (looked for {local.resolve()}: a path without pvc is read "
                    "relative to the manifest by sweetspot run; for data on a cluster volume set pvc; for data "
                    "inside the trainer image, sweetspot validate --no-data skips this check)",
                )
            )
        elif name == "schema":
            data.schema = (loc, local)
        else:
            data.files.append((loc, local))
    if dataset.schema_ is not None and dataset.schema_.categories is not None:
        data.inline_schema = dataset.schema_.categories
    return data


def _trainer_module() -> str:
    from sweetspot.local.runner import TRAINER_MODULE_ENV

    return os.environ.get(TRAINER_MODULE_ENV, "sweetspot_trainer")


def _trainer(arguments: Sequence[str], capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the trainer's command line in a child process: the control plane never imports the data plane (see the
    import contracts in pyproject), so commands the trainer implements (predict, check-data) are run, not called."""
    sys.stdout.flush()  # what this process printed comes before what the child prints
    command = [sys.executable, "-m", _trainer_module(), *arguments]
    return subprocess.run(command, check=False, text=True, capture_output=capture)


def _trainer_installed() -> bool:
    """Whether the trainer can run here (the operator's image has no trainer)."""
    import importlib.util

    try:
        return importlib.util.find_spec(_trainer_module()) is not None
    except ModuleNotFoundError:  # a dotted name whose package is missing
        return False


def _check_files(
    files: Sequence[Path | str], schema: Path | str | None, bad_rows: str, capture: bool
) -> subprocess.CompletedProcess[str]:
    schema_option = ["--schema", str(schema)] if schema else []
    return _trainer(["check-data", *schema_option, "--bad-rows", bad_rows, *map(str, files)], capture)


def _check_study_files(study: FineTuneStudy, data: StudyData, capture: bool) -> subprocess.CompletedProcess[str]:
    """The trainer's check-data over the study's existing local files, against its schema (a file or inline), with
    its badRows."""
    import json
    import tempfile

    bad_rows, files = study.spec.dataset.bad_rows, [path for _, path in data.files]
    if data.inline_schema is None:
        return _check_files(files, data.schema[1] if data.schema else None, bad_rows, capture)
    with tempfile.TemporaryDirectory(prefix="sweetspot-schema-") as folder:
        schema = Path(folder) / "schema.json"
        schema.write_text(json.dumps(data.inline_schema))
        return _check_files(files, schema, bad_rows, capture)


def _validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        located = _located(path)
        if located is None:
            failed = True
            continue
        base = Path.cwd() if path == "-" else Path(path).parent
        for one in located:
            study = one.study
            where = f"{path}: FineTuneStudy {study.key}"
            for warning in cluster_warnings(study.spec):
                print(f"{where}: warning: {warning}", file=sys.stderr)
            notes: list[FieldError] = []
            profile = ""
            if args.data:
                problems, notes, profile = _validate_data(one, base)
                for problem in problems:
                    print(problem, file=sys.stderr)
                if problems:
                    failed = True
                    continue
            if not args.quiet:
                print(f"{where} is valid")
                for note in notes:
                    print(f"  {note}")
                if profile:
                    print(textwrap.indent(profile.rstrip("\n"), "  "))
    return 1 if failed else 0


def _validate_data(located: LocatedStudy, base: Path) -> tuple[list[FieldError], list[FieldError], str]:
    """Problems with the study's local data (each fails validation), notes (what was not checked, rows dropped),
    and the profile check-data prints of the files that exist."""
    study, data = located.study, study_data(located.study, base)
    problems = [located.error(loc, message) for loc, message in data.missing]
    notes = [located.error(loc, message) for loc, message in data.skipped]
    if problems or not data.files:
        return problems, notes, ""
    if not _trainer_installed():
        files = ("spec", "dataset")
        notes.append(located.error(files, "not profiled: the trainer (sweetspot_trainer) is not installed here"))
        return problems, notes, ""
    done = _check_study_files(study, data, capture=True)
    said = [located.error(data.field_of(line), line) for line in done.stderr.strip().splitlines()]
    if done.returncode == EXIT_BAD_INPUT:  # what would fail every trial: malformed rows (badRows: fail), the schema
        problems += said
    elif done.returncode == EXIT_OK:
        notes += said  # rows that badRows: skip drops
    else:
        tail = done.stderr.strip()[-2000:] or f"exit code {done.returncode}"
        problems.append(located.error(("spec", "dataset"), f"cannot check the data files: {tail}"))
    return problems, notes, done.stdout


def _run(args: argparse.Namespace) -> int:
    import json
    import shutil
    from pathlib import Path

    from rich.console import Console

    from sweetspot.api.status import Reason
    from sweetspot.local.runner import LocalRuntime, run_study
    from sweetspot.report import data as report_data
    from sweetspot.report import files as report_files
    from sweetspot.report import text as report_text
    from sweetspot.storage.connect import StorageError, safe_url
    from sweetspot.storage.store import SearchStore
    from sweetspot.storage.warm_start import take_warm_start

    console = Console(stderr=True, highlight=False)
    studies = _studies(args.manifest)
    if studies is None:
        return 1
    if len(studies) != 1:
        print(f"{args.manifest}: sweetspot run takes a file with exactly one FineTuneStudy", file=sys.stderr)
        return 1
    (study,) = studies
    search = study.spec.search
    overrides = {
        "max_trials": args.max_trials or search.max_trials,
        "parallelism": args.parallelism or search.parallelism,
        "seed": args.seed if args.seed is not None else search.seed,
    }
    try:
        spec = study.spec.model_copy(update={"search": search.model_copy(update=overrides)})
        study = study.model_copy(update={"spec": type(study.spec).model_validate(spec.model_dump())})
    except ValueError as exc:
        print(f"invalid override: {exc}", file=sys.stderr)
        return 1
    workdir = Path(args.workdir)
    root = workdir / f"{study.metadata.namespace}-{study.metadata.name}"
    storage = args.storage or f"sqlite:///{(workdir / 'studies.db').resolve()}"
    try:
        store = SearchStore.open(storage, study)
        warm = take_warm_start(store, study)
        store.update_spec(study)  # overrides such as --max-trials are part of what this run did
    except StorageError as exc:
        print(exc, file=sys.stderr)
        return 1
    console.print(f"study {study.key} in {safe_url(storage)}; runs in {root}")
    ended = store.ended(study)
    if ended is not None and ended.get("reason") == Reason.WARM_START_FAILED:
        print(ended.get("message", Reason.WARM_START_FAILED), file=sys.stderr)
        return 1
    if warm.message:
        console.print(f"warm start: {warm.message}")
    runtime = LocalRuntime(
        root=root, manifest_dir=Path(args.manifest).resolve().parent, parallelism=study.spec.search.parallelism
    )
    publish = None
    if args.metrics_port:
        from sweetspot.observe import metrics

        server = metrics.serve(args.metrics_port, args.metrics_address)
        console.print(f"metrics on http://{args.metrics_address}:{server.server_port}/metrics")
        publish = metrics.METRICS.publish
    started = time.monotonic()
    try:
        decision = run_study(
            study,
            store,
            runtime,
            lambda line: console.print(f"[{time.monotonic() - started:6.0f}s] {line}"),
            publish=publish,
        )
    except KeyboardInterrupt:
        console.print("interrupted: running stages stopped; run the same command again to resume")
        return 130
    except StorageError as exc:
        print(exc, file=sys.stderr)
        return 1
    data = report_data.build(storage, study.metadata.namespace, study.metadata.name)
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    adapter = None
    if data["best"] and (adapters := runtime.adapters(data["best"]["trial"])):
        adapter = results / BEST_ADAPTER
        shutil.rmtree(adapter, ignore_errors=True)  # an earlier run's best may have been another trial
        shutil.copytree(adapters[-1], adapter)
        data["best"]["adapter"] = str(adapter)
    (results / "report.json").write_text(json.dumps(data, indent=2))
    report_files.write_tables(data, results)
    report_files.write_plots(data, results)
    print(report_text.render_text(data))
    if adapter is not None:
        console.print(
            f"best adapter (trial {data['best']['trial']}) in {adapter}; "
            f"run it on new pages: sweetspot predict {adapter} pages.jsonl",
            soft_wrap=True,
        )
    console.print(f"results in {results} ({time.monotonic() - started:.0f}s)")
    if publish is not None and args.metrics_linger > 0:
        console.print(f"serving the final metrics for {args.metrics_linger:.0f}s more (Ctrl-C ends it)")
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(args.metrics_linger)
    return 0 if decision.phase == "Succeeded" else 1


def _predict(args: argparse.Namespace) -> int:
    """Run the trainer's `predict` in a child process: the control plane never imports torch (see pyproject)."""
    command = ["predict", args.adapter]
    if args.input:
        command.append(args.input)
    for text in args.text:
        command += ["--text", text]
    if args.category:
        command += ["--category", args.category]
    return _trainer(command).returncode


def _check_data(args: argparse.Namespace) -> int:
    """The trainer's check-data over data files and over the local data of the studies in manifests, in order."""
    if not _trainer_installed():
        print("sweetspot check-data runs the trainer's, which is not installed here (make install)", file=sys.stderr)
        return EXIT_FAILED
    code = EXIT_OK
    pending: list[str] = []  # data files given one after another: one trainer run

    def flush() -> int:
        done = _check_files(pending, args.schema, args.bad_rows, capture=False) if pending else None
        pending.clear()
        return done.returncode if done is not None else EXIT_OK

    for name in args.files:
        if not name.endswith(MANIFEST_SUFFIXES):
            pending.append(name)
            continue
        code = max(code, flush())
        located = _located(name)
        if located is None:
            code = max(code, EXIT_BAD_INPUT)
            continue
        for one in located:
            data = study_data(one.study, Path(name).parent)
            for loc, problem in data.missing:
                print(one.error(loc, problem), file=sys.stderr)
            for loc, note in data.skipped:
                print(one.error(loc, note))
            if data.missing:
                code = max(code, EXIT_BAD_INPUT)
            elif not data.files:
                print(f"{name}: FineTuneStudy {one.study.key}: no local data files (built-in, or on the cluster)")
            else:
                code = max(code, _check_study_files(one.study, data, capture=False).returncode)
    return max(code, flush())


def _report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sweetspot.report import data as report_data
    from sweetspot.report import files as report_files
    from sweetspot.report import text as report_text
    from sweetspot.storage.connect import StorageError

    local = (Path(args.workdir) / "studies.db").resolve()
    if args.storage is None and not local.exists():
        # Opening the SQLite file would create it, and an empty storage would only say "studies there: none".
        print(
            f"no studies here: {local} does not exist (local studies keep it in the folder `sweetspot run` used).\n"
            "Point at them with --workdir DIR, or at a cluster's storage with --storage URL "
            "(e.g. after `kubectl port-forward` to its PostgreSQL).",
            file=sys.stderr,
        )
        return 1
    storage = args.storage or f"sqlite:///{local}"
    try:
        data = report_data.build(storage, args.namespace, args.study)
    except StorageError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.plots:
        for path in report_files.write_plots(data, Path(args.plots)):
            print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(data, indent=2) if args.format == "json" else report_text.render_text(data))
    return 0


def _render(args: argparse.Namespace) -> int:
    import yaml

    from sweetspot.cluster.memory import Memories
    from sweetspot.cluster.runtimes import runtime_for
    from sweetspot.core.records import RunKey, StartRun
    from sweetspot.storage.space import preview_params

    studies = _studies(args.manifest)
    if studies is None:
        return 1
    documents: list[dict[str, object]] = []
    for study in studies:
        runtime = runtime_for(study, Memories())
        count = args.trials or study.spec.search.parallelism
        for number, params in enumerate(preview_params(study.spec, count)):
            documents += runtime.manifests(study, StartRun(RunKey("trial", number, "early"), params))
    sys.stdout.write(yaml.safe_dump_all(documents, sort_keys=False, width=120))
    return 0


def _operator(args: argparse.Namespace) -> int:
    import logging

    import kopf

    import sweetspot.cluster.handlers  # noqa: F401 - registers the operator's handlers with kopf
    from sweetspot.cluster import kube

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    kube.load_config()
    if args.metrics_port:
        from sweetspot.observe import metrics

        server = metrics.serve(args.metrics_port, args.metrics_address)
        logging.getLogger("sweetspot.operator").info(
            "metrics on http://%s:%d/metrics", args.metrics_address, server.server_port
        )
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0


def _dashboards(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sweetspot.observe import dashboards

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in dashboards.DASHBOARDS:
        (out / name).write_text(dashboards.render(name))
        print(f"wrote {out / name}", file=sys.stderr)
    return 0


def _crd(args: argparse.Namespace) -> int:
    sys.stdout.write(reference_markdown() if args.reference else crd_yaml())
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="sweetspot",
        description="Fine-tune LLMs with the least data and compute: LoRA hyperparameters judged early, and the "
        "training-set size past which more data stops paying.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"sweetspot {__version__}")
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate",
        help="check FineTuneStudy manifests",
        description="Check FineTuneStudy manifests with the rules the cluster enforces, and their local data: a "
        "spec.dataset path without pvc must exist (relative to the manifest, as sweetspot run reads it), and what "
        "it holds is printed (check-data's profile); a path on a pvc is skipped with a note (only the cluster mounts "
        "it). Prints one line per problem (file:line: field.path: message) and exits 1 when any manifest is invalid.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML or JSON manifest; '-' reads stdin")
    validate.add_argument("-q", "--quiet", action="store_true", help="print nothing for valid manifests")
    validate.add_argument(
        "--no-data",
        dest="data",
        action="store_false",
        help="do not check the local data files (by default a spec.dataset path without pvc must exist relative "
        "to the manifest, and what it holds is printed; paths on a pvc are skipped, the cluster holds them)",
    )
    validate.set_defaults(run=_validate)

    check = commands.add_parser(
        "check-data",
        help=CHECK_DATA_HELP,
        description=CHECK_DATA_DESCRIPTION
        + " A FILE ending in .yaml or .yml is a FineTuneStudy manifest: its local spec.dataset files (train, "
        "validation) are checked against its schema (spec.dataset.schema); paths on a pvc are skipped (only the "
        "cluster mounts them).\n\n" + CHECK_DATA_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "--schema", metavar="SCHEMA", help=CHECK_DATA_SCHEMA_HELP + " (data files; a manifest brings its own)"
    )
    check.add_argument(
        "--bad-rows",
        choices=("fail", "skip"),
        default="fail",
        help=CHECK_DATA_BAD_ROWS_HELP + " (data files; a manifest brings its own)",
    )
    check.add_argument(
        "files", nargs="+", metavar="FILE", help="a JSONL file, a saved dataset directory or a STUDY.yaml manifest"
    )
    check.set_defaults(run=_check_data)

    run = commands.add_parser(
        "run",
        help="run a study on this machine (no cluster)",
        description="Run a FineTuneStudy locally: the same planner as the operator, each trial stage a trainer "
        "subprocess. Ctrl-C stops cleanly; the same command resumes. Results go to WORKDIR/NAMESPACE-NAME/results.",
    )
    run.add_argument("manifest", metavar="STUDY.yaml")
    run.add_argument(
        "--storage",
        help="Optuna storage URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in WORKDIR/studies.db)",
    )
    run.add_argument("--workdir", default=".sweetspot", help="where runs and results go (default: .sweetspot)")
    run.add_argument("--max-trials", type=int, help="override spec.search.maxTrials")
    run.add_argument("--parallelism", type=int, help="override spec.search.parallelism")
    run.add_argument("--seed", type=int, help="override spec.search.seed")
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the study's Prometheus metrics on this port at /metrics while it runs (the operator's series)",
    )
    run.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to serve metrics on (default: 127.0.0.1; 0.0.0.0 for a Prometheus on another machine)",
    )
    run.add_argument(
        "--metrics-linger",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --metrics-port: keep serving the final metrics this long after the study ends, so that a last "
        "scrape sees them (default: 30; Ctrl-C ends it early)",
    )
    run.set_defaults(run=_run)

    predict = commands.add_parser(
        "predict",
        help="extract attributes from new pages with a study's adapter",
        description="Run a trained adapter (e.g. results/best-adapter; its sweetspot.json names the base model and "
        "attributes) on new pages. Prints one JSON object per row: {id, category, output: {attribute: value or "
        "null}}. Exits 2 with one file:line: problem line per bad row. Needs the trainer extra (make install).",
    )
    predict.add_argument("adapter", metavar="ADAPTER", help="the adapter folder, e.g. results/best-adapter")
    predict.add_argument("input", nargs="?", metavar="INPUT.jsonl", help="one {input, id?, category?} per line")
    predict.add_argument("--text", action="append", default=[], help="a page's text instead of a file (repeatable)")
    predict.add_argument("--category", help="the category of the --text pages, when the adapter knows several")
    predict.set_defaults(run=_predict)

    rep = commands.add_parser(
        "report",
        help="show a study's trials, best configuration and early-final agreement",
        description="Report a study from its Optuna storage: trials, best configuration, early-vs-final agreement "
        "(Spearman, Kendall, top-k overlap), compute used and saved, learning curve; optionally PNG plots.",
    )
    rep.add_argument("study", metavar="NAME", help="the study's metadata.name")
    rep.add_argument("--namespace", default="default", help="the study's namespace (default: default)")
    rep.add_argument("--storage", help="Optuna storage URL (default: SQLite in WORKDIR/studies.db)")
    rep.add_argument("--workdir", default=".sweetspot", help="local working directory (default: .sweetspot)")
    rep.add_argument("--format", choices=("text", "json"), default="text")
    rep.add_argument("--plots", metavar="DIR", help="also write PNG plots to DIR")
    rep.set_defaults(run=_report)

    render = commands.add_parser(
        "render",
        help="print the Jobs the operator would create first (a dry run)",
        description="Print the ConfigMaps and Jobs the operator would create for the first trials of a study, with "
        "the hyperparameters its sampler would propose first, like `helm template`. Nothing is stored or applied.",
    )
    render.add_argument("manifest", metavar="STUDY.yaml")
    render.add_argument("--trials", type=int, help="how many trials (default: spec.search.parallelism)")
    render.set_defaults(run=_render)

    operator = commands.add_parser(
        "operator",
        help="run the Kubernetes operator (kopf)",
        description="Reconcile FineTuneStudy resources into trial Jobs. Reads the cluster from the pod's service "
        "account, or from KUBECONFIG outside a cluster; the default Optuna storage URL comes from "
        "$SWEETSPOT_DATABASE_URL (a Secret-mounted env var), per study from spec.storage.secretRef.",
    )
    operator.add_argument(
        "-n", "--namespace", action="append", help="watch only this namespace (repeatable); default: the whole cluster"
    )
    operator.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve liveness/readiness probes, e.g. http://0.0.0.0:8080/healthz",
    )
    operator.add_argument(
        "--metrics-port",
        type=int,
        default=8000,
        metavar="PORT",
        help="serve Prometheus metrics on this port at /metrics (default: 8000; 0 turns them off)",
    )
    operator.add_argument(
        "--metrics-address", default="0.0.0.0", metavar="ADDR", help="address to serve metrics on (default: 0.0.0.0)"
    )
    operator.add_argument("-v", "--verbose", action="store_true")
    operator.set_defaults(run=_operator)

    crd = commands.add_parser(
        "crd",
        help="print the FineTuneStudy CustomResourceDefinition",
        description="Print the FineTuneStudy CRD generated from the API model (the file under crds/).",
    )
    crd.add_argument(
        "--reference", action="store_true", help="print the field reference instead (docs/reference.md, Markdown)"
    )
    crd.set_defaults(run=_crd)

    boards = commands.add_parser(
        "dashboards",
        help="write the Grafana dashboards (JSON)",
        description="Write the Grafana dashboards (study overview, operator health, Pareto front) as JSON files, the "
        "ones the Helm chart ships under charts/sweetspot/dashboards/. Import them in Grafana with a Prometheus data "
        "source.",
    )
    boards.add_argument(
        "out", nargs="?", default="charts/sweetspot/dashboards", metavar="DIR", help="(default: %(default)s)"
    )
    boards.set_defaults(run=_dashboards)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
