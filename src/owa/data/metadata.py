"""What made a dataset folder: ``owa_data.json``, written by every stage at the folder's root.

Each stage's output records its stage, the full config that made it (its own and every earlier stage's), the
recordings' root, the library version and the command or function that wrote it; tokenized and packed datasets
also record the tokenizer (name, size, vocabulary fingerprint). :func:`owa.data.load` reads it to open the folder
the right way. Example ``owa_data.json`` of a packed dataset::

    {
      "format_version": 1,
      "stage": "packed",
      "config": {"events": {...}, "tokenizer": {...}, "packing": {"max_sequence_length": 1024, ...}},
      "recordings_root": "/data/recordings",
      "library_version": "0.1.0",
      "created_by": "owa-data pack",
      "tokenizer": {"name_or_path": "/models/vlm", "vocab_size": 151700, "fingerprint": "sha256:..."}
    }

The file is written into the folder before the folder is published (renamed into place, or its marker files
uploaded last: :mod:`owa.data.dataset_io`), so a loadable dataset always has it. It is read from local folders and
fsspec URLs alike, without writing anything locally.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from owa.data import storage
from owa.data.errors import InvalidInputError
from owa.data.vocabulary import vocabulary_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "FORMAT_VERSION",
    "METADATA_FILENAME",
    "DatasetMetadata",
    "Stage",
    "TokenizerInfo",
    "read_metadata",
    "write_metadata",
]

METADATA_FILENAME = "owa_data.json"
FORMAT_VERSION = 1
"""The version of ``owa_data.json``'s own layout; a newer one is refused (written by a newer owa-data)."""

Stage = Literal["events", "binned", "tokenized", "packed"]
_STAGES: tuple[str, ...] = get_args(Stage)


def _library_version() -> str:
    from owa.data import __version__

    return __version__


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizerInfo:
    """The tokenizer whose ids a tokenized or packed dataset holds.

    Attributes:
        name_or_path: what it was loaded from (``tokenizer.name_or_path``).
        vocab_size: ``len(tokenizer)``, added tokens included.
        fingerprint: :func:`~owa.data.vocabulary.vocabulary_fingerprint` of the prepared tokenizer.
    """

    name_or_path: str
    vocab_size: int
    fingerprint: str

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase) -> TokenizerInfo:
        """The info of ``tokenizer`` as it is now (call it after ``prepare_model``)."""
        return cls(
            name_or_path=str(getattr(tokenizer, "name_or_path", "") or ""),
            vocab_size=len(tokenizer),
            fingerprint=vocabulary_fingerprint(tokenizer),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetMetadata:
    """The contents of ``owa_data.json`` (see the module docs).

    Attributes:
        stage: ``"events"``, ``"binned"``, ``"tokenized"`` or ``"packed"``.
        config: every stage's config that led here, by stage: ``"events"`` (rates, topics, split...),
            ``"binning"`` (fps, topics...), ``"tokenizer"`` (``EpisodeTokenizerConfig.to_json()``: encoder and its
            config, image layout...), ``"packing"`` (``max_sequence_length``, ``pad_token_id``, ``episode_aware``).
        recordings_root: the folder (or URL) of the recordings: what relative ``episode_path`` values resolve against
            when stage 1 stored them relative, else the training recordings' folder; None when unknown.
        library_version: the owa-data version that wrote the folder.
        created_by: the command or function that wrote it (``"owa-data pack"``, ``"build_binned_dataset"``...).
        tokenizer: for tokenized and packed datasets, the tokenizer whose ids they hold.
        format_version: the layout version of this file.

    Raises:
        ValueError: an unknown ``stage``.
    """

    stage: Stage
    config: Mapping[str, Any]
    recordings_root: str | None
    created_by: str
    library_version: str = dataclasses.field(default_factory=_library_version)
    tokenizer: TokenizerInfo | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.stage not in _STAGES:
            raise ValueError(f"Invalid stage ({self.stage!r}). Supported values are {', '.join(map(repr, _STAGES))}.")
        object.__setattr__(self, "config", dict(self.config))

    def derive(
        self,
        stage: Stage,
        *,
        name: str,
        config: Mapping[str, Any],
        created_by: str,
        tokenizer: TokenizerInfo | None = None,
    ) -> DatasetMetadata:
        """The metadata of a dataset made from this one: these configs plus ``config`` under ``name``; the same
        recordings root; this library version."""
        return DatasetMetadata(
            stage=stage,
            config={**self.config, name: dict(config)},
            recordings_root=self.recordings_root,
            created_by=created_by,
            tokenizer=tokenizer if tokenizer is not None else self.tokenizer,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` reads it back."""
        fields = dataclasses.asdict(self)
        return {"format_version": fields.pop("format_version"), **fields}

    @classmethod
    def from_json(cls, fields: Mapping[str, Any], *, path: str | os.PathLike[str] | None = None) -> DatasetMetadata:
        """Read back :meth:`to_json`'s dict.

        Raises:
            InvalidInputError: not such a dict (names ``path``, the file it came from).
        """
        if not isinstance(fields, Mapping):
            raise InvalidInputError(f"Invalid {METADATA_FILENAME}: not a JSON object", path=path)
        version = fields.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InvalidInputError(
                f"Invalid {METADATA_FILENAME} format_version ({version!r}). Supported values are 1 to "
                f"{FORMAT_VERSION}; a newer owa-data wrote it: upgrade owa-data",
                path=path,
            )
        values = dict(fields)
        try:
            tokenizer = values.pop("tokenizer", None)
            if tokenizer is not None:
                tokenizer = TokenizerInfo(**tokenizer)
            if not isinstance(values.get("config"), Mapping):
                raise TypeError("config is not an object")
            return cls(**values, tokenizer=tokenizer)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"Invalid {METADATA_FILENAME}: {e}", path=path) from e


def write_metadata(folder: str | os.PathLike[str], metadata: DatasetMetadata) -> Path:
    """Write ``metadata`` as ``owa_data.json`` in the local ``folder`` (the staging folder of an output, before it
    is published); return the file's path."""
    path = Path(folder) / METADATA_FILENAME
    path.write_text(json.dumps(metadata.to_json(), indent=2, ensure_ascii=False) + "\n")
    return path


def read_metadata(
    path: str | os.PathLike[str],
    storage_options: storage.StorageOptions | None = None,
    *,
    missing_ok: bool = False,
) -> DatasetMetadata | None:
    """The ``owa_data.json`` of the dataset folder (or URL prefix) ``path``.

    Args:
        path: a dataset folder or URL.
        storage_options: for a URL, its filesystem's options (see :mod:`owa.data.storage`).
        missing_ok: return None when the folder has no ``owa_data.json`` (a dataset written by another tool or an
            older owa-data) instead of raising.

    Raises:
        InvalidInputError: no ``owa_data.json`` there (unless ``missing_ok``), or it is not valid.
        StorageAccessError: the object store refused the request.
    """
    file = storage.join(os.fspath(path), METADATA_FILENAME)
    try:
        with storage.open_input(file, storage_options) as f:
            raw = f.read()
    except (FileNotFoundError, NotADirectoryError) as e:
        if missing_ok:
            return None
        raise InvalidInputError(
            f"No {METADATA_FILENAME}: not a dataset written by owa-data {_library_version()} (events, bin, tokenize "
            "or pack), or an incomplete one. Open other datasets with datasets.load_from_disk",
            path=file,
        ) from e
    try:
        fields = json.loads(raw)
    except ValueError as e:
        raise InvalidInputError(f"Invalid {METADATA_FILENAME}: not JSON ({e})", path=file) from e
    return DatasetMetadata.from_json(fields, path=file)
