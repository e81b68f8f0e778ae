"""Loading, checking and sampling rows: clear `file:line` errors, stratified nested samples."""

from __future__ import annotations

import json
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
    load_path,
    presence_rates,
    sample,
    sample_hash,
    split_validation,
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
    ("number value", json.dumps({"input": "p", "output": {"price": 5}}), "output.price must be a string or null"),
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
