"""Which recordings stage 1 converts: ``*.mcap`` files found recursively, each once, split into train and test.

Symlinked folders are followed; a symlink that leads back to a folder it sits in (a loop) is not followed, and
is logged and listed. A recording reached twice (symlink or hardlink: the same ``st_dev``/``st_ino``) is listed
once, under the first of its paths in sorted order, and the other paths are listed as duplicates. A recording
is never in both splits: with a test folder, one file reachable from both folders is an
:class:`~owa.data.errors.InvalidInputError` naming it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from pathlib import Path

from owa.data.errors import InvalidInputError

__all__ = ["FoundRecordings", "RecordingSplits", "discover_recordings", "find_recordings", "split_recordings"]

logger = logging.getLogger(__name__)


def discover_recordings(root: str | os.PathLike[str]) -> list[Path]:
    """Every recording (``*.mcap`` file) under ``root`` once, recursively, sorted by path.

    Symlinked folders are followed, except one that leads back to a folder it sits in (a loop, logged and
    cut). A file reached by several paths (symlinks, hardlinks) is listed once, under the first of them in
    sorted order. Paths are absolute with symlinks kept (``os.path.abspath``), as the caller reached them.

    Raises:
        InvalidInputError: ``root`` is not a folder.
    """
    return find_recordings(root).files


@dataclasses.dataclass
class FoundRecordings:
    """What a walk found: each recording once, and what it did not list."""

    files: list[Path]
    identity: dict[Path, tuple[int, int]]  # file -> (st_dev, st_ino)
    duplicates: list[tuple[Path, Path]]  # (path not listed, the listed path of the same file)
    loops: list[Path]  # symlinks not followed, each once: each leads back to a folder it sits in


def find_recordings(root: str | os.PathLike[str]) -> FoundRecordings:
    """:func:`discover_recordings` with what the walk left out: duplicates and symlink loops.

    Raises:
        InvalidInputError: ``root`` is not a folder.
    """
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
    identity: dict[Path, tuple[int, int]] = {}
    duplicates: list[tuple[Path, Path]] = []
    for key, paths in by_identity.items():
        first, *others = sorted(paths)
        identity[first] = key
        duplicates.extend((other, first) for other in others)
    cut = sorted(min(paths) for paths in loops.values())
    for path in cut:
        logger.warning("Not following %s: a symlink loop back to a folder it sits in", path)
    return FoundRecordings(sorted(identity), identity, sorted(duplicates), cut)


@dataclasses.dataclass
class RecordingSplits:
    """The recordings of each split, and what discovery did not convert."""

    files: dict[str, list[Path]]
    duplicates: list[tuple[str, Path, Path]]  # (split, path not converted, the converted path of that file)
    loops: list[Path]


def split_recordings(
    train_dir: str | os.PathLike[str], test_dir: str | os.PathLike[str] | None, *, test_percent: float, seed: int
) -> RecordingSplits:
    """The recordings of each split (``train``, ``test``), each sorted by path.

    With ``test_dir`` the test split is what it holds; otherwise a seeded fraction ``test_percent`` of the
    episodes (whole episodes) goes to test, at least one of each split when there are two or more.

    Raises:
        InvalidInputError: a folder is missing, or one file is reachable from both ``train_dir`` and ``test_dir``.
    """
    train = find_recordings(train_dir)
    if test_dir is not None:
        test = find_recordings(test_dir)
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
        )
    shuffled = list(train.files)
    random.Random(seed).shuffle(shuffled)
    n_test = round(len(shuffled) * test_percent)
    if len(shuffled) > 1:  # both splits get at least one episode when there are two
        n_test = min(max(n_test, 1 if test_percent > 0 else 0), len(shuffled) - 1)
    test_set = set(shuffled[:n_test])
    files = {"train": [p for p in train.files if p not in test_set], "test": sorted(test_set)}
    duplicates = [("test" if kept in test_set else "train", dup, kept) for dup, kept in train.duplicates]
    return RecordingSplits(files, duplicates, train.loops)
