"""What a stage asks of a task head: encode rows, batch them, a loss to train on, predictions to score.

Two implementations: `extractive.ExtractiveTask` (an encoder tags spans of the page) and `generative.GenerativeTask`
(a causal LM answers in JSON). The stage runner, its validation and the saved product hold a task only as a `Task`,
so none of them asks which task it holds: what differs between the two is a member here, and a new head is one new
module that implements it. Implementations conform structurally (mypy checks them where a `Task` is assigned) and
import only `Predicted` from this module.

A task is used by one thread: encoding may record what it saw (the generative task's longest answer) and prediction
keeps a few raw answers (`examples`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

if TYPE_CHECKING:
    import torch

    from sweetspot_trainer.data import Row

EncodedT = TypeVar("EncodedT")
"""A row as the task encoded it (token ids and what the loss and decoding need of it)."""

Prediction = dict[str, str | None]
"""One row's extracted values by attribute (None: the page does not state it)."""


class Predicted(NamedTuple):
    """What `Task.predict` returns."""

    predictions: list[Prediction]
    """Per row, in the order given (only the rows `decode` names when given; the others' are empty)."""
    loss: float
    """The mean validation loss over every row's loss tokens."""
    json_rate: float | None
    """The share of decoded answers that parsed (None when answers are not parsed)."""
    seconds: float
    """Wall seconds spent scoring the rows predicted: the forward passes of a tagger (which also give its loss: there
    is no separate loss pass), the decoding of a generative model (its loss pass, over every row, excluded)."""


class Task(Protocol[EncodedT]):
    @property
    def bucket_by_length(self) -> bool:
        """Whether training batches rows of similar `length` together (where padding is dear)."""
        ...

    @property
    def costly_decoding(self) -> bool:
        """Whether predicting decodes token by token: evaluations before the end of training then decode only a
        fixed subsample of the validation rows (`predict`'s `decode`)."""
        ...

    @property
    def labels(self) -> Sequence[str] | None:
        """The head's label names, saved with the adapter; None when the model answers in text."""
        ...

    @property
    def max_new_tokens(self) -> int | None:
        """The bound on decoding, saved with the adapter; None when nothing is generated."""
        ...

    @property
    def examples(self) -> Sequence[str]:
        """A few raw answers of the last prediction, for the progress log (none when there is no raw answer)."""
        ...

    def encode(self, row: Row) -> EncodedT: ...

    def fit_decoding(self, training: Sequence[EncodedT]) -> None:
        """Fit what decoding depends on to the training rows (never the validation rows)."""
        ...

    def length(self, encoded: EncodedT) -> int:
        """The row's length in tokens (what `bucket_by_length` sorts by)."""
        ...

    def loss_tokens(self, encoded: EncodedT) -> int:
        """The tokens `loss` averages over in a batch holding this row (data-parallel ranks weigh their shards by
        them)."""
        ...

    def collate(self, batch: Sequence[EncodedT]) -> dict[str, torch.Tensor]: ...

    def loss(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The mean loss of a collated batch, to train on."""
        ...

    def predict(
        self,
        model: Any,
        rows: Sequence[Row],
        encoded: Sequence[EncodedT],
        device: torch.device,
        batch_size: int,
        decode: Sequence[int] | None = None,
    ) -> Predicted:
        """Predictions for the rows (`decode`: the indices of the rows to predict, all when None), the validation
        loss over every row, and what scoring them cost."""
        ...
