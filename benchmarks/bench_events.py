"""Benchmark stage 1 (recordings → Event Dataset) against a bare ``mcap`` read of the same files, same run.

    .venv/bin/python -m benchmarks.bench_events            # 1,200 small episodes; a couple of minutes
    .venv/bin/python -m benchmarks.bench_events --video    # 400 episodes with their videos (the media check)
    .venv/bin/python -m benchmarks.bench_events --quick    # tiny smoke run
    .venv/bin/python -m benchmarks.bench_events --engine ray --episodes 200   # Ray engine against local

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

``--engine ray`` compares the engines instead, on the same corpus in the same run (:func:`compare_engines`):
the local engine (the script, in a fresh process) and the Ray engine (in this process, on a local Ray with
``--workers`` CPUs, or the Ray this process is already connected to), each with 1 and ``--workers`` workers.
Both are timed over the conversion itself (the report's ``seconds``: discovery to the last metadata file),
so neither interpreter start nor Ray's start-up counts; Ray's start-up (``ray.init``) and its first run
(worker processes starting and importing owa-data) are reported separately. Goal: Ray ≥ 0.8 × local at
equal workers.
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
GOAL_RAY_VS_LOCAL = 0.8
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


def compare_engines(corpus: Path, workers: int, repeat: int = 3) -> dict[str, float]:
    """Events/s of the local engine and the Ray engine at 1 and ``workers`` workers, and Ray's start-up seconds;
    then stage 2 (``build_binned_dataset``, default settings) on the Event Dataset, local and on Ray.

    Each figure is the best of ``repeat`` runs, interleaved (local, Ray, local, Ray...), so a busy moment of a
    shared machine hits both engines alike and not one configuration."""
    import json

    from owa.data.binning import build_binned_dataset
    from owa.data.events import EventDatasetConfig, write_event_dataset
    from owa.data.executors import RayExecutor

    def local(n: int) -> tuple[float, int]:
        out = Path(tempfile.mkdtemp(prefix="owa-bench-engines-")) / "events"
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--train-dir", str(corpus), "--output-dir", str(out),
             "--num-workers", str(n)],
            capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"},
        )  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(f"stage 1 failed:\n{result.stderr}")
        report = json.loads((out / "conversion_report.json").read_text())["report"]
        shutil.rmtree(out.parent, ignore_errors=True)
        return report["seconds"], sum(report["events_read"].values())

    scratch = Path(tempfile.mkdtemp(prefix="owa-bench-engines-"))

    def on_ray(n: int) -> tuple[float, int]:
        out = scratch / "events"
        shutil.rmtree(out, ignore_errors=True)
        report = write_event_dataset(EventDatasetConfig(train_dir=corpus, output_dir=out, num_workers=n, engine="ray"))
        return report.seconds, sum(report.events_read.values())

    def stage_2(engine: str) -> float:
        started = time.perf_counter()
        build_binned_dataset(scratch / "events", output_dir=scratch / f"bins-{engine}", overwrite=True, engine=engine)  # type: ignore[arg-type]
        return time.perf_counter() - started

    startup = RayExecutor(workers=workers).connect()  # ray.init; 0.0 when this process is already connected
    first, ray_events = on_ray(workers)  # cold: Ray's worker processes start and import owa-data
    runs: dict[str, list[float]] = {"local_1": [], "local_n": [], "ray_1": [], "ray_n": []}
    for _ in range(repeat):
        local_s, events = local(1)
        runs["local_1"].append(local_s)
        runs["ray_1"].append(on_ray(1)[0])
        runs["local_n"].append(local(workers)[0])
        runs["ray_n"].append(on_ray(workers)[0])
    local_1, local_n, ray_1, ray_n = (min(runs[k]) for k in ("local_1", "local_n", "ray_1", "ray_n"))
    bin_local = min(stage_2("local") for _ in range(repeat))
    bin_ray = min(stage_2("ray") for _ in range(repeat))
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "local_events": events,
        "ray_events": ray_events,
        "local_events_per_s_1": events / local_1,
        "local_events_per_s": events / local_n,
        "ray_startup_seconds": startup,
        "ray_first_run_seconds": first,
        "ray_events_per_s_1": events / ray_1,
        f"ray_events_per_s_{workers}": events / ray_n,
        "ray_vs_local": local_n / ray_n,
        "ray_vs_local_1": local_1 / ray_1,
        "ray_scaling": ray_1 / ray_n,
        "local_scaling": local_1 / local_n,
        "stage_2_local_seconds": bin_local,
        "stage_2_ray_seconds": bin_ray,
        "stage_1_local_seconds": local_n,
        "stage_1_ray_seconds": ray_n,
    }


def print_engines(figures: dict[str, float], workers: int, episodes: int, seconds: float) -> None:
    events = figures["local_events"]
    recorded_h = episodes * seconds / 3600
    print(f"corpus: {episodes} episodes of {seconds:g}s ({recorded_h:.2f} h recorded), {events:,.0f} events read")
    print(f"Ray start-up (ray.init): {figures['ray_startup_seconds']:.1f}s; first Ray run (workers starting): "
          f"{figures['ray_first_run_seconds']:.1f}s")  # fmt: skip
    for name, one, many in (
        ("local", figures["local_events_per_s_1"], figures["local_events_per_s"]),
        ("ray", figures["ray_events_per_s_1"], figures[f"ray_events_per_s_{workers}"]),
    ):
        print(f"{name:5s} engine: {one:>10,.0f} events/s at 1 worker, {many:>10,.0f} at {workers} "
              f"(scaling {many / one:.2f}x)")  # fmt: skip
    print(f"ratio ray/local at {workers} workers: {figures['ray_vs_local']:.2f}x (goal >= {GOAL_RAY_VS_LOCAL}x); "
          f"at 1 worker: {figures['ray_vs_local_1']:.2f}x")  # fmt: skip
    # Hours of recordings per hour of this machine ("node-hour") at --workers workers.
    for stage, key in (("stage 1", "stage_1"), ("stage 2", "stage_2")):
        local_s, ray_s = figures[f"{key}_local_seconds"], figures[f"{key}_ray_seconds"]
        print(f"{stage}: local {local_s:6.2f}s = {recorded_h * 3600 / local_s:8,.0f} h of recordings per node-hour; "
              f"ray {ray_s:6.2f}s = {recorded_h * 3600 / ray_s:8,.0f}")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    from owa.data.events import DEFAULT_KEEP_TOPICS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=None, help="default 1,200 (400 with --video)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--video", action="store_true", help="episodes with videos (default 400 of them)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--work-dir", type=Path, default=REPO / "bench-output")
    parser.add_argument("--repeat", type=int, default=3, help="--engine ray: best of this many runs each")
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="ray: compare the Ray engine with the local one"
    )
    args = parser.parse_args(argv)
    if args.episodes is None:
        args.episodes = 400 if args.video else 1200
    if args.quick:
        args.episodes, args.seconds = 6, 1.0
        args.work_dir = Path(tempfile.mkdtemp(prefix="owa-bench-quick-"))
    args.work_dir.mkdir(parents=True, exist_ok=True)

    corpus = make_corpus(args.work_dir, args.episodes, args.seconds, video=args.video)
    if args.engine == "ray":
        figures = compare_engines(corpus, args.workers, repeat=1 if args.quick else args.repeat)
        print_engines(figures, args.workers, args.episodes, args.seconds)
        if args.quick:
            shutil.rmtree(args.work_dir, ignore_errors=True)
        return figures
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
