"""What a stage asks of a task head: encode rows, batch them, a loss to train on, predictions to score.

Two implementations: `extractive.ExtractiveTask` (an encoder tags spans of the page) and `generative.GenerativeTask`
(a causal LM answers in JSON). The stage runner, its validation and the saved product hold a task only as a `Task`,
so none of them asks which task it holds: what differs between the two is a member here, and a new head is one new
module that implements it. Implementations conform structurally (mypy checks them where a `Task` is assigned) and
need not import this module.

A task is used by one thread: encoding may record what it saw (the generative task's longest answer) and prediction
keeps a few raw answers (`examples`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import torch

    from sweetspot_trainer.data import Row

EncodedT = TypeVar("EncodedT")
"""A row as the task encoded it (token ids and what the loss and decoding need of it)."""

Prediction = dict[str, str | None]
"""One row's extracted values by attribute (None: the page does not state it)."""


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
    ) -> tuple[list[Prediction], float, float | None]:
        """Predictions for the rows (only those at the indices `decode` names when given; the others' are empty),
        the mean validation loss over every row's loss tokens, and the share of decoded answers that parsed (None
        when answers are not parsed)."""
        ...
