"""``set_transform`` factories: Event and Binned Dataset rows → encoded text and frames, on the fly.

>>> from datasets import load_from_disk
>>> from owa.data import create_binned_dataset_transform
>>> dataset = load_from_disk("/data/super-hexagon-bin")  # doctest: +SKIP
>>> dataset.set_transform(create_binned_dataset_transform())  # doctest: +SKIP
>>> dataset["train"][0]["encoded_events"]  # doctest: +SKIP

The transforms are thin: text comes from :mod:`owa.data.encoders`, frames from :mod:`owa.data.frames`,
decoded in one batch per ``__getitems__`` call. Transform objects hold no open files and pickle, so
they work in DataLoader workers; their :class:`TransformStats` counters live in shared memory, so the
parent process reads what every worker counted.

Errors are typed (:mod:`owa.data.errors`) and name the row by its key (episode, and ``timestamp_ns`` or
``bin_idx``: a transform only sees column values, never dataset indices), the episode and the video.
``on_error="skip"`` turns them into None, counted in ``transform.stats``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import orjson

from owa.data.counters import Counters
from owa.data.encoders import EncoderConfig, EventEncoder, create_encoder, encoder_class
from owa.data.episode_paths import episode_base_dir, resolve_episode_path
from owa.data.errors import DatasetError, MessageValidationError, OnError, OWADataError, check_on_error
from owa.data.messages import DEFAULT_MEDIA_POLICY, MediaPolicy, ScreenCaptured
from owa.data.pointer_space import FrameSpaceEncoder, PointerSpace, check_pointer_space

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BinnedDatasetTransform",
    "EventDatasetTransform",
    "OnError",
    "TransformStats",
    "create_binned_dataset_transform",
    "create_event_dataset_transform",
    "resolve_episode_path",
]

logger = logging.getLogger(__name__)

_ACTION_TOPICS = frozenset({"keyboard", "mouse"})


# ------------------------------------------------------------------------------------------------ stats


class TransformStats(Counters):
    """What a transform produced and skipped, summed over the process and its DataLoader workers.

    Counters live in shared memory created with the transform: workers forked or spawned by a
    DataLoader add to the same numbers the parent reads. (A copy pickled any other way, e.g. for
    ``Dataset.map(num_proc=...)``, starts from a snapshot and counts on its own; see :mod:`owa.data.counters`.)

    Attributes (read-only ints): ``rows``, ``events_encoded``, ``events_skipped``, ``images_decoded``,
    ``images_skipped``, and what the encoder clamped to fit its format (``coordinates_clamped``,
    ``coordinates_saturated``, ``scrolls_clamped``; see ``EncoderStats``); ``errors`` maps error type
    names to skip counts; ``last_error`` is the message of the latest skipped failure (truncated to 1000
    bytes).
    """

    SHARED = True

    rows: int
    events_encoded: int
    events_skipped: int
    images_decoded: int
    images_skipped: int
    # what the encoder clamped to fit its format (see EncoderStats), summed over workers too
    coordinates_clamped: int
    coordinates_saturated: int
    scrolls_clamped: int

    _add = Counters.add  # the former private name


# ------------------------------------------------------------------------------------------ transforms


class _DatasetTransform:
    """Shared machinery: batch/single handling, error context, frame decoding."""

    columns: tuple[str, ...]
    required: tuple[str, ...]

    def __init__(
        self,
        *,
        encoder: EventEncoder,
        load_images: bool,
        encode_actions: bool,
        keep_original: bool,
        on_error: OnError,
        episode_root: str | os.PathLike[str] | None,
        media_policy: MediaPolicy,
        pointer_space: PointerSpace = "screen",
    ) -> None:
        check_pointer_space(pointer_space)
        check_on_error(on_error)
        if not isinstance(encoder, EventEncoder):
            raise TypeError(f"encoder must be an EventEncoder (see owa.data.create_encoder), got {type(encoder)}")
        self.encoder = encoder
        self.load_images = bool(load_images)
        self.encode_actions = bool(encode_actions)
        self.keep_original = bool(keep_original)
        self.on_error: OnError = on_error
        self.episode_root = None if episode_root is None else os.fspath(episode_root)
        self.media_policy = media_policy
        self.pointer_space: PointerSpace = pointer_space
        # Frame space: events go through this adapter, which shares encoder.stats (clamps counted as usual).
        self._frame_space = FrameSpaceEncoder(encoder, media_policy=media_policy) if pointer_space == "frame" else None
        self.stats = TransformStats()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Transform a batch (``{column: [values]}``, what ``set_transform`` passes) or a single row."""
        missing = [c for c in self.required if c not in batch]
        if missing:
            raise DatasetError(
                f"{type(self).__name__} needs columns {list(self.required)}; missing {missing} (columns given: "
                f"{sorted(batch)}). Is this the right kind of dataset?"
            )
        single = not isinstance(batch[self.required[0]], list)
        if single:
            batch = {key: [value] for key, value in batch.items()}
        before = self.encoder.stats.counts()
        out = self._transform(batch)
        if self.keep_original:
            out = {**batch, **out}
        self.stats.add(rows=len(batch[self.required[0]]), **self.encoder.stats.since(before))
        return {key: values[0] for key, values in out.items()} if single else out

    def _transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        raise NotImplementedError

    def _episode(self, episode_path: str) -> str:
        return resolve_episode_path(episode_path, self.episode_root)

    def _encode(self, data: bytes, episode: str, row_context: dict[str, Any]) -> tuple[str, list[ScreenCaptured]]:
        """encoder.encode_serialized, with the row's context on errors."""
        try:
            return (self._frame_space or self.encoder).encode_serialized(data, episode_path=episode)
        except OWADataError as e:
            raise _add_context(e, **row_context) from e

    def _frames(self, screens: list[ScreenCaptured], contexts: list[dict[str, Any]]) -> list[Any]:
        """PIL images (or the references, without ``load_images``) for ``screens``; None where skipped."""
        if not self.load_images:
            return list(screens)
        if not screens:
            return []
        from owa.data.frames import DecodeStats, decode_screens  # the engine is imported on first use

        decode_stats = DecodeStats()
        try:
            arrays = decode_screens(screens, policy=self.media_policy, on_error=self.on_error, stats=decode_stats)
        except OWADataError as e:
            raise self._locate(screens, contexts, e) from e
        self.stats.add(
            error_counts=decode_stats.errors,
            last_error=decode_stats.last_error,
            images_decoded=decode_stats.decoded,
            images_skipped=decode_stats.skipped,
        )
        return [None if array is None else _to_pil(array) for array in arrays]

    def _locate(self, screens: list[ScreenCaptured], contexts: list[dict[str, Any]], error: OWADataError) -> Exception:
        """Find the row whose frame failed (decoding row by row, only on this failure path) and name it."""
        from owa.data.frames import decode_screens

        rows: dict[int, list[int]] = {}
        for i, context in enumerate(contexts):
            rows.setdefault(context["_row"], []).append(i)
        for indices in rows.values():
            try:
                decode_screens([screens[i] for i in indices], policy=self.media_policy, on_error="raise")
            except OWADataError as e:
                return _add_context(e, **_public(contexts[indices[0]]))
        return _add_context(error, episode=sorted({c["episode"] for c in contexts}))

    def _skip(self, error: OWADataError) -> None:
        if self.stats.events_skipped == 0:
            logger.warning("Skipping events that cannot be encoded (counted in transform.stats): %s", error)


class EventDatasetTransform(_DatasetTransform):
    """The transform :func:`create_event_dataset_transform` returns (picklable; see there)."""

    required = ("episode_path", "mcap_message")

    def _transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        n = len(batch["episode_path"])
        topics = batch.get("topic")
        timestamps = batch.get("timestamp_ns")
        encoded: list[str | None] = [None] * n
        images: list[Any] = [None] * n
        screens: list[ScreenCaptured] = []
        contexts: list[dict[str, Any]] = []
        slots: list[int] = []
        encoded_count = 0
        errors: list[OWADataError] = []
        for i in range(n):
            episode = self._episode(batch["episode_path"][i])
            topic = topics[i] if topics is not None else None
            context = {"episode": episode, "timestamp_ns": timestamps[i] if timestamps is not None else None}
            if topic in _ACTION_TOPICS and not self.encode_actions:
                continue  # really left unencoded
            try:
                text, screen_refs = self._encode(batch["mcap_message"][i], episode, context)
            except OWADataError as e:
                if self.on_error == "raise":
                    raise
                self._skip(e)
                errors.append(e)
                continue
            encoded[i] = text
            encoded_count += 1
            for screen in screen_refs:
                screens.append(screen)
                contexts.append({**context, "_row": i})
                slots.append(i)
        self.stats.add(errors, events_encoded=encoded_count, events_skipped=len(errors))
        for i, frame in zip(slots, self._frames(screens, contexts), strict=True):
            images[i] = frame
        return {"encoded_event": encoded, "image": images}


class BinnedDatasetTransform(_DatasetTransform):
    """The transform :func:`create_binned_dataset_transform` returns (picklable; see there)."""

    required = ("episode_path", "state", "actions")

    def __init__(self, *, instruction: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
        self.instruction = instruction

    def _transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        n = len(batch["episode_path"])
        bin_indices = batch.get("bin_idx")
        timestamps = batch.get("timestamp_ns")
        screens: list[ScreenCaptured] = []
        contexts: list[dict[str, Any]] = []
        owners: list[tuple[int, int]] = []  # (row, position in its state) of each screen to decode
        images: list[list[Any]] = []
        encoded_events: list[list[str | None] | None] = [None] * n
        encoded_count = 0
        errors: list[OWADataError] = []
        bad_states: list[OWADataError] = []
        for i in range(n):
            episode = self._episode(batch["episode_path"][i])
            context = {
                "episode": episode,
                "bin_idx": bin_indices[i] if bin_indices is not None else None,
                "timestamp_ns": timestamps[i] if timestamps is not None else None,
            }
            state = batch["state"][i] or ()
            images.append([None] * len(state))
            for position, data in enumerate(state):
                try:
                    screens.append(self._screen(data, episode, context))
                except OWADataError as e:
                    if self.on_error == "raise":
                        raise
                    bad_states.append(e)
                    continue
                contexts.append({**context, "_row": i})
                owners.append((i, position))
            if not self.encode_actions:
                continue  # really left unencoded: encoded_events is None
            texts: list[str | None] = []
            for data in batch["actions"][i] or ():
                try:
                    texts.append(self._encode(data, episode, context)[0])
                    encoded_count += 1
                except OWADataError as e:
                    if self.on_error == "raise":
                        raise
                    self._skip(e)
                    errors.append(e)
                    texts.append(None)
            encoded_events[i] = texts
        self.stats.add(
            errors + bad_states,
            events_encoded=encoded_count,
            events_skipped=len(errors),
            images_skipped=len(bad_states),
        )
        for (i, position), frame in zip(owners, self._frames(screens, contexts), strict=True):
            images[i][position] = frame
        return {"instruction": [self.instruction] * n, "images": images, "encoded_events": encoded_events}

    def _screen(self, data: bytes, episode: str, context: dict[str, Any]) -> ScreenCaptured:
        """The ScreenCaptured of a ``state`` entry, resolving beside the episode."""
        where = {"path": episode, "timestamp_ns": context["timestamp_ns"], "bin_idx": context["bin_idx"]}
        try:
            envelope = orjson.loads(data)
            message_type, payload = envelope["message_type"], envelope["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise DatasetError(f"A state entry is not an McapMessage JSON object: {e}", **where) from e
        if message_type != ScreenCaptured.message_type:
            raise DatasetError(
                f"A state entry has message type {message_type!r}; the Binned Dataset's state holds "
                f"{ScreenCaptured.message_type} messages",
                **where,
            )
        from pydantic import ValidationError

        try:
            screen = ScreenCaptured.model_validate_json(payload)
        except ValidationError as e:
            raise MessageValidationError(
                f"Invalid {ScreenCaptured.message_type} payload: {e.errors(include_url=False)}", **where
            ) from e
        return screen.with_base_dir(episode_base_dir(episode))


def create_event_dataset_transform(
    encoder_type: str = "hierarchical",
    load_images: bool = True,
    encode_actions: bool = True,
    keep_original: bool = False,
    encoder: EventEncoder | None = None,
    *,
    on_error: OnError = "raise",
    episode_root: str | os.PathLike[str] | None = None,
    media_policy: MediaPolicy = DEFAULT_MEDIA_POLICY,
    encoder_config: EncoderConfig | None = None,
    pointer_space: PointerSpace = "screen",
) -> EventDatasetTransform:
    """A ``set_transform`` function for the Event Dataset.

    Each row gains:

    - ``encoded_event`` (str): the event's text (``encoder`` or ``create_encoder(encoder_type)``);
      None for keyboard/mouse rows when ``encode_actions`` is False, and for skipped rows.
    - ``image``: for screen rows a ``PIL.Image`` (RGB) when ``load_images``, else the lazy
      :class:`ScreenCaptured` reference (relative media resolved against the episode's folder);
      None for other rows and for skipped frames.

    Args:
        keep_original: also return the row's original columns.
        on_error: ``"raise"`` (default) raises a typed error naming the row (episode and
            ``timestamp_ns``), the episode and the video; ``"skip"`` returns None in its place and counts
            it in ``transform.stats``.
        episode_root: folder that relative ``episode_path`` values resolve against (default: the
            current directory); see :func:`resolve_episode_path`.
        media_policy: which media URIs may be opened.
        encoder_config: the encoder's options as its typed config (e.g.
            ``HierarchicalConfig(screen_size=(2560, 1440))``), of ``encoder_type``'s config class; default its
            defaults. Give this or ``encoder``, not both.
        pointer_space: ``"screen"`` (default, the spec's) or ``"frame"``: mouse positions in the pixels of the
            captured frame, read from each episode's ``.mcap`` (see :mod:`owa.data.pointer_space`).

    Raises:
        ValueError, TypeError: invalid arguments (both ``encoder`` and ``encoder_config``, a config of another
            encoder, an unknown ``pointer_space``).

    Raises (from the transform): EncodingError (e.g. a window row: unsupported topic), MediaError
    subclasses (VideoNotFoundError, FrameOutOfRangeError, ...), DatasetError (missing columns);
    RecordingError when an episode's capture cannot be read in frame space.
    """
    return EventDatasetTransform(
        encoder=_make_encoder(encoder_type, encoder, encoder_config),
        load_images=load_images,
        encode_actions=encode_actions,
        keep_original=keep_original,
        on_error=on_error,
        episode_root=episode_root,
        media_policy=media_policy,
        pointer_space=pointer_space,
    )


def create_binned_dataset_transform(
    instruction: str = "Complete the computer task",
    encoder_type: str = "hierarchical",
    load_images: bool = True,
    encode_actions: bool = True,
    keep_original: bool = False,
    encoder: EventEncoder | None = None,
    *,
    on_error: OnError = "raise",
    episode_root: str | os.PathLike[str] | None = None,
    media_policy: MediaPolicy = DEFAULT_MEDIA_POLICY,
    encoder_config: EncoderConfig | None = None,
    pointer_space: PointerSpace = "screen",
) -> BinnedDatasetTransform:
    """A ``set_transform`` function for the Binned Dataset (the keys the spec's PyTorch example reads).

    Each row becomes:

    - ``instruction`` (str);
    - ``images``: one entry per ``state`` screen, in order: a ``PIL.Image`` when ``load_images``, else
      the lazy :class:`ScreenCaptured` reference; None for a skipped frame;
    - ``encoded_events``: the text of each ``actions`` event, in order (None for a skipped one), or
      None when ``encode_actions`` is False.

    Frames of all rows of a batch are decoded together. Arguments as
    :func:`create_event_dataset_transform`; errors name the episode, ``bin_idx`` and the video.
    """
    return BinnedDatasetTransform(
        instruction=instruction,
        encoder=_make_encoder(encoder_type, encoder, encoder_config),
        load_images=load_images,
        encode_actions=encode_actions,
        keep_original=keep_original,
        on_error=on_error,
        episode_root=episode_root,
        media_policy=media_policy,
        pointer_space=pointer_space,
    )


def _make_encoder(
    encoder_type: str, encoder: EventEncoder | None, encoder_config: EncoderConfig | None
) -> EventEncoder:
    if encoder is not None:
        if encoder_config is not None:
            raise ValueError("Give encoder or encoder_config, not both (an encoder already has its config)")
        return encoder
    if encoder_config is None:
        return create_encoder(encoder_type)
    cls = encoder_class(encoder_type)
    if not isinstance(encoder_config, cls.config_class):
        raise TypeError(
            f"Invalid encoder_config ({type(encoder_config).__name__}) for encoder_type {encoder_type!r}. "
            f"It must be a {cls.config_class.__name__}."
        )
    return cls(encoder_config)


def _to_pil(array: np.ndarray) -> Any:
    from owa.data.frames.images import to_pil

    return to_pil(array)


def _public(context: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in context.items() if not k.startswith("_")}


def _add_context(error: OWADataError, **fields: Any) -> OWADataError:
    """A copy of ``error`` (same type) that also names the row; context it already has wins."""
    if error.path is not None and fields.get("episode") == error.path:
        fields = {k: v for k, v in fields.items() if k != "episode"}  # the file named already is the episode
    return error.with_context(**fields)
