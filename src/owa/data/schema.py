"""The dataset schemas, once: the Event Dataset (stage 1) and the Binned Dataset (stage 2).

Each schema is kept as data, in the form ``datasets.Features.to_dict()`` reads (``"Sequence"`` for lists, which
every supported ``datasets`` version accepts), so stage 1 and its workers never import ``datasets`` (a second
of start-up per process). Stage 1 writes its shards with :func:`arrow_schema`; stage 2 builds
``datasets.Features`` with :func:`binned_features`; both check their input with :func:`check_arrow_schema`.
Tests compare these dicts with ``datasets``' own types and with the spec's schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from owa.data.errors import InvalidInputError

if TYPE_CHECKING:
    import datasets

__all__ = [
    "BINNED_FEATURES_DICT",
    "EVENT_FEATURES_DICT",
    "INTERVAL_FEATURES_DICT",
    "KEY_COUNT",
    "MOUSE_BUTTONS",
    "NUMERIC_ACTION_FEATURES_DICT",
    "arrow_schema",
    "binned_features",
    "binned_features_dict",
    "check_arrow_schema",
    "event_features",
    "event_features_dict",
]

FeaturesDict = dict[str, dict[str, Any]]


def _value(dtype: str) -> dict[str, str]:
    return {"dtype": dtype, "_type": "Value"}


def _sequence(dtype: str, length: int = -1) -> dict[str, Any]:
    return {"feature": _value(dtype), "length": length, "_type": "Sequence"}


# One row per event (stage 1).
EVENT_FEATURES_DICT: FeaturesDict = {
    "episode_path": _value("string"),
    "topic": _value("string"),
    "timestamp_ns": _value("int64"),
    "message_type": _value("string"),
    "mcap_message": _value("binary"),  # McapMessage JSON
}

# The optional span column of both datasets: stage 1 adds it with an interval selector other than ``all``
# (``docs/intervals.md``), and stage 2 carries it; an episode's rows of one span form one segment.
INTERVAL_FEATURES_DICT: FeaturesDict = {"interval": _value("int32")}

# One row per time bin (stage 2). ``state`` and ``actions`` hold McapMessage JSON copied from the events.
BINNED_FEATURES_DICT: FeaturesDict = {
    "episode_path": _value("string"),
    "bin_idx": _value("int32"),
    "timestamp_ns": _value("int64"),
    "state": _sequence("binary"),
    "actions": _sequence("binary"),
}

KEY_COUNT = 256  # Windows virtual-key codes: the length of ``keys_held``
MOUSE_BUTTONS: tuple[str, ...] = ("left", "middle", "right", "x1", "x2")  # the order of ``mouse_clicks``

# The optional numeric action columns of the Binned Dataset (``numeric_actions``; ``docs/binning.md``).
NUMERIC_ACTION_FEATURES_DICT: FeaturesDict = {
    "keys_held": _sequence("bool", KEY_COUNT),
    "mouse_x": _value("int32"),
    "mouse_y": _value("int32"),
    "mouse_dx": _value("int32"),
    "mouse_dy": _value("int32"),
    "mouse_clicks": _sequence("int16", len(MOUSE_BUTTONS)),
    "scroll_dx": _value("int32"),
    "scroll_dy": _value("int32"),
}


def event_features_dict(*, interval: bool = False) -> FeaturesDict:
    """The Event Dataset schema as data, plus the ``interval`` column when asked."""
    return EVENT_FEATURES_DICT | (INTERVAL_FEATURES_DICT if interval else {})


def binned_features_dict(*, numeric_actions: bool = False, interval: bool = False) -> FeaturesDict:
    """The Binned Dataset schema as data, plus the numeric action columns and the ``interval`` column when asked."""
    return (
        BINNED_FEATURES_DICT
        | (INTERVAL_FEATURES_DICT if interval else {})
        | (NUMERIC_ACTION_FEATURES_DICT if numeric_actions else {})
    )


def event_features(*, interval: bool = False) -> datasets.Features:
    """The Event Dataset schema as ``datasets.Features`` (imports ``datasets``), plus ``interval`` when asked."""
    from datasets import Features

    return Features.from_dict(event_features_dict(interval=interval))


def binned_features(*, numeric_actions: bool = False, interval: bool = False) -> datasets.Features:
    """The Binned Dataset schema as ``datasets.Features`` (plus the numeric and ``interval`` columns when asked)."""
    from datasets import Features

    return Features.from_dict(binned_features_dict(numeric_actions=numeric_actions, interval=interval))


_ARROW_VALUES = {
    "string": pa.string(),
    "binary": pa.binary(),
    "bool": pa.bool_(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
}
# Types a reader accepts for a column: datasets may hand over the large variants of strings and bytes.
_LARGE = {pa.string(): pa.large_string(), pa.binary(): pa.large_binary()}


def _arrow_type(feature: Mapping[str, Any]) -> pa.DataType:
    if feature["_type"] == "Value":
        return _ARROW_VALUES[feature["dtype"]]
    item = _arrow_type(feature["feature"])
    length = feature.get("length", -1)
    return pa.list_(item) if length == -1 else pa.list_(item, length)


def arrow_schema(features: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    """The Arrow schema of a features dict (as ``datasets`` lays it out), without importing ``datasets``."""
    return pa.schema([(name, _arrow_type(feature)) for name, feature in features.items()])


def check_arrow_schema(
    schema: pa.Schema, features: Mapping[str, Mapping[str, Any]], *, dataset: str, split: str | None = None
) -> None:
    """Raise :class:`InvalidInputError` unless ``schema`` has every column of ``features`` with its type.

    Extra columns are allowed; ``string``/``binary`` columns may also be ``large_string``/``large_binary``.
    ``dataset`` names the kind of dataset in the message (e.g. ``"an Event Dataset"``).
    """
    for name, feature in features.items():
        if name not in schema.names:
            raise InvalidInputError(
                f"Not {dataset}: column {name!r} is missing (columns: {', '.join(schema.names)}). "
                f"Expected {', '.join(features)}",
                split=split,
            )
        expected = _arrow_type(feature)
        found = schema.field(name).type
        if found != expected and found != _LARGE.get(expected):
            raise InvalidInputError(
                f"Not {dataset}: column {name!r} has type {found}; expected {expected}", split=split
            )
