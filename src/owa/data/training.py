"""Training-ready loading: batch collation and a resumable, shardable sampler for FSLDataset samples.

torch is imported only inside :class:`FSLCollator` (where tensors are made); the sampler is pure numpy, so it
works with or without torch and in any process.

Example::

    from torch.utils.data import DataLoader

    sampler = DistributedFSLSampler(len(fsl), seed=0)  # rank and world size from torch.distributed
    loader = DataLoader(fsl, batch_size=8, sampler=sampler, num_workers=2,
                        collate_fn=FSLCollator(image_token_ids=event_tokenizer.image_token_ids))
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            ...  # batch["input_ids"], batch["attention_mask"], batch["labels"], batch["images"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from owa.data.distributed import rank_and_world_size

__all__ = ["IGNORE_INDEX", "DistributedFSLSampler", "FSLCollator", "collate_fsl"]

IGNORE_INDEX = -100
"""The label value PyTorch's cross-entropy ignores."""


def collate_fsl(
    samples: Sequence[dict[str, Any]],
    *,
    image_token_id: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    image_token_ids: Sequence[int] = (),
) -> dict[str, Any]:
    """Stack FSLDataset samples into a batch of tensors.

    Returns:
        ``input_ids``, ``attention_mask`` and ``labels`` as ``int64`` tensors ``[batch, max_sequence_length]``;
        ``labels`` equals ``input_ids`` except ``ignore_index`` on padding (``attention_mask == 0``) and on image
        tokens (``image_token_id`` and every id of ``image_token_ids``: ``EpisodeTokenizer.image_token_ids``, the
        prefix, slot and suffix tokens of the image layout). ``total_token_count`` as an ``int64`` tensor
        ``[batch]``; ``position_ids`` (stacked) and ``segment_offsets`` (a list of tensors) when the samples have
        them; ``images`` as a list (per sample) of lists of images, untouched.

    Raises:
        ValueError: an empty batch, or samples of different lengths.
    """
    import torch

    if not samples:
        raise ValueError("Cannot collate an empty batch")
    lengths = {len(sample["token_ids"]) for sample in samples}
    if len(lengths) != 1:
        raise ValueError(f"Samples have different lengths {sorted(lengths)}; FSLDataset samples all have one length")
    input_ids = torch.from_numpy(np.stack([np.asarray(s["token_ids"], dtype=np.int64) for s in samples]))
    attention_mask = torch.from_numpy(np.stack([np.asarray(s["attention_mask"], dtype=np.int64) for s in samples]))
    labels = input_ids.clone()
    labels[attention_mask == 0] = ignore_index
    masked = {int(i) for i in image_token_ids} | ({image_token_id} if image_token_id is not None else set())
    if masked:
        labels[torch.isin(input_ids, torch.tensor(sorted(masked), dtype=torch.int64))] = ignore_index
    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "total_token_count": torch.tensor([int(s["total_token_count"]) for s in samples], dtype=torch.int64),
    }
    if all("position_ids" in s for s in samples):
        batch["position_ids"] = torch.from_numpy(
            np.stack([np.asarray(s["position_ids"], dtype=np.int64) for s in samples])
        )
    if all("segment_offsets" in s for s in samples):
        batch["segment_offsets"] = [torch.as_tensor(s["segment_offsets"], dtype=torch.int64) for s in samples]
    batch["images"] = [list(s["images"]) for s in samples]
    return batch


@dataclasses.dataclass(frozen=True)
class FSLCollator:
    """:func:`collate_fsl` with fixed settings, as a picklable ``collate_fn`` for DataLoader workers.

    Attributes:
        image_token_id: the image token's id (``EpisodeTokenizer.image_token_id``); its positions get
            ``ignore_index`` labels. ``None`` masks only padding (and ``image_token_ids``).
        ignore_index: the label for positions not to train on.
        image_token_ids: more ids whose positions get ``ignore_index`` labels: ``EpisodeTokenizer.image_token_ids``,
            every token of a frame (the layout's prefix, slot and suffix tokens).
    """

    image_token_id: int | None = None
    ignore_index: int = IGNORE_INDEX
    image_token_ids: tuple[int, ...] = ()

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_fsl(
            samples,
            image_token_id=self.image_token_id,
            ignore_index=self.ignore_index,
            image_token_ids=self.image_token_ids,
        )


class DistributedFSLSampler:
    """Indices of one rank's share of a dataset, shuffled deterministically per epoch, resumable mid-epoch.

    Every epoch is a permutation of ``range(dataset_size)`` drawn from ``(seed, epoch)`` (identical on all ranks
    and machines), padded by wrapping around (or truncated with ``drop_last``) to a multiple of
    ``num_replicas``; rank ``r`` takes positions ``r, r + num_replicas, ...``. Without ``shuffle`` the order is the
    dataset's. :meth:`state_dict` records the epoch and how many indices this rank has handed out;
    :meth:`load_state_dict` makes the next iteration continue from there.

    Note that a DataLoader fetches ahead of the training loop (``prefetch_factor * num_workers`` batches), so the
    count handed out can exceed what was trained on. To resume exactly, save
    ``sampler.state_dict(consumed=batches_done * batch_size)``, counting batches since this iteration began
    (a resumed iteration's starting position is added for you).

    Args:
        dataset_size: number of samples (``len(fsl_dataset)``); a sized dataset is accepted too.
        num_replicas: world size; default from ``torch.distributed`` when initialized, else ``$WORLD_SIZE``, else 1.
        rank: this process's rank; default from ``torch.distributed`` when initialized, else ``$RANK``, else 0.
        shuffle: shuffle per epoch (default True).
        seed: the shuffling seed, the same on every rank.
        drop_last: drop the tail that does not divide evenly instead of repeating indices to fill it.

    Raises:
        ValueError: a negative size, a non-positive ``num_replicas`` or a rank outside ``[0, num_replicas)``.
    """

    def __init__(
        self,
        dataset_size: int | Sequence[Any],
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        size = dataset_size if isinstance(dataset_size, int | np.integer) else len(dataset_size)
        if size < 0:
            raise ValueError(f"Invalid dataset_size ({size}). It must be non-negative.")
        default_rank, default_replicas = rank_and_world_size()
        num_replicas = default_replicas if num_replicas is None else num_replicas
        rank = default_rank if rank is None else rank
        if num_replicas <= 0:
            raise ValueError(f"Invalid num_replicas ({num_replicas}). It must be a positive integer.")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank ({rank}). It must be in [0, {num_replicas}).")
        self.dataset_size = int(size)
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self._position = 0  # indices of the current epoch already handed out by this rank
        self._iter_start = 0  # the position the current (or last) iteration started from

    @property
    def num_samples(self) -> int:
        """Indices this rank yields in a whole epoch."""
        if self.drop_last:
            return self.dataset_size // self.num_replicas
        return -(-self.dataset_size // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its shuffle). Moving to another epoch restarts at its beginning; setting the epoch
        a loaded state already holds keeps the resume position."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._position = self._iter_start = 0

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's full index order for ``epoch`` (default: the current one), as ``int64``."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)
        else:
            order = np.arange(self.dataset_size)
        total = self.num_samples * self.num_replicas
        if total > len(order) and len(order):
            order = np.resize(order, total)  # wrap around to pad
        order = order[:total]
        return order[self.rank :: self.num_replicas].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        order = self.indices()
        start = self._iter_start = self._position
        for index in order[start:].tolist():
            self._position += 1
            yield index
        # A finished epoch: the next iteration (without set_epoch) replays this epoch from the start.
        self._position = 0

    def __len__(self) -> int:
        return self.num_samples - self._position

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """The resumable state: epoch, position in this epoch, and the settings that must match on load.

        Args:
            consumed: indices actually trained on *since this iteration began*, if known (e.g.
                ``(step + 1) * batch_size`` in a loop over the DataLoader; see the class note on prefetching).
                A resumed iteration starts at the loaded position, which is added. Default: how many this
                sampler has handed out.
        """
        position = self._position if consumed is None else self._iter_start + consumed
        if consumed is not None and not 0 <= position <= self.num_samples:
            raise ValueError(
                f"Invalid consumed ({consumed}). This iteration started at {self._iter_start}, so it must be in "
                f"[0, {self.num_samples - self._iter_start}]."
            )
        return {
            "epoch": self.epoch,
            "position": position,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "dataset_size": self.dataset_size,
            "num_replicas": self.num_replicas,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next iteration yields the rest of that epoch.

        Raises:
            ValueError: the state was saved with a different seed, shuffle, dataset size, world size or drop_last
                (its order would not be this sampler's order).
        """
        for key in ("seed", "shuffle", "dataset_size", "num_replicas", "drop_last"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"Cannot resume: the saved {key} ({state[key]!r}) differs from this sampler's "
                    f"({getattr(self, key)!r})"
                )
        position = int(state["position"])
        if not 0 <= position <= self.num_samples:
            raise ValueError(f"Invalid saved position ({position}). It must be in [0, {self.num_samples}].")
        self.epoch = int(state["epoch"])
        self._position = self._iter_start = position
