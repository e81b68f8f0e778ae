"""The generative task's decoder (`decoding.JsonDecoder`) against transformers' own greedy `generate`.

The model is the built-in random `tiny-causal` (a 2-layer Llama built from the package's own data): its tokens are
gibberish, which suits a check of the decoding machinery (prefix cache, padding, positions, rows leaving the batch)
that must give each row exactly the tokens `generate` gives it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sweetspot_trainer.data import Row
from sweetspot_trainer.decoding import JsonDecoder, JsonScan, TokenText, common_prefix
from sweetspot_trainer.generative import GenerativeTask
from sweetspot_trainer.model import tiny_causal_dir

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    folder = tiny_causal_dir()
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(
        folder
    )


def _prompts(tokenizer: Any) -> list[list[int]]:
    """Prompts that share a head (as the chat template and instructions make them), of varied lengths, some
    sharing more than the head (the same attributes asked)."""
    head = tokenizer("Extract the attributes of this product page as JSON. ", add_special_tokens=False)["input_ids"]
    tails = [
        "Brand: Acme",
        "Brand: Acme. Color: red",
        "Price 12.99 USD, rating 4.5 of 5 stars",
        "Zed",
        "Brand: Acme. Color: blue and a long description of the lamp",
        "Colour: green",
        "Brand: Zenith",
    ]
    return [head + tokenizer(t, add_special_tokens=False)["input_ids"] for t in tails]


def _generate(model: Any, prompts: list[list[int]], budget: int, pad: int, eos: int) -> list[list[int]]:
    """Transformers' greedy decoding, one row at a time (no padding at all): the reference."""
    out = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        generated = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=budget,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=eos,
        )[0, len(prompt) :].tolist()
        out.append(generated[: generated.index(eos)] if eos in generated else generated)
    return out


class Counting:
    """Wraps a model, recording the shape of each forward's input."""

    def __init__(self, model: Any) -> None:
        self.model, self.shapes = model, []

    def __call__(self, **kwargs: Any) -> Any:
        self.shapes.append(tuple(kwargs["input_ids"].shape))
        return self.model(**kwargs)


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_every_row_gets_the_tokens_greedy_generate_gives_it(tiny: tuple[Any, Any], batch_size: int) -> None:
    model, tokenizer = tiny
    prompts = _prompts(tokenizer)
    budgets = [12, 3, 12, 7, 12, 1, 5]
    # A scan that never settles (every token reads as an opening brace): rows run to their budget or EOS.
    never = TokenText(lambda ids: "{")
    decoder = JsonDecoder(model, CPU, never, tokenizer.eos_token_id, tokenizer.pad_token_id)
    ours = decoder.decode(prompts, budgets, batch_size)
    reference = _generate(model, prompts, 12, tokenizer.pad_token_id, tokenizer.eos_token_id)
    for got, want, budget in zip(ours, reference, budgets, strict=True):
        assert got == want[:budget]
        assert len(got) == min(budget, len(want))


def test_the_shared_prefix_runs_once_and_each_batch_runs_only_what_its_rows_add(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    prompts = _prompts(tokenizer)
    counting = Counting(model)
    decoder = JsonDecoder(counting, CPU, TokenText(lambda ids: "}"), tokenizer.eos_token_id, tokenizer.pad_token_id)
    shared = common_prefix(prompts)
    assert shared > 5
    decoder.decode(prompts[:2] + prompts[:2], [4] * 4, 2)  # two batches of the same two prompts
    # The common prefix once; per batch, what its two rows share beyond it (once), then the rows' own tokens; the
    # answer closes at once (every token reads "}"): no step after the first token.
    both = common_prefix(prompts[:2])
    assert counting.shapes[0] == (1, both)
    own = max(len(p) for p in prompts[:2]) - both
    assert counting.shapes[1:] == [(2, own), (2, own)]


def test_a_row_that_is_done_leaves_the_batch(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    prompts = _prompts(tokenizer)[:3]
    counting = Counting(model)
    never = TokenText(lambda ids: "{")
    decoder = JsonDecoder(counting, CPU, never, tokenizer.eos_token_id, tokenizer.pad_token_id)
    answers = decoder.decode(prompts, [2, 5, 8], 3)
    reference = _generate(model, prompts, 8, tokenizer.pad_token_id, tokenizer.eos_token_id)
    assert [len(a) for a in answers] == [min(b, len(r)) for b, r in zip([2, 5, 8], reference, strict=True)]
    steps = [shape[0] for shape in counting.shapes[2:]]  # after the prefix and the batch's prompts
    # Each step runs only the rows still decoding: 3 rows for the 2nd token, 2 up to the 5th, then 1.
    assert steps == [3] + [2] * 3 + [1] * 3


@pytest.mark.parametrize(
    ("pieces", "settled_after"),
    [
        (['{"brand": "Acme"', "}"], 2),
        (['  \n{"a": "x}y"', ', "b": null', "}"], 3),  # a brace inside a string does not close the object
        (['{"a": "say \\"}\\" ok"', "}"], 2),  # nor does one after an escaped quote
        (['{"a": {"b": 1}', "}"], 2),  # nested objects close with the outer one
        (["Sure", "! {"], 1),  # no answer starting like this parses: settled at once
        (["```json", "{}"], 1),
        (["{", '"a": [1, 2]', ", ", "}"], 4),
    ],
)
def test_the_scan_settles_when_the_object_closes_or_cannot_start(pieces: list[str], settled_after: int) -> None:
    scan = JsonScan()
    settled = [scan.feed(piece) for piece in pieces]
    assert settled.index(True) + 1 == settled_after


def test_common_prefix_leaves_every_row_a_token_to_run() -> None:
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix([[1, 2], [3, 4]]) == 0
    assert common_prefix([[7, 8, 9]]) == 2
    assert common_prefix([]) == 0
    assert common_prefix([[1, 2, 3, 4], [1, 2, 9, 4]], known=2) == 2


def test_each_row_is_bounded_by_what_its_attributes_can_need(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    task = GenerativeTask(tokenizer, {"": ["brand", "color", "price"]}, 256)
    training = [
        Row("1", "Acme lamp, red", {"brand": "Acme", "color": "red", "price": None}),
        Row("2", "Zenith television in midnight blue metallic", {"brand": "Zenith", "color": "midnight blue metallic"}),
        Row("3", "Lamp for 12.99 dollars", {"price": "12.99 dollars", "brand": None}),
    ]
    task.fit_decoding([task.encode(r) for r in training])
    assert task.longest_value["color"] > task.longest_value["brand"]
    short = task.encode(Row("4", "Acme", {"brand": "Acme"}))
    long = task.encode(Row("5", "Acme red", {"brand": "Acme", "color": "red", "price": None}))
    assert task.token_budget(short) < task.token_budget(long) <= task.max_new_tokens
    # The budget covers the longest answer training saw for the same attributes.
    assert task.token_budget(task.encode(training[0])) >= len(task.encode(training[1]).answer_ids) - 1


def test_nothing_to_decode_runs_nothing(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    counting = Counting(model)
    decoder = JsonDecoder(counting, CPU, TokenText(tokenizer.decode), tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert decoder.decode([], [], 8) == []
    assert counting.shapes == []
