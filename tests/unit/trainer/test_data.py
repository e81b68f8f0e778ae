"""Loading, checking and sampling rows: clear `file:line` errors, stratified nested samples."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from sweetspot_trainer.__main__ import main
from sweetspot_trainer.data import (
    MAX_LINE_BYTES,
    DataError,
    Row,
    attribute_names,
    builtin_rows,
    category_attributes,
    load_path,
    load_schema,
    presence_rates,
    profile,
    sample,
    sample_hash,
    schema_problems,
    split_validation,
    value_in_text,
)
from sweetspot_trainer.demo import ATTRIBUTES, product_pages

GOOD = json.dumps({"input": "Acme Kettle $5", "output": {"brand": "Acme", "price": "$5"}})

# (name, bad line, words the problem must contain); the bad line is always line 2 of its file.
MALFORMED = [
    ("not json", "{not json", "not JSON"),
    ("truncated json", '{"input": "x", "output": {', "not JSON"),
    ("a list", "[1, 2]", "expected a JSON object"),
    ("missing input", json.dumps({"output": {"a": "b"}}), "missing 'input'"),
    ("missing output", json.dumps({"input": "page"}), "missing 'output'"),
    ("input not a string", json.dumps({"input": 5, "output": {}}), "'input' must be a string"),
    ("empty input", json.dumps({"input": "  ", "output": {}}), "'input' is empty"),
    ("output a list", json.dumps({"input": "p", "output": ["a"]}), "'output' must be an object"),
    (
        "number value",
        json.dumps({"input": "p", "output": {"price": 5}}),
        "output.price must be a string, a list of strings or null",
    ),
    ("empty alternatives", json.dumps({"input": "p", "output": {"price": []}}), "output.price must list 1 to 32"),
    (
        "alternative not a string",
        json.dumps({"input": "p", "output": {"price": ["$5", 5]}}),
        "acceptable values must be non-empty strings",
    ),
    ("category not a string", json.dumps({"input": "p", "output": {}, "category": 3}), "'category' must be"),
    ("nested value", json.dumps({"input": "p", "output": {"brand": {"x": 1}}}), "output.brand must be a string"),
    ("empty attribute name", json.dumps({"input": "p", "output": {"": "x"}}), "empty attribute name"),
    ("id not scalar", json.dumps({"input": "p", "output": {}, "id": [1]}), "'id' must be"),
    ("line too long", json.dumps({"input": "x" * (MAX_LINE_BYTES + 10), "output": {}}), "longer than"),
]


def _write(tmp_path: Path, bad: str) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text(f"{GOOD}\n{bad}\n{GOOD}\n")
    return path


@pytest.mark.parametrize(("name", "line", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_check_data_names_file_and_line(
    name: str, line: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, line)
    assert main(["check-data", str(path)]) == 2
    (problem,) = capsys.readouterr().err.splitlines()
    assert problem.startswith(f"{path}:2: ")
    assert words in problem


def test_empty_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert main(["check-data", str(empty), str(tmp_path / "absent.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{empty}: no rows" in err
    assert f"{tmp_path / 'absent.jsonl'}: no such file" in err


def test_invalid_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError) as caught:
        load_path(path)
    assert caught.value.problems == [f"{path}:2: not valid UTF-8"]


def test_bad_rows_can_be_skipped_and_counted(tmp_path: Path) -> None:
    path = _write(tmp_path, "{broken")
    assert len(load_path(path, bad_rows="skip")) == 2
    with pytest.raises(DataError):
        load_path(path)


def test_good_file_loads_with_ids_and_nulls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(json.dumps({"input": "a", "output": {"brand": "", "price": None}, "id": 7}) + "\n\n" + GOOD + "\n")
    rows = load_path(path)
    assert [r.id for r in rows] == ["7", "ok.jsonl:3"]
    assert rows[0].output == {"brand": None, "price": None}
    assert main(["check-data", str(path)]) == 0
    assert "2 rows ok" in capsys.readouterr().out


def test_saved_dataset_directory_loads(tmp_path: Path) -> None:
    import datasets

    saved = tmp_path / "saved"
    datasets.Dataset.from_list(
        [{"input": "Acme Kettle", "output": {"brand": "Acme"}}, {"input": "Zen Mug", "output": {"brand": None}}]
    ).save_to_disk(str(saved))
    rows = load_path(saved)
    assert [(r.input, r.output) for r in rows] == [("Acme Kettle", {"brand": "Acme"}), ("Zen Mug", {"brand": None})]


def test_builtin_pages_are_deterministic_prefixes_with_a_rare_rating() -> None:
    small, large = product_pages(50), product_pages(2000)
    assert small == large[:50]
    assert product_pages(50, stream=1) != small
    rates = presence_rates(builtin_rows("product-pages", 2000, 0), ATTRIBUTES)
    assert 0.2 <= rates["rating"] <= 0.3
    assert rates["name"] == 1.0
    for page in large:
        for value in page["output"].values():  # type: ignore[union-attr]
            assert value is None or value in page["input"]  # type: ignore[operator]


def _rate(rows: Sequence[Row], attribute: str) -> float:
    return sum(r.output.get(attribute) is not None for r in rows) / len(rows)


def test_stratified_samples_keep_the_rare_attribute_and_are_nested() -> None:
    # A pool where the rare attribute is at 10%, so an unlucky plain sample would miss it.
    rows = [Row(f"r{i}", f"page {i}", {"name": f"n{i}", "rating": "4.5" if i % 10 == 0 else None}) for i in range(1000)]
    population = _rate(rows, "rating")
    attributes = attribute_names(rows)
    previous: list[str] = []
    for size in (10, 20, 50, 100, 200, 500, 1000):
        chosen = sample(rows, size, seed=3, attributes=attributes, stratify=True)
        assert len(chosen) == size
        assert _rate(chosen, "rating") >= population
        ids = [r.id for r in chosen]
        assert ids[: len(previous)] == previous  # nested: the smaller sample is a prefix of the larger
        previous = ids
    assert len(set(previous)) == 1000


def test_samples_depend_on_the_seed_only() -> None:
    rows = builtin_rows("product-pages", 300, 0)
    attrs = attribute_names(rows)
    first = sample_hash(sample(rows, 100, 1, attrs, True))
    assert first == sample_hash(sample(rows, 100, 1, attrs, True))
    assert first != sample_hash(sample(rows, 100, 2, attrs, True))


def test_asking_for_more_rows_than_exist_is_bad_input() -> None:
    rows = builtin_rows("product-pages", 10, 0)
    with pytest.raises(DataError, match="samples=11 is more than the 10"):
        sample(rows, 11, 0, attribute_names(rows), True)


def test_validation_split_is_disjoint_and_sized() -> None:
    rows = builtin_rows("product-pages", 100, 0)
    train, validation = split_validation(rows, 0.1, seed=0)
    assert (len(train), len(validation)) == (90, 10)
    assert not {r.id for r in train} & {r.id for r in validation}


@pytest.mark.parametrize(("name", "line", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_training_run_on_bad_data_exits_2_naming_file_and_line(
    name: str,
    line: str,
    words: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The data is checked before any model loads, so this is the real entrypoint, run in-process.
    path = _write(tmp_path, line)
    config = tmp_path / "trial.json"
    config.write_text(
        json.dumps(
            {
                "study": "s",
                "trial": 0,
                "stage": "early",
                "model": {"builtin": "tiny"},
                "train": {"path": str(path)},
                "outputDir": str(tmp_path / "out"),
            }
        )
    )
    monkeypatch.setenv("SWEETSPOT_TERMINATION_LOG", str(tmp_path / "termination-log"))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: " in err and words in err
    assert json.loads((tmp_path / "termination-log").read_text())["status"] == "bad_input"


def test_categories_alternatives_and_not_applicable_keys_load_as_written(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [
        {
            "input": "SEAPESCA Lure 9g",
            "output": {"Brand Name": "SEAPESCA", "Weight": ["9g", "9 g"]},
            "category": "Lure",
        },
        {"input": "Carbon rod 2.1m", "output": {"Material": "Carbon", "Power": None}, "category": "Rod"},
        {"input": "A kettle", "output": {"brand": None}},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lure, rod, plain = load_path(path)
    assert (lure.category, lure.output["Weight"], lure.first_value("Weight")) == ("Lure", ("9g", "9 g"), "9g")
    assert lure.where == f"{path}:1" and "Power" not in lure.output  # absent: not applicable
    assert rod.output == {"Material": "Carbon", "Power": None} and not rod.has_value("Power")
    assert plain.category == ""  # the implicit category
    assert category_attributes([lure, rod, plain]) == {
        "Lure": ["Brand Name", "Weight"],
        "Rod": ["Material", "Power"],
        "": ["brand"],
    }


def _schema(tmp_path: Path, value: object) -> Path:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(value))
    return path


def test_a_schema_decides_what_is_asked_and_rows_outside_it_are_named(tmp_path: Path) -> None:
    schema = load_schema(_schema(tmp_path, {"Lure": ["Brand Name", "Weight", "Color"], "Rod": ["Material"]}))
    rows = [
        Row("a", "x", {"Brand Name": "S"}, "Lure", "f.jsonl:1"),
        Row("b", "x", {"Pickup": "P90"}, "Lure", "f.jsonl:2"),
        Row("c", "x", {"Material": None}, "Guitar", "f.jsonl:3"),
        Row("d", "x", {"Material": None}, "", "f.jsonl:4"),
    ]
    problems = schema_problems(rows, schema)
    assert len(problems) == 3
    assert problems[0].startswith("f.jsonl:2: ['Pickup'] not in the schema's attributes of 'Lure'")
    assert problems[1].startswith("f.jsonl:3: category 'Guitar', but the schema lists only ['Lure', 'Rod']")
    assert problems[2].startswith("f.jsonl:4: no category")
    assert category_attributes(rows[:1], schema)["Lure"] == ["Brand Name", "Weight", "Color"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "schema.json:1: the schema is not JSON"),
        ("[1, 2]", "a schema is a non-empty object"),
        ('{"Lure": []}', "category 'Lure' must map to a non-empty list"),
        ('{"Lure": ["a", "a"]}', "attribute names must be unique"),
    ],
)
def test_a_bad_schema_is_named(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "schema.json"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(words)):
        load_schema(path)


def test_check_data_refuses_rows_outside_the_schema_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = _schema(tmp_path, {"Lure": ["Brand Name"]})
    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps({"input": "a", "output": {"Brand Name": "S"}, "category": "Lure"})
        + "\n"
        + json.dumps({"input": "b", "output": {"Weight": "9g"}, "category": "Lure"})
        + "\n"
    )
    assert main(["check-data", "--schema", str(schema), str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"{path}:2: ['Weight'] not in the schema")


def test_check_data_says_what_a_file_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [{"input": f"Lure {i}", "output": {"Brand Name": "S", "Color": None}, "category": "Lure"} for i in range(30)]
    rows[0]["output"]["Color"] = "red"  # 1 of 30 rows: a value in 3.3% of the category's rows, rare
    rows += [{"input": "Rod", "output": {"Material": "Carbon"}, "category": "Rod"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    held = profile(load_path(path))
    assert held.rows == 31 and [c.name for c in held.categories] == ["Lure", "Rod"]
    assert held.pairs == 61 and held.valued_pairs == 32
    assert held.null_baseline_accuracy == pytest.approx(29 / 61)
    assert [(c, a.name) for c, a in held.rare()] == [("Lure", "Color")]
    assert main(["check-data", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: 31 rows ok, 2 categories, 3 category attributes (3 names)" in out
    assert "always-null baseline: F1 0.000, accuracy 0.475" in out
    assert "Lure: 30 rows, 2 attributes" in out
    assert "rare (a value in under 5% of their category's rows): Color (Lure, 3.3%)" in out


def test_a_gold_value_is_in_the_text_when_one_acceptable_value_occurs_verbatim() -> None:
    row = Row(
        "1",
        "Acme carbon rod, 2.1 m",
        {"Brand": "Acme", "Material": ("Carbon", "carbon"), "Length": "2.1m", "Color": None, "Maker": "acme"},
    )
    assert [value_in_text(row, a) for a in ("Brand", "Material", "Length", "Color", "Maker", "Absent")] == [
        True,  # verbatim
        True,  # the second acceptable value
        False,  # "2.1m" is not "2.1 m"
        False,  # null: nothing to find
        False,  # case-sensitive
        False,  # not applicable
    ]
    held = profile([row])
    assert held.in_text_pairs == 2 and held.valued_pairs == 4
    assert {a.name: a.in_text for a in held.categories[0].attributes}["Material"] == 1


def test_stratified_samples_hold_every_category_even_when_tiny_and_stay_nested() -> None:
    # Ten categories from 300 rows down to 6, each with a rare attribute (10% of its rows).
    sizes = [300, 200, 150, 100, 80, 50, 30, 20, 10, 6]
    rows = [
        Row(f"{c}-{i}", f"title {c} {i}", {"Brand": f"b{i}", "Rare": "r" if i % 10 == 0 else None}, f"cat{c}")
        for c, size in enumerate(sizes)
        for i in range(size)
    ]
    previous: list[str] = []
    for n in (10, 20, 50, 100, 200, 946):
        chosen = sample(rows, n, seed=5, attributes=None, stratify=True)
        ids = [r.id for r in chosen]
        assert ids[: len(previous)] == previous
        previous = ids
        assert {r.category for r in chosen} == {f"cat{c}" for c in range(10)}  # every category, from 10 rows on
        for category, size in enumerate(sizes):
            share = sum(r.category == f"cat{category}" for r in chosen)
            # Its share, give or take the rows lent to the small categories so that each is there from the start.
            assert share >= max(1, math.floor(n * size / len(rows)) - 2)
    largest = [r for r in sample(rows, 100, 5, None, True) if r.category == "cat0"]
    assert sum(r.has_value("Rare") for r in largest) >= math.floor(0.1 * len(largest))


def test_check_data_reads_the_real_ae_110k_files_against_their_schema(capsys: pytest.CaptureFixture[str]) -> None:
    folder = Path(__file__).parents[3] / "examples" / "ae-110k"
    files = [str(folder / name) for name in ("train.jsonl", "test.jsonl")]
    assert main(["check-data", "--schema", str(folder / "schema.json"), *files]) == 0
    out = capsys.readouterr().out
    assert f"{files[0]}: 1568 rows ok, 10 categories" in out and f"{files[1]}: 524 rows ok, 10 categories" in out
    assert "always-null baseline: F1 0.000, accuracy 0.144" in out  # 630 of 4,360 training pairs are null
    assert "gold values in the text: 3730 of 3730 values occur verbatim" in out  # AE-110k's values are spans
    assert "Eyewear: 300 rows, 17 attributes" in out  # the schema's attributes, annotated or not
