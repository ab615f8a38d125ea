"""Object storage and local paths behind one small API: fsspec URLs (``s3://bucket/prefix``) next to plain paths.

Recordings can be read from, and datasets written to, any fsspec URL; local paths keep working as
they are (opened with ``open``, never through fsspec). ``storage_options`` are the keyword arguments of
the URL's fsspec filesystem (for S3, those of ``s3fs.S3FileSystem``: ``key``, ``secret``, ``profile``,
``endpoint_url``, ``client_kwargs``, ...). Where none are given, fsspec's defaults apply: its
configuration (``fsspec.config.conf["s3"]``, ``FSSPEC_S3_*`` environment variables) and, for S3, the
standard AWS credential chain. That is also how frame decoding opens videos by URL at training time.

* **Range reads.** :func:`open_input` returns a seekable file whose reads are HTTP range requests
  through a read-ahead cache of ``block_size`` bytes: a filtered MCAP read fetches the summary and the
  chunks it needs, not the whole file.
* **Errors.** A missing object is a ``FileNotFoundError`` naming the URL (the caller turns it into its
  own error: a recording or a video not found); denied or missing credentials and an unreachable
  endpoint are a :class:`~owa.data.errors.StorageAccessError` naming the URL and the reason.
* **Outputs.** :func:`upload_dataset_dir` publishes a dataset folder (``save_to_disk`` layout) built
  locally: its top-level ``dataset_dict.json`` (or ``state.json``) goes last, so a partial upload is
  never loadable; a failed upload removes what it wrote.

fsspec and the protocol's filesystem (``s3fs`` for S3: ``pip install 'owa-data[s3]'``) are imported on
first use.

>>> join(dirname("s3://bucket/recordings/ep1.mcap"), "video/ep1.mkv")
's3://bucket/recordings/video/ep1.mkv'
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import posixpath
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from owa.data.errors import OutputExistsError, StorageAccessError

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "ObjectInfo",
    "StorageOptions",
    "dirname",
    "download_dir",
    "exists",
    "filesystem",
    "is_url",
    "join",
    "list_objects",
    "list_recordings",
    "open_input",
    "stat",
    "update_dataset_dir",
    "upload_dataset_dir",
]

logger = logging.getLogger(__name__)

StorageOptions = Mapping[str, Any]
"""Keyword arguments of the URL's fsspec filesystem, e.g. ``{"key": ..., "secret": ..., "endpoint_url": ...}``."""

DEFAULT_BLOCK_SIZE = 1024 * 1024
"""Bytes fetched ahead of each read of a URL (one range request per block when reading forward)."""

_INSTALL_HINTS = {"s3": "pip install 'owa-data[s3]'", "s3a": "pip install 'owa-data[s3]'"}
# "scheme://" where the scheme is longer than one letter ("C://x" is a Windows drive, not a URL).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
# Dataset folders (save_to_disk layout) become loadable once these exist: written last, removed first.
_DATASET_MARKERS = ("state.json", "dataset_dict.json")


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What identifies one version of a stored file: for skipping unchanged inputs between runs.

    ``mtime_ns`` is the modification time in nanoseconds since the epoch (an object store's
    ``LastModified``, whole seconds there); ``etag`` the object store's entity tag (None for local files).
    """

    url: str
    size: int
    mtime_ns: int | None
    etag: str | None


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URL (``s3://...``, ``gs://...``, ``https://...``) rather than a local path.

    >>> is_url("s3://bucket/ep.mcap"), is_url("/data/ep.mcap"), is_url("C://data")
    (True, False, False)
    """
    return isinstance(path, str) and _URL.match(path) is not None


def join(url: str, relative: str) -> str:
    """``relative`` (a POSIX path) resolved inside the folder (prefix) ``url``, ``.`` and ``..`` folded.

    Local paths join with :func:`os.path.join` and :func:`os.path.normpath`.

    Raises:
        ValueError: for a URL, ``relative`` is absolute or climbs above its root (the bucket, for S3).

    >>> join("s3://bucket/a", "b/../c.mkv")
    's3://bucket/a/c.mkv'
    """
    if not is_url(url):
        return os.path.normpath(os.path.join(url, relative))
    if relative.startswith("/") or is_url(relative):
        raise ValueError(f"Invalid relative path ({relative!r}): it is absolute")
    root, folder = _split(url)
    joined = posixpath.normpath(posixpath.join(folder, relative))
    if joined == ".." or joined.startswith("../"):
        raise ValueError(f"Invalid relative path ({relative!r}): it climbs above {root}")
    return root.rstrip("/") if joined == "." else f"{root}{joined}"


def dirname(url: str) -> str:
    """The folder holding ``url``: ``s3://b/x/ep.mcap`` -> ``s3://b/x``; an absolute local folder for a path."""
    if not is_url(url):
        return os.path.dirname(os.path.abspath(url))
    root, path = _split(url)
    return f"{root}{posixpath.dirname(posixpath.normpath(path))}".rstrip("/") if path else root.rstrip("/")


def filesystem(url: str, storage_options: StorageOptions | None = None) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and the path inside it (``fsspec.core.url_to_fs``).

    Raises:
        ImportError: the protocol's filesystem package is missing (names the install command).
    """
    try:
        from fsspec.core import url_to_fs
    except ImportError as e:  # pragma: no cover - fsspec comes with datasets
        raise ImportError(f"Reading URLs needs fsspec. Install it with: {_install_hint(url)}") from e
    try:
        return url_to_fs(url, **dict(storage_options or {}))
    except ImportError as e:
        raise ImportError(
            f"Opening {url} needs the filesystem of its protocol ({e}). Install: {_install_hint(url)}"
        ) from e


def open_input(
    url: str | os.PathLike[str], storage_options: StorageOptions | None = None, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> BinaryIO:
    """Open a local path or URL for reading, as a seekable binary file. Close it when done.

    A local path is opened with :func:`open` (``storage_options`` and ``block_size`` unused). A URL is
    opened through fsspec with a read-ahead cache: each read that misses the cache is one range request
    for the bytes asked plus ``block_size`` more, so reading a few parts of a large object fetches
    little more than those parts.

    Raises:
        FileNotFoundError: no file or object there (``filename`` is the URL); other ``OSError`` for local
            files (permissions, a folder).
        StorageAccessError: access denied, no usable credentials, or the endpoint cannot be reached.
        ImportError: the protocol's filesystem package is missing.
    """
    if not is_url(url):
        return open(url, "rb")
    url = str(url)
    fs, path = filesystem(url, storage_options)
    try:
        return fs.open(path, "rb", block_size=block_size, cache_type="readahead")
    except Exception as e:
        _raise_translated(e, url)


def stat(url: str | os.PathLike[str], storage_options: StorageOptions | None = None) -> ObjectInfo:
    """Size, modification time and (for object stores) ETag of a file or object.

    Raises:
        FileNotFoundError, StorageAccessError: as :func:`open_input`.
    """
    if not is_url(url):
        st = os.stat(url)
        return ObjectInfo(url=os.fspath(url), size=st.st_size, mtime_ns=st.st_mtime_ns, etag=None)
    url = str(url)
    fs, path = filesystem(url, storage_options)
    try:
        info = fs.info(path)
    except Exception as e:
        _raise_translated(e, url)
    if info.get("type") == "directory":
        raise FileNotFoundError(errno.ENOENT, "Not an object (a prefix)", url)
    return ObjectInfo(url=url, size=int(info["size"]), mtime_ns=_mtime_ns(info), etag=info.get("ETag"))


def exists(url: str | os.PathLike[str], storage_options: StorageOptions | None = None) -> bool:
    """Whether a file, folder, object or non-empty prefix is at ``url`` (checked before a long build).

    Raises:
        StorageAccessError: as :func:`open_input`.
    """
    if not is_url(url):
        return os.path.exists(url)
    url = str(url)
    fs, path = filesystem(url, storage_options)
    try:
        return bool(fs.exists(path.rstrip("/")))
    except Exception as e:
        _raise_translated(e, url)


def list_recordings(url: str, storage_options: StorageOptions | None = None, *, suffix: str = ".mcap") -> list[str]:
    """Every object ending in ``suffix`` under the prefix ``url``, recursively, as sorted URLs.

    ``url`` names a folder (prefix): ``s3://bucket/recordings`` lists ``s3://bucket/recordings/**.mcap``,
    never ``s3://bucket/recordings-old/...``; a URL naming one object lists just it. An empty or missing
    prefix gives an empty list. Local folders are discovered by stage 1 itself (symlinks, duplicates).

    Raises:
        ValueError: ``url`` is not a URL.
        StorageAccessError: the listing is denied or the endpoint cannot be reached.
    """
    return [info.url for info in list_objects(url, storage_options, suffix=suffix)]


def list_objects(url: str, storage_options: StorageOptions | None = None, *, suffix: str = "") -> list[ObjectInfo]:
    """:func:`list_recordings` with each object's size, modification time and ETag, from the listing itself.

    One recursive listing; no request per object. ``suffix`` "" lists every object under the prefix.

    Raises:
        ValueError: ``url`` is not a URL.
        StorageAccessError: the listing is denied or the endpoint cannot be reached.
    """
    if not is_url(url):
        raise ValueError(f"Invalid url ({url!r}). list_recordings lists object-store prefixes such as s3://bucket/dir")
    fs, path = filesystem(url, storage_options)
    try:
        found = fs.find(path.rstrip("/"), withdirs=False, detail=True)
    except FileNotFoundError:
        return []
    except Exception as e:
        _raise_translated(e, url)
    infos = [
        ObjectInfo(
            url=fs.unstrip_protocol(key),
            size=int(info.get("size") or 0),
            mtime_ns=_mtime_ns(info),
            etag=info.get("ETag"),
        )
        for key, info in found.items()
        if key.endswith(suffix) and info.get("type") != "directory"
    ]
    return sorted(infos, key=lambda info: info.url)


def upload_dataset_dir(
    local_dir: str | os.PathLike[str],
    url: str,
    storage_options: StorageOptions | None = None,
    *,
    overwrite: bool = False,
) -> None:
    """Publish a dataset folder in the ``save_to_disk`` layout, built locally, to the prefix ``url``.

    ``datasets.load_from_disk(url, storage_options=...)`` only recognises a dataset by its top-level
    ``dataset_dict.json`` (a ``DatasetDict``) or ``state.json`` (a ``Dataset``). Object stores have no
    rename, so this is what "atomic" means here: every other file is uploaded first, then each split's
    ``state.json``, then the top-level marker, last. A partial upload is never loadable, and an upload
    that fails removes what it wrote. With ``overwrite``, an existing dataset stops being loadable (its
    marker is deleted first) before it is removed and replaced.

    Raises:
        OutputExistsError: something is already stored under ``url`` and ``overwrite`` is False.
        StorageAccessError: a request was denied or the endpoint cannot be reached.
        ValueError: ``url`` is not a URL, or ``local_dir`` has no top-level ``dataset_dict.json``/``state.json``.
    """
    if not is_url(url):
        raise ValueError(
            f"Invalid url ({url!r}). upload_dataset_dir writes to object-store prefixes such as s3://b/dir"
        )
    local = Path(local_dir)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    top_markers = [local / name for name in _DATASET_MARKERS if (local / name).is_file()]
    if not top_markers:
        raise ValueError(f"Invalid local_dir ({local}): no dataset_dict.json or state.json, not a saved dataset")
    fs, root = filesystem(url, storage_options)
    root = root.rstrip("/")
    markers = [f"{root}/{name}" for name in _DATASET_MARKERS]
    try:
        exists = fs.exists(root)
        if exists and overwrite:
            _remove(fs, root, first=markers)
    except Exception as e:
        _raise_translated(e, url)
    if exists and not overwrite:
        raise OutputExistsError("Output already exists; pass overwrite=True to replace it", path=url)
    split_markers = [p for p in files if p.name in _DATASET_MARKERS and p not in top_markers]
    phases = [[p for p in files if p.name not in _DATASET_MARKERS], split_markers, top_markers]
    try:
        for phase in phases:
            if phase:
                fs.put([str(p) for p in phase], [f"{root}/{p.relative_to(local).as_posix()}" for p in phase])
    except BaseException as e:
        logger.warning("Upload to %s failed (%s); removing what was written", url, e)
        try:
            _remove(fs, root, first=markers)
        except Exception as cleanup:  # the upload's error matters more; leftovers without markers do not load
            logger.warning("Could not remove the partial upload at %s: %s", url, cleanup)
        if isinstance(e, Exception):
            _raise_translated(e, url)
        raise
    fs.invalidate_cache(root)


def update_dataset_dir(
    local_dir: str | os.PathLike[str],
    url: str,
    storage_options: StorageOptions | None = None,
    *,
    keep: Collection[str] = (),
) -> None:
    """Replace the dataset stored at ``url`` by the one in ``local_dir`` without re-uploading what it shares.

    ``local_dir`` holds the new dataset's metadata and the files not yet stored; ``keep`` names (paths
    relative to ``url``, ``/``-separated) the stored files the new dataset also uses. The order keeps the old
    dataset loadable as long as possible: new files first, then each split's ``state.json``, then the
    top-level marker, and last the stored files neither dataset part nor kept are deleted. A failure before
    the markers leaves the old dataset as it was (new files it left behind are deleted by the next update).
    A reader that loads while the split markers are replaced one by one can see a mix of old and new splits.

    Raises:
        StorageAccessError: a request was denied or the endpoint cannot be reached.
        ValueError: ``url`` is not a URL, or ``local_dir`` has no top-level ``dataset_dict.json``/``state.json``.
    """
    if not is_url(url):
        raise ValueError(f"Invalid url ({url!r}). update_dataset_dir writes to object-store prefixes such as s3://b/d")
    local = Path(local_dir)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    top_markers = [local / name for name in _DATASET_MARKERS if (local / name).is_file()]
    if not top_markers:
        raise ValueError(f"Invalid local_dir ({local}): no dataset_dict.json or state.json, not a saved dataset")
    fs, root = filesystem(url, storage_options)
    root = root.rstrip("/")
    split_markers = [p for p in files if p.name in _DATASET_MARKERS and p not in top_markers]
    phases = [[p for p in files if p.name not in _DATASET_MARKERS], split_markers, top_markers]
    wanted = {f"{root}/{p.relative_to(local).as_posix()}" for p in files} | {f"{root}/{k}" for k in keep}
    try:
        for phase in phases:
            if phase:
                fs.put([str(p) for p in phase], [f"{root}/{p.relative_to(local).as_posix()}" for p in phase])
        fs.invalidate_cache(root)
        stale = [p for p in fs.find(root, withdirs=False) if p not in wanted]
        if stale:
            fs.rm(stale)
    except Exception as e:
        _raise_translated(e, url)
    fs.invalidate_cache(root)


def download_dir(url: str, local_dir: str | os.PathLike[str], storage_options: StorageOptions | None = None) -> None:
    """Download every object under the prefix ``url`` into the local folder ``local_dir`` (created), keeping the
    relative paths.

    Raises:
        FileNotFoundError: nothing is stored under ``url``.
        StorageAccessError: a request was denied or the endpoint cannot be reached.
        ValueError: ``url`` is not a URL.
    """
    if not is_url(url):
        raise ValueError(f"Invalid url ({url!r}). download_dir reads object-store prefixes such as s3://b/dir")
    fs, root = filesystem(url, storage_options)
    root = root.rstrip("/")
    try:
        found = fs.find(root, withdirs=False)
        if not found:
            raise FileNotFoundError(errno.ENOENT, "No objects under this prefix", url)
        local = Path(local_dir)
        for key in found:
            relative = posixpath.relpath(key, root)
            (local / relative).parent.mkdir(parents=True, exist_ok=True)
        fs.get(found, [str(local / posixpath.relpath(key, root)) for key in found])
    except Exception as e:
        _raise_translated(e, url)


# -- helpers -------------------------------------------------------------------------------------


def _split(url: str) -> tuple[str, str]:
    """``("s3://bucket/", "a/b.mcap")``: the root (scheme and authority) and the path below it."""
    match = _URL.match(url)
    assert match is not None
    rest = url[match.end() :]
    authority, _, path = rest.partition("/")
    return f"{match.group(0)}{authority}/", path


def _install_hint(url: str) -> str:
    match = _URL.match(url)
    protocol = match.group(1).lower() if match else ""
    return _INSTALL_HINTS.get(protocol, f"the fsspec implementation for {protocol or 'this protocol'}")


def _remove(fs: Any, root: str, *, first: list[str]) -> None:
    for marker in first:
        if fs.exists(marker):
            fs.rm_file(marker)
    if fs.exists(root):
        fs.rm(root, recursive=True)
    fs.invalidate_cache(root)


def _mtime_ns(info: Mapping[str, Any]) -> int | None:
    for key in ("LastModified", "last_modified", "mtime", "updated"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):  # datetime
            return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
        if isinstance(value, int | float):
            return int(value * 1_000_000_000)
    return None


def _raise_translated(error: Exception, url: str) -> NoReturn:
    """Raise ``error`` as :func:`_translate` maps it; an error it does not know is re-raised as it is.

    A mapped error is raised ``from None``: its message names the URL and the client's reason, and a
    botocore traceback would only bury it.
    """
    translated = _translate(error, url)
    if translated is error:
        raise error
    raise translated from None


def _translate(error: Exception, url: str) -> Exception:
    """A storage client's error as ours: missing -> FileNotFoundError(url); denied/unreachable -> StorageAccessError."""
    if isinstance(error, FileNotFoundError | IsADirectoryError):
        return FileNotFoundError(errno.ENOENT, "No such object", url)
    if isinstance(error, PermissionError):
        return StorageAccessError(
            f"Access denied by the object store ({_client_error_code(error) or error}): the credentials are "
            "wrong, missing, or not allowed this request; check storage_options or the credential chain",
            path=url,
        )
    kind = type(error)
    if kind.__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp", "google", "azure") or isinstance(
        error, ConnectionError | TimeoutError
    ):
        return StorageAccessError(f"Object store request failed ({kind.__name__}: {error})", path=url)
    return error


def _client_error_code(error: BaseException) -> str | None:
    """The service's error code of the ``ClientError`` behind an s3fs error, e.g. ``InvalidAccessKeyId``."""
    cause = error.__cause__ or error.__context__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        message = response.get("Error", {}).get("Message")
        return f"{code}: {message}" if code and message and message != code else code
    return None
