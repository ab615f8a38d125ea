"""The exception tree: every error keeps its type, message and fields through pickling, copying and with_context."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest

from owa.data import errors
from owa.data.errors import (
    CorruptRecordingError,
    DatasetError,
    InvalidInputError,
    MediaError,
    OutputExistsError,
    OWADataError,
    VideoNotFoundError,
    check_on_error,
)

ERROR_CLASSES = [
    cls for name in errors.__all__ if isinstance(cls := getattr(errors, name), type) and issubclass(cls, OWADataError)
]

# Values for every keyword an error class may require; a new required keyword must be added here.
SAMPLE_FIELDS: dict[str, Any] = {
    "path": "/data/episode.mcap",
    "topic": "screen",
    "timestamp_ns": 1_700_000_000_123_456_789,
    "row": 42,
    "offset": 6846,
    "messages_read": 255,
}


class SpecialError(MediaError):
    """A subclass with a field it keeps outside the rendered context (module level: pickle finds it)."""

    def __init__(self, message: str, *, video: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.video = video


def make(cls: type[OWADataError]) -> OWADataError:
    """An instance with every base field, its class's required fields and one extra context field."""
    params = inspect.signature(cls).parameters
    required = {
        name
        for name, p in params.items()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and name not in {"message"}
    }
    missing = required - set(SAMPLE_FIELDS)
    assert not missing, f"add sample values for {cls.__name__}'s required fields {missing}"
    fields = {**SAMPLE_FIELDS, "pts_ns": 99}
    if "offset" not in required:
        fields = {k: v for k, v in fields.items() if k not in ("offset", "messages_read")}
    return cls("Something failed", **fields)


def state(error: BaseException) -> tuple[type, str, tuple[Any, ...], dict[str, Any]]:
    return type(error), str(error), error.args, vars(error)


ROUND_TRIPS = {
    "pickle": lambda e: pickle.loads(pickle.dumps(e)),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "with_context()": lambda e: e.with_context(),
    "with_context(fields it names)": lambda e: e.with_context(path="/other.mcap", row=1, pts_ns=5),
}


def test_every_error_class_is_listed() -> None:
    assert {cls.__name__ for cls in ERROR_CLASSES} >= {
        "OWADataError",
        "CorruptRecordingError",
        "VideoNotFoundError",
        "InvalidInputError",
        "OutputExistsError",
    }
    assert len(ERROR_CLASSES) == len(errors.__all__) - 2  # all but OnError and check_on_error


@pytest.mark.parametrize("cls", [*ERROR_CLASSES, SpecialError], ids=lambda c: c.__name__)
@pytest.mark.parametrize("how", list(ROUND_TRIPS))
def test_errors_survive_pickle_copy_and_with_context(cls: type[OWADataError], how: str) -> None:
    error = make(cls) if cls is not SpecialError else SpecialError("Bad", video="a.mkv", path="a.mcap", row=4, pts_ns=3)
    error.add_note("while reading shard 3")
    clone = ROUND_TRIPS[how](error)
    assert clone is not error
    assert state(clone) == state(error)  # type, message, args and every attribute (subclass fields included)
    assert clone.__notes__ == ["while reading shard 3"]
    assert clone.with_context(extra=1).context == {"extra": 1, **error.context}


def test_corrupt_recording_error_keeps_offset_through_pickle() -> None:
    error = CorruptRecordingError("x", path="a", offset=10, messages_read=3)
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.offset, clone.messages_read, clone.path, str(clone)) == (
        10,
        3,
        "a",
        "x (file=a, offset=10, messages_read=3)",
    )


def test_with_context_adds_only_what_the_error_does_not_name() -> None:
    error = VideoNotFoundError("Video file not found", path="a.mkv", pts_ns=5)
    richer = error.with_context(path="b.mkv", topic="screen", row=3, pts_ns=7, episode="e.mcap", sample=None)
    assert type(richer) is VideoNotFoundError
    assert (richer.path, richer.topic, richer.row, richer.timestamp_ns) == ("a.mkv", "screen", 3, None)
    assert richer.context == {"episode": "e.mcap", "pts_ns": 5}  # the error's own context wins; None is ignored
    assert str(richer) == "Video file not found (file=a.mkv, topic=screen, row=3, episode=e.mcap, pts_ns=5)"
    # The original is untouched.
    assert str(error) == "Video file not found (file=a.mkv, pts_ns=5)" and error.context == {"pts_ns": 5}
    assert error.row is None and error.topic is None
    # Paths become strings; a second call keeps what the first added.
    assert richer.with_context(path=Path("c.mkv"), row=9).row == 3
    assert OWADataError("x").with_context(path=Path("c.mkv")).path == "c.mkv"


def test_with_context_keeps_subclass_fields() -> None:
    error = CorruptRecordingError("Damaged recording", path="a.mcap", offset=10, messages_read=3)
    richer = error.with_context(row=2, offset=99)
    assert type(richer) is CorruptRecordingError
    assert (richer.offset, richer.messages_read, richer.row) == (10, 3, 2)
    special = SpecialError("Bad", video="a.mkv").with_context(path="x.mcap")
    assert (type(special), special.video, special.path) == (SpecialError, "a.mkv", "x.mcap")


def test_rendering() -> None:
    assert str(OWADataError("Plain")) == "Plain"
    assert (
        str(OWADataError("Bad", path=Path("/d/a.mcap"), topic="mouse", timestamp_ns=5, row=2, bin_idx=7))
        == "Bad (file=/d/a.mcap, topic=mouse, timestamp_ns=5, row=2, bin_idx=7)"
    )
    assert str(OWADataError("Bad", topic=None, split=None, row=0)) == "Bad (row=0)"  # None is left out, 0 is not
    error = OWADataError("Bad", path="a")
    assert error.reason == "Bad" and error.args == ("Bad (file=a)",)


def test_hierarchy() -> None:
    assert issubclass(OutputExistsError, InvalidInputError) and issubclass(InvalidInputError, DatasetError)
    assert all(issubclass(cls, OWADataError) for cls in ERROR_CLASSES)


def test_check_on_error() -> None:
    assert check_on_error("raise") == "raise" and check_on_error("skip") == "skip"
    with pytest.raises(ValueError) as info:
        check_on_error("x")
    assert str(info.value) == "Invalid on_error ('x'). Supported values are 'raise', 'skip'."
    with pytest.raises(ValueError, match=r"^Invalid on_image_error \(None\)\. Supported values are 'raise', 'skip'\.$"):
        check_on_error(None, name="on_image_error")


def test_every_public_on_error_uses_the_one_check() -> None:
    from owa.data import EpisodeTokenizer, create_event_dataset_transform
    from owa.data.frames import decode_screens
    from owa.data.fsl_dataset import FSLDataset

    message = r"^Invalid on_error \('ignore'\)\. Supported values are 'raise', 'skip'\.$"
    with pytest.raises(ValueError, match=message):
        create_event_dataset_transform(on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        decode_screens([], on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        EpisodeTokenizer().decode([], on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message.replace("on_error", "on_image_error")):
        FSLDataset(None, pad_token_id=0, max_sequence_length=8, on_image_error="ignore")  # type: ignore[arg-type]


def test_strict_stage_1_reports_the_same_error_from_worker_processes(recordings_dir: Path, tmp_path: Path) -> None:
    """A worker's error comes back through pickling: with 2 workers it must carry what it carries with 1."""
    from owa.data.events import EventDatasetConfig, write_event_dataset

    folder = tmp_path / "recordings"
    folder.mkdir()
    shutil.copy(recordings_dir / "0.4.2.mcap", folder / "a.mcap")
    data = (recordings_dir / "0.5.1.mcap").read_bytes()
    (folder / "b.mcap").write_bytes(data[: len(data) // 2])  # truncated: damaged
    raised = []
    for workers in (1, 2):
        config = EventDatasetConfig(train_dir=folder, output_dir=tmp_path / f"out{workers}", strict=True)
        assert config.num_workers == 0
        with pytest.raises(CorruptRecordingError) as info:
            write_event_dataset(dataclasses.replace(config, num_workers=workers))
        raised.append(info.value)
        assert not (tmp_path / f"out{workers}").exists()
    one, two = raised
    assert state(two) == state(one)
    assert one.offset is not None and one.messages_read > 0 and one.path == str(folder / "b.mcap")
