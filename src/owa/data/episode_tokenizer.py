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

import hashlib
import logging
import os
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from owa.data._token_lookup import TokenLookup
from owa.data._tokenize_batch import (
    CARRIER,
    TokenizeBatch,
    TokenizeStats,
    episode_flags,
    stat_features,
    sum_encoder_counts,
    sum_skips,
    usable_cores,
)
from owa.data.action_offset import event_order, offset_ns
from owa.data.dataset_io import quiet_datasets_progress
from owa.data.encoders import EventEncoder, encoder_class
from owa.data.encoders.base import token_words
from owa.data.errors import DatasetError, OnError, TokenizerNotPreparedError, check_on_error
from owa.data.image_layout import ImageLayout
from owa.data.messages import McapMessage, ScreenCaptured, deserialize_screen, serialize_screen
from owa.data.pointer_space import FrameSpaceEncoder
from owa.data.token_decoding import DecodedEvents, TokenDecoder
from owa.data.tokenizer_config import EpisodeTokenizerConfig
from owa.data.vocabulary import vocabulary_fingerprint

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa
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

# Rows per process below which tokenize_event_dataset stays in one process: starting workers and shipping the
# tokenizer to them costs more than it saves on small datasets.
_MIN_ROWS_PER_PROCESS = 250_000
_BATCH_SIZE = 2_000


TokenizedEvent = dict[str, Any]
"""``{"text": str, "token_ids": list[int], "images": list[ScreenCaptured], "total_token_count": int}``."""


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
        self._decoder: TokenDecoder | None = None
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
        self._lookup = TokenLookup(tokenizer, token_to_id)
        episode_tokens = (self.config.episode_start_token, self.config.episode_end_token)
        self._decoder = TokenDecoder(tokenizer, token_to_id, self._layout, episode_tokens)
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

        With ``pointer_space="frame"``, ``mcap_message.source_path`` must name its recording. With an action
        offset, an action's tokens encode its time plus ``action_offset_s``, as in :meth:`tokenize_event_dataset`.

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            EncodingError: the encoder cannot encode the event.
            ValueError: frame space and a message without ``source_path``.
        """
        lookup = self._token_lookup()
        if self.config.action_offset_s and mcap_message.topic in self.config.action_topics:
            shifted = mcap_message.timestamp + offset_ns(self.config.action_offset_s)
            mcap_message = mcap_message.model_copy(update={"timestamp": shifted})
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
        every episode gets ``episode_start_token`` before it, the last event ``episode_end_token`` after it. With an
        ``interval`` column (stage 1 with an interval selector) each span is an episode segment of its own: its
        first and last events get the tokens, and the column is kept in the output for packing.

        With ``action_offset_s`` (τ > 0) the rows of each episode segment (same ``episode_path``, and same
        ``interval`` when the dataset has that column) are put in sequence order first: every action (a topic of
        ``action_topics``) comes after the events of the next τ seconds and its tokens encode its time plus τ
        (:mod:`owa.data.action_offset` has the exact rule, at both ends of a segment). This needs the columns
        ``timestamp_ns`` and ``topic``. With τ = 0 (the default) nothing moves.

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
            ``total_token_count`` (int64), plus ``interval`` (int32) when the input has it, row for row (less the
            rows skipped); with an action offset, row ``i`` is the event at sequence position ``i``
            (:func:`owa.data.action_offset.event_order` gives the mapping).

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            DatasetError: a missing column (``timestamp_ns`` and ``topic`` too with an action offset), or an episode
                whose rows are not contiguous (names the episode).
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
        is_first, is_last = episode_flags(dataset)
        if num_proc is None:
            num_proc = max(1, min(usable_cores(), len(dataset) // _MIN_ROWS_PER_PROCESS))
        elif num_proc <= 0:
            raise ValueError(f"Invalid num_proc ({num_proc}). It must be a positive integer or None.")

        shift_ns = source_rows = None
        if self.config.action_offset_s and len(dataset):  # actions move later: rows in sequence order
            sequence = event_order(dataset, self.config.action_offset_s, self.config.action_topics)
            shift_ns = np.where(sequence.is_action, offset_ns(self.config.action_offset_s), 0)
            source_rows = sequence.order
            if not np.array_equal(sequence.order, np.arange(len(dataset))):
                dataset = dataset.select(sequence.order)

        root = os.path.abspath(os.getcwd() if episode_root is None else os.fspath(episode_root))
        worker = TokenizeBatch(
            encode=(self._frame_space or self.encoder).encode_serialized,
            encoder_stats=self.encoder.stats,
            lookup=lookup,
            layout=self._layout,
            episode_tokens=(self.config.episode_start_token, self.config.episode_end_token),
            is_first=is_first,
            is_last=is_last,
            episode_root=root,
            on_error=on_error,
            shift_ns=shift_ns,
            source_rows=source_rows,
        )
        list_type = getattr(datasets, "List", datasets.Sequence)
        features = datasets.Features(
            {
                "episode_path": datasets.Value("string"),
                **({"interval": datasets.Value("int32")} if "interval" in dataset.column_names else {}),
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
        stat_columns = stat_features(self.encoder.stats.COUNTERS)
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
            # see owa.data.counters: map() workers' counts come home this way
            self.encoder.stats.add(**sum_encoder_counts(table, self.encoder.stats.COUNTERS))
        self._log_skips(table)
        carriers = table.column(CARRIER)
        if pc.any(carriers).as_py():  # only when a whole batch was dropped
            tokenized = tokenized.select(np.flatnonzero(~carriers.to_numpy(zero_copy_only=False))).flatten_indices()
        tokenized = tokenized.remove_columns(list(stat_columns))
        logger.info("Tokenized %d events in %.2f s", len(tokenized), time.perf_counter() - started)
        return tokenized.with_format(None)

    def _log_skips(self, table: pa.Table) -> None:
        """Sum the skip columns of the workers' output into :attr:`last_tokenize_stats` and log them."""
        stats = self.last_tokenize_stats
        sum_skips(table, stats)
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
            self._vocabulary_digest = (tokenizer, vocabulary_fingerprint(tokenizer))
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

        With an action offset τ (``action_offset_s``), the times given are the sequence's, the times the tokens
        encode (an action's recorded time plus τ: :func:`owa.data.action_offset.event_order` gives them for an
        Event Dataset); unwrapping runs on those, then τ is taken off every action, so the events come back with
        their recorded times, in sequence order (an action after the frames of the τ seconds that followed it).

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
        self._token_lookup()  # raises TokenizerNotPreparedError first
        assert self._decoder is not None
        return self._decoder.decode(
            token_ids,
            decoder=decoder,
            unwrap=getattr(self.encoder, "unwrap_timestamps", None),
            action_offset_ns=offset_ns(self.config.action_offset_s),
            action_topics=self.config.action_topics,
            start_timestamp_ns=start_timestamp_ns,
            last_timestamp_ns=last_timestamp_ns,
            images=images,
            on_error=on_error,
        )

    def __repr__(self) -> str:
        state = "prepared" if self.is_prepared else "not prepared"
        return f"EpisodeTokenizer({self.config!r}, {state})"
