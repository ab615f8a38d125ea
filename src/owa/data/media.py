"""The media URI policy: which ``media_ref.uri`` values may be opened, and where they point.

A screen message's ``media_ref.uri`` comes from the recording, so it is untrusted input. By default
only relative paths that stay inside the recording's folder are allowed, checked after resolving
symlinks. Absolute paths (POSIX ``/...``, Windows drive paths such as ``C:/...`` or ``C:\\...``,
``file://``), relative paths that leave the folder, remote ``http(s)://`` URLs and inline ``data:``
URIs each need an explicit opt-in on :class:`MediaPolicy`.

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

from owa.data.errors import UnsafeMediaURIError

__all__ = ["DEFAULT_MEDIA_POLICY", "MediaPolicy", "ResolvedMedia"]

# "C:/x", "C:\x" and the drive-relative "C:x": never confined to the recording's folder.
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedMedia:
    """A media location that passed the policy: a local file path, a remote URL or inline bytes."""

    kind: Literal["file", "remote", "data"]
    location: str
    data: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class MediaPolicy:
    """Which media URIs may be opened.

    By default only relative paths that stay inside the recording's folder (after resolving symlinks)
    are allowed. ``allow_absolute`` opens absolute paths (``/...``, ``C:/...``, ``C:\\...``,
    ``file://``) and relative paths that leave the folder (``../``, or a symlink pointing outside);
    ``allow_remote`` opens ``http(s)://`` URLs and ``allow_data`` inline ``data:`` URIs, whose payloads
    are capped at ``max_data_uri_bytes`` decoded bytes.
    """

    allow_absolute: bool = False
    allow_remote: bool = False
    allow_data: bool = False
    max_data_uri_bytes: int = 16 * 1024 * 1024

    def resolve(self, uri: str, base_dir: str | os.PathLike[str] | None) -> ResolvedMedia:
        """Resolve ``uri`` against ``base_dir`` (the recording's folder; the current directory if None).

        A relative path resolves to ``base_dir / uri`` normalized (``..`` folded, symlinks kept as
        named); whether it stays inside ``base_dir`` is decided on the real paths.

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
        if parsed.scheme in ("http", "https"):
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
                "Supported: relative paths, file://, http(s)://, data:",
                uri=uri,
            )
        if Path(uri).is_absolute():
            return self._absolute(uri)
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
