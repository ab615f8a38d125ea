"""Run every benchmark in turn (``make bench``); ``--quick`` runs each in its tiny smoke mode."""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = (
    "bench_events",
    "bench_binning",
    "bench_frames",
    "bench_tokenize",
    "bench_fsl",
    "bench_pack",
    "bench_pixels",
    "bench_stats",
)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for name in BENCHMARKS:
        print(f"\n===== {name} =====", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main(args)
        print(f"({name} took {time.perf_counter() - started:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
