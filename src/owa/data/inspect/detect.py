"""What a path holds: recordings, or which stage's dataset (Event, Binned, tokenized, packed).

Decided by the files present, never by the path's name:

* a ``.mcap`` file, or a folder without ``save_to_disk`` metadata holding ``.mcap`` files: ``"recordings"``;
* a saved dataset (:mod:`owa.data.inspect.saved`) whose columns are the Event Dataset's: ``"event"``; the Binned
  Dataset's: ``"binned"``; ``token_ids`` and ``total_token_count`` (``tokenize_event_dataset``): ``"tokenized"``,
  or ``"packed"`` when the folder also says how it is packed (:func:`packed_sequence_length`);
  ``token_ids`` and ``attention_mask`` (fixed-length samples): ``"packed"``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from owa.data.errors import InvalidInputError
from owa.data.inspect.saved import SavedDataset, is_saved_dataset
from owa.data.schema import BINNED_FEATURES_DICT, EVENT_FEATURES_DICT

__all__ = ["PACKING_FILES", "PathKind", "detect_dataset_kind", "detect_kind", "packed_sequence_length"]

PathKind = Literal["recordings", "event", "binned", "tokenized", "packed"]

#: Files that say how a tokenized dataset is packed: a JSON object with ``max_sequence_length``.
PACKING_FILES = ("packing.json", "fsl_config.json")
_TOKENIZED_COLUMNS = ("token_ids", "total_token_count")


def detect_kind(path: str | os.PathLike[str]) -> PathKind | None:
    """``"recordings"`` for a ``.mcap`` file or a folder of them, None for a saved dataset (read it and call
    :func:`detect_dataset_kind`).

    Raises:
        InvalidInputError: the path is missing, or holds neither recordings nor a saved dataset.
    """
    target = Path(path)
    if not target.exists():
        raise InvalidInputError("Path does not exist", path=target)
    if target.is_file():
        if target.suffix == ".mcap":
            return "recordings"
        raise InvalidInputError("Not a recording (.mcap) or a dataset folder", path=target)
    if is_saved_dataset(target):
        return None
    if next(target.rglob("*.mcap"), None) is not None:
        return "recordings"
    raise InvalidInputError(
        "Neither a folder of recordings (no .mcap inside) nor a dataset saved with save_to_disk "
        "(no dataset_dict.json or state.json)",
        path=target,
    )


def detect_dataset_kind(dataset: SavedDataset) -> PathKind:
    """The stage that wrote ``dataset``, from its columns (and packing metadata).

    Raises:
        InvalidInputError: the columns match no stage's output; the message lists them.
    """
    columns = set(dataset.column_names)
    if set(EVENT_FEATURES_DICT) <= columns:
        return "event"
    if set(BINNED_FEATURES_DICT) <= columns:
        return "binned"
    if "token_ids" in columns and "attention_mask" in columns:
        return "packed"
    if set(_TOKENIZED_COLUMNS) <= columns:
        return "packed" if packed_sequence_length(dataset) is not None else "tokenized"
    raise InvalidInputError(
        f"Not an owa-data dataset: columns {sorted(columns)} match no stage (Event Dataset: "
        f"{', '.join(EVENT_FEATURES_DICT)}; Binned Dataset: {', '.join(BINNED_FEATURES_DICT)}; tokenized: "
        f"{', '.join(_TOKENIZED_COLUMNS)})",
        path=dataset.path,
    )


def packed_sequence_length(dataset: SavedDataset) -> int | None:
    """The ``max_sequence_length`` a tokenized dataset's folder records for its packing, or None.

    Looked up in :data:`PACKING_FILES`, then in ``info.description`` under ``owa_data`` (``max_sequence_length``
    directly or inside a ``packing``/``fsl`` object).
    """
    candidates: list[Any] = [dataset.read_json(name) for name in PACKING_FILES]
    owa = dataset.description.get("owa_data")
    if isinstance(owa, dict):
        candidates += [owa, owa.get("packing"), owa.get("fsl")]
    for candidate in candidates:
        if isinstance(candidate, dict):
            value = candidate.get("max_sequence_length")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None
