"""The spec's dataset schemas, written out from SEED-README on purpose (independent of the library's own)."""

from __future__ import annotations

from datasets import Features, Sequence, Value

EVENT_FEATURES = Features(
    {
        "episode_path": Value("string"),
        "topic": Value("string"),
        "timestamp_ns": Value("int64"),
        "message_type": Value("string"),
        "mcap_message": Value("binary"),
    }
)
BINNED_FEATURES = Features(
    {
        "episode_path": Value("string"),
        "bin_idx": Value("int32"),
        "timestamp_ns": Value("int64"),
        "state": Sequence(feature=Value("binary"), length=-1),
        "actions": Sequence(feature=Value("binary"), length=-1),
    }
)
