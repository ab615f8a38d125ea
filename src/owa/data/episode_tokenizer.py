"""EpisodeTokenizer: events (McapMessages) to token ids for a language model, and back.

An event is encoded to text by an event encoder (:mod:`owa.data.encoders`), its image token becomes one frame's
tokens (an :class:`~owa.data.image_layout.ImageLayout`: prefix, the slot token repeated ``count`` times, suffix; by
default ``image_token`` repeated ``image_token_length`` times), and the text is tokenized with a Hugging Face
tokenizer that :meth:`EpisodeTokenizer.prepare_model` extended with the encoder's vocabulary (and fitted the
model to). In an episode, the first event's text starts with ``episode_start_token`` and the last event's ends with
``episode_end_token``.

Example::

    tokenizer = AutoTokenizer.from_pretrained("path/to/local/tokenizer")
    event_tokenizer = EpisodeTokenizer(image_token="<image>")  # or image_layout="qwen2_vl", or from_processor(...)
    event_tokenizer.prepare_model(tokenizer=tokenizer)  # model=..., init="semantic" to fit a model too
    tokenized = event_tokenizer.tokenize_event_dataset(event_dataset["train"])

Speed: event texts are made of added tokens only (hierarchical encoder), so their ids are looked up per token
instead of running the tokenizer; :meth:`EpisodeTokenizer.prepare_model` proves the lookup gives exactly what
``tokenizer.encode(text, add_special_tokens=False)`` gives (and otherwise turns it off). Texts with other content
(the json encoder) go through the tokenizer in large batches. The lookup and its proof live in
:mod:`owa.data._token_lookup`; the serialized screen references of the ``images`` column in
:mod:`owa.data.messages` (:func:`~owa.data.messages.serialize_screen`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pyarrow as pa

from owa.data._token_lookup import TokenLookup
from owa.data.dataset_io import quiet_datasets_progress
from owa.data.encoders import EncoderConfig, EventEncoder, encoder_class
from owa.data.encoders.base import EVENT_END, EVENT_START, _snippet, token_words
from owa.data.episode_paths import resolve_episode_path
from owa.data.errors import (
    DatasetError,
    EncodingError,
    ImageLayoutError,
    MessageValidationError,
    OnError,
    TokenizerNotPreparedError,
    check_on_error,
)
from owa.data.image_layout import ImageLayout, PresetName
from owa.data.image_layout import image_layout as resolve_image_layout
from owa.data.messages import McapMessage, ScreenCaptured, deserialize_screen, serialize_screen
from owa.data.pointer_space import FrameSpaceEncoder, PointerSpace, check_pointer_space

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from owa.data.embeddings import EmbeddingInit

__all__ = [
    "DecodedEvents",
    "EpisodeTokenizer",
    "EpisodeTokenizerConfig",
    "TokenizeStats",
    "TokenizedEvent",
    "deserialize_screen",  # re-exported from owa.data.messages, where it lives
    "serialize_screen",  # re-exported from owa.data.messages, where it lives
]

logger = logging.getLogger(__name__)

_STAT_PREFIX = "__owa_encoder_"  # temporary columns carrying encoder.stats counts out of map() workers
_SKIP_PREFIX = "__owa_skipped_"  # temporary columns carrying on_error="skip" counts out of map() workers
_LAST_ERROR = "__owa_last_error"
_CARRIER = "__owa_carrier"  # a row that only carries counts (its batch dropped every row); removed

# Rows per process below which tokenize_event_dataset stays in one process: starting workers and shipping the
# tokenizer to them costs more than it saves on small datasets.
_MIN_ROWS_PER_PROCESS = 250_000
_BATCH_SIZE = 2_000


@dataclasses.dataclass(frozen=True)
class EpisodeTokenizerConfig:
    """The settings of an :class:`EpisodeTokenizer` (the single source of truth for their defaults).

    Attributes:
        encoder_type: the event encoder, ``"hierarchical"`` or ``"json"``
            (see :func:`owa.data.encoders.create_encoder`).
        image_token: the token that stands for one slot of a screen frame (e.g. ``"<image>"`` for SmolVLM); one
            token: a ``<...>`` piece or text without angle brackets (wrapper tokens go in ``image_layout``).
        image_token_length: how many times the image token is repeated per frame.
        image_layout: the tokens of one frame, ``prefix + token * count + suffix``: a preset name (``"smolvlm"``,
            ``"internvl"``, ``"qwen2_vl"``, ``"default"``) or an :class:`~owa.data.image_layout.ImageLayout`; stored
            as an ``ImageLayout``. ``None`` (default): ``image_token`` repeated ``image_token_length`` times, with no
            prefix or suffix. With a layout, ``image_token`` and ``image_token_length`` are its ``token`` and
            ``count`` (left at their defaults, they are set from it; other values are an error).
        episode_start_token: prepended to the first event of every episode.
        episode_end_token: appended to the last event of every episode.
        encoder_config: the encoder's own config (e.g. :class:`~owa.data.encoders.HierarchicalConfig` with
            ``screen_size``), of ``encoder_type``'s config class. ``None`` (default) means that class's defaults with
            ``image_token``; a given one must have the same ``image_token``. :meth:`with_options` sets encoder
            fields without building the encoder config by hand.
        pointer_space: ``"screen"`` (default, the spec's): mouse positions in desktop pixels, normalized by the
            encoder's ``screen_size``. ``"frame"``: in the captured frame's pixels, normalized by the frame size
            (:mod:`owa.data.pointer_space`; needs each episode's ``.mcap``); decoding then gives frame pixels.

    Raises:
        ValueError: an invalid value, an unknown ``encoder_type``, or an ``encoder_config`` of another encoder or
            with another ``image_token``.
        ImageLayoutError: (also a ValueError) an invalid ``image_layout`` or ``image_token`` (several ``<...>``
            tokens), a layout that disagrees with ``image_token``/``image_token_length``, or a layout prefix or
            suffix token that is also an event or episode token.
    """

    encoder_type: str = "hierarchical"
    image_token: str = "<IMAGE>"
    image_token_length: int = 64
    episode_start_token: str = "<EPISODE_START>"
    episode_end_token: str = "<EPISODE_END>"
    encoder_config: EncoderConfig | None = None
    pointer_space: PointerSpace = "screen"
    image_layout: ImageLayout | PresetName | None = None

    def __post_init__(self) -> None:
        check_pointer_space(self.pointer_space)
        length = self.image_token_length
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise ValueError(
                f"Invalid image_token_length ({self.image_token_length!r}). It must be a positive integer."
            )
        self._set_layout()
        tokens = {
            "image_token": self.image_token,
            "episode_start_token": self.episode_start_token,
            "episode_end_token": self.episode_end_token,
        }
        for name, token in tokens.items():
            if not isinstance(token, str) or not token or token.strip() != token:
                raise ValueError(f"Invalid {name} ({token!r}). It must be a non-empty string without spaces around it.")
        if len(set(tokens.values())) != len(tokens):
            raise ValueError(f"image_token, episode_start_token and episode_end_token must differ, got {tokens}")
        config_class = encoder_class(self.encoder_type).config_class
        if self.encoder_config is None:
            object.__setattr__(self, "encoder_config", config_class(image_token=self.image_token))
        elif not isinstance(self.encoder_config, config_class):
            raise ValueError(
                f"Invalid encoder_config ({type(self.encoder_config).__name__}) for encoder_type "
                f"{self.encoder_type!r}. It must be a {config_class.__name__}."
            )
        elif self.encoder_config.image_token != self.image_token:
            raise ValueError(
                f"encoder_config.image_token ({self.encoder_config.image_token!r}) differs from image_token "
                f"({self.image_token!r}). Set it once: EpisodeTokenizerConfig().with_options(image_token=..., ...)."
            )
        # A frame's prefix and suffix tokens must not be event or episode tokens, or events and frames could not
        # be told apart (ImageLayout.validate checks the same again with the tokenizer in prepare_model).
        layout = self.layout
        event_tokens = encoder_class(self.encoder_type)(self.encoder_config).get_vocab()
        event_tokens.update((self.episode_start_token, self.episode_end_token))
        for piece in layout.new_tokens():
            if piece != layout.token and piece in event_tokens:
                raise ImageLayoutError(
                    f"Invalid image_layout prefix/suffix token ({piece!r}). It is also an event or episode token, "
                    "so events and frames could not be told apart. Supported values are tokens that no event "
                    "encoder or episode uses."
                )

    def _set_layout(self) -> None:
        """Normalize ``image_layout`` and check it against ``image_token``/``image_token_length``."""
        layout = self.image_layout
        if layout is None:
            try:  # the plain layout of image_token: one token, repeated
                ImageLayout(token=self.image_token, count=self.image_token_length)
            except ImageLayoutError as e:
                raise ImageLayoutError(
                    f"Invalid image_token ({self.image_token!r}). {e.reason} Wrapper tokens around the slots "
                    "go in image_layout=ImageLayout(prefix=..., token=..., count=..., suffix=...)."
                ) from e
            return
        layout = resolve_image_layout(layout)  # a preset name -> its layout; raises ImageLayoutError otherwise
        defaults = {f.name: f.default for f in dataclasses.fields(EpisodeTokenizerConfig)}
        for name, value in (("image_token", layout.token), ("image_token_length", layout.count)):
            given = getattr(self, name)
            if given not in (defaults[name], value):
                raise ImageLayoutError(
                    f"Invalid {name} ({given!r}) with image_layout, whose "
                    f"{'token' if name == 'image_token' else 'count'} is {value!r}. Supported values are the "
                    f"layout's, or leave {name} out."
                )
            object.__setattr__(self, name, value)
        object.__setattr__(self, "image_layout", layout)

    @property
    def layout(self) -> ImageLayout:
        """The tokens of one frame: ``image_layout``, or ``image_token`` repeated ``image_token_length`` times."""
        if isinstance(self.image_layout, ImageLayout):
            return self.image_layout
        return ImageLayout(token=self.image_token, count=self.image_token_length)

    @staticmethod
    def option_names(encoder_type: str = "hierarchical") -> tuple[list[str], list[str]]:
        """``(tokenizer options, encoder options)``: the keywords :meth:`with_options` accepts for ``encoder_type``.

        Raises:
            ValueError: unknown ``encoder_type``.
        """
        own = [f.name for f in dataclasses.fields(EpisodeTokenizerConfig)]
        encoder_fields = dataclasses.fields(encoder_class(encoder_type).config_class)
        return own, [f.name for f in encoder_fields if f.name != "image_token"]

    def with_options(self, **options: Any) -> EpisodeTokenizerConfig:
        """A copy with ``options`` changed: fields of this class or of the encoder's config.

        ``image_token`` is one option that sets both; changing ``encoder_type`` starts from the new encoder's
        defaults. Example: ``EpisodeTokenizerConfig().with_options(image_token="<image>", screen_size=(2560, 1440))``.

        Raises:
            TypeError: an unknown option (the message lists the allowed ones).
            ValueError: an invalid value.
        """
        own_names, _ = self.option_names()
        own = {k: v for k, v in options.items() if k in own_names}
        encoder_type = own.get("encoder_type", self.encoder_type)
        _, encoder_names = self.option_names(encoder_type)
        encoder_options = {k: v for k, v in options.items() if k not in own_names}
        unknown = sorted(set(encoder_options) - set(encoder_names))
        if unknown:
            raise TypeError(
                f"Unknown EpisodeTokenizer option(s): {', '.join(unknown)}. Allowed: {', '.join(own_names)} "
                f"and the {encoder_type} encoder's {', '.join(encoder_names) or '(none)'}."
            )
        own.update(self._layout_options(own))
        image_token = own.get("image_token", self.image_token)
        if own.get("encoder_config") is not None:
            encoder_config = own.pop("encoder_config")
            if encoder_options:
                encoder_config = dataclasses.replace(encoder_config, **encoder_options)
        elif encoder_type == self.encoder_type and "encoder_config" not in own:
            encoder_config = dataclasses.replace(self.encoder_config, image_token=image_token, **encoder_options)
        else:
            config_class = encoder_class(encoder_type).config_class
            encoder_config = config_class(image_token=image_token, **encoder_options)
        own.pop("encoder_config", None)
        return dataclasses.replace(self, **own, encoder_config=encoder_config)

    def _layout_options(self, own: dict[str, Any]) -> dict[str, Any]:
        """``image_token``/``image_token_length`` that go with the options' or this config's ``image_layout``."""
        if "image_layout" in own:
            layout = own["image_layout"]
            if layout is None:  # dropping the layout keeps its token and count unless they are given
                return {}
            layout = resolve_image_layout(layout)
        elif self.image_layout is not None:
            layout = self.layout
        else:
            return {}
        derived = {"image_token": layout.token, "image_token_length": layout.count}
        for name, value in derived.items():
            if name in own and own[name] != value:
                raise ImageLayoutError(
                    f"Invalid {name} ({own[name]!r}) with image_layout, whose "
                    f"{'token' if name == 'image_token' else 'count'} is {value!r}. Supported values are the "
                    "layout's; pass image_layout=None to go back to a plain repeated image_token."
                )
        return {**derived, "image_layout": layout}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (e.g. for dataset metadata); :meth:`from_json` reads it back."""
        fields = dataclasses.asdict(self)
        for name in ("encoder_config", "image_layout"):
            if fields[name] is not None:
                fields[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in fields[name].items()}
        return fields

    @classmethod
    def from_json(cls, fields: Mapping[str, Any]) -> EpisodeTokenizerConfig:
        """Read back :meth:`to_json`'s dict.

        Raises:
            TypeError: an unknown field.
            ValueError: an invalid value.
        """
        fields = dict(fields)
        encoder_fields = dict(fields.pop("encoder_config", None) or {})
        encoder_fields.pop("image_token", None)  # the same as the top-level image_token
        layout = fields.get("image_layout")
        if isinstance(layout, Mapping):
            fields["image_layout"] = ImageLayout(**layout)
        return cls().with_options(**fields, **encoder_fields)


TokenizedEvent = dict[str, Any]
"""``{"text": str, "token_ids": list[int], "images": list[ScreenCaptured], "total_token_count": int}``."""

_FRAME = "\x00"  # stands for one collapsed frame while decoding; never part of a token's text


class DecodedEvents(list[McapMessage]):
    """What :meth:`EpisodeTokenizer.decode` returns: the decoded events (this list, in order), and what was left.

    Attributes:
        tail: the token ids of the event still open at the end (from its ``<EVENT_START>``), ``[]`` when none: a
            generation that stopped mid-event. Decode ``tail + continuation`` again when the model has gone on.
        skipped: how many malformed events (or runs of stray event tokens) ``on_error="skip"`` dropped.
    """

    def __init__(self, events: Sequence[McapMessage] = (), *, tail: Sequence[int] = (), skipped: int = 0) -> None:
        super().__init__(events)
        self.tail = list(tail)
        self.skipped = skipped

    @property
    def events(self) -> list[McapMessage]:
        """The events as a plain list."""
        return list(self)

    def __repr__(self) -> str:
        return f"DecodedEvents({list.__repr__(self)}, tail={self.tail!r}, skipped={self.skipped})"


@dataclasses.dataclass
class TokenizeStats:
    """What one :meth:`EpisodeTokenizer.tokenize_event_dataset` call dropped with ``on_error="skip"``, summed over
    its worker processes (:attr:`EpisodeTokenizer.last_tokenize_stats`).

    Attributes:
        rows: rows of the input dataset.
        events_skipped: rows dropped because the encoder could not encode them.
        errors: skip counts by error type name (``EncodingError``, ``MessageValidationError``).
        last_error: the message of one skipped row's error (the last batch's), or None.
    """

    rows: int = 0
    events_skipped: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    last_error: str | None = None


class EpisodeTokenizer:
    """Tokenize events and episodes for a language model; decode generated tokens back to events.

    Args:
        config: the settings (default: :class:`EpisodeTokenizerConfig`'s defaults).
        **options: changes to ``config``: its fields (``image_token``, ``image_token_length``, ``encoder_type``...)
            or fields of the encoder's config (e.g. ``screen_size=(2560, 1440)`` for the hierarchical encoder);
            see :meth:`EpisodeTokenizerConfig.with_options`. ``EpisodeTokenizer(image_token="<image>")`` is the
            spec's call.

    The object keeps the resulting config as :attr:`config` and the tokens of one frame as :attr:`image_layout`.
    Call :meth:`prepare_model` with the tokenizer (and model) before tokenizing.

    Raises:
        TypeError: an unknown option (the message lists the allowed ones), or ``config`` is not an
            :class:`EpisodeTokenizerConfig`.
        ValueError: an invalid setting, or an unknown ``encoder_type``.
        ImageLayoutError: (also a ValueError) an invalid image layout (see :class:`EpisodeTokenizerConfig`).
    """

    def __init__(self, config: EpisodeTokenizerConfig | None = None, **options: Any) -> None:
        if config is None:
            config = EpisodeTokenizerConfig()
        elif not isinstance(config, EpisodeTokenizerConfig):
            raise TypeError(
                f"Invalid config ({type(config).__name__}). Pass an EpisodeTokenizerConfig, or options as keywords "
                "(e.g. EpisodeTokenizer(encoder_type='json'))."
            )
        self.config = config.with_options(**options) if options else config
        assert self.config.encoder_config is not None  # set by EpisodeTokenizerConfig.__post_init__
        self.encoder: EventEncoder = encoder_class(self.config.encoder_type)(self.config.encoder_config)
        self._layout = self.config.layout
        # Frame space: mouse events go through this adapter; it shares self.encoder.stats.
        self._frame_space = FrameSpaceEncoder(self.encoder) if self.config.pointer_space == "frame" else None
        self.last_tokenize_stats = TokenizeStats()
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._lookup: TokenLookup | None = None
        self._id_to_token: dict[int, str] = {}
        self._new_tokens: dict[str, int] = {}  # tokens prepare_model added to the bound tokenizer -> ids
        self._pending_model: tuple[weakref.ref[PreTrainedModel], EmbeddingInit | None] | None = None
        self._vocabulary_digest: tuple[Any, str] | None = None

    @classmethod
    def from_config(cls, config: EpisodeTokenizerConfig) -> EpisodeTokenizer:
        """Build from a config object (e.g. one read back from saved metadata); the same as ``cls(config)``."""
        return cls(config)

    @classmethod
    def from_processor(cls, processor: Any, *, image_size: tuple[int, int] | None = None, **options: Any) -> Self:
        """An EpisodeTokenizer whose frames take the tokens ``processor`` inserts for one image.

        The layout comes from :meth:`ImageLayout.from_processor <owa.data.image_layout.ImageLayout.from_processor>`
        (Idefics3/SmolVLM, InternVL, Qwen2-VL and Qwen2.5-VL processors, image splitting off). Then call
        ``prepare_model(tokenizer=processor.tokenizer, model=model)``.

        Args:
            processor: a transformers processor.
            image_size: Qwen2-VL only: ``(height, width)`` frames are resized to (default the ``qwen2_vl``
                preset's, 252x448); it sets the count.
            **options: other settings, as for the constructor (e.g. ``screen_size=(2560, 1440)``).

        Raises:
            ImageLayoutError: an unsupported processor or ``image_size`` (see ``ImageLayout.from_processor``).
        """
        return cls(image_layout=ImageLayout.from_processor(processor, image_size=image_size), **options)

    @property
    def image_layout(self) -> ImageLayout:
        """The tokens of one frame (``prefix + token * count + suffix``) and the frame size the model takes.

        ``image_layout.image_size`` is the ``(height, width)`` every frame must be resized to when it is set (always
        for the ``qwen2_vl`` layout, whose token count follows from it); None means the model's processor
        resizes frames itself.
        """
        return self._layout

    # ------------------------------------------------------------------------------------------------------------
    # Vocabulary and model preparation
    # ------------------------------------------------------------------------------------------------------------

    def get_vocab(self) -> list[str]:
        """The tokens :meth:`prepare_model` adds, sorted: the encoder's vocabulary, the image layout's tokens
        (prefix, slot and suffix tokens) and the episode tokens."""
        vocab = set(self.encoder.get_vocab())
        vocab.update(self._layout.new_tokens())
        vocab.update((self.config.episode_start_token, self.config.episode_end_token))
        return sorted(vocab)

    def token_descriptions(self) -> dict[str, str]:
        """Each token of :meth:`get_vocab` in a few plain words (what ``init="semantic"`` starts embeddings from).

        The encoder's tokens as its ``token_descriptions()`` describes them (``<KEYBOARD>`` -> ``"keyboard"``,
        ``<65>`` -> ``"A"``, ``<x1>`` -> ``"back mouse button"``);
        the layout's slot token ``"image"``, its prefix tokens ``"image start"``, its suffix tokens ``"image end"``;
        the episode tokens read as their text (``"episode start"``).
        """
        descriptions = {token: token_words(token) for token in self.get_vocab()}
        descriptions.update(self.encoder.token_descriptions())
        layout = self._layout
        descriptions.update(dict.fromkeys(layout.prefix_tokens(), "image start"))
        descriptions.update(dict.fromkeys(layout.suffix_tokens(), "image end"))
        descriptions[layout.token] = "image"
        return descriptions

    def prepare_model(
        self,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
        model: PreTrainedModel | None = None,
        init: EmbeddingInit | None = None,
    ) -> int:
        """Add the vocabulary to ``tokenizer``, bind this object to it, and fit ``model`` to the new vocabulary.

        One call with both, or two calls in either order: ``prepare_model(tokenizer=t)`` then
        ``prepare_model(model=m)`` (the model can be created in between), or ``prepare_model(model=m)`` then
        ``prepare_model(tokenizer=t)`` (the model is fitted when the tokenizer comes; this object keeps only a weak
        reference to it). The result is the same.

        Tokenizer: tokens are added in sorted order, so the same tokenizer gets the same ids on every run. Tokens the
        tokenizer already has keep their ids (e.g. a VLM's own image tokens). The image layout is checked against
        it first (:meth:`ImageLayout.validate <owa.data.image_layout.ImageLayout.validate>`).

        Model: (1) the input embeddings, and the output embeddings when they are not tied to them, are resized to
        ``len(tokenizer)`` rows when that is larger; a larger embedding (padded vocabularies) is kept. (2) With
        ``init``, the rows of the tokens this object added to the tokenizer are set (see
        :func:`owa.data.embeddings.initialize_token_rows`): ``"mean"``, the mean of the existing rows; ``"semantic"``,
        the mean embedding of the words of :meth:`token_descriptions` (input side, and output side when untied).
        Without ``init`` new rows keep what ``resize_token_embeddings`` gave them. Each call with ``init`` sets those
        rows again: call it before training. (3) Where the model's config has an image token id (``image_token_id``;
        Qwen2-VL also ``vision_start_token_id``/``vision_end_token_id``) that differs from the layout's token, it is
        set to the layout's (see :func:`owa.data.embeddings.set_image_token_ids`); with a layout made for the model
        nothing changes.

        Args:
            tokenizer: a Hugging Face tokenizer; it is modified in place. Optional when it was given before.
            model: optional Hugging Face model; modified in place.
            init: ``None`` (default), ``"mean"`` or ``"semantic"``: how to start the new tokens' embeddings.

        Returns:
            The number of tokens newly added to the tokenizer by this call.

        Raises:
            TypeError: neither ``tokenizer`` nor ``model``, or ``tokenizer`` is not a Hugging Face tokenizer.
            ValueError: an unknown ``init``.
            ImageLayoutError: the layout does not fit the tokenizer (a token it would split, or a prefix/suffix
                token that is also an event token).
        """
        if tokenizer is None and model is None:
            raise TypeError("prepare_model needs tokenizer=..., model=... or both")
        if init is not None and init not in ("mean", "semantic"):
            raise ValueError(f"Invalid init ({init!r}). Supported values are None, 'mean', 'semantic'.")
        added = 0
        if tokenizer is not None:
            added = self._bind_tokenizer(tokenizer)
        if model is None and tokenizer is not None and self._pending_model is not None:
            model, pending_init = self._pending_model[0](), self._pending_model[1]
            init = init if init is not None else pending_init
        if model is not None:
            if self._tokenizer is None:  # the tokenizer comes later: fit the model then
                self._pending_model = (weakref.ref(model), init)
                logger.info("prepare_model: the model is fitted when the tokenizer is given")
                return added
            self._pending_model = None
            self._fit_model(model, init)
        return added

    def _bind_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> int:
        from tokenizers import AddedToken

        if not hasattr(tokenizer, "add_tokens") or not hasattr(tokenizer, "convert_tokens_to_ids"):
            raise TypeError(f"Invalid tokenizer ({type(tokenizer).__name__}). Pass a Hugging Face tokenizer.")
        event_tokens = {*self.encoder.get_vocab(), self.config.episode_start_token, self.config.episode_end_token}
        self._layout.validate(tokenizer, event_tokens=event_tokens)
        vocab = self.get_vocab()
        existing = tokenizer.get_vocab()
        new = [t for t in vocab if t not in existing]
        # normalized=False: match the raw text, whatever the tokenizer's normalizer does to it.
        added = tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in vocab])
        ids = tokenizer.convert_tokens_to_ids(vocab)
        token_to_id = dict(zip(vocab, ids, strict=True))
        if tokenizer is not self._tokenizer:
            self._new_tokens = {}
        self._new_tokens.update({t: token_to_id[t] for t in new})
        self._id_to_token = {i: t for t, i in token_to_id.items()}
        self._lookup = TokenLookup(tokenizer, token_to_id)
        self._tokenizer = tokenizer
        return added

    def _fit_model(self, model: PreTrainedModel, init: EmbeddingInit | None) -> None:
        from owa.data.embeddings import initialize_token_rows, resize_token_embeddings, set_image_token_ids

        tokenizer = self.tokenizer
        resize_token_embeddings(model, len(tokenizer))
        if init is not None:
            initialize_token_rows(model, tokenizer, self._new_tokens, init=init, descriptions=self.token_descriptions())
        layout = self._layout
        lookup = self._token_lookup().token_to_id
        prefix, suffix = layout.prefix_tokens(), layout.suffix_tokens()
        set_image_token_ids(
            model,
            {
                "token": lookup[layout.token],
                "prefix": lookup[prefix[0]] if len(prefix) == 1 else None,
                "suffix": lookup[suffix[0]] if len(suffix) == 1 else None,
            },
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pending_model"] = None  # a weak reference (not picklable); worker processes never fit models
        return state

    @property
    def is_prepared(self) -> bool:
        return self._tokenizer is not None

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer given to :meth:`prepare_model`.

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
        """
        if self._tokenizer is None:
            raise TokenizerNotPreparedError(
                "EpisodeTokenizer.prepare_model(tokenizer=...) must be called before tokenizing or decoding"
            )
        return self._tokenizer

    def token_id(self, token: str) -> int:
        """The id of one of :meth:`get_vocab`'s tokens.

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            KeyError: ``token`` is not in the vocabulary.
        """
        return self._token_lookup().token_to_id[token]

    @property
    def image_token_id(self) -> int:
        """The id of the image slot token (``image_layout.token``).

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
        """
        return self.token_id(self._layout.token)

    @property
    def image_token_ids(self) -> tuple[int, ...]:
        """The ids of every token of a frame, sorted: the layout's prefix, slot and suffix tokens.

        What :class:`~owa.data.training.FSLCollator` masks out of the labels (``image_token_ids=...``): a frame's
        tokens are input the data pipeline writes, not something the model should learn to predict.

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
        """
        return tuple(sorted({self.token_id(token) for token in self._layout.new_tokens()}))

    # ------------------------------------------------------------------------------------------------------------
    # Tokenizing
    # ------------------------------------------------------------------------------------------------------------

    def tokenize(self, mcap_message: McapMessage) -> TokenizedEvent:
        """Tokenize one event.

        Returns:
            ``{"text", "token_ids", "images", "total_token_count"}``: the text with each image token replaced by
            one frame's tokens (``image_layout``: prefix, the slot token ``count`` times, suffix), its ids (equal to
            ``tokenizer.encode(text, add_special_tokens=False)``), the screen references (one per frame) and
            ``len(token_ids)``.

        With ``pointer_space="frame"``, ``mcap_message.source_path`` must name its recording.

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            EncodingError: the encoder cannot encode the event.
            ValueError: frame space and a message without ``source_path``.
        """
        lookup = self._token_lookup()
        if self._frame_space is not None:
            if mcap_message.source_path is None:
                raise ValueError(
                    "pointer_space='frame' needs the message's recording: pass mcap_message.with_source(mcap_path)"
                )
            text, images = self._frame_space.encode_serialized(
                mcap_message.model_dump_json(), episode_path=mcap_message.source_path
            )
        else:
            text, images = self.encoder.encode(mcap_message)
        text = self._expand(text)
        token_ids = lookup.ids([text])[0]
        return {"text": text, "token_ids": token_ids, "images": images, "total_token_count": len(token_ids)}

    def tokenize_event_dataset(
        self,
        dataset: datasets.Dataset,
        *,
        episode_root: str | os.PathLike[str] | None = None,
        num_proc: int | None = None,
        batch_size: int = _BATCH_SIZE,
        on_error: OnError = "raise",
    ) -> datasets.Dataset:
        """Tokenize every event of an Event Dataset, marking episode starts and ends.

        Episodes are runs of rows with the same ``episode_path`` (as stage 1 writes them). The first event of
        every episode gets ``episode_start_token`` before it, the last event ``episode_end_token`` after it.

        Args:
            dataset: an Event Dataset split (columns ``episode_path`` and ``mcap_message``; others are dropped).
            episode_root: the folder relative ``episode_path`` values resolve against (stage 1 with ``relative_to``);
                default the current directory. The screen references in ``images`` carry the resolved, absolute
                folder, so the tokenized dataset reads frames from wherever the recordings were at this call.
            num_proc: worker processes; ``None`` picks from the usable cores and the dataset size (one process
                below about 250,000 rows per process).
            batch_size: rows per batch handed to a worker.
            on_error: ``"raise"`` (default) stops at the first row the encoder cannot encode. ``"skip"`` drops such
                rows (EncodingError, MessageValidationError), counts them in :attr:`last_tokenize_stats` (also
                from worker processes) and logs a warning with the count. A dropped row that carried an episode
                token leaves a row holding just that token, so every episode still starts and ends with them.

        Returns:
            A dataset with columns ``episode_path`` (string), ``text`` (string), ``token_ids`` (list of int32),
            ``images`` (list of :func:`serialize_screen` strings, one per image-token group) and
            ``total_token_count`` (int64), row for row (less the rows skipped).

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            DatasetError: a missing column, or an episode whose rows are not contiguous (names the episode).
            EncodingError: an event the encoder cannot encode (e.g. a window event), naming the row and episode,
                with ``on_error="raise"``.
            RecordingError, MediaError: with ``pointer_space="frame"``, an episode's capture cannot be read.
        """
        import datasets

        lookup = self._token_lookup()  # raises TokenizerNotPreparedError first
        missing = [c for c in ("episode_path", "mcap_message") if c not in dataset.column_names]
        if missing:
            raise DatasetError(
                f"tokenize_event_dataset needs an Event Dataset with columns episode_path and mcap_message; "
                f"missing {missing} (columns: {dataset.column_names})"
            )
        if batch_size <= 0:
            raise ValueError(f"Invalid batch_size ({batch_size}). It must be a positive integer.")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"Invalid on_error ({on_error!r}). Supported values are 'raise', 'skip'.")
        self.last_tokenize_stats = TokenizeStats(rows=len(dataset))
        is_first, is_last = _episode_flags(dataset)
        if num_proc is None:
            num_proc = max(1, min(_usable_cores(), len(dataset) // _MIN_ROWS_PER_PROCESS))
        elif num_proc <= 0:
            raise ValueError(f"Invalid num_proc ({num_proc}). It must be a positive integer or None.")

        root = os.path.abspath(os.getcwd() if episode_root is None else os.fspath(episode_root))
        worker = _TokenizeBatch(self, lookup, is_first, is_last, root, on_error)
        list_type = getattr(datasets, "List", datasets.Sequence)
        features = datasets.Features(
            {
                "episode_path": datasets.Value("string"),
                "text": datasets.Value("string"),
                "token_ids": list_type(datasets.Value("int32")),
                "images": list_type(datasets.Value("string")),
                "total_token_count": datasets.Value("int64"),
            }
        )
        if len(dataset) == 0:  # datasets.map skips the function (and the new columns) on an empty dataset
            return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
        # Each batch also reports what the encoder clamped, so counts made in worker processes reach
        # this process's encoder.stats; the columns are dropped before returning.
        stat_columns = {_STAT_PREFIX + name: datasets.Value("int64") for name in self.encoder.stats.COUNTERS}
        stat_columns.update({_SKIP_PREFIX + name: datasets.Value("int64") for name in _SKIPPABLE_NAMES})
        stat_columns[_LAST_ERROR] = datasets.Value("string")
        stat_columns[_CARRIER] = datasets.Value("bool")
        started = time.perf_counter()
        with quiet_datasets_progress():  # the library never prints; progress is logged instead
            tokenized = dataset.with_format("arrow").map(
                worker,
                batched=True,
                batch_size=batch_size,
                with_indices=True,
                remove_columns=dataset.column_names,
                features=datasets.Features({**features, **stat_columns}),
                num_proc=num_proc if num_proc > 1 else None,
                new_fingerprint=self._fingerprint(dataset, root),
                load_from_cache_file=False,
                desc="Tokenizing events",
            )
        import pyarrow.compute as pc

        table = tokenized.select_columns(list(stat_columns)).with_format("arrow")[:]
        if num_proc > 1:  # in-process batches counted directly; workers' counts come back in the columns
            totals = {
                name: pc.sum(table.column(_STAT_PREFIX + name)).as_py() or 0 for name in self.encoder.stats.COUNTERS
            }
            self.encoder.stats.add(**totals)  # see owa.data.counters: map() workers' counts come home this way
        self._count_skips(table)
        carriers = table.column(_CARRIER)
        if pc.any(carriers).as_py():  # only when a whole batch was dropped
            tokenized = tokenized.select(np.flatnonzero(~carriers.to_numpy(zero_copy_only=False))).flatten_indices()
        tokenized = tokenized.remove_columns(list(stat_columns))
        logger.info("Tokenized %d events in %.2f s", len(tokenized), time.perf_counter() - started)
        return tokenized.with_format(None)

    def _count_skips(self, table: pa.Table) -> None:
        """Sum the skip columns of the workers' output into :attr:`last_tokenize_stats` and log them."""
        import pyarrow.compute as pc

        stats = self.last_tokenize_stats
        for name in _SKIPPABLE_NAMES:
            count = pc.sum(table.column(_SKIP_PREFIX + name)).as_py() or 0
            if count:
                stats.errors[name] = count
                stats.events_skipped += count
        messages = table.column(_LAST_ERROR).drop_null()
        stats.last_error = messages[len(messages) - 1].as_py() if len(messages) else None
        if stats.events_skipped:
            logger.warning(
                "tokenize_event_dataset skipped %d of %d rows the encoder could not encode (%s); last error: %s",
                stats.events_skipped,
                stats.rows,
                ", ".join(f"{k}: {v}" for k, v in sorted(stats.errors.items())),
                stats.last_error,
            )

    def _expand(self, text: str) -> str:
        """The encoder's text with each image token replaced by one frame's tokens (:attr:`image_layout`)."""
        return text.replace(self._layout.token, self._layout.text())

    def _token_lookup(self) -> TokenLookup:
        """The id lookup bound by :meth:`prepare_model` (raises TokenizerNotPreparedError before it)."""
        self.tokenizer  # noqa: B018 - raises when not prepared
        assert self._lookup is not None
        return self._lookup

    def _fingerprint(self, dataset: datasets.Dataset, root: str) -> str:
        """Identifies the result for ``datasets``' cache: input, settings, episode root and the exact vocabulary."""
        tokenizer = self.tokenizer
        lookup = self._token_lookup()
        if self._vocabulary_digest is None or self._vocabulary_digest[0] is not tokenizer:
            # Serializing a large vocabulary takes a quarter second: once per tokenizer object.
            backend = getattr(tokenizer, "backend_tokenizer", None)
            vocabulary = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
            self._vocabulary_digest = (tokenizer, hashlib.sha256(vocabulary.encode()).hexdigest())
        digest = hashlib.sha256()
        for part in (
            getattr(dataset, "_fingerprint", None),
            root,
            self._vocabulary_digest[1],
            self.config,  # its repr includes the encoder's config (e.g. screen_size)
            type(tokenizer).__name__,
            len(tokenizer),
            getattr(tokenizer, "name_or_path", ""),
            sorted(lookup.token_to_id.items()),
            lookup.is_exact,
        ):
            digest.update(repr(part).encode())
        return "owa-tok-" + digest.hexdigest()[:32]  # datasets caps fingerprints (with shard suffix) at 64

    # ------------------------------------------------------------------------------------------------------------
    # Decoding
    # ------------------------------------------------------------------------------------------------------------

    def decode(
        self,
        token_ids: Sequence[int] | np.ndarray,
        *,
        start_timestamp_ns: int | None = None,
        last_timestamp_ns: int | None = None,
        images: Sequence[ScreenCaptured] | None = None,
        on_error: OnError = "raise",
        frame_size: tuple[int, int] | None = None,
    ) -> DecodedEvents:
        """Turn token ids (a sample's, or a model's generation) back into events.

        Each ``<EVENT_START>...<EVENT_END>`` span is decoded by the encoder, each whole frame inside it
        (:attr:`image_layout`: prefix, ``count`` slot tokens, suffix) standing for one image. Episode tokens and
        tokens that are not ours (padding, end of text) between events are ignored. With the hierarchical encoder
        times decode modulo 4 s; they are unwrapped into absolute, non-decreasing nanoseconds from the time given
        (see :func:`owa.data.encoders.unwrap_timestamps`: exact to the 10 ms cell while consecutive events are
        under 3.99 s apart). The json encoder's times are absolute already.

        Two uses:

        * a whole sequence (a sample's events): give ``start_timestamp_ns``, the true time of the first event (0
          when None). An event cut off at the end is malformed. A sample spanning two episodes must be decoded one
          episode at a time, each from its own start (:meth:`FSLDataset.decode <owa.data.fsl_dataset.FSLDataset.decode>`
          does that).
        * a generated continuation: give ``last_timestamp_ns``, the time of the last event before ``token_ids``
          (the prompt's); the first generated event is placed at or after it. An event still open at the end is not
          an error but the result's :attr:`DecodedEvents.tail`, to decode again once the model has continued it.

        Malformed input is never turned into events: an event the encoder rejects, a frame that is not exactly the
        layout, an ``<EVENT_START>`` before the previous event's ``<EVENT_END>``, or event tokens outside an event.
        ``on_error="raise"`` (default) raises on the first; ``"skip"`` drops each, counts it in
        :attr:`DecodedEvents.skipped` and logs the count.

        Args:
            token_ids: the ids, in order.
            start_timestamp_ns: for a whole sequence, the first event's true time (or any time in its 10 ms cell).
            last_timestamp_ns: for a continuation, the last known event's time. Not together with
                ``start_timestamp_ns``.
            images: screen references to attach to the screen events, in order (e.g. a sample's ``images``).
            on_error: ``"raise"`` or ``"skip"``.
            frame_size: with ``pointer_space="frame"``, the ``(width, height)`` of the frames the events refer to;
                mouse positions come back in those frame pixels. Default: the ``shape`` of the first of ``images``.

        Returns:
            The events, a :class:`DecodedEvents` (a list of :class:`McapMessage`, with ``tail`` and ``skipped``).

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            EncodingError: malformed input, with ``on_error="raise"``; it shows the text and names the token
                position.
            ValueError: an unknown ``on_error``, both timestamps, or frame space without a frame size.
        """
        check_on_error(on_error)
        decoder = self.encoder
        if self._frame_space is not None:
            if frame_size is None and images and images[0].shape is not None:
                frame_size = images[0].shape
            if frame_size is None:
                raise ValueError(
                    "pointer_space='frame': pass frame_size=(width, height) (or images with a shape) to decode "
                    "mouse positions into frame pixels"
                )
            decoder = self._frame_space.for_frame_size(frame_size)
        if start_timestamp_ns is not None and last_timestamp_ns is not None:
            raise ValueError(
                "Give start_timestamp_ns (a whole sequence) or last_timestamp_ns (a continuation), not both"
            )
        token_to_id = self._token_lookup().token_to_id
        event_start, event_end = token_to_id[EVENT_START], token_to_id[EVENT_END]
        outside_ok = {token_to_id[self.config.episode_start_token], token_to_id[self.config.episode_end_token]}
        ours = self._id_to_token
        ids = np.asarray(token_ids, dtype=np.int64).tolist()
        image_queue = list(images) if images is not None else None
        messages: list[McapMessage] = []
        skipped = 0

        def malformed(error: EncodingError, position: int) -> None:
            nonlocal skipped
            if on_error == "raise":
                raise EncodingError(error.reason, position=position, **error.context) from error
            skipped += 1

        def fragment_error(reason: str, start: int, stop: int) -> EncodingError:
            return EncodingError(reason, snippet=_snippet(self._ids_to_text(ids[start:stop])))

        open_at: int | None = None  # the position of the open event's <EVENT_START>
        stray = False  # inside a run of event tokens outside any event
        for position, token_id in enumerate(ids):
            if token_id == event_start:
                if open_at is not None:
                    reason = "Incomplete event in token ids (an <EVENT_START> before its <EVENT_END>)"
                    malformed(fragment_error(reason, open_at, position), open_at)
                open_at, stray = position, False
            elif token_id == event_end and open_at is not None:
                start, open_at = open_at, None
                try:
                    text, frames = self._collapse_frames(self._ids_to_text(ids[start : position + 1]))
                    event_images = None
                    if image_queue is not None and frames:
                        event_images, image_queue = image_queue[:frames], image_queue[frames:]
                    messages.append(decoder.decode(text, images=event_images))
                except EncodingError as e:
                    malformed(e, start)
            elif open_at is None and token_id in ours and token_id not in outside_ok:
                if not stray:  # one count per run of stray tokens
                    reason = f"Event tokens outside {EVENT_START}...{EVENT_END}"
                    end = next((p for p in range(position, len(ids)) if ids[p] == event_start), len(ids))
                    malformed(fragment_error(reason, position, end), position)
                stray = True
            else:
                stray = False
        tail: list[int] = []
        if open_at is not None:
            tail = ids[open_at:]
            if last_timestamp_ns is None:
                malformed(fragment_error("Incomplete event in token ids (no <EVENT_END>)", open_at, len(ids)), open_at)
        if skipped:
            logger.warning("decode skipped %d malformed or incomplete event(s)", skipped)
        unwrap = getattr(self.encoder, "unwrap_timestamps", None)
        if unwrap is not None and messages:
            start_ns = last_timestamp_ns if last_timestamp_ns is not None else start_timestamp_ns or 0
            times = unwrap([m.timestamp for m in messages], start_ns)
            messages = [m.model_copy(update={"timestamp": t}) for m, t in zip(messages, times, strict=True)]
        return DecodedEvents(messages, tail=tail, skipped=skipped)

    def _collapse_frames(self, text: str) -> tuple[str, int]:
        """``text`` with each whole frame replaced by the encoder's image token, and the number of frames.

        Raises:
            EncodingError: image tokens that are not whole frames (a wrong count, a missing prefix or suffix).
        """
        layout = self._layout
        collapsed = text.replace(layout.text(), _FRAME)
        if any(piece in collapsed for piece in layout.new_tokens()):
            raise EncodingError(
                f"Image tokens that do not form whole frames ({layout.prefix!r} + {layout.token!r} x {layout.count} "
                f"+ {layout.suffix!r})",
                snippet=_snippet(text),
            )
        return collapsed.replace(_FRAME, layout.token), collapsed.count(_FRAME)

    def _ids_to_text(self, token_ids: Sequence[int] | np.ndarray) -> str:
        tokenizer = self.tokenizer
        parts: list[str] = []
        other: list[int] = []
        for token_id in np.asarray(token_ids, dtype=np.int64).tolist():
            token = self._id_to_token.get(token_id)
            if token is None:
                other.append(token_id)
                continue
            if other:
                parts.append(tokenizer.decode(other, skip_special_tokens=False))
                other = []
            parts.append(token)
        if other:
            parts.append(tokenizer.decode(other, skip_special_tokens=False))
        return "".join(parts)

    def __repr__(self) -> str:
        state = "prepared" if self.is_prepared else "not prepared"
        return f"EpisodeTokenizer({self.config!r}, {state})"


_SKIPPABLE = (EncodingError, MessageValidationError)  # what on_error="skip" drops: rows the encoder cannot encode
_SKIPPABLE_NAMES = tuple(e.__name__ for e in _SKIPPABLE)


class _TokenizeBatch:
    """The per-batch work of :meth:`EpisodeTokenizer.tokenize_event_dataset` (picklable for worker processes)."""

    def __init__(
        self,
        owner: EpisodeTokenizer,
        lookup: TokenLookup,
        is_first: np.ndarray,
        is_last: np.ndarray,
        episode_root: str,
        on_error: OnError = "raise",
    ) -> None:
        self.owner = owner
        self.lookup = lookup
        self.is_first = is_first
        self.is_last = is_last
        self.episode_root = episode_root
        self.on_error = on_error

    def __call__(self, batch: pa.Table, indices: list[int]) -> pa.Table:
        owner = self.owner
        config = owner.config
        encode = (owner._frame_space or owner.encoder).encode_serialized
        paths = batch.column("episode_path").to_pylist()
        messages = batch.column("mcap_message").to_pylist()
        rows = np.asarray(indices, dtype=np.int64)

        sources = {path: resolve_episode_path(path, self.episode_root) for path in set(paths)}
        image_token = owner.image_layout.token
        expanded = owner.image_layout.text()
        stats_before = owner.encoder.stats.counts()
        is_first = self.is_first[rows].tolist()
        is_last = self.is_last[rows].tolist()
        kept_paths: list[str] = []
        texts: list[str] = []
        image_refs: list[str] = []
        image_counts: list[int] = []
        skipped = dict.fromkeys(_SKIPPABLE_NAMES, 0)
        last_error: str | None = None
        for position, (path, message) in enumerate(zip(paths, messages, strict=True)):
            try:
                text, images = encode(message, episode_path=sources[path])
            except _SKIPPABLE as e:
                located = e.with_context(path=path, row=indices[position])
                if self.on_error == "raise":
                    raise located from e
                skipped[_skippable_name(e)] += 1
                last_error = str(located)
                # A dropped row keeps its episode tokens, alone: episodes still start and end with them.
                text = (config.episode_start_token if is_first[position] else "") + (
                    config.episode_end_token if is_last[position] else ""
                )
                if not text:
                    continue
                images = []
            else:
                if is_first[position]:
                    text = config.episode_start_token + text
                if is_last[position]:
                    text += config.episode_end_token
            if images:
                text = text.replace(image_token, expanded)
                image_refs.extend(map(serialize_screen, images))
            kept_paths.append(path)
            texts.append(text)
            image_counts.append(len(images))
        carrier = not texts  # every row dropped: one row still has to carry the counts out of the worker
        if carrier:
            kept_paths, texts, image_counts = [paths[0]], [""], [0]

        values, lengths = self.lookup.ids_flat(texts)
        offsets = np.zeros(len(texts) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        image_offsets = np.zeros(len(texts) + 1, dtype=np.int32)
        np.cumsum(image_counts, out=image_offsets[1:])
        counts = {_STAT_PREFIX + name: count for name, count in owner.encoder.stats.since(stats_before).items()}
        counts.update({_SKIP_PREFIX + name: count for name, count in skipped.items()})
        stat_columns = {}
        for column, count in counts.items():
            delta = np.zeros(len(texts), dtype=np.int64)
            delta[0] = count  # the batch's count, on its first row
            stat_columns[column] = pa.array(delta)
        stat_columns[_LAST_ERROR] = pa.array([last_error] + [None] * (len(texts) - 1), type=pa.string())
        stat_columns[_CARRIER] = pa.array([carrier] * len(texts), type=pa.bool_())
        return pa.table(
            {
                "episode_path": pa.array(kept_paths, type=pa.string()),
                "text": pa.array(texts, type=pa.string()),
                "token_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.int32())),
                "images": pa.ListArray.from_arrays(pa.array(image_offsets), pa.array(image_refs, type=pa.string())),
                "total_token_count": pa.array(lengths),
                **stat_columns,
            }
        )


def _skippable_name(error: BaseException) -> str:
    """The :data:`_SKIPPABLE` type name an error counts under (its nearest skippable base)."""
    return next(cls.__name__ for cls in type(error).__mro__ if cls in _SKIPPABLE)


def _episode_flags(dataset: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(is_first, is_last)`` per row: where the episode path changes. Episodes must be contiguous."""
    import pyarrow.compute as pc

    paths = dataset.select_columns(["episode_path"]).with_format("arrow")[:].column("episode_path")
    n = len(paths)
    change = np.ones(n + 1, dtype=bool)  # change[i]: row i starts an episode (and row i-1 ends one)
    if n > 1:
        change[1:n] = pc.not_equal(paths[1:], paths[:-1]).fill_null(True).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(change[:n])
    if len(starts):
        run_paths = paths.take(pa.array(starts))
        if len(pc.unique(run_paths)) != len(starts):
            counts = pc.value_counts(run_paths)
            repeated = next(v["values"].as_py() for v in counts if v["counts"].as_py() > 1)
            first_rows = [int(r) for r, p in zip(starts, run_paths.to_pylist(), strict=True) if p == repeated][:3]
            raise DatasetError(
                "Episode rows are not contiguous: the same episode_path appears in separate runs (rows starting at "
                f"{first_rows}). Keep each episode's events together and in time order, as stage 1 writes them; "
                "do not shuffle an Event Dataset before tokenizing it",
                path=repeated,
            )
    return change[:n].copy(), change[1:].copy()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
