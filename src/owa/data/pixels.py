"""Model-ready pixels: decoded frames (uint8 RGB) → the ``pixel_values`` a vision-language model's forward takes.

The Hugging Face image processors resize each PIL image, rescale and normalize it in numpy, one image at a time
(about 20 ms per 720p frame for InternVL's, 100 ms for SmolVLM's, on one core). This module does the same work
cheaply, for the processors it recognizes (:func:`pixel_spec`):

* the resize happens in the video decoder, inside its colour conversion (``decode_screens(..., size=...)``,
  ``FSLDataset(image_size=...)``), so frames arrive as ``(H, W, 3)`` uint8 arrays at the model's size;
* :func:`normalize` rescales and normalizes a uint8 batch (a multiply into the float output and an in-place add),
  on whatever device the tensor is on (call it after ``.to("cuda")`` to normalize on the GPU; on the CPU the same
  float32 arithmetic runs in numpy, about 3x faster than torch's mixed-dtype multiply);
* :func:`patchify_qwen2_vl` lays Qwen2-VL's frames out as its processor does: ``(sum of patches, 1176)`` rows in
  merge-block order, plus ``image_grid_thw``.

========== ================================ ============= ============== ======================================
model      image processor                  frame size    filter         pixel_values
========== ================================ ============= ============== ======================================
SmolVLM    ``Idefics3ImageProcessor*``      square        Lanczos        ``(B, max images, 3, H, W)`` + mask
InternVL   ``GotOcr2ImageProcessor*``       square        bicubic        ``(N, 3, H, W)``
Qwen2-VL   ``Qwen2VLImageProcessor*``       multiple of 28 bicubic       ``(patches, 3*2*14*14)`` + grid
========== ================================ ============= ============== ======================================

Tolerance. The fast path resizes the video's YUV 4:2:0 planes in one swscale pass; the processors resize the
full-resolution RGB conversion with PIL (SmolVLM's twice: to a 2048-px longest edge, then to the square). On
natural-looking 1280x720 frames (the synthetic generator's desktop: windows, text, gradients) the mean absolute
difference is about 1/255 of the pixel range, 99% of values are within 5/255, and the maximum reaches about 64/255
at sharp saturated colour edges, where the video's half-resolution chroma is interpolated differently. Given the
same resized RGB input, the rescale, normalization and Qwen2-VL patch layout equal the processors' (float32
rounding aside). ``tests/test_pixels.py`` checks both.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from owa.data.errors import OWADataError
from owa.data.image_layout import ImageLayout

if TYPE_CHECKING:
    import torch

    from owa.data.frames.backend import Resample

__all__ = [
    "PixelBatch",
    "PixelSpec",
    "UnsupportedProcessorError",
    "batch_to_device",
    "collate_pixels",
    "normalize",
    "patchify_qwen2_vl",
    "pixel_spec",
    "smart_resize",
]

ModelKind = Literal["idefics3", "internvl", "qwen2_vl"]
_KINDS = {
    "Idefics3ImageProcessor": "idefics3",
    "Idefics3ImageProcessorPil": "idefics3",
    "Idefics3ImageProcessorFast": "idefics3",
    "SmolVLMImageProcessor": "idefics3",
    "SmolVLMImageProcessorPil": "idefics3",
    "SmolVLMImageProcessorFast": "idefics3",
    "GotOcr2ImageProcessor": "internvl",
    "GotOcr2ImageProcessorPil": "internvl",
    "GotOcr2ImageProcessorFast": "internvl",
    "Qwen2VLImageProcessor": "qwen2_vl",
    "Qwen2VLImageProcessorPil": "qwen2_vl",
    "Qwen2VLImageProcessorFast": "qwen2_vl",
}
# PIL's resampling enum values (stable since Pillow 2): NEAREST 0, LANCZOS 1, BILINEAR 2, BICUBIC 3, BOX 4.
_PIL_RESAMPLE: dict[int, Resample] = {1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "area"}


class UnsupportedProcessorError(OWADataError, ValueError):
    """A processor whose resize and normalization this module does not know, or with image splitting on."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PixelSpec:
    """What an image processor does to a frame, as far as the fast pixel path needs it.

    Attributes:
        kind: which model family's tensors to build: ``"idefics3"`` (SmolVLM), ``"internvl"`` or ``"qwen2_vl"``.
        image_size: ``(height, width)`` every frame is resized to; for Qwen2-VL, None means "the frame's own size
            rounded by :func:`smart_resize`", as its processor does.
        resample: the resize filter.
        image_mean: per-channel mean, after rescaling to ``[0, 1]``.
        image_std: per-channel standard deviation.
        rescale_factor: what uint8 values are multiplied by first (``1 / 255``).
        patch_size, merge_size, temporal_patch_size: Qwen2-VL's patching.
        min_pixels, max_pixels: Qwen2-VL's :func:`smart_resize` bounds.
        longest_edge: SmolVLM: its processor first resizes a frame to this longest edge (aspect kept), then to the
            square; the fast path does the same for frames not already at the model's size.
    """

    kind: ModelKind
    image_size: tuple[int, int] | None
    resample: Resample
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    rescale_factor: float = 1 / 255
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    longest_edge: int | None = None

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` a ``height x width`` frame is resized to."""
        if self.image_size is not None:
            return self.image_size
        factor = self.patch_size * self.merge_size
        return smart_resize(height, width, factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)

    def tokens_per_image(self, height: int, width: int) -> int | None:
        """Qwen2-VL: image tokens of a frame of this (already resized) size; None for the other kinds."""
        if self.kind != "qwen2_vl":
            return None
        return (height // self.patch_size) * (width // self.patch_size) // self.merge_size**2


def pixel_spec(processor: Any, *, image_size: tuple[int, int] | None = None) -> PixelSpec:
    """The :class:`PixelSpec` of a transformers processor or image processor.

    Recognized (by class name, along the MRO): Idefics3/SmolVLM (image splitting must be off), GotOcr2 (InternVL;
    a processor's ``crop_to_patches`` is turned off for it) and Qwen2-VL image processors, in their PIL, numpy and
    torchvision variants.

    Args:
        processor: a processor (with ``.image_processor``) or an image processor.
        image_size: Qwen2-VL only: ``(height, width)`` to resize every frame to (multiples of 28; default: each
            frame's :func:`smart_resize` size, as the processor). SmolVLM and InternVL have a size of their own.

    Raises:
        UnsupportedProcessorError: another class, or image splitting on.
    """
    image_processor = getattr(processor, "image_processor", processor)
    kind = next((_KINDS[k.__name__] for k in type(image_processor).__mro__ if k.__name__ in _KINDS), None)
    if kind is None:
        raise UnsupportedProcessorError(
            f"Invalid image processor ({type(image_processor).__name__}). Supported values are "
            f"{', '.join(sorted(_KINDS))}; for another model set pixels='processor' to call it as it is."
        )
    mean = _channels(image_processor.image_mean)
    std = _channels(image_processor.image_std)
    resample = _PIL_RESAMPLE.get(int(getattr(image_processor, "resample", 3) or 3), "bicubic")
    rescale = float(getattr(image_processor, "rescale_factor", 1 / 255))
    if kind == "idefics3":
        if getattr(image_processor, "do_image_splitting", False):
            raise UnsupportedProcessorError(
                f"Invalid image processor ({type(image_processor).__name__} with do_image_splitting=True). "
                "Splitting gives a frame a variable number of tiles. Set image_processor.do_image_splitting = False."
            )
        side = _get(image_processor.max_image_size, "longest_edge")
        return PixelSpec(
            kind=kind,
            image_size=(side, side),
            resample=resample,
            image_mean=mean,
            image_std=std,
            rescale_factor=rescale,
            longest_edge=_get(getattr(image_processor, "size", None), "longest_edge"),
        )
    if kind == "internvl":
        size = image_processor.size
        return PixelSpec(
            kind=kind,
            image_size=(_get(size, "height"), _get(size, "width")),
            resample=resample,
            image_mean=mean,
            image_std=std,
            rescale_factor=rescale,
        )
    size = getattr(image_processor, "size", None)
    spec = PixelSpec(
        kind=kind,
        image_size=None if image_size is None else (int(image_size[0]), int(image_size[1])),
        resample=resample,
        image_mean=mean,
        image_std=std,
        rescale_factor=rescale,
        patch_size=int(image_processor.patch_size),
        merge_size=int(image_processor.merge_size),
        temporal_patch_size=int(image_processor.temporal_patch_size),
        min_pixels=int(_get(size, "shortest_edge") or getattr(image_processor, "min_pixels", 56 * 56)),
        max_pixels=int(_get(size, "longest_edge") or getattr(image_processor, "max_pixels", 28 * 28 * 1280)),
    )
    natural = (
        None if spec.image_size is None else dataclasses.replace(spec, image_size=None).target_size(*spec.image_size)
    )
    if spec.image_size is not None and natural != spec.image_size:
        raise UnsupportedProcessorError(
            f"Invalid image_size ({image_size!r}). The Qwen2-VL processor would resize it to "
            f"{natural}. Supported values are multiples of "
            f"{spec.patch_size * spec.merge_size} within {spec.min_pixels} to {spec.max_pixels} pixels."
        )
    return spec


def smart_resize(
    height: int, width: int, factor: int = 28, *, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280
) -> tuple[int, int]:
    """Qwen2-VL's frame size for a ``height x width`` image: both sides multiples of ``factor``, the pixel count
    within ``[min_pixels, max_pixels]``, the aspect ratio kept as closely as possible (the processor's formula)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"Invalid image size ({height}x{width}). The aspect ratio must be below 200.")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


MeanStd = tuple[Sequence[float], Sequence[float]]
_NUMPY_DTYPES = frozenset(("torch.uint8", "torch.float32", "torch.float64"))


def normalize(
    pixels: torch.Tensor,
    layout_or_mean_std: ImageLayout | PixelSpec | MeanStd | Mapping[str, Any],
    device: torch.device | str | None = None,
    *,
    dtype: torch.dtype | None = None,
    rescale_factor: float = 1 / 255,
) -> torch.Tensor:
    """``(pixels * rescale_factor - mean) / std`` per channel, as ``pixels * scale + bias`` in float32 (on the CPU
    in numpy, elsewhere in torch; the same result).

    Args:
        pixels: uint8 (or float) RGB, channels first: ``(..., 3, H, W)``; or Qwen2-VL patch rows
            ``(patches, 3 * temporal * patch * patch)`` (channel-major columns, as :func:`patchify_qwen2_vl`).
        layout_or_mean_std: an :class:`~owa.data.image_layout.ImageLayout` or :class:`PixelSpec` (their
            ``image_mean`` / ``image_std``), a ``(mean, std)`` pair, or a mapping with those keys.
        device: move ``pixels`` here first (e.g. ``"cuda"``: normalization then runs on the GPU, and only uint8
            crosses the bus). Default: where ``pixels`` are.
        dtype: the floating result type (default ``float32``; ``torch.bfloat16`` halves the memory).
        rescale_factor: what the values are multiplied by before normalizing (``1 / 255`` for uint8).

    Raises:
        ValueError: no mean/std in ``layout_or_mean_std``, or a shape with no channel axis of 3.

    Example::

        batch["pixel_values"] = normalize(batch["pixel_values"], layout, device="cuda", dtype=torch.bfloat16)
    """
    import torch

    mean, std = _mean_std(layout_or_mean_std)
    if isinstance(layout_or_mean_std, PixelSpec):
        rescale_factor = layout_or_mean_std.rescale_factor
    if device is not None:
        pixels = pixels.to(device, non_blocking=True)
    dtype = dtype or torch.float32
    std64 = np.asarray(std, dtype=np.float64)
    scale = torch.tensor(rescale_factor / std64, dtype=torch.float32, device=pixels.device)
    bias = torch.tensor(-np.asarray(mean, dtype=np.float64) / std64, dtype=torch.float32, device=pixels.device)
    if pixels.ndim >= 3 and pixels.shape[-3] == 3:
        shape = (3, 1, 1)
    elif pixels.ndim == 2 and pixels.shape[1] % 3 == 0:
        per_channel = pixels.shape[1] // 3  # Qwen2-VL rows: columns are (channel, time, row, column)
        scale, bias = scale.repeat_interleave(per_channel), bias.repeat_interleave(per_channel)
        shape = (pixels.shape[1],)
    else:
        raise ValueError(
            f"Invalid pixels shape ({tuple(pixels.shape)}). Supported values are (..., 3, H, W) or Qwen2-VL patch "
            "rows (patches, 3 * temporal * patch * patch)."
        )
    if pixels.device.type == "cpu" and str(pixels.dtype) in _NUMPY_DTYPES:
        out = _normalize_numpy(pixels, scale.numpy().reshape(shape), bias.numpy().reshape(shape))
    else:
        # Multiply straight from the (contiguous) uint8 values into the float output, then add in place: two
        # passes over the output and no float copy of the input.
        pixels = pixels.contiguous()
        out = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device)
        torch.mul(pixels, scale.view(shape), out=out).add_(bias.view(shape))
    return out if dtype == torch.float32 else out.to(dtype)


def _normalize_numpy(pixels: torch.Tensor, scale: np.ndarray, bias: np.ndarray) -> torch.Tensor:
    """:func:`normalize` on the CPU, in numpy: ``pixels * scale + bias`` in float32.

    The same float32 operations as torch's (multiply, then add), about 3x faster on uint8 input: torch's
    mixed-dtype multiply converts element by element, numpy's cast-and-multiply loop is vectorized. The input may
    be any strided view (e.g. ``(N, H, W, 3)`` frames permuted to channels first): no contiguous copy is made.
    In a DataLoader worker the output is allocated in shared memory, as ``default_collate`` does, so that handing
    the batch to the training process does not copy it again.
    """
    out = _empty_float32(tuple(pixels.shape))
    values = out.numpy()
    np.multiply(pixels.numpy(), scale, out=values, dtype=np.float32)
    np.add(values, bias, out=values)
    return out


def _empty_float32(shape: tuple[int, ...]) -> torch.Tensor:
    import torch
    from torch.utils.data import get_worker_info

    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * 4)
    return torch.empty(0, dtype=torch.float32).set_(storage).view(shape)


def patchify_qwen2_vl(
    images: torch.Tensor, *, patch_size: int = 14, merge_size: int = 2, temporal_patch_size: int = 2
) -> torch.Tensor:
    """Lay out same-sized images ``(N, C, H, W)`` as Qwen2-VL's processor does: rows of
    ``C * temporal_patch_size * patch_size**2`` values, ``(H // patch) * (W // patch)`` rows per image in
    merge-block order (each ``merge_size x merge_size`` block of patches together), images one after another.
    A still image is repeated ``temporal_patch_size`` times along time. Works on any dtype (uint8 included:
    patch first, :func:`normalize` later).

    Raises:
        ValueError: a side that is not a multiple of ``patch_size * merge_size``.
    """
    n, channels, height, width = images.shape
    factor = patch_size * merge_size
    if height % factor or width % factor:
        raise ValueError(
            f"Invalid image size ({height}x{width}). Both sides must be multiples of patch_size * merge_size "
            f"({factor}); resize with smart_resize first."
        )
    grid_h, grid_w = height // patch_size, width // patch_size
    patches = images.reshape(
        n, channels, grid_h // merge_size, merge_size, patch_size, grid_w // merge_size, merge_size, patch_size
    )
    # (n, gh, gw, mh, mw, C, ph, pw), then time repeated between C and ph.
    patches = patches.permute(0, 2, 5, 3, 6, 1, 4, 7).unsqueeze(6)
    patches = patches.expand(*patches.shape[:6], temporal_patch_size, *patches.shape[7:])
    return patches.reshape(n * grid_h * grid_w, channels * temporal_patch_size * patch_size * patch_size)


# ------------------------------------------------------------------------------------------------------------


def _mean_std(value: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if isinstance(value, ImageLayout | PixelSpec):
        mean, std = value.image_mean, value.image_std
    elif isinstance(value, Mapping):
        mean, std = value.get("image_mean", value.get("mean")), value.get("image_std", value.get("std"))
    elif isinstance(value, tuple | list) and len(value) == 2:
        mean, std = value
    else:
        mean = std = None
    if mean is None or std is None:
        raise ValueError(
            f"Invalid layout_or_mean_std ({value!r}). Supported values are an ImageLayout or PixelSpec with "
            "image_mean and image_std, a (mean, std) pair, or a mapping with image_mean and image_std."
        )
    return _channels(mean), _channels(std)


def _channels(value: Any) -> tuple[float, float, float]:
    if isinstance(value, int | float):
        return (float(value),) * 3  # type: ignore[return-value]
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"Invalid per-channel values ({value!r}). Supported values are 3 numbers (R, G, B).")
    return values  # type: ignore[return-value]


def _get(size: Any, key: str) -> Any:
    if size is None:
        return None
    if isinstance(size, Mapping):
        return size.get(key)
    return getattr(size, key, None)


# ------------------------------------------------------------------------------------------------------------
# Batches (what FSLCollator uses)
# ------------------------------------------------------------------------------------------------------------

_QWEN_BLANK_SIZE = (252, 448)  # the qwen2_vl ImageLayout preset's frame size


@dataclasses.dataclass
class PixelBatch:
    """The model's pixel tensors for a batch, and what the collator checks the token ids against.

    Attributes:
        tensors: ``pixel_values`` (+ ``pixel_attention_mask`` or ``image_grid_thw``); empty without images.
        token_counts: per sample, per image, the image tokens the model gives it (None where the count is fixed by
            the model but not known here: SmolVLM and InternVL).
        blank: ``(sample, image)`` of every skipped frame (None) filled with a black frame.
    """

    tensors: dict[str, Any]
    token_counts: list[list[int | None]]
    blank: list[tuple[int, int]]


def collate_pixels(
    images: Sequence[Sequence[Any]],
    spec: PixelSpec,
    *,
    normalize: bool = True,
    image_processor: Any = None,
) -> PixelBatch:
    """The model's pixel tensors for a batch's images (one list per sample).

    An image is a ``PIL.Image``, an ``(H, W, 3)`` uint8 RGB array (at the model's size when decoded with
    ``size=``; resized here otherwise) or None (a skipped frame: replaced by a black frame of the model's size).
    With ``image_processor``, PIL images go through it instead (the reference path); else the resize (when needed)
    uses Pillow with ``spec.resample`` and :func:`normalize` runs (skipped when ``normalize`` is False:
    uint8 ``pixel_values``).
    """
    import torch

    frames: list[list[np.ndarray | None]] = []
    blank: list[tuple[int, int]] = []
    default_size = spec.image_size
    for sample, sample_images in enumerate(images):
        row: list[np.ndarray | None] = []
        for index, image in enumerate(sample_images):
            if image is None:
                blank.append((sample, index))
                row.append(None)
                continue
            array = _rgb_array(image)
            size = spec.target_size(*array.shape[:2])
            default_size = default_size or size
            if image_processor is None and array.shape[:2] != size:
                from owa.data.frames.images import resize_image

                if spec.longest_edge:  # SmolVLM's processor resizes twice: to the longest edge, then the square
                    array = resize_image(array, _longest_edge_size(*array.shape[:2], spec.longest_edge), spec.resample)
                array = resize_image(array, size, spec.resample)
            row.append(array)
        frames.append(row)
    blank_size = default_size or _QWEN_BLANK_SIZE
    for sample, index in blank:
        frames[sample][index] = np.zeros((*blank_size, 3), dtype=np.uint8)
    flat = [frame for row in frames for frame in row if frame is not None]
    token_counts: list[list[int | None]] = [
        [spec.tokens_per_image(*spec.target_size(*f.shape[:2])) for f in row if f is not None] for row in frames
    ]
    if not flat:
        return PixelBatch({}, token_counts, blank)
    if image_processor is not None:
        tensors = _with_processor(image_processor, spec, frames)
    elif spec.kind == "idefics3":
        tensors = _idefics3(frames, spec, normalize)
    elif spec.kind == "internvl":
        pixels = torch.from_numpy(np.stack(flat)).permute(0, 3, 1, 2)  # normalize reads the view as it is
        tensors = {"pixel_values": _normalize_spec(pixels, spec) if normalize else pixels.contiguous()}
    else:
        tensors = _qwen2_vl(flat, spec, normalize)
    return PixelBatch(tensors, token_counts, blank)


def batch_to_device(batch: dict[str, Any], spec: PixelSpec | None, device: Any, *, dtype: Any = None) -> dict[str, Any]:
    """``batch`` with its tensors on ``device`` and uint8 ``pixel_values`` normalized there (SmolVLM's padding
    slots, found by ``pixel_attention_mask``, stay zero)."""
    import torch

    out = {
        key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value for key, value in batch.items()
    }
    pixels = out.get("pixel_values")
    if pixels is not None and spec is not None and not torch.is_floating_point(pixels):
        values = normalize(pixels, spec, dtype=dtype)
        mask = out.get("pixel_attention_mask")
        if mask is not None:
            values[~mask.flatten(2).any(-1)] = 0
        out["pixel_values"] = values
    elif pixels is not None and dtype is not None:
        out["pixel_values"] = pixels.to(dtype)
    return out


def _normalize_spec(pixels: torch.Tensor, spec: PixelSpec) -> torch.Tensor:
    return normalize(pixels, spec)


def _rgb_array(image: Any) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"Invalid image array (shape {image.shape}, {image.dtype}). Supported values are (H, W, 3) uint8 RGB."
            )
        return image
    if hasattr(image, "convert"):  # PIL
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    raise ValueError(
        f"Invalid image ({type(image).__name__}). Supported values are PIL images, (H, W, 3) uint8 arrays or None."
    )


def _idefics3(frames: list[list[np.ndarray | None]], spec: PixelSpec, do_normalize: bool) -> dict[str, Any]:
    import torch

    assert spec.image_size is not None
    height, width = spec.image_size
    max_images = max(len(row) for row in frames)
    stacked = np.zeros((len(frames), max_images, height, width, 3), dtype=np.uint8)
    real = torch.zeros((len(frames), max_images), dtype=torch.bool)
    for sample, row in enumerate(frames):
        for index, frame in enumerate(row):
            stacked[sample, index] = frame
            real[sample, index] = True
    pixels = torch.from_numpy(stacked).permute(0, 1, 4, 2, 3)
    mask = real[:, :, None, None].expand(-1, -1, height, width).contiguous()
    if do_normalize:
        pixels = normalize(pixels, spec)
        pixels[~real] = 0  # padding slots are all zeros, which is how the model tells them apart
    else:
        pixels = pixels.contiguous()
    return {"pixel_values": pixels, "pixel_attention_mask": mask}


def _qwen2_vl(flat: list[np.ndarray], spec: PixelSpec, do_normalize: bool) -> dict[str, Any]:
    import torch

    grids = []
    parts = []
    start = 0
    while start < len(flat):  # runs of same-sized frames are patched together
        end = start + 1
        while end < len(flat) and flat[end].shape == flat[start].shape:
            end += 1
        images = torch.from_numpy(np.stack(flat[start:end])).permute(0, 3, 1, 2)
        if do_normalize:
            images = normalize(images, spec)
        parts.append(
            patchify_qwen2_vl(
                images,
                patch_size=spec.patch_size,
                merge_size=spec.merge_size,
                temporal_patch_size=spec.temporal_patch_size,
            )
        )
        height, width = flat[start].shape[:2]
        grids.extend([[1, height // spec.patch_size, width // spec.patch_size]] * (end - start))
        start = end
    pixels = parts[0] if len(parts) == 1 else torch.cat(parts)
    return {"pixel_values": pixels, "image_grid_thw": torch.tensor(grids, dtype=torch.int64)}


def _with_processor(image_processor: Any, spec: PixelSpec, frames: list[list[np.ndarray | None]]) -> dict[str, Any]:
    from PIL import Image

    from owa.data.frames.images import resize_image

    def pil(frame: np.ndarray) -> Any:
        if spec.kind == "qwen2_vl" and spec.image_size is not None:
            frame = resize_image(frame, spec.image_size, spec.resample)  # the layout's size, as the tokens assume
        return Image.fromarray(frame)

    if spec.kind == "idefics3":
        nested = [[pil(f) for f in row if f is not None] for row in frames]
        out = image_processor(images=nested, return_tensors="pt")
        out["pixel_attention_mask"] = out["pixel_attention_mask"].bool()
        return dict(out)
    flat = [pil(f) for row in frames for f in row if f is not None]
    if spec.kind == "internvl":
        return {
            "pixel_values": image_processor(images=flat, return_tensors="pt", crop_to_patches=False)["pixel_values"]
        }
    return dict(image_processor(images=flat, return_tensors="pt"))


def _longest_edge_size(height: int, width: int, longest_edge: int) -> tuple[int, int]:
    """Idefics3's first resize: the longer side to ``longest_edge``, the other in proportion, rounded up to even."""
    if width >= height:
        width, height = longest_edge, int(longest_edge / (width / height))
        height += height % 2
    else:
        width, height = int(longest_edge * (width / height)), longest_edge
        width += width % 2
    return max(height, 1), max(width, 1)
