"""owa-data: desktop recordings (OWAMcap + video) to training-ready data for VLA models.

Pipeline: recordings → Event Dataset (:mod:`owa.data.events`) → optional Binned Dataset
(:mod:`owa.data.binning`) → encoded text (:mod:`owa.data.encoders`, :mod:`owa.data.transforms`) →
token ids (:mod:`owa.data.episode_tokenizer`) → packed samples (:mod:`owa.data.fsl_dataset`).

Heavy pieces are imported lazily, so ``import owa.data`` stays cheap.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from owa.data.errors import (
    CorruptRecordingError,
    DatasetError,
    EncodingError,
    ExecutionError,
    FrameDecodeError,
    FrameOutOfRangeError,
    ImageLayoutError,
    InvalidInputError,
    MediaError,
    MessageValidationError,
    OutputExistsError,
    OutputWriteError,
    OWADataError,
    PackingError,
    RecordingError,
    StorageAccessError,
    TokenizerMismatchError,
    TokenizerNotPreparedError,
    UnsafeMediaURIError,
    VideoNotFoundError,
)
from owa.data.messages import (
    KeyboardEvent,
    KeyboardState,
    McapMessage,
    MediaPolicy,
    MediaRef,
    MouseEvent,
    MouseState,
    RawMouseEvent,
    ScreenCaptured,
    WindowInfo,
)

# The library is silent unless the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

# name -> module that defines it; resolved on first access.
_LAZY = {
    "OWAMcapReader": "owa.data.recordings.reader",
    "read_messages": "owa.data.recordings.reader",
    "OWAMcapWriter": "owa.data.recordings.writer",
    "EventDatasetConfig": "owa.data.events",
    "build_event_dataset": "owa.data.events",
    "BinningConfig": "owa.data.binning",
    "build_binned_dataset": "owa.data.binning",
    "create_encoder": "owa.data.encoders",
    "create_event_dataset_transform": "owa.data.transforms",
    "create_binned_dataset_transform": "owa.data.transforms",
    "EpisodeTokenizer": "owa.data.episode_tokenizer",
    "EpisodeTokenizerConfig": "owa.data.episode_tokenizer",
    "FSLDataset": "owa.data.fsl_dataset",
    "FSLDatasetConfig": "owa.data.fsl_dataset",
    "ImageLayout": "owa.data.image_layout",
    "decode_screens": "owa.data.frames",
    "load": "owa.data.loading",
    "DatasetMetadata": "owa.data.metadata",
}

__all__ = [
    "CorruptRecordingError",
    "DatasetError",
    "EncodingError",
    "ExecutionError",
    "FrameDecodeError",
    "FrameOutOfRangeError",
    "ImageLayoutError",
    "InvalidInputError",
    "KeyboardEvent",
    "KeyboardState",
    "McapMessage",
    "MediaError",
    "MediaPolicy",
    "MediaRef",
    "MessageValidationError",
    "MouseEvent",
    "MouseState",
    "OWADataError",
    "OutputExistsError",
    "OutputWriteError",
    "PackingError",
    "RawMouseEvent",
    "RecordingError",
    "ScreenCaptured",
    "StorageAccessError",
    "TokenizerMismatchError",
    "TokenizerNotPreparedError",
    "UnsafeMediaURIError",
    "VideoNotFoundError",
    "WindowInfo",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'owa.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
