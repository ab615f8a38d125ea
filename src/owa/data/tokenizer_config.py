"""EpisodeTokenizerConfig: the settings of an :class:`~owa.data.episode_tokenizer.EpisodeTokenizer`, once.

The one source of truth for the tokenizer's defaults: the Python API, the packing config and saved dataset
metadata (:meth:`EpisodeTokenizerConfig.to_json`) all use this object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from owa.data.action_offset import DEFAULT_ACTION_TOPICS, check_offset
from owa.data.encoders import EncoderConfig, encoder_class
from owa.data.errors import ImageLayoutError
from owa.data.image_layout import ImageLayout, PresetName
from owa.data.image_layout import image_layout as resolve_image_layout
from owa.data.pointer_space import PointerSpace, check_pointer_space

__all__ = ["EpisodeTokenizerConfig"]


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
        action_offset_s: the inverse-dynamics action offset τ in seconds (default 0: off). Each action event is
            moved τ later in the sequence, after the frames of the next τ seconds, and its tokens encode its time
            plus τ; decoding gives the recorded time back (:mod:`owa.data.action_offset` has the exact rule).
            The D2E paper's generalist inverse-dynamics model uses 0.1.
        action_topics: the topics the offset moves (default ``("keyboard", "mouse", "mouse/raw")``); stored as a
            tuple.

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
    action_offset_s: float = 0.0
    action_topics: tuple[str, ...] = DEFAULT_ACTION_TOPICS

    def __post_init__(self) -> None:
        check_pointer_space(self.pointer_space)
        check_offset(self.action_offset_s)
        topics = self.action_topics
        if isinstance(topics, str) or not all(isinstance(t, str) and t for t in topics):
            raise ValueError(
                f"Invalid action_topics ({topics!r}). It must be a sequence of topic names, such as "
                f"{DEFAULT_ACTION_TOPICS!r}."
            )
        object.__setattr__(self, "action_topics", tuple(topics))
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
        fields["action_topics"] = list(self.action_topics)
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
