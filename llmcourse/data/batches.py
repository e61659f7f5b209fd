"""Train/validation splits and next-token batches: the data convention of the training loop.

A language model learns to predict token t+1 from tokens 0..t. From one long 1-D tensor of token
ids we cut windows of `block_size + 1` tokens; the input is the first `block_size`, the target the
same window shifted left by one, so `y[:, :-1] == x[:, 1:]`:

    ids = [5, 6, 7, 8, 9], block_size = 3, window at 1:  x = [6, 7, 8], y = [7, 8, 9]

`next_token_batches` samples windows at random positions and returns a callable
`sample(generator) -> (x, y)`, the form `llmcourse.train.fit` takes as `train_data`: the same
`torch.Generator` state gives the same batch, which makes runs reproducible and resumable.
`sequential_batches` walks the whole split once in order (non-overlapping windows), for evaluation
that does not depend on luck. Left out: document boundaries (windows may span two documents),
padding and masks, distributed sharding.

torch is imported inside the functions, so `import llmcourse.data` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

S = TypeVar("S", bound=Sequence[Any])


def train_val_split(seq: S, val_fraction: float = 0.1) -> tuple[S, S]:
    """Split a sequence (str, list, 1-D tensor, array) into contiguous (train, val) parts: the last
    `val_fraction` is validation. Contiguous, not shuffled: neighbouring text overlaps in content,
    so a random split would leak the validation set into training. Deterministic.

    >>> train_val_split("abcdefghij", 0.2)
    ('abcdefgh', 'ij')
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    n_val = round(len(seq) * val_fraction)
    if val_fraction > 0 and len(seq) >= 2:
        n_val = max(n_val, 1)
    cut = len(seq) - n_val
    return seq[:cut], seq[cut:]  # type: ignore[return-value]


def _as_ids(ids: Any) -> torch.Tensor:
    import torch

    ids = torch.as_tensor(ids)
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    return ids.long()


def next_token_batches(
    ids: Any, block_size: int, batch_size: int, *, device: str | torch.device | None = None
) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A sampler of random next-token batches from a 1-D sequence of token ids.

    `sample(generator)` draws `batch_size` start positions uniformly from [0, len(ids) - block_size)
    with the given (CPU) generator and returns `(x, y)`, both (batch_size, block_size) int64 on
    `device`, with y the window shifted by one. Each call draws fresh positions.
    """
    import torch

    data = _as_ids(ids)
    n_starts = len(data) - block_size
    if block_size < 1 or batch_size < 1:
        raise ValueError("block_size and batch_size must be >= 1")
    if n_starts < 1:
        raise ValueError(f"need more than block_size={block_size} tokens, got {len(data)}")
    offsets = torch.arange(block_size + 1)

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, n_starts, (batch_size,), generator=generator)
        windows = data[starts[:, None] + offsets]  # (batch, block_size + 1)
        x, y = windows[:, :-1], windows[:, 1:]  # (batch, block_size) each
        if device is not None:
            x, y = x.to(device), y.to(device)
        return x, y

    return sample


class sequential_batches:  # noqa: N801 - used like a function, but must be re-iterable
    """Every non-overlapping window of a split, in order, as `(x, y)` batches.

    Window k covers tokens [k * block_size, (k + 1) * block_size + 1), so each token except the
    first is predicted exactly once; the tail shorter than a full window is dropped, and the last
    batch may hold fewer than `batch_size` windows. Iterating again yields the same batches.

        >>> b = sequential_batches(list(range(10)), block_size=3, batch_size=2)
        >>> len(b), [x.tolist() for x, _ in b]
        (2, [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8]]])
    """

    def __init__(
        self,
        ids: Any,
        block_size: int,
        batch_size: int,
        *,
        device: str | torch.device | None = None,
    ):
        self.data = _as_ids(ids)
        if block_size < 1 or batch_size < 1:
            raise ValueError("block_size and batch_size must be >= 1")
        self.block_size, self.batch_size, self.device = block_size, batch_size, device
        self.n_windows = (len(self.data) - 1) // block_size
        if self.n_windows < 1:
            raise ValueError(f"need more than block_size={block_size} tokens, got {len(self.data)}")

    def __len__(self) -> int:
        return -(-self.n_windows // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        T = self.block_size
        usable = self.data[: self.n_windows * T + 1]
        x_all = usable[:-1].view(self.n_windows, T)  # (n_windows, T)
        y_all = usable[1:].unfold(0, T, T)  # (n_windows, T): the same windows shifted by one
        for i in range(0, self.n_windows, self.batch_size):
            x, y = x_all[i : i + self.batch_size], y_all[i : i + self.batch_size]
            if self.device is not None:
                x, y = x.to(self.device), y.to(self.device)
            yield x, y
