"""``owa.data.load``: open any stage's output, the right way for its stage, from what its ``owa_data.json`` says.

>>> import owa.data
>>> events = owa.data.load("/data/events")  # doctest: +SKIP
>>> events["train"][0]["encoded_event"]  # doctest: +SKIP
>>> packed = owa.data.load("s3://bucket/packed", tokenizer=tokenizer)  # doctest: +SKIP
>>> packed["train"][0]["token_ids"]  # doctest: +SKIP

(The module is not named ``load``: importing a submodule ``owa.data.load`` would shadow the function.)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from owa.data.dataset_io import quiet_datasets_progress
from owa.data.errors import InvalidInputError
from owa.data.metadata import DatasetMetadata, read_metadata

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

    from owa.data.fsl_dataset import FSLDataset
    from owa.data.storage import StorageOptions

__all__ = ["load"]


def load(
    path: str | os.PathLike[str],
    *,
    split: str | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    storage_options: StorageOptions | None = None,
    **options: Any,
) -> datasets.DatasetDict | datasets.Dataset | FSLDataset | dict[str, FSLDataset]:
    """Open the dataset folder (or URL) ``path`` written by any owa-data stage, ready to use.

    What comes back depends on the stage its ``owa_data.json`` records:

    * ``events``: the Event Dataset with :func:`~owa.data.transforms.create_event_dataset_transform` set (rows have
      ``encoded_event`` and ``image``); relative ``episode_path`` values resolve against the recorded recordings
      root.
    * ``binned``: the Binned Dataset with :func:`~owa.data.transforms.create_binned_dataset_transform` set (rows
      have ``instruction``, ``images``, ``encoded_events``).
    * ``tokenized``: the tokenized dataset as it is (build an :class:`~owa.data.fsl_dataset.FSLDataset` on it).
    * ``packed``: :meth:`FSLDataset.load <owa.data.fsl_dataset.FSLDataset.load>`: FSLDatasets ready to read.

    Args:
        path: the folder or URL.
        split: return only this split.
        tokenizer: for tokenized and packed datasets, check that it is the tokenizer that made the ids (as loaded, or
            prepared); a different vocabulary is a :class:`~owa.data.errors.TokenizerMismatchError`.
        storage_options: for a URL (see :mod:`owa.data.storage`). Events, binned and tokenized datasets at URLs are
            read through ``datasets.load_from_disk`` (which downloads them to a temporary folder); packed ones are
            downloaded into a reusable cache (:func:`owa.data.packed.local_copy`).
        **options: for events and binned datasets, the transform's options (``load_images``, ``encoder_type``,
            ``encoder_config``, ``on_error``, ``episode_root``...); for packed ones, FSLDataset options
            (``load_images``, ``return_position_ids``, ``image_size``...). None for tokenized datasets.

    Raises:
        InvalidInputError: no (or an invalid) ``owa_data.json``: not a dataset owa-data wrote; an unknown ``split``.
        TokenizerMismatchError: ``tokenizer`` has another vocabulary than the recorded one.
        TypeError: an option the stage does not take.
        ValueError: ``tokenizer`` for an Event or Binned Dataset (they hold no token ids).
        StorageAccessError: the object store refused a request.
    """
    metadata = read_metadata(path, storage_options)
    assert metadata is not None  # missing_ok is False
    if metadata.stage == "packed":
        from owa.data.fsl_dataset import FSLDataset

        return FSLDataset.load(path, split=split, tokenizer=tokenizer, storage_options=storage_options, **options)
    if tokenizer is not None and metadata.stage in ("events", "binned"):
        raise ValueError(
            f"Invalid tokenizer for a {metadata.stage} dataset: it holds no token ids. Pass tokenizer= only for "
            "tokenized and packed datasets."
        )
    if metadata.stage == "tokenized" and options:
        raise TypeError(f"A tokenized dataset takes no options; got {', '.join(sorted(options))}")
    import datasets

    with quiet_datasets_progress():
        dataset = datasets.load_from_disk(os.fspath(path), storage_options=storage_options)
    if tokenizer is not None:
        from owa.data.packed import check_tokenizer

        check_tokenizer(metadata, tokenizer, path=path)
    if metadata.stage != "tokenized":
        dataset.set_transform(_transform(metadata, options))
    if split is None:
        return dataset
    if not isinstance(dataset, datasets.DatasetDict) or split not in dataset:
        available = list(dataset) if isinstance(dataset, datasets.DatasetDict) else []
        raise InvalidInputError(f"No split {split!r}; the dataset has {available}", path=os.fspath(path))
    return dataset[split]


def _transform(metadata: DatasetMetadata, options: dict[str, Any]) -> Any:
    from owa.data.transforms import create_binned_dataset_transform, create_event_dataset_transform

    options = {"episode_root": metadata.recordings_root, **options}
    if metadata.stage == "events":
        return create_event_dataset_transform(**options)
    return create_binned_dataset_transform(**options)
