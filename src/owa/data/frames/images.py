"""Still images: a media location (local file, http(s) or object-store URL, inline ``data:`` bytes) to RGB pixels.

Screen messages without ``pts_ns`` point at an image rather than a video frame. Pillow is imported on
first use.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import numpy as np

from owa.data import storage
from owa.data.errors import FrameDecodeError, VideoNotFoundError
from owa.data.media import ResolvedMedia

__all__ = ["decode_image", "enable_pillow_block_cache", "resize_image", "to_pil"]

logger = logging.getLogger(__name__)


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


def resize_image(image: np.ndarray, size: tuple[int, int], resample: str = "bicubic") -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 image to ``size`` (``(height, width)``) with Pillow's ``resample`` filter
    (``"bilinear"``, ``"bicubic"``, ``"lanczos"`` or ``"area"``, Pillow's BOX); the same size returns it as is."""
    if image.shape[:2] == tuple(size):
        return image
    from PIL import Image

    filters = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
        "area": Image.Resampling.BOX,
    }
    height, width = size
    return np.asarray(Image.fromarray(image).resize((width, height), filters[resample]))


_PILLOW_CACHE_BYTES = 256 * 1024 * 1024
_pillow_cache_checked = False


def enable_pillow_block_cache() -> None:
    """Let Pillow reuse freed image memory, unless the application configured Pillow's block cache itself.

    Every ``PIL.Image`` of a decoded frame is a fresh multi-megabyte allocation; with Pillow's default (no block
    cache) each one page-faults its memory in, which costs as much as decoding the frame. Pillow's own knob
    (``PILLOW_BLOCKS_MAX``) keeps up to N freed blocks for reuse. We set it on the first PIL frame, once per
    process, to at most 256 MB of retained blocks, and only when the application has not: set the environment
    variable ``PILLOW_BLOCKS_MAX``
    (``0`` to turn caching off) or call ``PIL.Image.core.set_blocks_max`` yourself to take over.
    """
    global _pillow_cache_checked
    if _pillow_cache_checked:
        return
    _pillow_cache_checked = True
    from PIL import Image

    if "PILLOW_BLOCKS_MAX" in os.environ or Image.core.get_blocks_max() != 0:
        return
    blocks = max(1, _PILLOW_CACHE_BYTES // Image.core.get_block_size())
    Image.core.set_blocks_max(blocks)
    logger.debug("Pillow block cache enabled: up to %d blocks of %d bytes", blocks, Image.core.get_block_size())


def to_pil(array: np.ndarray) -> Any:
    """An ``(H, W, 3)`` uint8 RGB array as a ``PIL.Image`` (with Pillow's block cache on, see
    :func:`enable_pillow_block_cache`)."""
    from PIL import Image

    enable_pillow_block_cache()
    return Image.fromarray(array)
