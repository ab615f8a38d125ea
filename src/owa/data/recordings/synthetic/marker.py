"""The frame-index marker: a band of black/white blocks that every synthetic frame carries at its top.

Blocks, left to right: white, black (sync), :data:`MARKER_BITS` index bits (MSB first, white = 1), an
even-parity bit, white (sync). The band is ``height // 8`` rows high and survives lossy coding, so
:func:`read_frame_marker` tells which encoded frame a decoder returned.
"""

from __future__ import annotations

import itertools

import numpy as np

from owa.data.errors import MediaError

__all__ = ["MARKER_BITS", "read_frame_marker", "render_frame_marker"]

MARKER_BITS = 20
"""Bits of frame index in the marker: indices 0 .. 2**20 - 1."""
_MARKER_BLOCKS = MARKER_BITS + 4


def _marker_geometry(width: int, height: int) -> tuple[int, list[int]]:
    band_height = height // 8
    edges = [round(b * width / _MARKER_BLOCKS) for b in range(_MARKER_BLOCKS + 1)]
    return band_height, edges


def _marker_levels(index: int) -> list[int]:
    bits = [(index >> (MARKER_BITS - 1 - b)) & 1 for b in range(MARKER_BITS)]
    return [1, 0, *bits, sum(bits) & 1, 1]


def render_frame_marker(rgb: np.ndarray, index: int) -> None:
    """Draw the marker of frame ``index`` into the top band (``height // 8`` rows) of ``rgb`` in place.

    Raises:
        ValueError: ``index`` does not fit :data:`MARKER_BITS` bits, or ``rgb`` is not ``(H, W, 3)`` uint8.
    """
    _check_rgb(rgb)
    if not 0 <= index < 2**MARKER_BITS:
        raise ValueError(f"Invalid frame index ({index}). It must be in [0, {2**MARKER_BITS})")
    band_height, edges = _marker_geometry(rgb.shape[1], rgb.shape[0])
    for level, x0, x1 in zip(_marker_levels(index), edges, edges[1:], strict=False):
        rgb[:band_height, x0:x1] = 255 * level


def read_frame_marker(rgb: np.ndarray) -> int:
    """Read the frame index from a decoded ``(H, W, 3)`` uint8 RGB frame of a sample video.

    Each block is sampled in its central half and thresholded at mid-grey, so coding noise and
    moderate rescaling do not matter.

    Raises:
        ValueError: ``rgb`` is not an ``(H, W, 3)`` uint8 array.
        MediaError: the frame carries no valid marker (sync or parity mismatch).
    """
    _check_rgb(rgb)
    band_height, edges = _marker_geometry(rgb.shape[1], rgb.shape[0])
    y0, y1 = band_height // 4, max(band_height // 4 + 1, (3 * band_height) // 4)
    levels = []
    for x0, x1 in itertools.pairwise(edges):
        quarter = (x1 - x0) // 4
        block = rgb[y0:y1, x0 + quarter : max(x0 + quarter + 1, x1 - quarter)]
        levels.append(1 if float(block.mean()) >= 128.0 else 0)
    bits = levels[2 : 2 + MARKER_BITS]
    if levels[:2] != [1, 0] or levels[-1] != 1 or (sum(bits) & 1) != levels[-2]:
        raise MediaError(f"No valid frame marker in this {rgb.shape[1]}x{rgb.shape[0]} image (blocks read: {levels})")
    index = 0
    for bit in bits:
        index = (index << 1) | bit
    return index


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"Invalid frame ({type(rgb).__name__} {shape}). Expected an (H, W, 3) uint8 RGB array")
    if rgb.shape[0] < 8 or rgb.shape[1] < _MARKER_BLOCKS:
        raise ValueError(f"Invalid frame size {rgb.shape[1]}x{rgb.shape[0]}. The marker needs at least 24x8 pixels")
