"""Benchmark ``owa-data stats`` on an Event Dataset of the 1,200-episode corpus: the goal is under 10 s.

    .venv/bin/python -m benchmarks.bench_stats            # 1,200 episodes (corpus shared with bench_events)
    .venv/bin/python -m benchmarks.bench_stats --quick    # tiny smoke run, exact counts checked

* **Corpus**: ``benchmarks.bench_events.make_corpus`` (synthetic 5 s episodes, no video), converted once to an Event
  Dataset with the stage-1 script's defaults; both cached under ``bench-output/``.
* **Timed**: ``owa-data stats DATASET --json`` in a fresh process, end to end (interpreter start and imports
  included), the way a user runs it. The in-process time of :func:`owa.data.inspect.collect_stats` is printed too.
* **Baseline, same run**: the rows counted by topic in plain Python over the same Arrow columns (``to_pylist``), what
  "printing rows" costs; and the figures are checked against it (events per topic, episodes).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_events import make_corpus, topic_counts

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 10.0
MAIN = "from owa.data.cli import main; main()"


def make_event_dataset(corpus: Path) -> Path:
    from owa.data.events import EventDatasetConfig, write_event_dataset

    out = corpus.parent / f"{corpus.name}-events"
    if not (out / "conversion_report.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        write_event_dataset(EventDatasetConfig(train_dir=corpus, output_dir=out, num_workers=2))
        print(f"converted {corpus.name} to an Event Dataset in {time.perf_counter() - started:.1f}s -> {out}")
    return out


def python_rows_baseline(dataset: Path) -> tuple[float, dict[str, int], int]:
    """Seconds to count topics and episodes with a Python loop over the rows (columns already mapped)."""
    from owa.data.inspect.saved import read_saved_dataset

    splits = read_saved_dataset(dataset).splits
    started = time.perf_counter()
    topics: collections.Counter[str] = collections.Counter()
    episodes: set[str] = set()
    for table in splits.values():
        for topic, episode in zip(
            table.column("topic").to_pylist(), table.column("episode_path").to_pylist(), strict=True
        ):
            topics[topic] += 1
            episodes.add(episode)
    return time.perf_counter() - started, dict(topics), len(episodes)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--work-dir", type=Path, default=REPO / "bench-output")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.seconds = 6, 1.0
        args.work_dir = Path(tempfile.mkdtemp(prefix="owa-bench-stats-quick-"))
    args.work_dir.mkdir(parents=True, exist_ok=True)

    corpus = make_corpus(args.work_dir, args.episodes, args.seconds)
    dataset = make_event_dataset(corpus)

    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", MAIN, "stats", str(dataset), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    cli_seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"owa-data stats failed:\n{run.stderr}")
    stats = json.loads(run.stdout)

    from owa.data.inspect import collect_stats

    started = time.perf_counter()
    collect_stats(dataset)
    api_seconds = time.perf_counter() - started
    baseline_seconds, topics, episodes = python_rows_baseline(dataset)
    if stats["events_per_topic"] != dict(sorted(topics.items())) or stats["episodes"] != episodes:
        raise SystemExit(f"stats disagree with the row count: {stats['events_per_topic']} vs {topics}")

    rows = sum(stats["rows_per_split"].values())
    print(f"Event Dataset: {episodes:,} episodes, {rows:,} rows ({dataset})")
    print(f"owa-data stats --json (fresh process): {cli_seconds:6.2f}s  (goal < {GOAL_SECONDS:.0f}s: "
          f"{'met' if cli_seconds < GOAL_SECONDS else 'MISSED'})")  # fmt: skip
    print(f"collect_stats in process:              {api_seconds:6.2f}s")
    print(f"baseline, topics counted by a Python loop over rows: {baseline_seconds:6.2f}s (that count only)")
    figures = {
        "corpus_keyboard_messages": topic_counts(corpus).get("keyboard", 0),  # stage 1 keeps every key event
        "episodes": episodes,
        "rows": rows,
        "events_per_topic": stats["events_per_topic"],
        "cli_seconds": cli_seconds,
        "api_seconds": api_seconds,
        "baseline_seconds": baseline_seconds,
    }
    if args.quick:
        shutil.rmtree(args.work_dir, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
