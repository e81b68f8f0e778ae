"""The `sweetspot` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sweetspot import __version__
from sweetspot.crd import crd_yaml
from sweetspot.manifest import ManifestError, load_manifest

EPILOG = """\
examples:
  sweetspot validate examples/*.yaml      check manifests as the cluster would
  sweetspot crd > crds/finetunestudies.sweetspot.dev.yaml
"""


def _validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            studies = load_manifest(path)
        except ManifestError as exc:
            failed = True
            for error in exc.errors:
                print(error, file=sys.stderr)
            continue
        if not args.quiet:
            for study in studies:
                print(f"{path}: FineTuneStudy {study.key} is valid")
    return 1 if failed else 0


def _crd(args: argparse.Namespace) -> int:
    sys.stdout.write(crd_yaml())
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
        description="Check FineTuneStudy manifests with the rules the cluster enforces. Prints one line per "
        "problem (file:line: field.path: message) and exits 1 when any manifest is invalid.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML or JSON manifest; '-' reads stdin")
    validate.add_argument("-q", "--quiet", action="store_true", help="print nothing for valid manifests")
    validate.set_defaults(run=_validate)

    crd = commands.add_parser(
        "crd",
        help="print the FineTuneStudy CustomResourceDefinition",
        description="Print the FineTuneStudy CRD generated from the API model (the file under crds/).",
    )
    crd.set_defaults(run=_crd)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
