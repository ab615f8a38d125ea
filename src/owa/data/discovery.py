"""Which recordings stage 1 converts: ``*.mcap`` files found recursively, each once, split into train and test.

A folder may be a URL prefix (``s3://bucket/recordings``): its ``*.mcap`` objects are listed with
:func:`owa.data.storage.list_objects` and named by their URLs (strings; local recordings are :class:`Path`).
An object store has no symlinks or hardlinks, so the rules below about them apply to local folders only.

Symlinked folders are followed; a symlink that leads back to a folder it sits in (a loop) is not followed, and
is logged and listed. A recording reached twice (symlink or hardlink: the same ``st_dev``/``st_ino``) is listed
once, under the first of its paths in sorted order, and the other paths are listed as duplicates. A recording
is never in both splits: with a test folder, one file reachable from both folders is an
:class:`~owa.data.errors.InvalidInputError` naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
from collections.abc import Callable, Hashable
from pathlib import Path

from owa.data import storage
from owa.data.errors import InvalidInputError

__all__ = [
    "FoundRecordings",
    "Recording",
    "RecordingSplits",
    "discover_recordings",
    "find_recordings",
    "hash_split",
    "split_recordings",
]

Recording = Path | str
"""A recording as discovery names it: a local :class:`Path`, or a URL string (``s3://bucket/dir/ep.mcap``)."""

logger = logging.getLogger(__name__)


def discover_recordings(
    root: str | os.PathLike[str], *, storage_options: storage.StorageOptions | None = None
) -> list[Recording]:
    """Every recording (``*.mcap`` file) under ``root`` once, recursively, sorted by path.

    Symlinked folders are followed, except one that leads back to a folder it sits in (a loop, logged and
    cut). A file reached by several paths (symlinks, hardlinks) is listed once, under the first of them in
    sorted order. Paths are absolute with symlinks kept (``os.path.abspath``), as the caller reached them.
    A URL ``root`` (``s3://bucket/dir``) lists its ``*.mcap`` objects as sorted URL strings, read with
    ``storage_options``.

    Raises:
        InvalidInputError: ``root`` is not a folder.
        StorageAccessError: a URL cannot be listed (denied, unreachable).
    """
    return find_recordings(root, storage_options=storage_options).files


@dataclasses.dataclass
class FoundRecordings:
    """What a walk found: each recording once, and what it did not list."""

    files: list[Recording]
    identity: dict[Recording, Hashable]  # file -> (st_dev, st_ino); a URL is its own identity
    duplicates: list[tuple[Path, Path]]  # (path not listed, the listed path of the same file)
    loops: list[Path]  # symlinks not followed, each once: each leads back to a folder it sits in
    objects: dict[str, storage.ObjectInfo] = dataclasses.field(default_factory=dict)  # URL -> what listing said


def find_recordings(
    root: str | os.PathLike[str], *, storage_options: storage.StorageOptions | None = None
) -> FoundRecordings:
    """:func:`discover_recordings` with what the walk left out: duplicates and symlink loops.

    Raises:
        InvalidInputError: ``root`` is not a folder.
        StorageAccessError: a URL cannot be listed (denied, unreachable).
    """
    if storage.is_url(root):
        objects = storage.list_objects(os.fspath(root), storage_options, suffix=".mcap")
        urls: list[Recording] = [info.url for info in objects]
        return FoundRecordings(urls, {url: url for url in urls}, [], [], {info.url: info for info in objects})
    root_path = Path(os.path.abspath(root))
    if not root_path.is_dir():
        raise InvalidInputError("Recordings folder does not exist or is not a folder", path=root_path)
    root_stat = root_path.stat()
    by_identity: dict[tuple[int, int], list[Path]] = {}
    loops: dict[tuple[int, int], list[Path]] = {}  # the link's own identity -> the paths it was met by
    # Depth-first with the identities of the folders above each one: a folder that is its own ancestor is
    # a loop. A folder reached twice otherwise (two links to one folder) is walked twice and its files
    # come out as duplicates.
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [
        (str(root_path), frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    ]
    while stack:
        folder, ancestors = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            logger.warning("Cannot list %s (%s); recordings inside it are not included", folder, e)
            continue
        for entry in entries:
            try:
                if entry.is_dir():  # follows symlinks
                    st = entry.stat()
                    identity = (st.st_dev, st.st_ino)
                    if identity in ancestors:
                        link = entry.stat(follow_symlinks=False)
                        loops.setdefault((link.st_dev, link.st_ino), []).append(Path(entry.path))
                    else:
                        stack.append((entry.path, ancestors | {identity}))
                elif entry.name.endswith(".mcap") and entry.is_file():
                    st = entry.stat()
                    by_identity.setdefault((st.st_dev, st.st_ino), []).append(Path(entry.path))
            except OSError:  # vanished while walking, or a broken link: nothing to read
                continue
    identity: dict[Recording, Hashable] = {}
    duplicates: list[tuple[Path, Path]] = []
    for key, paths in by_identity.items():
        first, *others = sorted(paths)
        identity[first] = key
        duplicates.extend((other, first) for other in others)
    cut = sorted(min(paths) for paths in loops.values())
    for path in cut:
        logger.warning("Not following %s: a symlink loop back to a folder it sits in", path)
    return FoundRecordings(sorted(identity), identity, sorted(duplicates), cut)  # type: ignore[type-var]


@dataclasses.dataclass
class RecordingSplits:
    """The recordings of each split, and what discovery did not convert."""

    files: dict[str, list[Recording]]
    duplicates: list[tuple[str, Path, Path]]  # (split, path not converted, the converted path of that file)
    loops: list[Path]
    objects: dict[str, storage.ObjectInfo] = dataclasses.field(default_factory=dict)  # URL recordings, as listed


def split_recordings(
    train_dir: str | os.PathLike[str],
    test_dir: str | os.PathLike[str] | None,
    *,
    test_percent: float,
    seed: int,
    storage_options: storage.StorageOptions | None = None,
    split_key: Callable[[Recording], str] | None = None,
) -> RecordingSplits:
    """The recordings of each split (``train``, ``test``), each sorted by path.

    With ``test_dir`` the test split is what it holds. Otherwise a seeded fraction ``test_percent`` of the
    episodes (whole episodes) goes to test: by default a seeded shuffle of the whole list, so at least one of
    each split when there are two or more; with ``split_key``, each recording by :func:`hash_split` of its key
    alone, so adding or removing recordings never moves another one (the fraction is then approximate).

    Raises:
        InvalidInputError: a folder is missing, or one file is reachable from both ``train_dir`` and ``test_dir``.
        StorageAccessError: a URL folder cannot be listed (denied, unreachable).
    """
    train = find_recordings(train_dir, storage_options=storage_options)
    if test_dir is not None:
        test = find_recordings(test_dir, storage_options=storage_options)
        in_train = {identity: path for path, identity in train.identity.items()}
        shared = [(path, in_train[test.identity[path]]) for path in test.files if test.identity[path] in in_train]
        if shared:
            test_path, train_path = shared[0]
            raise InvalidInputError(
                f"Train and test share {len(shared)} recording(s), e.g. {test_path} is the same file as "
                f"{train_path} in train; they must not overlap",
                path=test_path,
            )
        return RecordingSplits(
            {"train": train.files, "test": test.files},
            [("train", *d) for d in train.duplicates] + [("test", *d) for d in test.duplicates],
            train.loops + test.loops,
            {**train.objects, **test.objects},
        )
    if split_key is not None:
        test_set = {p for p in train.files if hash_split(split_key(p), seed=seed, test_percent=test_percent) == "test"}
    else:
        shuffled = list(train.files)
        random.Random(seed).shuffle(shuffled)
        n_test = round(len(shuffled) * test_percent)
        if len(shuffled) > 1:  # both splits get at least one episode when there are two
            n_test = min(max(n_test, 1 if test_percent > 0 else 0), len(shuffled) - 1)
        test_set = set(shuffled[:n_test])
    files = {"train": [p for p in train.files if p not in test_set], "test": [p for p in train.files if p in test_set]}
    duplicates = [("test" if kept in test_set else "train", dup, kept) for dup, kept in train.duplicates]
    return RecordingSplits(files, duplicates, train.loops, train.objects)


def hash_split(key: str, *, seed: int, test_percent: float) -> str:
    """``"test"`` or ``"train"`` for the recording named ``key``, from ``(seed, key)`` alone.

    The first 64 bits of ``sha256(f"{seed}\\0{key}")`` as a fraction of 2**64 below ``test_percent`` means test:
    about ``test_percent`` of many recordings, and a recording's split never depends on the others.

    >>> hash_split("day1/ep.mcap", seed=0, test_percent=0.0)
    'train'
    """
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_percent else "train"
