"""Benchmark stage 1 (recordings → Event Dataset) against a bare ``mcap`` read of the same files, same run.

    .venv/bin/python -m benchmarks.bench_events            # 1,200 small episodes; a couple of minutes
    .venv/bin/python -m benchmarks.bench_events --video    # 400 episodes with their videos (the media check)
    .venv/bin/python -m benchmarks.bench_events --quick    # tiny smoke run

* **Corpus**: ``--episodes`` synthetic 5 s episodes (``owa.data.recordings.synthetic``), cached under
  ``bench-output/`` so reruns skip generation. Without ``--video`` no video is written, so stage 1's media
  check finds each episode's video missing (a stat, nothing opened); with ``--video`` each episode has its
  ``.mkv`` and the check opens it and reads its packet index, as by default on real recordings.
* **Baseline**: one process iterating ``mcap.reader.make_reader(f).iter_messages()`` over every file,
  nothing else done with the messages.
* **Ours**: ``scripts/01_raw_events_to_event_dataset.py`` in a fresh process with ``--num-workers 2``
  and the default flags (media check on; ``--video`` also times ``--no-check-media``), end to end:
  interpreter start, imports, reading, rate limiting, the media check, writing the dataset with
  ``save_to_disk``. Peak RSS is the largest of the script and its workers.

The goal: ours ≥ 0.7 × the bare read's speed (time_bare / time_ours ≥ 0.7) at 1,200 episodes, and peak
RSS that stays flat when the corpus triples.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "01_raw_events_to_event_dataset.py"
GOAL_RATIO = 0.7
UPSTREAM_MSGS_PER_S = 29_000


def make_corpus(root: Path, episodes: int, seconds: float, *, video: bool = False) -> Path:
    from owa.data.recordings.synthetic import SampleConfig, write_sample_corpus

    corpus = root / f"corpus-{episodes}x{seconds:g}s{'-video' if video else ''}"
    done = corpus / ".complete"
    if not done.exists():
        shutil.rmtree(corpus, ignore_errors=True)
        started = time.perf_counter()
        write_sample_corpus(corpus, episodes, SampleConfig(seconds=seconds, video=video, seed=1), workers=2)
        done.write_text("ok")
        print(f"generated {episodes} episodes in {time.perf_counter() - started:.1f}s -> {corpus}")
    return corpus


def bare_read(corpus: Path) -> tuple[float, int]:
    from mcap.reader import make_reader

    files = sorted(corpus.rglob("*.mcap"))
    count = 0
    started = time.perf_counter()
    for path in files:
        with open(path, "rb") as f:
            for _ in make_reader(f).iter_messages():
                count += 1
    return time.perf_counter() - started, count


def topic_counts(corpus: Path) -> dict[str, int]:
    """Messages per topic over the corpus, from each file's summary statistics (untimed; no message is read)."""
    from collections import Counter

    from mcap.reader import make_reader

    counts: Counter[str] = Counter()
    for path in sorted(corpus.rglob("*.mcap")):
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
        assert summary is not None and summary.statistics is not None, f"{path} has no summary statistics"
        for channel_id, count in summary.statistics.channel_message_counts.items():
            counts[summary.channels[channel_id].topic] += count
    return dict(counts)


def run_ours(corpus: Path, workers: int, *flags: str) -> tuple[float, float, dict[str, int]]:
    """Seconds end to end, peak RSS (MiB) and output counts of the stage-1 script in a fresh process.

    The counts (read after the timing) are the dataset's ``rows`` over all splits and distinct ``episodes``.

    A small wrapper process runs the script and reports its children's peak RSS, so each measurement
    sees only its own run (``RUSAGE_CHILDREN`` never decreases within one process).
    """
    out = Path(tempfile.mkdtemp(prefix="owa-bench-events-")) / "events"
    command = [sys.executable, str(SCRIPT), "--train-dir", str(corpus), "--output-dir", str(out),
               "--num-workers", str(workers), *flags]  # fmt: skip
    wrapper = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(r.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(r.returncode)"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        shutil.rmtree(out.parent, ignore_errors=True)
        raise SystemExit(f"stage 1 failed:\n{result.stderr}")
    import datasets

    splits = datasets.load_from_disk(str(out))
    counts = {
        "rows": sum(len(split) for split in splits.values()),
        "episodes": len({path for split in splits.values() for path in split.unique("episode_path")}),
    }
    del splits
    shutil.rmtree(out.parent, ignore_errors=True)
    return seconds, int(result.stdout.split()[-1]) / 1024, counts


def main(argv: list[str] | None = None) -> dict[str, float]:
    from owa.data.events import DEFAULT_KEEP_TOPICS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=None, help="default 1,200 (400 with --video)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--video", action="store_true", help="episodes with videos (default 400 of them)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--work-dir", type=Path, default=REPO / "bench-output")
    args = parser.parse_args(argv)
    if args.episodes is None:
        args.episodes = 400 if args.video else 1200
    if args.quick:
        args.episodes, args.seconds = 6, 1.0
        args.work_dir = Path(tempfile.mkdtemp(prefix="owa-bench-quick-"))
    args.work_dir.mkdir(parents=True, exist_ok=True)

    corpus = make_corpus(args.work_dir, args.episodes, args.seconds, video=args.video)
    third = max(1, args.episodes // 3)
    small = make_corpus(args.work_dir, third, args.seconds, video=args.video)
    bare_s, messages = bare_read(corpus)
    topics = topic_counts(corpus)
    ours_s, peak_mib, counts = run_ours(corpus, args.workers)
    _, small_peak_mib, _ = run_ours(small, args.workers)
    unchecked_s = run_ours(corpus, args.workers, "--no-check-media")[0] if args.video else None
    ratio = bare_s / ours_s
    figures = {
        "episodes": args.episodes,
        "messages": messages,
        # Exact counts for the smoke test: every episode is in the output; its rows are the kept topics' messages
        # minus what the rate rules dropped (keyboard is never rate-limited).
        "ours_rows": counts["rows"],
        "ours_episodes": counts["episodes"],
        "kept_topic_messages": sum(topics.get(topic, 0) for topic in DEFAULT_KEEP_TOPICS),
        "keyboard_messages": topics.get("keyboard", 0),
        "bare_seconds": bare_s,
        "ours_seconds": ours_s,
        "bare_msgs_per_s": messages / bare_s,
        "ours_msgs_per_s": messages / ours_s,
        "ratio": ratio,
        "peak_rss_mib": peak_mib,
        "peak_rss_mib_third": small_peak_mib,
    }
    if unchecked_s is not None:
        figures["ours_seconds_no_check_media"] = unchecked_s
        figures["ratio_no_check_media"] = bare_s / unchecked_s
    print(f"corpus: {args.episodes} episodes{' with videos' if args.video else ''}, {messages:,} messages")
    print(f"bare mcap read (1 process):    {bare_s:7.2f}s  {messages / bare_s:>10,.0f} msgs/s")
    print(f"owa-data stage 1 ({args.workers} workers): {ours_s:7.2f}s  {messages / ours_s:>10,.0f} msgs/s  "
          f"(process start included; peak RSS {peak_mib:,.0f} MiB)")  # fmt: skip
    if unchecked_s is not None:
        print(f"  with --no-check-media:       {unchecked_s:7.2f}s  {messages / unchecked_s:>10,.0f} msgs/s")
    print(f"peak RSS: {small_peak_mib:,.0f} MiB at {third:,} episodes, {peak_mib:,.0f} MiB at {args.episodes:,}")
    print(
        f"ratio ours/bare speed: {ratio:.2f}x (goal >= {GOAL_RATIO}x); "
        f"upstream reference ~{UPSTREAM_MSGS_PER_S:,} msgs/s"
    )
    if args.quick:
        shutil.rmtree(args.work_dir, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
