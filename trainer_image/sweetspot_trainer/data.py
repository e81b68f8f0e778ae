"""Load, check and sample extraction rows.

A row is `{"input": "<page text>", "output": {"<attribute>": "<value>" | null}}`, from a JSONL file, a
saved Hugging Face dataset directory with the same columns, or the built-in generator. Other keys are
ignored, except `id`, which names the row. An attribute missing from a row's output counts as null.

Bad rows fail the run by default, with one `file:line: problem` per bad row; `bad_rows="skip"` drops
them instead and counts them.

Sampling is seeded, stratified and nested: rows are put in one order such that every prefix carries each
rare attribute at least at its share of the whole data, and a sample of n rows is the first n. So the
200-row sample lies inside the 1,000-row one and a learning curve compares like with like.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MAX_LINE_BYTES = 1 << 20
"""A row longer than this is rejected: no product page is 1 MiB, a broken export is."""
MAX_REPORTED_PROBLEMS = 50
RARE_SHARE = 0.5
"""Attributes present in fewer rows than this share are kept at their rate in every sample."""


@dataclass(frozen=True)
class Row:
    id: str
    input: str
    output: dict[str, str | None]


class DataError(Exception):
    """Bad input data; `problems` holds one `file:line: problem` line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:MAX_REPORTED_PROBLEMS]
        more = len(self.problems) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more problems" if more else ""))


@dataclass
class Loaded:
    rows: list[Row]
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def _check_record(record: Any, where: str, row_id: str) -> tuple[Row | None, str | None]:
    if not isinstance(record, dict):
        return None, f"{where}: expected a JSON object, got {type(record).__name__}"
    text, output = record.get("input"), record.get("output")
    if "input" not in record:
        return None, f"{where}: missing 'input'"
    if not isinstance(text, str):
        return None, f"{where}: 'input' must be a string, got {type(text).__name__}"
    if not text.strip():
        return None, f"{where}: 'input' is empty"
    if "output" not in record:
        return None, f"{where}: missing 'output'"
    if not isinstance(output, dict):
        return None, f"{where}: 'output' must be an object of attribute values, got {type(output).__name__}"
    for key, value in output.items():
        if not key:
            return None, f"{where}: 'output' has an empty attribute name"
        if value is not None and not isinstance(value, str):
            return None, f"{where}: output.{key} must be a string or null, got {type(value).__name__} {value!r}"[:300]
    ident = record.get("id")
    if ident is not None and not isinstance(ident, str | int):
        return None, f"{where}: 'id' must be a string or an integer"
    clean = {k: (v if v and v.strip() else None) for k, v in output.items()}
    return Row(str(ident) if ident is not None else row_id, text, clean), None


def load_jsonl(path: Path) -> Loaded:
    """Every row of a JSONL file, and a problem line for every bad one."""
    loaded = Loaded([])
    name = str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DataError([f"{name}: cannot read: {exc.strerror or exc}"]) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{name}:{number}"
            if len(raw) > MAX_LINE_BYTES:
                loaded.problems.append(f"{where}: line is longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                loaded.problems.append(f"{where}: not valid UTF-8")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                loaded.problems.append(f"{where}: not JSON ({exc.msg} at column {exc.colno})")
                continue
            row, problem = _check_record(record, where, f"{path.name}:{number}")
            if problem:
                loaded.problems.append(problem)
            elif row is not None:
                loaded.rows.append(row)
    return loaded


def load_dataset_dir(path: Path) -> Loaded:
    """Rows of a dataset saved with `datasets.Dataset.save_to_disk` (its `train` split for a DatasetDict)."""
    try:
        import datasets  # the trainer extra; imported here so the rest of the trainer starts fast
    except ImportError as exc:  # pragma: no cover - the trainer extra installs it
        raise DataError([f"{path}: reading a saved dataset directory needs the 'datasets' package"]) from exc
    try:
        saved = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError([f"{path}: not a saved Hugging Face dataset ({exc})"]) from None
    if isinstance(saved, datasets.DatasetDict):
        if "train" not in saved:
            raise DataError([f"{path}: a DatasetDict needs a 'train' split, it has {sorted(saved)}"])
        saved = saved["train"]
    missing = {"input", "output"} - set(saved.column_names)
    if missing:
        raise DataError([f"{path}: missing column(s) {sorted(missing)}; it has {saved.column_names}"])
    loaded = Loaded([])
    for index, record in enumerate(saved):
        row, problem = _check_record(record, f"{path}[{index}]", f"{path.name}[{index}]")
        if problem:
            loaded.problems.append(problem)
        elif row is not None:
            loaded.rows.append(row)
    return loaded


def load_path(path: Path, bad_rows: Literal["fail", "skip"] = "fail") -> list[Row]:
    """Rows from a JSONL file or a saved dataset directory; raises `DataError` on bad input."""
    if not path.exists():
        raise DataError([f"{path}: no such file or directory"])
    loaded = load_dataset_dir(path) if path.is_dir() else load_jsonl(path)
    if loaded.problems and bad_rows == "fail":
        raise DataError(loaded.problems)
    loaded.skipped = len(loaded.problems)
    if not loaded.rows:
        raise DataError([f"{path}: no rows" + (f" ({loaded.skipped} bad rows skipped)" if loaded.skipped else "")])
    return loaded.rows


def builtin_rows(name: str, rows: int, stream: int) -> list[Row]:
    from sweetspot_trainer.demo import product_pages

    if name != "product-pages":
        raise DataError([f"builtin:{name}: unknown built-in dataset (known: product-pages)"])
    return [
        Row(f"{name}:{stream}:{i}", str(r["input"]), dict(r["output"]))  # type: ignore[call-overload]
        for i, r in enumerate(product_pages(rows, stream))
    ]


def attribute_names(rows: Iterable[Row]) -> list[str]:
    """Every attribute seen, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row.output))
    return list(seen)


def presence_rates(rows: Sequence[Row], attributes: Sequence[str]) -> dict[str, float]:
    return {a: sum(row.output.get(a) is not None for row in rows) / max(1, len(rows)) for a in attributes}


def nested_order(rows: Sequence[Row], seed: int, attributes: Sequence[str], stratify: bool = True) -> list[Row]:
    """All rows in sampling order: `order[:n]` is the n-row sample.

    With `stratify`, every prefix holds each rare attribute at least at its share of the whole data (a row
    carrying the attribute that has fallen furthest behind its share goes next), so small samples are not
    starved of the attributes whose late gains matter.
    """
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    if not stratify:
        return shuffled
    rates = presence_rates(shuffled, attributes)
    rare = [a for a in attributes if 0 < rates[a] < RARE_SHARE]
    queues = {a: [i for i, row in enumerate(shuffled) if row.output.get(a) is not None] for a in rare}
    heads = dict.fromkeys(rare, 0)
    counts = dict.fromkeys(rare, 0)
    used = [False] * len(shuffled)
    order: list[Row] = []
    cursor = 0
    for k in range(1, len(shuffled) + 1):
        deficits = {a: math.ceil(rates[a] * k) - counts[a] for a in rare}
        behind = max(deficits, key=lambda a: deficits[a] / rates[a], default=None)
        pick = None
        if behind is not None and deficits[behind] > 0:
            queue = queues[behind]
            while heads[behind] < len(queue) and used[queue[heads[behind]]]:
                heads[behind] += 1
            if heads[behind] < len(queue):
                pick = queue[heads[behind]]
        if pick is None:
            while used[cursor]:
                cursor += 1
            pick = cursor
        used[pick] = True
        row = shuffled[pick]
        order.append(row)
        for a in rare:
            counts[a] += row.output.get(a) is not None
    return order


def sample(rows: Sequence[Row], n: int | None, seed: int, attributes: Sequence[str], stratify: bool) -> list[Row]:
    """The first `n` rows of the nested order (all rows when `n` is None); `n` larger than the data is an error."""
    if n is not None and n > len(rows):
        raise DataError([f"samples={n} is more than the {len(rows)} training rows available"])
    return nested_order(rows, seed, attributes, stratify)[: n or len(rows)]


def split_validation(rows: Sequence[Row], fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """Hold out `fraction` of the rows (at least one) for validation; the rest train."""
    if len(rows) < 2:
        raise DataError([f"need at least 2 rows to hold out validation rows, got {len(rows)}"])
    shuffled = list(rows)
    random.Random(f"validation:{seed}").shuffle(shuffled)
    held = max(1, round(len(shuffled) * fraction))
    return shuffled[held:], shuffled[:held]


def sample_hash(rows: Iterable[Row]) -> str:
    """A short fingerprint of which rows were used (order-independent)."""
    digest = hashlib.sha256("\n".join(sorted(row.id for row in rows)).encode())
    return digest.hexdigest()[:16]
