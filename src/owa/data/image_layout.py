"""How one screen frame appears in a token sequence: the image tokens a vision-language model expects.

A frame becomes ``prefix + token * count + suffix``. The model's vision tower fills the ``count`` slots of
``token`` with image features; the prefix and suffix are the model's markers around an image. Real layouts:

========== ========================================== ================= ===== ==========================
preset     prefix                                     token             count suffix
========== ========================================== ================= ===== ==========================
default    (none)                                     ``<IMAGE>``       64    (none)
smolvlm    ``<fake_token_around_image><global-img>``  ``<image>``       64    ``<fake_token_around_image>``
internvl   ``<img>``                                  ``<IMG_CONTEXT>`` 256   ``</img>``
qwen2_vl   ``<|vision_start|>``                       ``<|image_pad|>`` 144   ``<|vision_end|>``
========== ========================================== ================= ===== ==========================

Qwen2-VL's count follows from the frame size: ``(height // patch_size) * (width // patch_size) // merge_size**2``
(144 for the preset's 252x448 frames). The others resize every frame to one square size, so their count is fixed.
Image splitting (SmolVLM's ``do_image_splitting``, InternVL's ``crop_to_patches``) gives a frame a variable number
of tiles and is not a layout: turn it off.

Example::

    layout = ImageLayout.preset("qwen2_vl", image_size=(448, 812))  # count follows: 464
    layout = ImageLayout.from_processor(processor)  # what a transformers processor inserts for one image
    layout.validate(tokenizer, event_tokens=encoder.get_vocab())
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal

from owa.data.errors import ImageLayoutError

__all__ = [
    "PRESETS",
    "ImageLayout",
    "ImageLayoutError",  # re-exported from owa.data.errors, where it lives
    "image_layout",
]

PresetName = Literal["default", "smolvlm", "internvl", "qwen2_vl"]

_PIECE = re.compile(r"<[^<>\s]+>")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# The processors from_processor understands, by class name (matched along the MRO, so subclasses work too).
_IDEFICS3 = ("Idefics3Processor", "SmolVLMProcessor")
_INTERNVL = ("InternVLProcessor",)
_QWEN2_VL = ("Qwen2VLProcessor", "Qwen2_5_VLProcessor")
_SUPPORTED_PROCESSORS = (*_IDEFICS3, *_INTERNVL, *_QWEN2_VL)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageLayout:
    """The tokens of one screen frame: ``prefix + token * count + suffix``.

    Attributes:
        token: the slot token the vision tower fills, repeated ``count`` times (e.g. ``"<image>"``). One token: a
            ``<...>`` piece or text without angle brackets.
        count: how many slots one frame takes; a positive int.
        prefix: text before the slots, made of ``<...>`` tokens only (e.g. ``"<img>"``); may be empty.
        suffix: text after the slots, made of ``<...>`` tokens only (e.g. ``"</img>"``); may be empty.
        image_size: ``(height, width)`` in pixels that the model takes each frame at, when it is fixed (a fast pixel
            path can resize decoded frames straight to it).
        patch_size: pixels per patch side, for models whose count follows from ``image_size`` (Qwen2-VL).
        merge_size: patches merged per side into one token, likewise; then
            ``count == (height // patch_size) * (width // patch_size) // merge_size**2``.
        image_mean: per-channel (RGB) mean the model normalizes pixels with, after scaling them to ``[0, 1]``.
        image_std: per-channel (RGB) standard deviation, likewise.

    Raises:
        ImageLayoutError: a field is invalid (the message says which, what was given and what is allowed).
    """

    token: str = "<IMAGE>"
    count: int = 64
    prefix: str = ""
    suffix: str = ""
    image_size: tuple[int, int] | None = None
    patch_size: int | None = None
    merge_size: int | None = None
    image_mean: tuple[float, float, float] | None = None
    image_std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if not _is_positive_int(self.count):
            raise ImageLayoutError(f"Invalid count ({self.count!r}). Supported values are positive integers, e.g. 64.")
        _check_token(self.token)
        for name in ("prefix", "suffix"):
            value = getattr(self, name)
            if not isinstance(value, str) or _PIECE.sub("", value):
                raise ImageLayoutError(
                    f"Invalid {name} ({value!r}). Supported values are '' or a concatenation of <...> tokens, "
                    "e.g. '<img>' or '<fake_token_around_image><global-img>'."
                )
        if self.token in _PIECE.findall(self.prefix + self.suffix):
            raise ImageLayoutError(
                f"Invalid token ({self.token!r}). It also occurs in prefix ({self.prefix!r}) or suffix "
                f"({self.suffix!r}), so the slots of a frame could not be counted. Supported values are tokens "
                "that differ from every prefix and suffix token."
            )
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or not all(_is_positive_int(side) for side in size):
                raise ImageLayoutError(
                    f"Invalid image_size ({self.image_size!r}). Supported values are None or (height, width) in "
                    "pixels, two positive integers."
                )
            object.__setattr__(self, "image_size", size)
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                channels = tuple(float(v) for v in value)
            except (TypeError, ValueError) as e:
                raise ImageLayoutError(f"Invalid {name} ({value!r}). Supported values are None or 3 floats.") from e
            if len(channels) != 3 or (name == "image_std" and min(channels) <= 0):
                raise ImageLayoutError(
                    f"Invalid {name} ({value!r}). Supported values are None or 3 floats (RGB)"
                    + (", all positive." if name == "image_std" else ".")
                )
            object.__setattr__(self, name, channels)
        self._check_patching()

    def _check_patching(self) -> None:
        if self.patch_size is None and self.merge_size is None:
            return
        for name in ("patch_size", "merge_size"):
            if not _is_positive_int(getattr(self, name)):
                raise ImageLayoutError(
                    f"Invalid {name} ({getattr(self, name)!r}). Supported values are positive integers, given "
                    "together with patch_size/merge_size and image_size."
                )
        if self.image_size is None:
            raise ImageLayoutError(
                "Invalid image_size (None). patch_size and merge_size derive the count from the frame size, "
                "so image_size=(height, width) is required with them."
            )
        factor = self.patch_size * self.merge_size
        height, width = self.image_size
        if height % factor or width % factor:
            raise ImageLayoutError(
                f"Invalid image_size ({self.image_size!r}). With patch_size {self.patch_size} and merge_size "
                f"{self.merge_size}, supported values have both sides multiples of {factor}, "
                f"e.g. {(_round_to(height, factor), _round_to(width, factor))}."
            )
        expected = _derived_count(self.image_size, self.patch_size, self.merge_size)
        if self.count != expected:
            raise ImageLayoutError(
                f"Invalid count ({self.count}). Frames of {height}x{width} pixels with patch_size {self.patch_size} "
                f"and merge_size {self.merge_size} take {expected} tokens. Supported values are {expected}, or leave "
                "count out of ImageLayout.preset(...) to derive it."
            )

    # --------------------------------------------------------------------------------------------------------
    # Construction
    # --------------------------------------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: PresetName, **overrides: Any) -> ImageLayout:
        """A named layout (``"default"``, ``"smolvlm"``, ``"internvl"``, ``"qwen2_vl"``), fields overridden.

        When ``image_size``, ``patch_size`` or ``merge_size`` is overridden on a layout whose count follows from the
        frame size (``qwen2_vl``) and ``count`` is not, the count is derived again.

        Raises:
            ImageLayoutError: an unknown name or an invalid field.
        """
        if name not in PRESETS:
            raise ImageLayoutError(f"Invalid preset ({name!r}). Supported values are {', '.join(map(repr, PRESETS))}.")
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ImageLayoutError(
                f"Invalid field ({', '.join(unknown)}). Supported values are "
                f"{', '.join(f.name for f in dataclasses.fields(cls))}."
            )
        base = PRESETS[name]
        fields = {**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, **overrides}
        derives = fields["patch_size"] is not None and fields["merge_size"] is not None
        if derives and "count" not in overrides and fields["image_size"] is not None:
            size = tuple(fields["image_size"])
            if len(size) == 2 and all(_is_positive_int(side) for side in size):
                fields["count"] = _derived_count(size, fields["patch_size"], fields["merge_size"])
        return cls(**fields)

    @classmethod
    def from_processor(cls, processor: Any, *, image_size: tuple[int, int] | None = None) -> ImageLayout:
        """The layout a transformers processor inserts for one image, with its frame size and normalization.

        Supported: ``Idefics3Processor`` and ``SmolVLMProcessor`` (with ``do_image_splitting`` off),
        ``InternVLProcessor`` (with ``crop_to_patches`` off), ``Qwen2VLProcessor`` and ``Qwen2_5_VLProcessor``.
        Tokens come from the processor's attributes, the count from its ``image_seq_len`` / ``image_seq_length``, or
        for Qwen2-VL from ``image_size`` and the image processor's patch and merge sizes.

        Args:
            processor: a transformers processor.
            image_size: Qwen2-VL only: ``(height, width)`` frames are resized to (default: the ``qwen2_vl``
                preset's); both sides multiples of ``patch_size * merge_size`` and the pixel count within the image
                processor's ``min_pixels``/``max_pixels``, so its own resize leaves such frames as they are. The
                other models resize every frame to a size of their own.

        Raises:
            ImageLayoutError: an unsupported processor, image splitting on, or an ``image_size`` the processor
                would change.
        """
        names = {klass.__name__ for klass in type(processor).__mro__}
        if names & set(_IDEFICS3):
            layout = _from_idefics3(processor)
        elif names & set(_INTERNVL):
            layout = _from_internvl(processor)
        elif names & set(_QWEN2_VL):
            return _from_qwen2_vl(processor, image_size)
        else:
            raise ImageLayoutError(
                f"Invalid processor ({type(processor).__name__}). Supported values are "
                f"{', '.join(_SUPPORTED_PROCESSORS)}; for another model build ImageLayout(prefix=..., token=..., "
                "count=..., suffix=...) by hand."
            )
        if image_size is not None and tuple(image_size) != layout.image_size:
            raise ImageLayoutError(
                f"Invalid image_size ({image_size!r}). {type(processor).__name__} resizes every frame to "
                f"{layout.image_size}. Supported values are None or {layout.image_size}."
            )
        return layout

    # --------------------------------------------------------------------------------------------------------
    # Tokens
    # --------------------------------------------------------------------------------------------------------

    def tokens(self) -> list[str]:
        """The tokens of one frame, in order: prefix tokens, ``count`` times ``token``, suffix tokens."""
        return [*_PIECE.findall(self.prefix), *[self.token] * self.count, *_PIECE.findall(self.suffix)]

    def prefix_tokens(self) -> list[str]:
        """The tokens of ``prefix``, in order (``[]`` when it is empty)."""
        return _PIECE.findall(self.prefix)

    def suffix_tokens(self) -> list[str]:
        """The tokens of ``suffix``, in order (``[]`` when it is empty)."""
        return _PIECE.findall(self.suffix)

    def text(self) -> str:
        """The text of one frame: ``prefix + token * count + suffix``."""
        return self.prefix + self.token * self.count + self.suffix

    def new_tokens(self) -> list[str]:
        """The distinct tokens of one frame, in order of first appearance: each must be one vocabulary token."""
        return list(dict.fromkeys(self.tokens()))

    def validate(self, tokenizer: Any, *, event_tokens: Iterable[str] = ()) -> None:
        """Check that this layout fits ``tokenizer`` and the other tokens of the sequence. Nothing is modified.

        Every token of :meth:`new_tokens` must be one token of ``tokenizer``: one it already has (encoded to
        exactly its own id), or a new one that no added token of the tokenizer occurs in (adding it would split or
        shadow that token). No prefix or suffix token may be one of ``event_tokens`` (e.g. ``"<EVENT_START>"``);
        the layout's own ``token`` may appear there, as an event encoder's vocabulary contains its image token.

        Args:
            tokenizer: a Hugging Face tokenizer.
            event_tokens: the other special tokens of the sequence (event encoder vocabulary, episode tokens).

        Raises:
            ImageLayoutError: a token the tokenizer splits, or a collision with an event token.
        """
        if not hasattr(tokenizer, "encode") or not hasattr(tokenizer, "get_added_vocab"):
            raise ImageLayoutError(f"Invalid tokenizer ({type(tokenizer).__name__}). Pass a Hugging Face tokenizer.")
        events = set(event_tokens) - {self.token}
        for piece in _PIECE.findall(self.prefix + self.suffix):
            if piece in events:
                raise ImageLayoutError(
                    f"Invalid prefix/suffix token ({piece!r}). It is also an event token, so events and frames "
                    "could not be told apart. Supported values are tokens that no event encoder or episode uses."
                )
        added = tokenizer.get_added_vocab()
        for token in self.new_tokens():
            ids = tokenizer.encode(token, add_special_tokens=False)
            if token in added:
                if ids != [added[token]]:
                    raise ImageLayoutError(
                        f"Invalid token ({token!r}). The tokenizer has it (id {added[token]}) but encodes it as "
                        f"{ids}. Supported values are tokens the tokenizer encodes to one id."
                    )
                continue
            if len(ids) == 1:
                continue
            inner = sorted(a for a in added if a and a in token)
            if inner:
                pieces = tokenizer.convert_ids_to_tokens(ids)
                raise ImageLayoutError(
                    f"Invalid token ({token!r}). The tokenizer splits it into {len(ids)} tokens {pieces}: it contains "
                    f"the tokenizer's own token(s) {inner}. Supported values are single tokens; put wrapper tokens "
                    "in prefix and suffix."
                )


def image_layout(layout: PresetName | ImageLayout | None = None) -> ImageLayout:
    """A layout from a preset name, or the layout itself; ``None`` gives the ``"default"`` preset.

    Raises:
        ImageLayoutError: an unknown name, or neither a name nor an :class:`ImageLayout`.
    """
    if layout is None:
        return PRESETS["default"]
    if isinstance(layout, ImageLayout):
        return layout
    if isinstance(layout, str):
        return ImageLayout.preset(layout)  # type: ignore[arg-type]
    raise ImageLayoutError(
        f"Invalid image layout ({layout!r}). Supported values are an ImageLayout or one of "
        f"{', '.join(map(repr, PRESETS))}."
    )


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _round_to(value: int, factor: int) -> int:
    return max(factor, round(value / factor) * factor)


def _derived_count(image_size: tuple[int, int], patch_size: int, merge_size: int) -> int:
    height, width = image_size
    return (height // patch_size) * (width // patch_size) // merge_size**2


def _check_token(token: object) -> None:
    if not isinstance(token, str) or not token or token.strip() != token or any(c.isspace() for c in token):
        raise ImageLayoutError(
            f"Invalid token ({token!r}). Supported values are one non-empty token without whitespace, e.g. '<image>'."
        )
    pieces = _PIECE.findall(token)
    if pieces == [token] or ("<" not in token and ">" not in token):
        return
    if len(pieces) > 1:
        raise ImageLayoutError(
            f"Invalid token ({token!r}). It is several tokens {pieces}; the token is the one repeated per slot. "
            f"Supported values are one token, with the others in prefix and suffix, e.g. "
            f"ImageLayout(prefix={pieces[0]!r}, token={pieces[1]!r}, suffix={''.join(pieces[2:])!r}, count=...)."
        )
    raise ImageLayoutError(
        f"Invalid token ({token!r}). Supported values are one <...> token without inner angle brackets, "
        "or text without angle brackets."
    )


def _channels(value: Any) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return (float(value),) * 3
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _size_value(size: Any, key: str) -> Any:
    if size is None:
        return None
    if isinstance(size, Mapping):
        return size.get(key)
    return getattr(size, key, None)


def _from_idefics3(processor: Any) -> ImageLayout:
    image_processor = processor.image_processor
    images_kwargs = getattr(processor, "images_kwargs", None) or {}
    if images_kwargs.get("do_image_splitting", getattr(image_processor, "do_image_splitting", False)):
        raise ImageLayoutError(
            f"Invalid processor ({type(processor).__name__} with do_image_splitting=True). Image splitting gives a "
            "frame a variable number of tiles. Supported values are processors with it off: set "
            "processor.image_processor.do_image_splitting = False."
        )
    global_token = getattr(processor, "global_image_token", None) or getattr(processor, "global_image_tag", None)
    side = _size_value(getattr(image_processor, "max_image_size", None), "longest_edge")
    return ImageLayout(
        prefix=processor.fake_image_token + (global_token or ""),
        token=processor.image_token,
        count=processor.image_seq_len,
        suffix=processor.fake_image_token,
        image_size=(side, side) if side else None,
        image_mean=_channels(image_processor.image_mean),
        image_std=_channels(image_processor.image_std),
    )


def _from_internvl(processor: Any) -> ImageLayout:
    image_processor = processor.image_processor
    images_kwargs = getattr(processor, "images_kwargs", None) or {}
    crop = images_kwargs.get("crop_to_patches", getattr(image_processor, "crop_to_patches", False))
    max_patches = images_kwargs.get("max_patches", getattr(image_processor, "max_patches", 1))
    if crop and max_patches > 1:
        raise ImageLayoutError(
            f"Invalid processor ({type(processor).__name__} with crop_to_patches=True). Cropping to patches gives "
            "a frame a variable number of tiles. Supported values are processors with it off: set "
            "processor.images_kwargs = {**processor.images_kwargs, 'crop_to_patches': False}."
        )
    size = getattr(image_processor, "size", None)
    height, width = _size_value(size, "height"), _size_value(size, "width")
    return ImageLayout(
        prefix=processor.start_image_token,
        token=processor.image_token,
        count=processor.image_seq_length,
        suffix=processor.end_image_token,
        image_size=(height, width) if height and width else None,
        image_mean=_channels(image_processor.image_mean),
        image_std=_channels(image_processor.image_std),
    )


def _from_qwen2_vl(processor: Any, image_size: tuple[int, int] | None) -> ImageLayout:
    image_processor = processor.image_processor
    tokenizer = processor.tokenizer
    patch_size, merge_size = image_processor.patch_size, image_processor.merge_size
    size = tuple(image_size) if image_size is not None else PRESETS["qwen2_vl"].image_size
    layout = ImageLayout.preset(
        "qwen2_vl",
        prefix=getattr(tokenizer, "vision_start_token", None) or "<|vision_start|>",
        token=processor.image_token,
        suffix=getattr(tokenizer, "vision_end_token", None) or "<|vision_end|>",
        image_size=size,
        patch_size=patch_size,
        merge_size=merge_size,
        image_mean=_channels(image_processor.image_mean),
        image_std=_channels(image_processor.image_std),
    )
    image_sizes = getattr(image_processor, "size", None)
    min_pixels = _size_value(image_sizes, "shortest_edge") or getattr(image_processor, "min_pixels", None)
    max_pixels = _size_value(image_sizes, "longest_edge") or getattr(image_processor, "max_pixels", None)
    pixels = layout.image_size[0] * layout.image_size[1]
    if (min_pixels and pixels < min_pixels) or (max_pixels and pixels > max_pixels):
        raise ImageLayoutError(
            f"Invalid image_size ({layout.image_size}). {type(processor).__name__} resizes frames to between "
            f"{min_pixels} and {max_pixels} pixels, so it would change this size. Supported values are sizes "
            "whose height * width is within that range."
        )
    # Cross-check with the image processor's own count where it has one (the method vLLM relies on).
    patches = getattr(image_processor, "get_number_of_image_patches", None)
    if patches is not None:
        expected = patches(*layout.image_size, {}) // merge_size**2
        if expected != layout.count:
            raise ImageLayoutError(
                f"Invalid image_size ({layout.image_size}). {type(image_processor).__name__} gives {expected} "
                f"tokens for it, not {layout.count}. Supported values are sizes it keeps as they are."
            )
    return layout


PRESETS: Mapping[str, ImageLayout] = MappingProxyType(
    {
        "default": ImageLayout(),
        "smolvlm": ImageLayout(
            prefix="<fake_token_around_image><global-img>",
            token="<image>",
            count=64,
            suffix="<fake_token_around_image>",
            image_size=(512, 512),
            image_mean=(0.5, 0.5, 0.5),
            image_std=(0.5, 0.5, 0.5),
        ),
        "internvl": ImageLayout(
            prefix="<img>",
            token="<IMG_CONTEXT>",
            count=256,
            suffix="</img>",
            image_size=(448, 448),
            image_mean=_IMAGENET_MEAN,
            image_std=_IMAGENET_STD,
        ),
        "qwen2_vl": ImageLayout(
            prefix="<|vision_start|>",
            token="<|image_pad|>",
            count=144,
            suffix="<|vision_end|>",
            image_size=(252, 448),
            patch_size=14,
            merge_size=2,
            image_mean=_CLIP_MEAN,
            image_std=_CLIP_STD,
        ),
    }
)
"""The named layouts, read-only (:meth:`ImageLayout.preset` makes variants)."""
