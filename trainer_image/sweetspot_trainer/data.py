"""Load, check and sample extraction rows, and the attribute schema that says what each category is asked.

A row is `{"input": "<page text>", "output": {"<attribute>": "<value>" | ["<value>", ...] | null},
"category": "<name>"}`, from a JSONL file, a saved Hugging Face dataset directory with the same columns, or the
built-in generator. A key of `output` is an attribute that applies to the row: a string is its gold value, a list
holds acceptable values (any one is correct; the first is the one training teaches), null means it applies but
the text does not state it. An absent key is not applicable there and never scored. `category` is optional;
rows without one form one implicit category (the synthetic product pages are such data). `id` names the row;
other keys are ignored.

The attributes a model is asked for in each category come from a schema (`{category: [attributes]}`, a JSON file
or inline), else from the training rows (the union of the keys of each category's rows). With a schema, a row
whose category or attributes it does not list fails with its `file:line`.

Bad rows fail the run by default, with one `file:line: problem` per bad row; `bad_rows="skip"` drops
them instead and counts them.

Sampling is seeded, stratified and nested: rows are put in one order such that every prefix carries each
category at its share of the data (the rarest category first, so a sample as small as the number of categories
has every one), and within its category each rare attribute at least at its share; a sample of n rows is the
first n. So the 200-row sample lies inside the 1,000-row one and a learning curve compares like with like.
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


IMPLICIT_CATEGORY = ""
"""The category of rows that name none."""
MAX_ALTERNATIVES = 32

Gold = str | tuple[str, ...] | None


@dataclass(frozen=True)
class Row:
    id: str
    input: str
    output: dict[str, Gold]
    """The applicable attributes: a gold value, a tuple of acceptable values, or None (applies, not stated)."""
    category: str = IMPLICIT_CATEGORY
    where: str = ""
    """`file:line` (or `dir[index]`) the row came from, for error messages."""

    def has_value(self, attribute: str) -> bool:
        return self.output.get(attribute) is not None

    def first_value(self, attribute: str) -> str | None:
        """The gold value training teaches: the value, or the first acceptable one."""
        value = self.output.get(attribute)
        return value[0] if isinstance(value, tuple) else value


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


def _gold(value: Any) -> tuple[Gold, str | None]:
    """A cleaned gold value, or the problem with it."""
    if value is None or isinstance(value, str):
        return (value if value and value.strip() else None), None
    if isinstance(value, list):
        if not value or len(value) > MAX_ALTERNATIVES:
            return None, f"must list 1 to {MAX_ALTERNATIVES} acceptable values, got {len(value)}"
        if not all(isinstance(v, str) and v.strip() for v in value):
            return None, "acceptable values must be non-empty strings"
        return tuple(value), None
    return None, f"must be a string, a list of strings or null, got {type(value).__name__} {value!r}"


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
    clean: dict[str, Gold] = {}
    for key, value in output.items():
        if not key:
            return None, f"{where}: 'output' has an empty attribute name"
        clean[key], problem = _gold(value)
        if problem:
            return None, f"{where}: output.{key} {problem}"[:300]
    category = record.get("category")
    if category is not None and not (isinstance(category, str) and category.strip()):
        return None, f"{where}: 'category' must be a non-empty string"
    ident = record.get("id")
    if ident is not None and not isinstance(ident, str | int):
        return None, f"{where}: 'id' must be a string or an integer"
    name = str(ident) if ident is not None else row_id
    return Row(name, text, clean, category or IMPLICIT_CATEGORY, where), None


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


def load_path(path: Path, bad_rows: Literal["fail", "skip"] = "fail", dropped: list[str] | None = None) -> list[Row]:
    """Rows from a JSONL file or a saved dataset directory; raises `DataError` on bad input. With `skip`, the
    problems of the rows dropped are added to `dropped` when given."""
    if not path.exists():
        raise DataError([f"{path}: no such file or directory"])
    loaded = load_dataset_dir(path) if path.is_dir() else load_jsonl(path)
    if loaded.problems and bad_rows == "fail":
        raise DataError(loaded.problems)
    loaded.skipped = len(loaded.problems)
    if dropped is not None:
        dropped.extend(loaded.problems)
    if not loaded.rows:
        raise DataError([f"{path}: no rows" + (f" ({loaded.skipped} bad rows skipped)" if loaded.skipped else "")])
    return loaded.rows


def builtin_rows(name: str, rows: int, stream: int) -> list[Row]:
    from sweetspot_trainer.demo import product_pages

    if name != "product-pages":
        raise DataError([f"builtin:{name}: unknown built-in dataset (known: product-pages)"])
    return [
        Row(f"{name}:{stream}:{i}", str(r["input"]), dict(r["output"]), where=f"builtin:{name}[{i}]")  # type: ignore[call-overload]
        for i, r in enumerate(product_pages(rows, stream))
    ]


def attribute_names(rows: Iterable[Row]) -> list[str]:
    """Every attribute seen, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row.output))
    return list(seen)


def presence_rates(rows: Sequence[Row], attributes: Sequence[str]) -> dict[str, float]:
    """Share of rows that carry a value for each attribute."""
    return {a: sum(row.has_value(a) for row in rows) / max(1, len(rows)) for a in attributes}


# --- the attribute schema ----------------------------------------------------------------------------------

Schema = dict[str, list[str]]
"""Category -> the attributes a model is asked for there."""


def check_schema(value: Any, where: str) -> Schema:
    """A schema from JSON-like data; raises `DataError` naming `where` and the bad entry."""
    if not isinstance(value, dict) or not value:
        raise DataError([f"{where}: a schema is a non-empty object {{category: [attributes]}}"])
    problems = []
    for category, attributes in value.items():
        if not category or not isinstance(attributes, list) or not attributes:
            problems.append(f"{where}: category {category!r} must map to a non-empty list of attribute names")
        elif not all(isinstance(a, str) and a for a in attributes) or len(set(attributes)) != len(attributes):
            problems.append(f"{where}: category {category!r}: attribute names must be unique non-empty strings")
    if problems:
        raise DataError(problems)
    return {str(c): list(a) for c, a in value.items()}


def load_schema(path: Path) -> Schema:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError([f"{path}: cannot read the schema: {getattr(exc, 'strerror', None) or exc}"]) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError([f"{path}:{exc.lineno}: the schema is not JSON ({exc.msg})"]) from None
    return check_schema(value, str(path))


def schema_problems(rows: Iterable[Row], schema: Schema) -> list[str]:
    """One `file:line: problem` per row whose category or attributes the schema does not list."""
    problems = []
    for row in rows:
        known = schema.get(row.category)
        if known is None:
            named = f"category {row.category!r}" if row.category else "no category"
            problems.append(f"{row.where}: {named}, but the schema lists only {sorted(schema)}"[:300])
            continue
        extra = [a for a in row.output if a not in known]
        if extra:
            problems.append(f"{row.where}: {extra} not in the schema's attributes of {row.category!r}"[:300])
    return problems


def category_attributes(rows: Iterable[Row], schema: Schema | None = None) -> Schema:
    """The attributes to ask for in each category: the schema's, else the union of the rows' keys per category
    (first-seen order)."""
    if schema is not None:
        return {c: list(a) for c, a in schema.items()}
    asked: dict[str, dict[str, None]] = {}
    for row in rows:
        asked.setdefault(row.category, {}).update(dict.fromkeys(row.output))
    return {c: list(a) for c, a in asked.items()}


# --- sampling -----------------------------------------------------------------------------------------------


class _CategoryQueue:
    """One category's rows in sampling order: the rare attribute furthest behind its share goes next."""

    def __init__(self, rows: Sequence[Row], indices: list[int], attributes: Sequence[str] | None) -> None:
        self.rows, self.indices = rows, indices
        members = [rows[i] for i in indices]
        names = attributes if attributes is not None else attribute_names(members)
        rates = presence_rates(members, names)
        self.rare = [a for a in names if 0 < rates[a] < RARE_SHARE]
        self.rates = rates
        self.queues = {a: [i for i in indices if rows[i].has_value(a)] for a in self.rare}
        self.heads = dict.fromkeys(self.rare, 0)
        self.counts = dict.fromkeys(self.rare, 0)
        self.cursor = 0
        self.taken = 0

    def take(self, used: list[bool]) -> int:
        k = self.taken + 1
        deficits = {a: math.ceil(self.rates[a] * k) - self.counts[a] for a in self.rare}
        behind = max(deficits, key=lambda a: deficits[a] / self.rates[a], default=None)
        pick = None
        if behind is not None and deficits[behind] > 0:
            queue = self.queues[behind]
            while self.heads[behind] < len(queue) and used[queue[self.heads[behind]]]:
                self.heads[behind] += 1
            if self.heads[behind] < len(queue):
                pick = queue[self.heads[behind]]
        if pick is None:
            while used[self.indices[self.cursor]]:
                self.cursor += 1
            pick = self.indices[self.cursor]
        used[pick] = True
        self.taken = k
        for a in self.rare:
            self.counts[a] += self.rows[pick].has_value(a)
        return pick


def nested_order(
    rows: Sequence[Row], seed: int, attributes: Sequence[str] | None = None, stratify: bool = True
) -> list[Row]:
    """All rows in sampling order: `order[:n]` is the n-row sample.

    With `stratify`, every prefix holds each category at its share (rounded up, the furthest behind first, so the
    rarest category comes first), and within a category each rare attribute (among `attributes`, all when None)
    at least at its share, so that small samples are not starved of the categories and attributes whose late
    gains matter.
    """
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    if not stratify or not shuffled:
        return shuffled
    members: dict[str, list[int]] = {}
    for index, row in enumerate(shuffled):
        members.setdefault(row.category, []).append(index)
    queues = {c: _CategoryQueue(shuffled, members[c], attributes) for c in sorted(members)}
    rates = {c: len(members[c]) / len(shuffled) for c in queues}
    used = [False] * len(shuffled)
    order: list[Row] = []
    for k in range(1, len(shuffled) + 1):
        # Some category is always behind: its shares, rounded up, sum to at least k, and only k - 1 rows are in.
        category = max(queues, key=lambda c: (math.ceil(rates[c] * k) - queues[c].taken) / rates[c])
        order.append(shuffled[queues[category].take(used)])
    return order


def sample(
    rows: Sequence[Row], n: int | None, seed: int, attributes: Sequence[str] | None, stratify: bool
) -> list[Row]:
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


# --- what a dataset holds (check-data) ----------------------------------------------------------------------

RARE_VALUE_SHARE = 0.05
"""check-data flags attributes with a value in fewer than this share of their category's rows."""


@dataclass(frozen=True)
class AttributeProfile:
    name: str
    annotated: int
    """Rows of the category where the attribute applies (a key of `output`)."""
    values: int
    """Of those, rows with a gold value."""
    category_rows: int
    in_text: int = 0
    """Of the rows with a value, those whose text holds it verbatim (any acceptable value, case-sensitive): an
    extractive model can only tag what is in the text, so this bounds what it can get right."""

    @property
    def value_share(self) -> float:
        """Share of the category's rows with a value for this attribute."""
        return self.values / self.category_rows if self.category_rows else 0.0


@dataclass(frozen=True)
class CategoryProfile:
    name: str
    rows: int
    attributes: list[AttributeProfile]


@dataclass(frozen=True)
class Profile:
    rows: int
    categories: list[CategoryProfile]
    pairs: int
    """Applicable (row, attribute) pairs: what a model is scored on."""
    valued_pairs: int

    @property
    def attributes(self) -> int:
        return len({a.name for c in self.categories for a in c.attributes})

    @property
    def null_baseline_accuracy(self) -> float:
        """Exact match of always answering null (its F1 is 0)."""
        return (self.pairs - self.valued_pairs) / self.pairs if self.pairs else 0.0

    @property
    def in_text_pairs(self) -> int:
        """(row, attribute) pairs whose gold value occurs verbatim in the row's text."""
        return sum(a.in_text for c in self.categories for a in c.attributes)

    def rare(self, share: float = RARE_VALUE_SHARE) -> list[tuple[str, AttributeProfile]]:
        """(category, attribute) with a value in fewer than `share` of the category's rows."""
        return [(c.name, a) for c in self.categories for a in c.attributes if a.value_share < share]


def value_in_text(row: Row, attribute: str) -> bool:
    """Whether one of the row's gold values for `attribute` occurs verbatim (case-sensitive) in its text."""
    value = row.output.get(attribute)
    return any(v in row.input for v in ((value,) if isinstance(value, str) else value or ()))


def profile(rows: Sequence[Row], schema: Schema | None = None) -> Profile:
    """Rows, categories and, per category, how often each attribute applies and has a value. With a schema,
    its attributes that no row annotates are listed too (with zero counts)."""
    by_category: dict[str, list[Row]] = {}
    for row in rows:
        by_category.setdefault(row.category, []).append(row)
    asked = category_attributes(rows, schema)
    categories = []
    for name in sorted(by_category):
        members = by_category[name]
        attributes = [
            AttributeProfile(
                a,
                annotated=sum(a in r.output for r in members),
                values=sum(r.has_value(a) for r in members),
                category_rows=len(members),
                in_text=sum(value_in_text(r, a) for r in members),
            )
            for a in asked.get(name, attribute_names(members))
        ]
        categories.append(CategoryProfile(name, len(members), attributes))
    pairs = sum(len(r.output) for r in rows)
    valued = sum(1 for r in rows for v in r.output.values() if v is not None)
    return Profile(len(rows), categories, pairs, valued)
