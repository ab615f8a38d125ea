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
(the json encoder) go through the tokenizer in large batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from owa.data.encoders.base import EVENT_END, EVENT_START
from owa.data.errors import (
    DatasetError,
    EncodingError,
    MessageValidationError,
    OnError,
    TokenizerNotPreparedError,
    check_on_error,
)
from owa.data.messages import McapMessage, ScreenCaptured
from owa.data.outputs import quiet_datasets_progress

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from owa.data.encoders import EventEncoder

__all__ = [
    "EpisodeTokenizer",
    "EpisodeTokenizerConfig",
    "TokenizedEvent",
    "deserialize_screen",
    "serialize_screen",
]

logger = logging.getLogger(__name__)

_STAT_PREFIX = "__owa_encoder_"  # temporary columns carrying encoder.stats counts out of map() workers

_PIECE = re.compile(r"<[^<>]*>")
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
    """

    encoder_type: str = "hierarchical"
    image_token: str = "<IMAGE>"
    image_token_length: int = 64
    episode_start_token: str = "<EPISODE_START>"
    episode_end_token: str = "<EPISODE_END>"

    def __post_init__(self) -> None:
        if not isinstance(self.image_token_length, int) or self.image_token_length <= 0:
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


TokenizedEvent = dict[str, Any]
"""``{"text": str, "token_ids": list[int], "images": list[ScreenCaptured], "total_token_count": int}``."""


def serialize_screen(screen: ScreenCaptured) -> str:
    """A ScreenCaptured reference as a JSON string, keeping its ``base_dir`` (how relative media resolves).

    The form is the payload's fields plus ``"base_dir"``; :func:`deserialize_screen` reads it back.
    """
    payload = screen.model_dump_json(exclude_none=True)  # "{...}"
    base_dir = orjson.dumps(screen.base_dir).decode()
    return f'{{"base_dir":{base_dir}}}' if payload == "{}" else f'{payload[:-1]},"base_dir":{base_dir}}}'


def deserialize_screen(text: str | bytes) -> ScreenCaptured:
    """Read back what :func:`serialize_screen` wrote.

    Raises:
        MessageValidationError: the text is not a serialized ScreenCaptured reference.
    """
    try:
        fields = orjson.loads(text)
        base_dir = fields.pop("base_dir", None)
        return ScreenCaptured.model_validate(fields).with_base_dir(base_dir)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as e:
        raise MessageValidationError(f"Not a serialized ScreenCaptured reference: {e}", snippet=str(text)[:160]) from e


class EpisodeTokenizer:
    """Tokenize events and episodes for a language model; decode generated tokens back to events.

    The keyword arguments are the fields of :class:`EpisodeTokenizerConfig` (see there); the object keeps them as
    :attr:`config`. Call :meth:`prepare_model` once with the tokenizer (and model) before tokenizing.

    Raises:
        ValueError: an invalid setting, or an unknown ``encoder_type``.
    """

    def __init__(
        self,
        encoder_type: str = EpisodeTokenizerConfig.encoder_type,
        image_token: str = EpisodeTokenizerConfig.image_token,
        image_token_length: int = EpisodeTokenizerConfig.image_token_length,
        episode_start_token: str = EpisodeTokenizerConfig.episode_start_token,
        episode_end_token: str = EpisodeTokenizerConfig.episode_end_token,
    ) -> None:
        self.config = EpisodeTokenizerConfig(
            encoder_type=encoder_type,
            image_token=image_token,
            image_token_length=image_token_length,
            episode_start_token=episode_start_token,
            episode_end_token=episode_end_token,
        )
        from owa.data.encoders import create_encoder

        self.encoder: EventEncoder = create_encoder(encoder_type, image_token=image_token)
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._token_to_id: dict[str, int] = {}
        self._open_to_id: dict[str, int] = {}  # "<TOKEN" (no closing bracket) -> id, for the batch lookup
        self._id_to_token: dict[int, str] = {}
        self._lookup_is_exact = False
        self._vocabulary_digest: tuple[Any, str] | None = None

    @classmethod
    def from_config(cls, config: EpisodeTokenizerConfig) -> EpisodeTokenizer:
        """Build from a config object (e.g. one read back from saved metadata)."""
        return cls(**dataclasses.asdict(config))

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
        self._token_to_id = dict(zip(vocab, ids, strict=True))
        self._id_to_token = {i: t for t, i in self._token_to_id.items()}
        self._open_to_id = {t[:-1]: i for t, i in self._token_to_id.items()}
        self._tokenizer = tokenizer
        self._lookup_is_exact = _lookup_is_exact(tokenizer, self._token_to_id)
        if not self._lookup_is_exact:
            logger.info("Token lookup fast path off for this tokenizer; texts go through the tokenizer in batches")
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
        self.tokenizer  # noqa: B018 - raises when not prepared
        return self._token_to_id[token]

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

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            EncodingError: the encoder cannot encode the event.
        """
        tokenizer = self.tokenizer
        text, images = self.encoder.encode(mcap_message)
        text = self._expand(text)
        token_ids = self._ids([text], tokenizer)[0]
        return {"text": text, "token_ids": token_ids, "images": images, "total_token_count": len(token_ids)}

    def tokenize_event_dataset(
        self,
        dataset: datasets.Dataset,
        *,
        episode_root: str | os.PathLike[str] | None = None,
        num_proc: int | None = None,
        batch_size: int = _BATCH_SIZE,
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

        Returns:
            A dataset with columns ``episode_path`` (string), ``text`` (string), ``token_ids`` (list of int32),
            ``images`` (list of :func:`serialize_screen` strings, one per image-token group) and
            ``total_token_count`` (int64), row for row.

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            DatasetError: a missing column, or an episode whose rows are not contiguous (names the episode).
            EncodingError: an event the encoder cannot encode (e.g. a window event), naming the row and episode.
        """
        import datasets

        tokenizer = self.tokenizer
        missing = [c for c in ("episode_path", "mcap_message") if c not in dataset.column_names]
        if missing:
            raise DatasetError(
                f"tokenize_event_dataset needs an Event Dataset with columns episode_path and mcap_message; "
                f"missing {missing} (columns: {dataset.column_names})"
            )
        if batch_size <= 0:
            raise ValueError(f"Invalid batch_size ({batch_size}). It must be a positive integer.")
        is_first, is_last = _episode_flags(dataset)
        if num_proc is None:
            num_proc = max(1, min(_usable_cores(), len(dataset) // _MIN_ROWS_PER_PROCESS))
        elif num_proc <= 0:
            raise ValueError(f"Invalid num_proc ({num_proc}). It must be a positive integer or None.")

        root = os.path.abspath(os.getcwd() if episode_root is None else os.fspath(episode_root))
        worker = _TokenizeBatch(self, tokenizer, is_first, is_last, root)
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
        if num_proc > 1:  # in-process batches counted directly; workers' counts come back in the columns
            import pyarrow.compute as pc

            table = tokenized.select_columns(list(stat_columns)).with_format("arrow")[:]
            totals = {c.removeprefix(_STAT_PREFIX): pc.sum(table.column(c)).as_py() or 0 for c in stat_columns}
            self.encoder.stats.add(**totals)  # see owa.data.counters: map() workers' counts come home this way
        tokenized = tokenized.remove_columns(list(stat_columns))
        logger.info("Tokenized %d events in %.2f s", len(tokenized), time.perf_counter() - started)
        return tokenized.with_format(None)

    def _expand(self, text: str) -> str:
        image_token = self.config.image_token
        return text.replace(image_token, image_token * self.config.image_token_length)

    def _ids_flat(self, texts: list[str], tokenizer: PreTrainedTokenizerBase) -> tuple[np.ndarray, np.ndarray]:
        """The ids of all ``texts`` concatenated (int32) and the token count of each text (int64).

        Each text's ids equal ``tokenizer.encode(text, add_special_tokens=False)``.
        """
        if self._lookup_is_exact and all(text.endswith(">") for text in texts if text):
            # Texts of our ``<...>`` tokens only: split the whole batch at every '>' in one call. As every text ends
            # with '>', no piece spans two texts; a piece that is not one of our tokens falls back below.
            pieces = "".join(texts).split(">")
            pieces.pop()  # what follows the last '>': empty
            try:
                values = np.fromiter(map(self._open_to_id.__getitem__, pieces), dtype=np.int32, count=len(pieces))
            except KeyError:
                pass
            else:
                counts = np.fromiter((text.count(">") for text in texts), dtype=np.int64, count=len(texts))
                return values, counts
        ids = self._ids(texts, tokenizer)
        counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        values = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(counts.sum()))
        return values, counts

    def _ids(self, texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
        """Token ids of each text, equal to ``tokenizer.encode(text, add_special_tokens=False)``."""
        results: list[list[int] | None] = [None] * len(texts)
        pending: list[int] = []
        lookup = self._token_to_id
        for i, text in enumerate(texts):
            if self._lookup_is_exact:
                pieces = _PIECE.findall(text)
                if sum(map(len, pieces)) == len(text):
                    try:
                        results[i] = [lookup[p] for p in pieces]
                        continue
                    except KeyError:
                        pass
            pending.append(i)
        if pending:
            encoded = tokenizer([texts[i] for i in pending], add_special_tokens=False)["input_ids"]
            for i, ids in zip(pending, encoded, strict=True):
                results[i] = list(ids)
        return results  # type: ignore[return-value]

    def _fingerprint(self, dataset: datasets.Dataset, root: str) -> str:
        """Identifies the result for ``datasets``' cache: input, settings, episode root and the exact vocabulary."""
        tokenizer = self.tokenizer
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
            dataclasses.asdict(self.config),
            repr(self.encoder.config),
            type(tokenizer).__name__,
            len(tokenizer),
            getattr(tokenizer, "name_or_path", ""),
            sorted(self._token_to_id.items()),
            self._lookup_is_exact,
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

        Raises:
            TokenizerNotPreparedError: :meth:`prepare_model` has not been called.
            EncodingError: a malformed or incomplete event, with ``on_error="raise"``.
        """
        check_on_error(on_error)
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
                messages.append(self.encoder.decode(event_text, images=event_images))
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


class _TokenizeBatch:
    """The per-batch work of :meth:`EpisodeTokenizer.tokenize_event_dataset` (picklable for worker processes)."""

    def __init__(
        self,
        owner: EpisodeTokenizer,
        tokenizer: PreTrainedTokenizerBase,
        is_first: np.ndarray,
        is_last: np.ndarray,
        episode_root: str,
    ) -> None:
        self.owner = owner
        self.tokenizer = tokenizer
        self.is_first = is_first
        self.is_last = is_last
        self.episode_root = episode_root

    def __call__(self, batch: pa.Table, indices: list[int]) -> pa.Table:
        owner = self.owner
        config = owner.config
        encode = owner.encoder.encode_serialized
        paths = batch.column("episode_path").to_pylist()
        messages = batch.column("mcap_message").to_pylist()
        rows = np.asarray(indices, dtype=np.int64)

        sources = {
            path: os.path.join(self.episode_root, path) for path in set(paths)
        }  # absolute paths stay as they are
        image_token = config.image_token
        expanded = image_token * config.image_token_length
        stats_before = owner.encoder.stats.counts()
        texts: list[str] = []
        image_refs: list[str] = []
        image_counts: list[int] = []
        for position, (path, message) in enumerate(zip(paths, messages, strict=True)):
            try:
                text, images = encode(message, episode_path=sources[path])
            except EncodingError as e:
                raise e.with_context(path=path, row=indices[position]) from e
            if images:
                text = text.replace(image_token, expanded)
                image_refs.extend(map(serialize_screen, images))
            texts.append(text)
            image_counts.append(len(images))
        for position in np.flatnonzero(self.is_first[rows]).tolist():
            texts[position] = config.episode_start_token + texts[position]
        for position in np.flatnonzero(self.is_last[rows]).tolist():
            texts[position] += config.episode_end_token

        values, lengths = owner._ids_flat(texts, self.tokenizer)
        offsets = np.zeros(len(texts) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        image_offsets = np.zeros(len(texts) + 1, dtype=np.int32)
        np.cumsum(image_counts, out=image_offsets[1:])
        stat_columns = {}
        for name, count in owner.encoder.stats.since(stats_before).items():
            delta = np.zeros(len(texts), dtype=np.int64)
            delta[0] = count  # the batch's count, on its first row
            stat_columns[_STAT_PREFIX + name] = pa.array(delta)
        return pa.table(
            {
                "episode_path": pa.array(paths, type=pa.string()),
                "text": pa.array(texts, type=pa.string()),
                "token_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
                "images": pa.ListArray.from_arrays(pa.array(image_offsets), pa.array(image_refs, type=pa.string())),
                "total_token_count": pa.array(lengths),
                **stat_columns,
            }
        )


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


def _lookup_is_exact(tokenizer: PreTrainedTokenizerBase, token_to_id: dict[str, int]) -> bool:
    """Whether per-token lookup equals ``tokenizer.encode`` on every concatenation of our tokens.

    True when (1) each of our tokens has the form ``<...>`` with no inner angle bracket, so in a concatenation the
    tokenizer's added-token matcher can only match each piece whole, (2) no other added token of the tokenizer can
    occur anywhere inside such a concatenation, and (3) a probe text of every token agrees with the tokenizer.
    """
    tokens = list(token_to_id)
    if not all(re.fullmatch(r"<[^<>]+>", t) for t in tokens):
        return False
    ours = set(tokens)
    for other in tokenizer.get_added_vocab():
        if other not in ours and _occurs_in_concatenation(other, ours):
            logger.debug("Added token %r can occur inside event texts; lookup disabled", other)
            return False
    probe = "".join(tokens) + "".join(reversed(tokens))
    expected = [token_to_id[t] for t in tokens] + [token_to_id[t] for t in reversed(tokens)]
    return list(tokenizer.encode(probe, add_special_tokens=False)) == expected


def _occurs_in_concatenation(text: str, tokens: set[str]) -> bool:
    """Whether ``text`` is a substring of some concatenation of ``tokens`` (each of the form ``<...>``)."""
    if not text:
        return False
    inners = [t[1:-1] for t in tokens]
    first_open = text.find("<")
    if first_open < 0:
        if ">" not in text:
            return any(text in inner for inner in inners)
        # '>' ends a token and only '<' can follow it, so text must end there: a suffix of one token.
        return text.endswith(">") and text.count(">") == 1 and any(t.endswith(text) for t in tokens)
    head, rest = text[:first_open], text[first_open:]
    if head and not any(t.endswith(head) for t in tokens if len(t) > len(head)):
        return False
    while rest:
        close = rest.find(">")
        if close < 0:  # a proper prefix of some token
            return any(t.startswith(rest) for t in tokens)
        piece, rest = rest[: close + 1], rest[close + 1 :]
        if piece not in tokens:
            return False
        if rest and not rest.startswith("<"):
            return False
    return True
