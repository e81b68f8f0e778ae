"""The extractive head's labels and decoding, with the real MiniLM tokenizer (no training)."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from sweetspot_trainer.data import Row, builtin_rows
from sweetspot_trainer.demo import ATTRIBUTES
from sweetspot_trainer.extractive import IGNORE, ExtractiveTask, label_names
from sweetspot_trainer.model import minilm_dir


@pytest.fixture(scope="module")
def task() -> ExtractiveTask:
    return ExtractiveTask(AutoTokenizer.from_pretrained(minilm_dir()), ATTRIBUTES, {"": ATTRIBUTES}, max_length=256)


def _one_hot(labels: list[int], width: int) -> np.ndarray:
    logits = np.zeros((len(labels), width), dtype=np.float32)
    for t, label in enumerate(labels):
        logits[t, 0 if label == IGNORE else label] = 10.0
    return logits


def test_gold_labels_decode_back_to_the_exact_values(task: ExtractiveTask) -> None:
    # The tokenizer lowercases; decoding through character offsets must still return the text as written.
    for row in builtin_rows("product-pages", 200, 0):
        encoded = task.encode(row)
        decoded = task.decode(_one_hot(encoded.labels, len(task.labels)), encoded.offsets, row.input)
        assert decoded == row.output, row.input
    assert task.unfound == 0


def test_every_occurrence_is_tagged_and_special_tokens_ignored(task: ExtractiveTask) -> None:
    row = Row("r", "Acme Kettle by Acme, $5", {"brand": "Acme", "price": "$5"})
    encoded = task.encode(row)
    names = label_names(ATTRIBUTES)
    tags = [names[label] if label != IGNORE else None for label in encoded.labels]
    assert tags[0] is None and tags[-1] is None  # [CLS], [SEP]
    assert tags.count("B-brand") == 2
    assert "B-price" in tags


def test_a_value_missing_from_the_page_is_counted(task: ExtractiveTask) -> None:
    task.unfound = 0
    task.encode(Row("r", "Acme Kettle", {"brand": "Zenora"}))
    assert task.unfound == 1


def test_decoding_picks_the_most_confident_span(task: ExtractiveTask) -> None:
    row = Row("r", "Acme or Zenora", {"brand": None})
    encoded = task.encode(row)
    logits = np.zeros((len(encoded.labels), len(task.labels)), dtype=np.float32)
    logits[:, 0] = 1.0
    b_brand = 1 + 2 * ATTRIBUTES.index("brand")
    acme = [t for t, (s, e) in enumerate(encoded.offsets) if e > s and e <= 4]
    zenora = [t for t, (s, e) in enumerate(encoded.offsets) if s >= row.input.index("Zenora")]
    zenora = [t for t in zenora if encoded.offsets[t][1] > encoded.offsets[t][0]]
    logits[acme[0], b_brand] = 2.0  # "Acme", less sure
    logits[zenora[0], b_brand] = 9.0
    for t in zenora[1:]:
        logits[t, b_brand + 1] = 9.0
    assert task.decode(logits, encoded.offsets, row.input)["brand"] == "Zenora"


def test_a_span_cut_inside_a_word_comes_back_whole(task: ExtractiveTask) -> None:
    """The model tagged only the subword `##vo` of "Kelvo" and stopped at "$24." of "$24.50": the values come back
    as written on the page; a span that ends inside a word stays as tagged (gold values do that)."""
    text = "Aurora kettle by Kelvo, only $24.50 for Mens sizes"
    encoded = task.encode(Row("r", text, {}))
    names = label_names(ATTRIBUTES)
    labels = [0 if a < b else IGNORE for a, b in encoded.offsets]
    for fragment, attribute in (("vo", "brand"), ("$24.", "price"), ("Men", "name")):
        start = text.index(fragment)
        tokens = [t for t, (a, b) in enumerate(encoded.offsets) if a < b and start <= a < start + len(fragment)]
        for t in tokens:
            labels[t] = names.index(f"{'B' if t == tokens[0] else 'I'}-{attribute}")
    decoded = task.decode(_one_hot(labels, len(task.labels)), encoded.offsets, text)
    assert (decoded["brand"], decoded["price"], decoded["name"]) == ("Kelvo", "$24.50", "Men")
