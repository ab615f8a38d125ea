#!/usr/bin/env python3
"""Stage 2: Event Dataset → Binned Dataset. A thin wrapper around ``owa-data bin`` (same flags, same code).

    python scripts/02_event_dataset_to_binned_dataset.py \\
        --input-dir $EVENT_DATASET_DIR --output-dir $BINNED_DATASET_DIR --fps 10 --filter-empty-actions
"""

from __future__ import annotations

from owa.data.cli import run_single
from owa.data.cli.bin import bin_command

if __name__ == "__main__":
    run_single(bin_command)
