#!/usr/bin/env python3
"""Stage 1: recordings → Event Dataset. A thin wrapper around ``owa-data events`` (same code, spec's flags).

    python scripts/01_raw_events_to_event_dataset.py \\
        --train-dir $MCAP_TRAIN_DIR --test-dir $MCAP_TEST_DIR --output-dir $EVENT_DATASET_DIR \\
        --rate screen=20 --rate mouse=60 --keep_topic screen --keep_topic keyboard \\
        --interval inactivity --screen-gap-s 1 --input-gap-s 5
"""

from __future__ import annotations

from owa.data.cli import run_single
from owa.data.cli.events import events_command

if __name__ == "__main__":
    run_single(events_command)
