"""The README and docs/ say only what is true of the code: every link reaches a file and a heading, every
`sweetspot` and `python -m benchmarks` command they show exists, and the field reference is the generated one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweetspot.api.crd import reference_markdown
from sweetspot.cli import parser

from support.by_path import ROOT, load

PAGES = [ROOT / "README.md", ROOT / "charts" / "sweetspot" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a `# comment` in a code block is no heading
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_reaches_a_file_and_a_heading(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading '{anchor}' in {file.relative_to(ROOT)}")
    assert not broken, broken


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A title\n\n[ok](#a-title) [gone](#nowhere) [missing](other.md)\n")
    assert links(page) == ["#a-title", "#nowhere", "other.md"]
    assert anchors(page) == {"a-title"}


def test_every_sweetspot_command_shown_exists() -> None:
    subcommands = set(parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    benchmarks = set(load("benchmarks/__main__.py", "benchmarks_main_for_docs").MODULES) | {"all"}
    unknown = []
    for page in PAGES:
        text = page.read_text()
        # A command starts a line of a code block, a `code span`, or follows a venv's bin/.
        for word in re.findall(r"(?:^|`|/bin/)sweetspot ([a-z][-a-z]*)", text, flags=re.M):
            if word not in subcommands:
                unknown.append(f"{page.name}: sweetspot {word}")
        for word in re.findall(r"python -m benchmarks ([a-z][-a-z]*)", text):
            if word not in benchmarks:
                unknown.append(f"{page.name}: python -m benchmarks {word}")
    assert not unknown, unknown


def test_the_field_reference_is_the_generated_one() -> None:
    assert (ROOT / "docs" / "reference.md").read_text() == reference_markdown(), (
        "docs/reference.md is stale: run `make crd`"
    )


def test_the_field_reference_lists_every_spec_field() -> None:
    text = reference_markdown()
    for name in ("maxTrials", "promoteTopK", "tokenSecretRef", "costPerLabel", "numProcPerNode", "onDelete"):
        assert f"`{name}`" in text, name
    assert "](#spectrialoutput)" in text and "## `spec.trial.output`" in text  # nested objects link to their table
