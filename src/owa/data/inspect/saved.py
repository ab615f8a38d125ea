"""Datasets saved with ``save_to_disk``, read as memory-mapped Arrow tables without importing ``datasets``.

Both layouts are read: a ``DatasetDict`` folder (``dataset_dict.json`` and one folder per split) and a single
``Dataset`` folder (``state.json`` beside its shards). Shards are Arrow IPC stream files, mapped, not copied.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from owa.data.errors import InvalidInputError
from owa.data.schema import arrow_schema

__all__ = ["SavedDataset", "is_saved_dataset", "read_saved_dataset"]


@dataclasses.dataclass(frozen=True, eq=False)
class SavedDataset:
    """A saved dataset's splits as Arrow tables, and its metadata.

    Attributes:
        path: the folder.
        splits: split name -> table (a single ``Dataset`` folder is one split named after its ``_split``, or
            ``"data"``).
        description: ``info.description`` parsed as JSON where it is JSON (stages write ``{"owa_data": ...}``),
            else ``{}``.
        files: names of the files directly in the folder (e.g. ``conversion_report.json``).
    """

    path: Path
    splits: dict[str, pa.Table]
    description: dict[str, Any]
    files: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        """The columns of the first split (every split of a stage's output has the same)."""
        return next(iter(self.splits.values())).schema.names if self.splits else []

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON file directly in the folder, or None when there is none."""
        if name not in self.files:
            return None
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError) as e:
            raise InvalidInputError(f"Unreadable {name}: {e}", path=self.path / name) from e


def is_saved_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder laid out by ``save_to_disk`` (a ``DatasetDict`` or a ``Dataset``)."""
    folder = Path(path)
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def read_saved_dataset(path: str | os.PathLike[str]) -> SavedDataset:
    """Map every split of the dataset saved at ``path``.

    Raises:
        InvalidInputError: ``path`` is not a saved dataset, or its metadata or shards cannot be read.
    """
    folder = Path(os.path.abspath(path))
    if not is_saved_dataset(folder):
        raise InvalidInputError("Not a saved dataset (no dataset_dict.json or state.json)", path=folder)
    splits: dict[str, pa.Table] = {}
    description: dict[str, Any] = {}
    if (folder / "dataset_dict.json").is_file():
        names = _load_json(folder / "dataset_dict.json").get("splits", [])
        for name in names:
            splits[name] = _read_split(folder / name)
            description = description or _description(folder / name)
    else:
        state = _load_json(folder / "state.json")
        splits[state.get("_split") or "data"] = _read_split(folder)
        description = _description(folder)
    files = tuple(sorted(p.name for p in folder.iterdir() if p.is_file()))
    return SavedDataset(path=folder, splits=splits, description=description, files=files)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"Unreadable dataset metadata: {e}", path=path) from e
    if not isinstance(value, dict):
        raise InvalidInputError("Dataset metadata is not a JSON object", path=path)
    return value


def _description(split_dir: Path) -> dict[str, Any]:
    info_path = split_dir / "dataset_info.json"
    if not info_path.is_file():
        return {}
    text = _load_json(info_path).get("description") or ""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _read_split(split_dir: Path) -> pa.Table:
    state = _load_json(split_dir / "state.json")
    tables = []
    for item in state.get("_data_files", []):
        shard = split_dir / item["filename"]
        try:
            tables.append(pa.ipc.open_stream(pa.memory_map(str(shard))).read_all())
        except (OSError, pa.ArrowInvalid) as e:
            raise InvalidInputError(f"Unreadable Arrow shard: {e}", path=shard) from e
    if not tables:  # an empty split (stage 1 writes no shard for it)
        return _empty_table(split_dir)
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _empty_table(split_dir: Path) -> pa.Table:
    info_path = split_dir / "dataset_info.json"
    features = _load_json(info_path).get("features") if info_path.is_file() else None
    try:
        return arrow_schema(features or {}).empty_table()
    except (KeyError, TypeError):  # a feature type schema.py does not model: columns unknown, no rows anyway
        return pa.table({})
