"""EpisodeTokenizer: events (McapMessages) to token ids for a language model, and back.

An event is encoded to text by an event encoder (:mod:`owa.data.encoders`), its image token is repeated
``image_token_length`` times (the slots a vision encoder fills), and the text is tokenized with a Hugging Face
tokenizer that :meth:`EpisodeTokenizer.prepare_model` extended with the encoder's vocabulary. In an episode, the
first event's text starts with ``episode_start_token`` and the last event's ends with ``episode_end_token``.

Example::

    tokenizer = AutoTokenizer.from_pretrained("path/to/local/tokenizer")
    event_tokenizer = EpisodeTokenizer(image_token="<image>")
    event_tokenizer.prepare_model(tokenizer=tokenizer)
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
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from owa.data._token_lookup import TokenLookup
from owa.data.dataset_io import quiet_datasets_progress
from owa.data.encoders import EncoderConfig, EventEncoder, encoder_class
from owa.data.encoders.base import EVENT_END, EVENT_START
from owa.data.episode_paths import resolve_episode_path
from owa.data.errors import (
    DatasetError,
    EncodingError,
    MessageValidationError,
    OnError,
    TokenizerNotPreparedError,
    check_on_error,
)
from owa.data.messages import McapMessage, ScreenCaptured, deserialize_screen, serialize_screen
from owa.data.pointer_space import FrameSpaceEncoder, PointerSpace, check_pointer_space

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
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
        image_token: the token that stands for one slot of a screen frame (e.g. ``"<image>"`` for SmolVLM).
        image_token_length: how many times the image token is repeated per frame.
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
    """

    encoder_type: str = "hierarchical"
    image_token: str = "<IMAGE>"
    image_token_length: int = 64
    episode_start_token: str = "<EPISODE_START>"
    episode_end_token: str = "<EPISODE_END>"
    encoder_config: EncoderConfig | None = None
    pointer_space: PointerSpace = "screen"

    def __post_init__(self) -> None:
        check_pointer_space(self.pointer_space)
        length = self.image_token_length
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise ValueError(
                f"Invalid image_token_length ({self.image_token_length!r}). It must be a positive integer."
            )
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

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (e.g. for dataset metadata); :meth:`from_json` reads it back."""
        fields = dataclasses.asdict(self)
        fields["encoder_config"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in fields["encoder_config"].items()
        }
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
        return cls().with_options(**fields, **encoder_fields)


TokenizedEvent = dict[str, Any]
"""``{"text": str, "token_ids": list[int], "images": list[ScreenCaptured], "total_token_count": int}``."""


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

    The object keeps the resulting config as :attr:`config`. Call :meth:`prepare_model` once with the tokenizer (and
    model) before tokenizing.

    Raises:
        TypeError: an unknown option (the message lists the allowed ones), or ``config`` is not an
            :class:`EpisodeTokenizerConfig`.
        ValueError: an invalid setting, or an unknown ``encoder_type``.
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
        # Frame space: mouse events go through this adapter; it shares self.encoder.stats.
        self._frame_space = FrameSpaceEncoder(self.encoder) if self.config.pointer_space == "frame" else None
        self.last_tokenize_stats = TokenizeStats()
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._lookup: TokenLookup | None = None
        self._id_to_token: dict[int, str] = {}
        self._vocabulary_digest: tuple[Any, str] | None = None

    @classmethod
    def from_config(cls, config: EpisodeTokenizerConfig) -> EpisodeTokenizer:
        """Build from a config object (e.g. one read back from saved metadata); the same as ``cls(config)``."""
        return cls(config)

    # ------------------------------------------------------------------------------------------------------------
    # Vocabulary and model preparation
    # ------------------------------------------------------------------------------------------------------------

    def get_vocab(self) -> list[str]:
        """The tokens :meth:`prepare_model` adds, sorted: the encoder's vocabulary, image and episode tokens."""
        vocab = set(self.encoder.get_vocab())
        vocab.update((self.config.image_token, self.config.episode_start_token, self.config.episode_end_token))
        return sorted(vocab)

    def prepare_model(self, *, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None = None) -> int:
        """Add the vocabulary to ``tokenizer`` (and grow ``model``'s embeddings) and bind this object to it.

        Tokens are added in sorted order, so the same tokenizer gets the same ids on every run. Tokens the
        tokenizer already has keep their ids. The model's input (and tied output) embeddings are resized to
        ``len(tokenizer)`` when that is larger than they are; a larger embedding (padded vocabularies) is kept.

        Args:
            tokenizer: a Hugging Face tokenizer; it is modified in place.
            model: optional Hugging Face model whose embeddings to resize.

        Returns:
            The number of tokens newly added to the tokenizer.

        Raises:
            TypeError: ``tokenizer`` is not a Hugging Face tokenizer.
        """
        from tokenizers import AddedToken

        if not hasattr(tokenizer, "add_tokens") or not hasattr(tokenizer, "convert_tokens_to_ids"):
            raise TypeError(f"Invalid tokenizer ({type(tokenizer).__name__}). Pass a Hugging Face tokenizer.")
        vocab = self.get_vocab()
        # normalized=False: match the raw text, whatever the tokenizer's normalizer does to it.
        added = tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in vocab])
        ids = tokenizer.convert_tokens_to_ids(vocab)
        token_to_id = dict(zip(vocab, ids, strict=True))
        self._id_to_token = {i: t for t, i in token_to_id.items()}
        self._lookup = TokenLookup(tokenizer, token_to_id)
        self._tokenizer = tokenizer
        if model is not None:
            size = len(tokenizer)
            current = model.get_input_embeddings().weight.shape[0]
            if size > current:
                model.resize_token_embeddings(size)
        return added

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
        """The id of the image token (what :class:`~owa.data.training.FSLCollator` masks out of the labels)."""
        return self.token_id(self.config.image_token)

    # ------------------------------------------------------------------------------------------------------------
    # Tokenizing
    # ------------------------------------------------------------------------------------------------------------

    def tokenize(self, mcap_message: McapMessage) -> TokenizedEvent:
        """Tokenize one event.

        Returns:
            ``{"text", "token_ids", "images", "total_token_count"}``: the text with the image token repeated
            ``image_token_length`` times, its ids (equal to ``tokenizer.encode(text, add_special_tokens=False)``),
            the screen references (one per image-token group) and ``len(token_ids)``.

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
        image_token = self.config.image_token
        return text.replace(image_token, image_token * self.config.image_token_length)

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
        images: Sequence[ScreenCaptured] | None = None,
        on_error: OnError = "raise",
        frame_size: tuple[int, int] | None = None,
    ) -> list[McapMessage]:
        """Turn token ids (e.g. a model's generation) back into events.

        Episode tokens are dropped, each run of ``image_token_length`` image tokens becomes one image, and each
        ``<EVENT_START>...<EVENT_END>`` span is decoded by the encoder. Padding and other tokens between events are
        ignored. With the hierarchical encoder, times decode modulo 4 s; they are unwrapped into absolute,
        non-decreasing nanoseconds from ``start_timestamp_ns`` (0 when None; see
        :func:`owa.data.encoders.unwrap_timestamps` for the rule).

        Args:
            token_ids: the ids, in order.
            start_timestamp_ns: the true time of the first event (or any time in its 10 ms cell).
            images: screen references to attach to the screen events, in order (e.g. a sample's ``images``).
            on_error: ``"raise"`` (default) raises on a malformed or cut-off event; ``"skip"`` drops it and logs
                how many were dropped (a generation cut mid-event ends with one).
            frame_size: with ``pointer_space="frame"``, the ``(width, height)`` of the frames the events refer to;
                mouse positions come back in those frame pixels. Default: the ``shape`` of the first of ``images``.

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            EncodingError: a malformed or incomplete event, with ``on_error="raise"``.
            ValueError: an invalid ``on_error``; frame space without a frame size.
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
        text = self._ids_to_text(token_ids)
        config = self.config
        text = text.replace(config.episode_start_token, "").replace(config.episode_end_token, "")
        run = re.compile(f"(?:{re.escape(config.image_token)})+")

        def collapse(match: re.Match[str]) -> str:
            count = len(match.group(0)) // len(config.image_token)
            return config.image_token * max(1, round(count / config.image_token_length))

        text = run.sub(collapse, text)
        image_queue = list(images) if images is not None else None
        messages: list[McapMessage] = []
        skipped = 0
        position = 0
        while True:
            start = text.find(EVENT_START, position)
            if start < 0:
                break
            end = text.find(EVENT_END, start)
            next_start = text.find(EVENT_START, start + len(EVENT_START))
            if end < 0 or 0 <= next_start < end:
                if on_error == "raise":
                    raise EncodingError("Incomplete event in token ids (no <EVENT_END>)", snippet=text[start:][:160])
                skipped += 1
                position = start + len(EVENT_START)
                continue
            event_text = text[start : end + len(EVENT_END)]
            position = end + len(EVENT_END)
            event_images = None
            count = event_text.count(config.image_token)
            if image_queue is not None and count:
                event_images, image_queue = image_queue[:count], image_queue[count:]
            try:
                messages.append(decoder.decode(event_text, images=event_images))
            except EncodingError:
                if on_error == "raise":
                    raise
                skipped += 1
        if skipped:
            logger.warning("decode skipped %d malformed or incomplete event(s)", skipped)
        unwrap = getattr(self.encoder, "unwrap_timestamps", None)
        if unwrap is not None and messages:
            times = unwrap([m.timestamp for m in messages], start_timestamp_ns or 0)
            messages = [m.model_copy(update={"timestamp": t}) for m, t in zip(messages, times, strict=True)]
        return messages

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
        image_token = config.image_token
        expanded = image_token * config.image_token_length
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
