"""The media URI policy: which ``media_ref.uri`` values may be opened, and where they point.

A screen message's ``media_ref.uri`` comes from the recording, so it is untrusted input. By default
only relative paths that stay inside the recording's folder are allowed, checked after resolving
symlinks. Absolute paths (POSIX ``/...``, Windows drive paths such as ``C:/...`` or ``C:\\...``,
``file://``), relative paths that leave the folder, remote ``http(s)://`` URLs and inline ``data:``
URIs each need an explicit opt-in on :class:`MediaPolicy`.

A recording stored at a URL (``s3://bucket/prefix/ep.mcap``) has a URL prefix as its folder: a relative
URI resolves to a URL inside it under the same rule (no ``..`` out of the prefix without
``allow_absolute``, and never out of the bucket). Object-store URIs written in a recording
(``s3://...``) are remote, like ``http(s)://``.

>>> MediaPolicy().resolve("video.mkv", "/data/rec").location
'/data/rec/video.mkv'
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from owa.data import storage
from owa.data.errors import UnsafeMediaURIError

__all__ = ["DEFAULT_MEDIA_POLICY", "MediaPolicy", "ResolvedMedia"]

# "C:/x", "C:\x" and the drive-relative "C:x": never confined to the recording's folder.
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
# Remote media: web URLs, and object-store URLs opened through fsspec (owa.data.storage).
_REMOTE_SCHEMES = frozenset(("http", "https", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"))


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedMedia:
    """A media location that passed the policy: a local file path, a remote URL or inline bytes.

    ``"remote"`` locations are ``http(s)://`` URLs or object-store URLs (``s3://...``), opened through
    :mod:`owa.data.storage`.
    """

    kind: Literal["file", "remote", "data"]
    location: str
    data: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class MediaPolicy:
    """Which media URIs may be opened.

    By default only relative paths that stay inside the recording's folder (after resolving symlinks)
    are allowed. ``allow_absolute`` opens absolute paths (``/...``, ``C:/...``, ``C:\\...``,
    ``file://``) and relative paths that leave the folder (``../``, or a symlink pointing outside);
    ``allow_remote`` opens ``http(s)://`` and object-store (``s3://``, ``gs://``, ...) URIs and
    ``allow_data`` inline ``data:`` URIs, whose payloads are capped at ``max_data_uri_bytes`` decoded
    bytes. For a recording stored at a URL, ``base_dir`` is its URL prefix and relative URIs stay inside it
    by the same rule (there are no symlinks in object stores).
    """

    allow_absolute: bool = False
    allow_remote: bool = False
    allow_data: bool = False
    max_data_uri_bytes: int = 16 * 1024 * 1024

    def resolve(self, uri: str, base_dir: str | os.PathLike[str] | None) -> ResolvedMedia:
        """Resolve ``uri`` against ``base_dir`` (the recording's folder; the current directory if None).

        A relative path resolves to ``base_dir / uri`` normalized (``..`` folded, symlinks kept as
        named); whether it stays inside ``base_dir`` is decided on the real paths. When ``base_dir`` is a
        URL prefix, it resolves to a URL (kind ``"remote"``) inside that prefix.

        Raises:
            UnsafeMediaURIError: the URI is not allowed by this policy, or is malformed.
        """
        if not uri:
            raise UnsafeMediaURIError("Empty media URI")
        if uri.startswith("data:"):
            if not self.allow_data:
                raise UnsafeMediaURIError(
                    "data: media URIs are disabled; pass MediaPolicy(allow_data=True) to allow them", uri=uri[:64]
                )
            return ResolvedMedia(kind="data", location=uri, data=self._decode_data_uri(uri))
        if _WINDOWS_DRIVE.match(uri):
            return self._absolute(uri)
        parsed = urlparse(uri)
        if parsed.scheme in _REMOTE_SCHEMES:
            if not self.allow_remote:
                raise UnsafeMediaURIError(
                    "Remote media URIs are disabled; pass MediaPolicy(allow_remote=True) to allow them", uri=uri
                )
            return ResolvedMedia(kind="remote", location=uri)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
            if not self.allow_absolute:
                raise UnsafeMediaURIError(
                    "file:// media URIs are disabled; pass MediaPolicy(allow_absolute=True) to allow them", uri=uri
                )
            return ResolvedMedia(kind="file", location=str(path))
        if parsed.scheme:
            raise UnsafeMediaURIError(
                f"Unsupported media URI scheme {parsed.scheme!r}. "
                f"Supported: relative paths, file://, data:, {', '.join(sorted(_REMOTE_SCHEMES))}",
                uri=uri,
            )
        if Path(uri).is_absolute():
            return self._absolute(uri)
        if base_dir is not None and storage.is_url(os.fspath(base_dir)):
            return self._in_prefix(uri, os.fspath(base_dir))
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        resolved = os.path.normpath(base / uri)
        real_base = os.path.realpath(base)
        if not self.allow_absolute and os.path.commonpath([os.path.realpath(resolved), real_base]) != real_base:
            raise UnsafeMediaURIError(
                "Relative media URI escapes the recording's folder (through '..' or a symlink); "
                "pass MediaPolicy(allow_absolute=True) to allow it",
                uri=uri,
                base_dir=str(base),
            )
        return ResolvedMedia(kind="file", location=resolved)

    def _in_prefix(self, uri: str, base_url: str) -> ResolvedMedia:
        """A relative ``uri`` of a recording stored under the URL prefix ``base_url``."""
        try:
            base = storage.join(base_url, ".")  # normalized, so the prefix test below compares like with like
            location = storage.join(base, uri.replace("\\", "/"))
        except ValueError as e:  # above the bucket: there is nothing to allow there
            raise UnsafeMediaURIError(
                f"Relative media URI leaves the storage root: {e}", uri=uri, base_dir=base_url
            ) from e
        if not self.allow_absolute and not location.startswith(base + "/"):
            raise UnsafeMediaURIError(
                "Relative media URI escapes the recording's prefix (through '..'); "
                "pass MediaPolicy(allow_absolute=True) to allow it",
                uri=uri,
                base_dir=base,
            )
        return ResolvedMedia(kind="remote", location=location)

    def _absolute(self, uri: str) -> ResolvedMedia:
        if not self.allow_absolute:
            raise UnsafeMediaURIError(
                "Absolute media paths are disabled; pass MediaPolicy(allow_absolute=True) to allow them", uri=uri
            )
        return ResolvedMedia(kind="file", location=str(Path(uri)))

    def _decode_data_uri(self, uri: str) -> bytes:
        header, sep, payload = uri.partition(",")
        if not sep or not header.endswith(";base64"):
            raise UnsafeMediaURIError("Only base64 data: URIs are supported (data:<mime>;base64,<payload>)")
        if len(payload) * 3 // 4 > self.max_data_uri_bytes:
            raise UnsafeMediaURIError(
                f"data: URI of about {len(payload) * 3 // 4} bytes exceeds the limit of {self.max_data_uri_bytes} bytes"
            )
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error as e:
            raise UnsafeMediaURIError(f"Malformed base64 in data: URI: {e}") from e


DEFAULT_MEDIA_POLICY = MediaPolicy()
