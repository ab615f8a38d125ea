"""Still images: a media location (local file, http(s) or object-store URL, inline ``data:`` bytes) to RGB pixels.

Screen messages without ``pts_ns`` point at an image rather than a video frame. Pillow is imported on
first use.
"""

from __future__ import annotations

import io

import numpy as np

from owa.data import storage
from owa.data.errors import FrameDecodeError, VideoNotFoundError
from owa.data.media import ResolvedMedia

__all__ = ["decode_image"]


def decode_image(media: ResolvedMedia, *, timeout_s: float = 30.0) -> np.ndarray:
    """Decode a still image (local file, http(s) URL or inline ``data:`` bytes) to ``(H, W, 3)`` uint8 RGB.

    ``media`` is a location that passed a :class:`~owa.data.media.MediaPolicy`; ``timeout_s`` bounds
    the fetch of a remote image.

    Raises:
        VideoNotFoundError: the file is missing or cannot be read, or the URL cannot be fetched.
        StorageAccessError: an object store denied access or cannot be reached.
        FrameDecodeError: the bytes are not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    where = media.location if media.kind != "data" else media.location[:64]
    if media.kind == "data":
        assert media.data is not None
        source: io.BytesIO | str = io.BytesIO(media.data)
    elif media.kind == "remote" and not media.location.startswith(("http://", "https://")):
        try:  # an object-store URL (s3://...): fsspec's defaults give the credentials
            with storage.open_input(media.location) as file:
                source = io.BytesIO(file.read())
        except FileNotFoundError as e:
            raise VideoNotFoundError("Image object not found", path=where) from e
    elif media.kind == "remote":
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(media.location, timeout=timeout_s) as response:
                source = io.BytesIO(response.read())
        except (urllib.error.URLError, OSError) as e:
            raise VideoNotFoundError(f"Image cannot be fetched: {e}", path=where) from e
    else:
        source = media.location
    try:
        with Image.open(source) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError as e:
        raise VideoNotFoundError("Image file not found", path=where) from e
    except (PermissionError, IsADirectoryError) as e:
        raise VideoNotFoundError(f"Image file cannot be read: {e}", path=where) from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise FrameDecodeError(f"Image cannot be decoded: {e}", path=where) from e
