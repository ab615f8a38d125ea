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
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from owa.data.counters import Counters
from owa.data.distributed import rank_and_world_size

if TYPE_CHECKING:
    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.image_layout import ImageLayout

__all__ = ["IGNORE_INDEX", "CollatorStats", "DistributedFSLSampler", "FSLCollator", "collate_fsl"]

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


class CollatorStats(Counters):
    """What :class:`FSLCollator` made of the batches' images, summed over the process and its DataLoader workers
    (shared memory: :mod:`owa.data.counters`).

    Attributes (ints): ``batches``, ``images`` (frames turned into pixel values), ``blank_images`` (skipped frames,
    ``None`` in a sample's images, filled with a black frame whose tokens were masked out of the labels),
    ``batches_without_images`` (collated without ``pixel_values``).
    """

    SHARED = True
    TRACKS_ERRORS = False

    batches: int
    images: int
    blank_images: int
    batches_without_images: int


PixelsMode = Literal["fast", "processor"]
_PIECE = re.compile(r"<[^<>\s]+>")
_MODEL_KEYS = (
    "input_ids",
    "attention_mask",
    "labels",
    "position_ids",
    "pixel_values",
    "pixel_attention_mask",
    "image_grid_thw",
    "mm_token_type_ids",
)


@dataclasses.dataclass(frozen=True)
class FSLCollator:
    """:func:`collate_fsl` with fixed settings, as a picklable ``collate_fn`` for DataLoader workers; with a
    ``processor``, it also turns the samples' frames into the tensors the model's forward takes.

    Attributes:
        image_token_id: the image token's id (``EpisodeTokenizer.image_token_id``); its positions get
            ``ignore_index`` labels. ``None`` masks only padding (and ``image_token_ids``; with a ``processor``: the
            processor's image token).
        ignore_index: the label for positions not to train on.
        image_token_ids: more ids whose positions get ``ignore_index`` labels: ``EpisodeTokenizer.image_token_ids``,
            every token of a frame (the layout's prefix, slot and suffix tokens).
        processor: a transformers processor of SmolVLM/Idefics3, InternVL or Qwen2-VL (see
            :func:`owa.data.pixels.pixel_spec`). Only its image processor's settings and its tokens are used: the
            text is never re-tokenized (the samples' ids already hold the image tokens). The batch then has
            ``pixel_values`` (and ``pixel_attention_mask`` for SmolVLM; ``image_grid_thw`` and
            ``mm_token_type_ids`` for Qwen2-VL) instead
            of ``images``; without images in the batch, none of these keys.
        image_processor: the image processor alone, instead of ``processor`` (then skipped frames mask only their
            image tokens, not the markers around them).
        image_size: Qwen2-VL: ``(height, width)`` of every frame (the ``ImageLayout``'s; default each frame's own
            size, rounded as the processor does, and 252x448 for a skipped frame in a batch without others).
        image_layout: the tokens of one frame in the samples (``EpisodeTokenizer.image_layout``): its slot token's
            id is then the image token id (unless ``image_token_id`` is given), and its prefix and suffix are the
            markers masked around a skipped frame. Default: what the ``processor`` inserts for one image
            (``ImageLayout.from_processor``). :meth:`for_tokenizer` sets it.
        pixels: ``"fast"`` (default): resize (unless the frames already have the model's size, e.g. from
            ``FSLDataset(image_size=...)``) and normalize in torch; ``"processor"``: call the image processor
            itself on PIL images (exact, slow; for comparison).
        normalize: with ``"fast"``: normalize in the collator (default, float32 on CPU). False leaves
            ``pixel_values`` uint8 so that only a quarter of the bytes cross to the GPU; then call
            :meth:`to_device` (or :func:`owa.data.pixels.normalize`) on the batch there.
        stats: counts of images, blank (skipped) frames and batches without images, over all workers.

    Raises:
        UnsupportedProcessorError: a processor whose resize and normalization are unknown, or image splitting on.
    """

    image_token_id: int | None = None
    ignore_index: int = IGNORE_INDEX
    image_token_ids: tuple[int, ...] = ()
    processor: Any = None
    image_processor: Any = None
    image_size: tuple[int, int] | None = None
    image_layout: ImageLayout | None = None
    pixels: PixelsMode = "fast"
    normalize: bool = True
    stats: CollatorStats = dataclasses.field(default_factory=CollatorStats, compare=False)

    def __post_init__(self) -> None:
        if self.pixels not in ("fast", "processor"):
            raise ValueError(f"Invalid pixels ({self.pixels!r}). Supported values are 'fast', 'processor'.")
        source = self.processor if self.processor is not None else self.image_processor
        spec = None
        markers: tuple[frozenset[int], int, int, int | None] = (frozenset(), 0, 0, None)
        token_id = self.image_token_id
        if source is not None:
            from owa.data.pixels import pixel_spec

            spec = pixel_spec(source, image_size=self.image_size)
            token_id, markers = _image_tokens(self.processor, token_id, self.image_size, self.image_layout)
        object.__setattr__(self, "image_token_id", token_id)
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "_markers", markers)

    @classmethod
    def for_tokenizer(cls, episode_tokenizer: EpisodeTokenizer, processor: Any, **options: Any) -> FSLCollator:
        """The collator for samples tokenized by ``episode_tokenizer`` (after its ``prepare_model``), for the model
        of ``processor``: its layout's image token, every id of a frame masked out of the labels
        (``image_token_ids``), and its frame size (``image_layout.image_size``; Qwen2-VL's token count follows from
        it). ``options`` are the other fields (``pixels``, ``normalize``, ``ignore_index``).

        Example::

            episode_tokenizer = EpisodeTokenizer.from_processor(processor)
            episode_tokenizer.prepare_model(tokenizer=processor.tokenizer, model=model)
            collator = FSLCollator.for_tokenizer(episode_tokenizer, processor)

        Raises:
            TokenizerNotPreparedError: ``prepare_model`` has not been called.
            UnsupportedProcessorError: as the constructor.
        """
        layout = episode_tokenizer.image_layout
        return cls(
            image_token_id=episode_tokenizer.image_token_id,
            image_token_ids=episode_tokenizer.image_token_ids,
            processor=processor,
            image_size=layout.image_size,
            image_layout=layout,
            **options,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.pixels == "fast":  # workers need only the derived settings, not the tokenizer
            state["processor"] = state["image_processor"] = None
        return state

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = collate_fsl(
            samples,
            image_token_id=self.image_token_id,
            ignore_index=self.ignore_index,
            image_token_ids=self.image_token_ids,
        )
        if self._spec is None:
            return batch
        from owa.data.pixels import collate_pixels

        hf = None
        if self.pixels == "processor":
            hf = getattr(self.processor, "image_processor", None) or self.image_processor
        pixels = collate_pixels(batch.pop("images"), self._spec, normalize=self.normalize, image_processor=hf)
        batch.update(pixels.tensors)
        if "image_grid_thw" in batch:  # Qwen2-VL's M-RoPE: which positions are image tokens (1) or text (0)
            batch["mm_token_type_ids"] = (batch["input_ids"] == self.image_token_id).to(batch["input_ids"].dtype)
        *markers, count = self._markers
        _mask_frames(
            batch, pixels.token_counts, pixels.blank, self.image_token_id, tuple(markers), self.ignore_index, count
        )
        images = sum(len(counts) for counts in pixels.token_counts)
        self.stats.add(
            batches=1, images=images, blank_images=len(pixels.blank), batches_without_images=int(images == 0)
        )
        return batch

    def to_device(self, batch: dict[str, Any], device: Any, *, dtype: Any = None) -> dict[str, Any]:
        """The batch's tensors moved to ``device``; uint8 ``pixel_values`` (``normalize=False``) are normalized
        there (SmolVLM's padding slots stay zero, as the model expects)."""
        from owa.data.pixels import batch_to_device

        return batch_to_device(batch, self._spec, device, dtype=dtype)

    @staticmethod
    def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
        """The keys of ``batch`` a model's forward takes (``input_ids``, ``attention_mask``, ``labels``,
        ``position_ids`` and the pixel tensors), without ``total_token_count`` and ``segment_offsets``."""
        return {key: batch[key] for key in _MODEL_KEYS if key in batch}


def _mask_frames(
    batch: dict[str, Any],
    token_counts: list[list[int]],
    blank: list[tuple[int, int]],
    image_token_id: int | None,
    markers: tuple[frozenset[int], int, int],
    ignore_index: int,
    count: int | None = None,
) -> None:
    """Check each sample's image tokens against its frames, and mask blank (skipped) frames out of the labels:
    their image tokens and the layout's marker tokens around them (``markers``: their ids, and how many come before
    and after a frame's image tokens).

    Raises:
        ValueError: a sample whose image-token count differs from what its frames give the model (the model would
            fail with a less specific error).
    """
    if image_token_id is None:
        return
    marker_ids, before, after = markers
    input_ids = batch["input_ids"].numpy()
    blanks: dict[int, set[int]] = {}
    for sample, image in blank:
        blanks.setdefault(sample, set()).add(image)
    for sample, sample_counts in enumerate(token_counts):
        positions = np.flatnonzero(input_ids[sample] == image_token_id)
        # A fixed count the collator does not know (an image processor without its processor): the sample's share.
        fixed = (
            count
            if count is not None
            else len(positions) // len(sample_counts)
            if sample_counts and len(positions) % len(sample_counts) == 0
            else 0
        )
        counts = [fixed if count is None else count for count in sample_counts]
        if len(positions) != sum(counts):
            raise ValueError(
                f"Sample {sample} of the batch has {len(positions)} image tokens but {len(counts)} images that the "
                f"model gives {sum(counts)} tokens ({counts}). Tokenize with the model's ImageLayout "
                "(EpisodeTokenizer image_token and image_token_length, or image_layout) and pass the same image_size."
            )
        if sample not in blanks:
            continue
        row, labels = input_ids[sample], batch["labels"][sample]
        starts = np.concatenate(([0], np.cumsum(counts)))
        for image in blanks[sample]:
            first, last = int(positions[starts[image]]), int(positions[starts[image + 1] - 1])
            for _ in range(before):
                if first > 0 and int(row[first - 1]) in marker_ids:
                    first -= 1
            for _ in range(after):
                if last + 1 < len(row) and int(row[last + 1]) in marker_ids:
                    last += 1
            labels[first : last + 1] = ignore_index


def _image_tokens(
    processor: Any, token_id: int | None, image_size: Any, layout: ImageLayout | None = None
) -> tuple[int | None, tuple[frozenset[int], int, int, int | None]]:
    """The image token id (the layout's unless given), and the layout's marker ids, how many markers come before
    and after a frame's image tokens, and the tokens per frame (None where it follows from the frame size). The
    layout is the processor's unless given."""
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        return token_id, (frozenset(), 0, 0, None)
    if layout is None:
        from owa.data.image_layout import ImageLayout

        layout = ImageLayout.from_processor(processor, **({"image_size": image_size} if image_size else {}))
    if token_id is None:
        token_id = int(tokenizer.convert_tokens_to_ids(layout.token))
    prefix, suffix = _PIECE.findall(layout.prefix), _PIECE.findall(layout.suffix)
    ids = frozenset(int(i) for i in tokenizer.convert_tokens_to_ids(prefix + suffix))
    count = None if layout.patch_size is not None else layout.count
    return token_id, (ids, len(prefix), len(suffix), count)


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
