"""Incremental stage 1: what a re-run over a grown folder can reuse, and the manifest that records it.

A dataset built with ``incremental=True`` (``--incremental``) keeps ``manifest.json`` next to its splits. For
each recording it lists the path stored as ``episode_path``, the recording's size, modification time
(``mtime_ns``) and ETag (object stores), a content fingerprint, its split, the shard file holding its rows,
its row count, and what it contributed to the report. A re-run converts only the recordings whose version
differs, reuses the shards of the others, drops those that are gone, and writes the report again.

**Same version.** Size, then the ETag where the store gives one, else ``mtime_ns``, then the fingerprint, all
equal. The fingerprint (:func:`read_version`) is, for an object with an ETag, that ETag (S3 computes it from
the bytes, and every write gives a new one). For a local file it is the SHA-256 of the MCAP summary section
through the end of the file (summary, summary offsets, footer, magic: a few kilobytes of range reads for a
finished recording, which change whenever the file is re-recorded or rewritten: message counts, times,
chunk offsets and sizes), or of the whole file for a file of at most :data:`WHOLE_FILE_HASH_BYTES` or one
without a summary (a crashed recorder; such a file is read whole by the conversion anyway). An edit that keeps
a large finished local file's size, mtime and summary (bytes flipped in place inside a chunk) is therefore
not seen: rebuild with ``overwrite`` after such an edit.

**Settings.** The manifest also holds a key of the settings that decide the rows (rates, topics, split rule,
``relative_to``, strictness, media check, the owa-data version). When it differs, nothing is reused.

**Row for row.** Each recording's rows are one shard file (:func:`shard_name`), and a split lists its shards
in sorted-path order, so reusing a shard never moves a row: the dataset equals a full rebuild with
``incremental=True`` (whose layout is the same, one shard per recording). Splits use
:func:`~owa.data.discovery.hash_split` of the stored path, so a recording never changes split when others are
added or removed. Shards are per recording, so a corpus of 100,000 recordings is 100,000 small files.

**Resume.** Converted shards go first into a staging folder (:class:`Staging`) beside the output, and each
recording is appended to its ``progress.jsonl`` once its shard is complete. A run that was interrupted or
failed leaves the staging folder; the next run reuses what it lists (same version, same settings) and
removes it once the dataset is in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from owa.data import storage
from owa.data.conversion_report import FileResult

__all__ = [
    "MANIFEST_FILENAME",
    "WHOLE_FILE_HASH_BYTES",
    "Manifest",
    "PendingRecording",
    "PreviousDataset",
    "RecordingEntry",
    "RecordingVersion",
    "Staging",
    "UpdatePlan",
    "link_or_copy",
    "plan_update",
    "read_version",
    "settings_key",
    "shard_name",
]

logger = logging.getLogger(__name__)

MANIFEST_FILENAME = "manifest.json"
PROGRESS_FILENAME = "progress.jsonl"

WHOLE_FILE_HASH_BYTES = 1024 * 1024
"""Local recordings up to this size are fingerprinted whole (reading them costs about what the summary does)."""

_MANIFEST_FORMAT = 1
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_FOOTER_OPCODE = 0x02
_FOOTER_BYTES = 1 + 8 + 8 + 8 + 4 + len(_MCAP_MAGIC)  # opcode, length, summary start, offsets start, CRC; magic
_HASH_BLOCK = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingVersion:
    """What identifies the version of a recording that was converted (see the module docs)."""

    size: int
    mtime_ns: int | None
    etag: str | None
    fingerprint: str

    def same_as(self, other: RecordingVersion) -> bool:
        if self.size != other.size or self.fingerprint != other.fingerprint:
            return False
        if self.etag is not None or other.etag is not None:
            return self.etag == other.etag  # an object store's LastModified changes on an identical re-upload
        return self.mtime_ns == other.mtime_ns


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingEntry:
    """One recording of the manifest: where its rows are and what it contributed to the report."""

    path: str  # episode_path as stored in the rows
    source: str  # the path or URL read
    split: str
    version: RecordingVersion
    shard: str | None  # file name inside the split folder; None when the recording gave no rows
    rows: int
    result: dict[str, Any]  # FileResult.to_json()

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "source": self.source,
            "split": self.split,
            **dataclasses.asdict(self.version),
            "shard": self.shard,
            "rows": self.rows,
            "result": self.result,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordingEntry:
        version = RecordingVersion(data["size"], data["mtime_ns"], data["etag"], data["fingerprint"])
        return cls(data["path"], data["source"], data["split"], version, data["shard"], data["rows"], data["result"])


@dataclasses.dataclass
class Manifest:
    """``manifest.json``: the settings key and each recording of the dataset, by stored path."""

    key: str
    settings: dict[str, Any]
    recordings: dict[str, RecordingEntry]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _MANIFEST_FORMAT,
            "key": self.key,
            "settings": self.settings,
            "recordings": [entry.to_json() for entry in self.recordings.values()],
        }

    def save(self, folder: str | os.PathLike[str]) -> None:
        (Path(folder) / MANIFEST_FILENAME).write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False))

    @classmethod
    def load(
        cls, dataset: str | os.PathLike[str], storage_options: storage.StorageOptions | None = None
    ) -> Manifest | None:
        """The manifest of the dataset at ``dataset`` (a folder or URL); None where there is none or it is unreadable.

        Raises:
            StorageAccessError: a URL cannot be read for lack of access.
        """
        location = storage.join(os.fspath(dataset), MANIFEST_FILENAME)
        try:
            with storage.open_input(location, storage_options) as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            logger.warning("Ignoring the unreadable manifest %s (%s); converting every recording", location, e)
            return None
        if data.get("format") != _MANIFEST_FORMAT:
            logger.warning("Ignoring %s: manifest format %r, expected %d", location, data.get("format"), 1)
            return None
        entries = (RecordingEntry.from_json(e) for e in data["recordings"])
        return cls(data["key"], data["settings"], {e.path: e for e in entries})


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short hash of the settings that decide a dataset's rows (JSON-able), with the owa-data version."""
    try:
        from importlib.metadata import version

        package = version("owa-data")
    except Exception:  # not installed (a source checkout on PYTHONPATH): the settings alone
        package = "unknown"
    payload = json.dumps({"settings": settings, "owa-data": package, "format": _MANIFEST_FORMAT}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def shard_name(stored_path: str, version: RecordingVersion, key: str) -> str:
    """The shard file of one version of one recording: unique per recording, new for each new version.

    A new name for each version lets a dataset at a URL be updated in place: the old dataset keeps its shards
    until its ``state.json`` is replaced.
    """
    recording = hashlib.sha256(stored_path.encode()).hexdigest()[:16]
    content = hashlib.sha256(f"{version.fingerprint}\0{version.size}\0{key}".encode()).hexdigest()[:8]
    return f"episode-{recording}-{content}.arrow"


def read_version(
    source: str | os.PathLike[str],
    info: storage.ObjectInfo | None = None,
    storage_options: storage.StorageOptions | None = None,
) -> RecordingVersion:
    """The version of the recording at ``source`` now: size, mtime, ETag and fingerprint (see the module docs).

    ``info`` is what a listing already said about it (no request then, for an object with an ETag).

    Raises:
        FileNotFoundError, StorageAccessError: as :func:`owa.data.storage.stat`.
    """
    if info is None:
        info = storage.stat(source, storage_options)
    if info.etag:
        return RecordingVersion(info.size, info.mtime_ns, info.etag, f"etag:{info.etag}")
    return RecordingVersion(info.size, info.mtime_ns, None, _content_fingerprint(source, info.size, storage_options))


def _content_fingerprint(
    source: str | os.PathLike[str], size: int, storage_options: storage.StorageOptions | None
) -> str:
    with storage.open_input(source, storage_options) as f:
        if size > WHOLE_FILE_HASH_BYTES:
            f.seek(size - _FOOTER_BYTES)
            tail = f.read(_FOOTER_BYTES)
            if len(tail) == _FOOTER_BYTES and tail[0] == _FOOTER_OPCODE and tail.endswith(_MCAP_MAGIC):
                summary_start = int.from_bytes(tail[9:17], "little")
                if 0 < summary_start <= size - _FOOTER_BYTES:
                    f.seek(summary_start)
                    return "summary:" + _sha256(f, size - summary_start)
        f.seek(0)
        return "sha256:" + _sha256(f, size)


def _sha256(f: Any, n: int) -> str:
    digest = hashlib.sha256()
    while n > 0 and (block := f.read(min(n, _HASH_BLOCK))):
        digest.update(block)
        n -= len(block)
    return digest.hexdigest()


class Staging:
    """The folder where an incremental run writes its shards and logs the recordings it completed.

    It outlives a run that was interrupted or failed, so the next run can reuse what it logged; it is removed
    once the dataset is in place.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.shards = self.folder / "shards"

    def open(self) -> None:
        self.shards.mkdir(parents=True, exist_ok=True)

    def completed(self, key: str) -> dict[str, RecordingEntry]:
        """The recordings an earlier run of the same settings completed here, by stored path (the last wins)."""
        done: dict[str, RecordingEntry] = {}
        try:
            lines = (self.folder / PROGRESS_FILENAME).read_text().splitlines()
        except FileNotFoundError:
            return done
        for line in lines:
            try:
                data = json.loads(line)
                entry = RecordingEntry.from_json(data)
            except (ValueError, KeyError, TypeError):  # the line being written when the run stopped
                continue
            if data.get("key") == key and (entry.shard is None or (self.shards / entry.shard).is_file()):
                done[entry.path] = entry
        return done

    def record(self, entries: Iterable[RecordingEntry], key: str) -> None:
        """Log completed recordings (their shards are closed)."""
        with open(self.folder / PROGRESS_FILENAME, "a") as log:
            for entry in entries:
                log.write(json.dumps({**entry.to_json(), "key": key}, ensure_ascii=False) + "\n")
            log.flush()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def link_or_copy(source: Path, target: Path) -> None:
    """Put ``source``'s bytes at ``target``: a hard link (no copy, same file system), else a copy."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


# -- one run ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class PreviousDataset:
    """The dataset an incremental run replaces: its manifest, and where its shards are (a folder or a URL)."""

    manifest: Manifest | None
    local: Path | None = None
    remote: set[str] | None = None  # files stored under the URL output, relative to it
    kept: set[str] = dataclasses.field(default_factory=set)  # of those, the ones the new dataset uses (filled in)

    def shard(self, entry: RecordingEntry) -> Path | str | None:
        """Where ``entry``'s shard is: a local file, or its path under the URL output; None if it is gone."""
        if entry.shard is None:
            return None
        if self.local is not None:
            path = self.local / entry.split / entry.shard
            return path if path.is_file() else None
        relative = f"{entry.split}/{entry.shard}"
        return relative if self.remote is not None and relative in self.remote else None


@dataclasses.dataclass(frozen=True, slots=True)
class PendingRecording:
    """A recording to convert into its own shard (in the staging folder)."""

    source: str
    stored: str
    split: str
    version: RecordingVersion
    shard_path: Path


@dataclasses.dataclass
class UpdatePlan:
    """What a run reuses and converts; :func:`plan_update` makes it, the caller converts :attr:`pending`."""

    key: str
    settings: dict[str, Any]
    previous: PreviousDataset
    staging: Staging
    order: dict[str, list[str]]  # split -> stored paths, in full-rebuild order
    pending: list[PendingRecording]
    entries: dict[str, RecordingEntry] = dataclasses.field(default_factory=dict)  # stored path -> entry
    shards: dict[str, Path | str | None] = dataclasses.field(default_factory=dict)  # its file, or path at the URL

    def reused(self) -> Iterator[FileResult]:
        """What the reused recordings contributed (for progress, before the conversions start)."""
        return (FileResult.from_json(entry.result) for entry in self.entries.values())

    def completed(self, pending: PendingRecording, result: FileResult) -> None:
        """Record a converted recording (its shard is closed): in the staging log, then in the plan."""
        shard = pending.shard_path if result.kept else None
        entry = RecordingEntry(
            pending.stored,
            pending.source,
            pending.split,
            pending.version,
            None if shard is None else shard.name,
            result.kept,
            result.to_json(),
        )
        self.staging.record([entry], self.key)
        self.entries[pending.stored], self.shards[pending.stored] = entry, shard

    def lay_out(self, folder: Path) -> tuple[dict[str, list[str]], list[FileResult]]:
        """Put each split's shards in ``folder/<split>`` (hard links), in full-rebuild order; save the manifest.

        Returns each split's shard names, in order, and every recording's result, in order. A shard stored at
        the URL output is not copied: it is added to ``previous.kept``.
        """
        listed: dict[str, list[str]] = {}
        results = []
        for split, stored_paths in self.order.items():
            listed[split] = []
            for stored in stored_paths:
                entry = self.entries[stored]
                results.append(FileResult.from_json(entry.result))
                if entry.shard is None:
                    continue
                listed[split].append(entry.shard)
                shard = self.shards[stored]
                if isinstance(shard, Path):
                    link_or_copy(shard, folder / split / entry.shard)
                else:
                    assert shard is not None
                    self.previous.kept.add(shard)
        in_order = {stored: self.entries[stored] for paths in self.order.values() for stored in paths}
        Manifest(self.key, self.settings, in_order).save(folder)
        return listed, results

    def counts(self) -> dict[str, int]:
        """Recordings converted, reused, and removed since the previous dataset (the report's ``incremental``)."""
        current = {stored for paths in self.order.values() for stored in paths}
        old = self.previous.manifest
        removed = len(set(old.recordings) - current) if old is not None else 0
        return {"converted": len(self.pending), "reused": len(current) - len(self.pending), "removed": removed}


def plan_update(
    recordings: Mapping[str, Sequence[tuple[str, str]]],
    *,
    settings: dict[str, Any],
    previous: PreviousDataset,
    staging: Staging,
    objects: Mapping[str, storage.ObjectInfo] | None = None,
    storage_options: storage.StorageOptions | None = None,
) -> UpdatePlan:
    """Decide, for each recording (split -> ``(source, stored path)`` in order), whether a shard can be reused.

    A recording is reused from the previous dataset, else from the staging folder, when it is the same version
    (:meth:`RecordingVersion.same_as`) in the same split under the same settings; else it is pending, to be
    converted into ``staging.shards/<shard_name>``. ``objects`` are listings of URL recordings (their ETags).
    """
    key = settings_key(settings)
    old = previous.manifest if previous.manifest is not None and previous.manifest.key == key else None
    if previous.manifest is not None and old is None:
        logger.warning("The conversion settings changed since the dataset was built: converting every recording")
    staging.open()
    staged = staging.completed(key)
    plan = UpdatePlan(key, settings, previous, staging, {split: [] for split in recordings}, [])
    for split, pairs in recordings.items():
        for source, stored in pairs:
            plan.order[split].append(stored)
            version = _current_version(source, (objects or {}).get(source), storage_options)
            prior = old.recordings.get(stored) if old is not None else None
            if prior is not None and prior.split == split and prior.version.same_as(version):
                shard = previous.shard(prior)
                if prior.shard is None or shard is not None:
                    plan.entries[stored], plan.shards[stored] = _read_from(prior, source), shard
                    continue
            done = staged.get(stored)
            if done is not None and done.split == split and done.version.same_as(version):
                shard = None if done.shard is None else staging.shards / done.shard
                plan.entries[stored], plan.shards[stored] = _read_from(done, source), shard
                continue
            shard_path = staging.shards / shard_name(stored, version, key)
            plan.pending.append(PendingRecording(source, stored, split, version, shard_path))
    return plan


def _current_version(
    source: str, info: storage.ObjectInfo | None, storage_options: storage.StorageOptions | None
) -> RecordingVersion:
    try:
        return read_version(source, info, storage_options)
    except OSError as e:  # gone or unreadable since it was listed: converting it reports why, and skips it
        return RecordingVersion(-1, None, None, f"unreadable:{type(e).__name__}")


def _read_from(entry: RecordingEntry, source: str) -> RecordingEntry:
    """``entry`` read from ``source`` now (the same stored path can be read from a moved folder)."""
    if entry.source == source:
        return entry
    return dataclasses.replace(entry, source=source, result={**entry.result, "path": source})
