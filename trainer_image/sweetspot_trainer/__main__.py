"""The trainer entrypoint: `python -m sweetspot_trainer --config trial.json` (the image's command).

Exit codes: 0 the stage succeeded; 2 bad input (config, data or model reference; nothing to retry);
3 out of memory (the result is marked `oom` so the search can treat the configuration as infeasible);
75 stopped by SIGTERM or SIGINT after a step, its checkpoint written (a disruption: the rerun resumes there);
1 any other failure. A result JSON is written in every case that gets as far as reading the config, and for a
config that does not validate but still names its study, trial and stage; not for a stop, which is no result.

Under torchrun (WORLD_SIZE > 1) every rank runs this entrypoint and trains data-parallel (`distributed`); rank 0
alone prints progress and writes the result, and every rank exits with the same code when they agree (bad input is
bad on every rank). torchrun itself exits 1 when any rank fails, whatever the rank's code.

`python -m sweetspot_trainer check-data [--schema SCHEMA.json] FILE...` checks dataset files without training and
says what they hold (rows, categories, attributes per category, how often each has a value and how often that
value occurs verbatim in the row's text, the rare ones, the always-null baseline): exit 0, or 2 with one
`file:line: problem` line per bad row (a row whose category or attributes the schema does not list is bad).
`sweetspot check-data` runs this command (and takes a study's manifest too).

`python -m sweetspot_trainer predict ADAPTER (INPUT.jsonl | --text TEXT...)` runs a trained adapter (its folder holds
`sweetspot.json`) on new pages and prints one JSON object per row; exit 2 with `file:line: problem` on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sweetspot.contract import (
    CHECK_DATA_BAD_ROWS_HELP,
    CHECK_DATA_DESCRIPTION,
    CHECK_DATA_HELP,
    CHECK_DATA_SCHEMA_HELP,
    CHECK_DATA_TABLE,
    CONFIG_ENV,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OOM,
    StageResult,
    Status,
    TrialConfig,
    result_file_name,
)


def _log(line: str) -> None:
    print(line, flush=True)


def _config_text(path: str | None) -> tuple[str, str]:
    """The trial config's text and where it came from."""
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the trial config: {exc.strerror}") from None
        source = path
    elif CONFIG_ENV in os.environ:
        text, source = os.environ[CONFIG_ENV], f"${CONFIG_ENV}"
    else:
        raise ValueError(f"no trial config: pass --config FILE or set {CONFIG_ENV}")
    return text, source


def _read_config(path: str | None) -> TrialConfig:
    text, source = _config_text(path)
    try:
        return TrialConfig.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '<config>'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ValueError(f"{source}: invalid trial config: {problems}") from None


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _unreadable_config_result(path: str | None, message: str) -> StageResult | None:
    """A `bad_input` result for a config that does not validate, when its study, trial and stage still parse:
    the operator then records the stage as failed with this message rather than only an exit code."""
    try:
        raw = json.loads(_config_text(path)[0])
        return StageResult(
            study=raw["study"], trial=raw["trial"], stage=raw["stage"], status="bad_input", message=message[:2000]
        )
    except (ValueError, KeyError, TypeError):  # not even that: the exit code and stderr say it all
        return None


def config_or_bad_input(args: argparse.Namespace, report: bool = True) -> TrialConfig | None:
    """The trial config `--config` names; None when it cannot be read, after saying why on stderr and, when the
    file still names its study, trial and stage, in a `bad_input` result (what the operator records). Only with
    `report` (the rank that reports): other ranks fail as quietly."""
    try:
        return _read_config(args.config)
    except ValueError as exc:
        if not report:
            return None
        print(exc, file=sys.stderr)
        from sweetspot_trainer import reporting

        if (result := _unreadable_config_result(args.config, str(exc))) is not None:
            reporting.write_result(result, Path(args.result) if args.result else None)
        return None


def _unwritable(folders: list[str | None]) -> str:
    """Why a folder the stage writes (checkpoints, results, the adapter) cannot be written by this process, or "".
    Asked of the folder, or of its nearest existing parent, without creating anything (a stage that fails later
    leaves no folder behind). A volume mounted without a group the trainer's user is in (a pod with no fsGroup) is
    the usual cause."""
    for folder in filter(None, folders):
        path = Path(folder)
        blocked = next((p for p in [path, *path.parents] if p.exists()), None)
        if blocked is None or (blocked.is_dir() and os.access(blocked, os.W_OK | os.X_OK)):
            continue
        status = blocked.stat()
        return (
            f"cannot write {folder} as uid {os.getuid()}: {blocked} belongs to uid {status.st_uid} with mode "
            f"{status.st_mode & 0o7777:o}. Give the pod fsGroup {os.getgid()} (Sweetspot's Jobs set it; a TrainJob "
            "takes it from its ClusterTrainingRuntime's pod template) or make the volume writable by that uid"
        )
    return ""


def _quiet(line: str) -> None:
    """Progress of a rank other than 0: rank 0 says it for all."""


def train_command(args: argparse.Namespace) -> int:
    from sweetspot_trainer import distributed

    try:
        world, wait = distributed.world_from_env(os.environ), distributed.timeout(os.environ)
    except ValueError as exc:  # a launcher's environment, not the trial's config: nothing to report as bad input
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    config = config_or_bad_input(args, report=world.main)
    if config is None:
        return EXIT_BAD_INPUT
    from sweetspot_trainer import reporting
    from sweetspot_trainer.data import DataError
    from sweetspot_trainer.model import ModelError
    from sweetspot_trainer.stopping import StageStopped
    from sweetspot_trainer.train import StageRunner

    result_path = Path(args.result) if args.result else None
    if result_path is None and config.output_dir:
        result_path = Path(config.output_dir) / result_file_name(config.stage)

    def failed(status: Status, message: str) -> StageResult:
        return StageResult(
            study=config.study, trial=config.trial, stage=config.stage, status=status, message=message[:2000]
        )

    if world.main and (unwritable := _unwritable([config.checkpoint_dir, config.output_dir])):
        # Rank 0 writes them; found before any training, and not retried: a permission will not change by itself.
        print(unwritable, file=sys.stderr)
        reporting.write_result(failed("bad_input", unwritable), None)
        return EXIT_BAD_INPUT
    try:
        with distributed.process_group(world, wait):
            runner = StageRunner(
                config,
                progress=_log if world.main else _quiet,
                gradient_checkpointing=args.gradient_checkpointing,
                world=world,
            )
            result = runner.run()
        code = EXIT_OK
    except StageStopped as exc:  # no result: the stage is not over, its rerun resumes from the checkpoint
        if world.main:
            _log(f"[{config.study} t{config.trial} {config.stage}] {exc}")
        return EXIT_INTERRUPTED
    except DataError as exc:  # bad input is bad on every rank: rank 0 says why
        for problem in exc.problems[:50] if world.main else ():
            print(problem, file=sys.stderr)
        result, code = failed("bad_input", str(exc)), EXIT_BAD_INPUT
    except (ModelError, distributed.WorldError) as exc:
        if world.main:
            print(exc, file=sys.stderr)
        result, code = failed("bad_input", str(exc)), EXIT_BAD_INPUT
    except Exception as exc:
        if _is_oom(exc):
            print(f"out of memory: {exc}", file=sys.stderr)
            result, code = failed("oom", f"out of memory: {str(exc)[:500]}"), EXIT_OOM
        else:
            traceback.print_exc()
            result, code = failed("failed", f"{type(exc).__name__}: {exc}"), EXIT_FAILED
    if world.main:
        reporting.write_result(result, result_path)
        _log(json.dumps({"result": result.status, "stage": result.stage, "trial": result.trial}))
    return code


def check_data_command(args: argparse.Namespace) -> int:
    from sweetspot_trainer.data import RARE_VALUE_SHARE, DataError, load_path, load_schema, profile, schema_problems

    schema = None
    if args.schema:
        try:
            schema = load_schema(Path(args.schema))
        except DataError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return EXIT_BAD_INPUT
    bad = False
    for name in args.files:
        dropped: list[str] = []
        try:
            rows = load_path(Path(name), args.bad_rows, dropped)
            if schema is not None and (problems := schema_problems(rows, schema)):
                raise DataError(problems)
        except DataError as exc:
            bad = True
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        for problem in dropped:
            print(f"{problem} (dropped: --bad-rows skip)", file=sys.stderr)
        print(describe(name, profile(rows, schema), RARE_VALUE_SHARE, dropped=len(dropped)))
    return EXIT_BAD_INPUT if bad else EXIT_OK


def predict_command(args: argparse.Namespace) -> int:
    """Print one JSON object per row: its id, category and the extracted attributes (null: not on the page)."""
    from sweetspot_trainer import product
    from sweetspot_trainer.data import DataError
    from sweetspot_trainer.model import ModelError

    if bool(args.input) == bool(args.text):
        print("give either INPUT.jsonl or --text (not both)", file=sys.stderr)
        return EXIT_BAD_INPUT
    adapter = Path(args.adapter)
    try:
        categories = product.read_product(adapter)["categories"]
        if args.input:
            rows = product.read_rows(Path(args.input), categories)
        else:
            rows = []
            for number, text in enumerate(args.text, start=1):
                record = {"input": text, "category": args.category}
                row, problem = product.new_row(record, f"--text #{number}", str(number), categories)
                if row is None:
                    raise DataError([problem])
                rows.append(row)
        predictor = product.load(adapter)
    except product.ProductError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except DataError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as exc:
        print(f"{adapter}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for row, values in zip(rows, predictor.predict(rows), strict=True):
        print(json.dumps({"id": row.id, "category": row.category or None, "output": values}), flush=True)
    return EXIT_OK


def describe(name: str, held: Any, rare_share: float, dropped: int = 0) -> str:
    """What a dataset file holds, for a person deciding what to train on."""
    lines = [
        f"{name}: {held.rows} rows ok{f' ({dropped} bad rows dropped)' if dropped else ''}, {len(held.categories)} "
        f"categor{'y' if len(held.categories) == 1 else 'ies'}, "
        f"{sum(len(c.attributes) for c in held.categories)} category attributes ({held.attributes} names), "
        f"{held.pairs} applicable (row, attribute) pairs, {held.valued_pairs} with a value",
        f"  always-null baseline: F1 0.000, accuracy {held.null_baseline_accuracy:.3f} "
        "(exact match over applicable pairs)",
        f"  gold values in the text: {held.in_text_pairs} of {held.valued_pairs} values occur verbatim in their "
        f"row's input ({held.in_text_pairs / held.valued_pairs if held.valued_pairs else 0:.1%}; an extractive "
        "model can only tag those)",
    ]
    width = max((len(a.name) for c in held.categories for a in c.attributes), default=9)
    for category in held.categories:
        title = category.name or "(no category)"
        lines.append(f"  {title}: {category.rows} rows, {len(category.attributes)} attributes")
        lines.append(f"    {'attribute':<{width}}  applies  value  value share  in text")
        for attribute in sorted(category.attributes, key=lambda a: (-a.value_share, a.name)):
            flag = "  rare" if attribute.value_share < rare_share else ""
            lines.append(
                f"    {attribute.name:<{width}}  {attribute.annotated:>7}  {attribute.values:>5}"
                f"  {attribute.value_share:>11.1%}  {attribute.in_text:>7}{flag}"
            )
    rare = held.rare(rare_share)
    if rare:
        listed = ", ".join(f"{a.name} ({c or 'no category'}, {a.value_share:.1%})" for c, a in rare)
        lines.append(f"  rare (a value in under {rare_share:.0%} of their category's rows): {listed}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="sweetspot-trainer",
        description="Run one Sweetspot trial stage (LoRA fine-tuning with early and final evaluation).",
    )
    root.add_argument("--config", help=f"trial config JSON file (default: ${CONFIG_ENV} holds the JSON)")
    root.add_argument("--result", help="where to write the result JSON (default: OUTPUT_DIR/result-STAGE.json)")
    root.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory on large models")
    root.set_defaults(run=train_command)
    commands = root.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check-data", help=CHECK_DATA_HELP, description=CHECK_DATA_DESCRIPTION + "\n\n" + CHECK_DATA_TABLE
    )
    check.formatter_class = argparse.RawDescriptionHelpFormatter
    check.add_argument("--schema", metavar="SCHEMA", help=CHECK_DATA_SCHEMA_HELP)
    check.add_argument("--bad-rows", choices=("fail", "skip"), default="fail", help=CHECK_DATA_BAD_ROWS_HELP)
    check.add_argument("files", nargs="+", metavar="FILE", help="a JSONL file or a saved dataset directory")
    check.set_defaults(run=check_data_command)
    predict = commands.add_parser("predict", help="extract attributes from new pages with a trained adapter")
    predict.add_argument("adapter", metavar="ADAPTER", help="a folder holding the adapter and its sweetspot.json")
    predict.add_argument("input", nargs="?", metavar="INPUT.jsonl", help="rows {input, id?, category?}")
    predict.add_argument("--text", action="append", default=[], help="a page's text (repeatable)")
    predict.add_argument("--category", default=None, help="the category of the --text pages")
    predict.set_defaults(run=predict_command)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
