"""owa.data.schema: the dataset schemas kept as data, checked against ``datasets`` itself and the spec."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest
from datasets import Features

from owa.data import events, schema, transforms
from owa.data.errors import DatasetError
from spec_schemas import BINNED_FEATURES, EVENT_FEATURES


def test_event_schema_is_the_spec() -> None:
    assert Features.from_dict(schema.EVENT_FEATURES_DICT) == EVENT_FEATURES
    assert EVENT_FEATURES.to_dict() == schema.EVENT_FEATURES_DICT
    assert schema.event_features() == EVENT_FEATURES
    # The stage-1 module keeps its public names, and they are the same objects.
    assert events.EVENT_FEATURES_DICT is schema.EVENT_FEATURES_DICT
    assert events.event_features is schema.event_features


def test_binned_schema_is_the_spec() -> None:
    assert Features.from_dict(schema.BINNED_FEATURES_DICT) == BINNED_FEATURES
    assert schema.binned_features() == BINNED_FEATURES
    numeric = schema.binned_features(numeric_actions=True)
    assert list(numeric) == [*BINNED_FEATURES, *schema.NUMERIC_ACTION_FEATURES_DICT]
    assert {name: numeric[name] for name in BINNED_FEATURES} == dict(BINNED_FEATURES)
    assert numeric["keys_held"].length == schema.KEY_COUNT == 256
    assert numeric["mouse_clicks"].length == len(schema.MOUSE_BUTTONS) == 5


@pytest.mark.parametrize(
    "features",
    [
        schema.EVENT_FEATURES_DICT,
        schema.BINNED_FEATURES_DICT,
        schema.binned_features_dict(numeric_actions=True),
    ],
    ids=["event", "binned", "binned+numeric"],
)
def test_arrow_schema_is_what_datasets_lays_out(features: dict) -> None:
    assert schema.arrow_schema(features) == Features.from_dict(features).arrow_schema.remove_metadata()


def test_check_arrow_schema() -> None:
    event = schema.arrow_schema(schema.EVENT_FEATURES_DICT)
    schema.check_arrow_schema(event, schema.EVENT_FEATURES_DICT, dataset="an Event Dataset")
    large = pa.schema(
        [
            ("extra", pa.float32()),  # other columns are allowed
            ("episode_path", pa.large_string()),
            ("topic", pa.string()),
            ("timestamp_ns", pa.int64()),
            ("message_type", pa.large_string()),
            ("mcap_message", pa.large_binary()),
        ]
    )
    schema.check_arrow_schema(large, schema.EVENT_FEATURES_DICT, dataset="an Event Dataset")
    with pytest.raises(DatasetError, match=r"Not an Event Dataset: column 'topic' is missing .*\(split=test\)"):
        schema.check_arrow_schema(
            event.remove(event.get_field_index("topic")),
            schema.EVENT_FEATURES_DICT,
            dataset="an Event Dataset",
            split="test",
        )
    binned = schema.arrow_schema(schema.BINNED_FEATURES_DICT)
    wrong = binned.set(binned.get_field_index("bin_idx"), pa.field("bin_idx", pa.int64()))
    with pytest.raises(DatasetError, match=r"Not a Binned Dataset: column 'bin_idx' has type int64; expected int32"):
        schema.check_arrow_schema(wrong, schema.BINNED_FEATURES_DICT, dataset="a Binned Dataset")


def test_transforms_read_columns_of_their_dataset() -> None:
    assert set(transforms.EventDatasetTransform.required) <= set(schema.EVENT_FEATURES_DICT)
    assert set(transforms.BinnedDatasetTransform.required) <= set(schema.BINNED_FEATURES_DICT)


def test_stage_1_never_imports_datasets() -> None:
    code = "import sys, owa.data.schema, owa.data.events; print('datasets' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert completed.stdout.strip() == "False"
